//! One access-log line per request, written from the `logging()` phase: `plain` through the
//! `log` crate at info level (with the process's other logs), `json` as one JSON object per
//! line on stdout (for log shippers), or `off`. Never a secret: the credential appears only as
//! its 10-character prefix, and only when the token was well-formed.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// `access_log.format` in the conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Through `log` at info level: `RUST_LOG=warn` silences it.
    #[default]
    Plain,
    /// One JSON object per line on stdout.
    Json,
    /// No access log.
    Off,
}

/// Everything logged about one request.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// RFC 3339 UTC time the line was written.
    pub time: String,
    /// The request id (also sent upstream and returned).
    pub request_id: &'a str,
    /// Route name, or `-`.
    pub route: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    /// Status sent to the client (0 if none was).
    pub status: u16,
    /// `allowed`, `open`, or the denial's error code.
    pub outcome: &'a str,
    /// The denial's stable reason, if denied.
    pub reason: Option<&'a str>,
    /// `pat` or `api_key`, when a credential was verified.
    pub credential_type: Option<&'a str>,
    /// The presented token's prefix, when well-formed.
    pub prefix: Option<&'a str>,
    /// The PAT owner, when verified.
    pub user: Option<&'a str>,
    /// The org, when verified.
    pub org: Option<&'a str>,
    /// The upstream address, when the request was proxied.
    pub upstream: Option<String>,
    /// The upstream's status, when it answered.
    pub upstream_status: Option<u16>,
    /// Total time in the gateway, in milliseconds.
    pub total_ms: f64,
    /// Time spent authenticating, in milliseconds.
    pub auth_ms: f64,
    /// Proxy error, if any.
    pub error: Option<String>,
}

/// Writes `entry` in `format`.
pub fn write(format: Format, entry: &Entry<'_>) {
    match format {
        Format::Off => {}
        Format::Plain => log::info!(
            "{} {} route={} status={} outcome={} reason={} prefix={} upstream={} upstream_status={} total_ms={:.3} auth_ms={:.3} request_id={}{}",
            entry.method,
            entry.path,
            entry.route,
            entry.status,
            entry.outcome,
            entry.reason.unwrap_or("-"),
            entry.prefix.unwrap_or("-"),
            entry.upstream.as_deref().unwrap_or("-"),
            entry.upstream_status.map_or("-".to_string(), |s| s.to_string()),
            entry.total_ms,
            entry.auth_ms,
            entry.request_id,
            entry.error.as_deref().map(|e| format!(" error={e}")).unwrap_or_default(),
        ),
        Format::Json => {
            if let Ok(mut line) = serde_json::to_vec(entry) {
                line.push(b'\n');
                // One write of a whole line, so lines from worker threads never interleave.
                let _ = std::io::stdout().lock().write_all(&line);
            }
        }
    }
}

/// Now as RFC 3339 UTC with milliseconds, e.g. `2026-11-27T19:58:42.123Z`.
pub fn now_rfc3339() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

/// `secs.millis` since the unix epoch as RFC 3339 UTC, e.g. `2026-11-27T20:45:28.123Z`.
pub fn rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil-date algorithm (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000, 42), "2023-11-14T22:13:20.042Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_824_000, 999), "2026-11-28T00:00:00.999Z");
    }
}
