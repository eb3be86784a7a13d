//! How credentials and users are shown: one JSON shape shared by `--json` listings and the
//! management API, and one table for terminals. Never a secret (records hold none).
//!
//! Each credential says its state (`active`, `expired`, `revoked`), its expiry in words
//! ("expires in 29 days", "never expires") and its last use in words ("never used",
//! "used 3 days ago"), besides the raw unix times, so that neither a person nor a script has
//! to do date arithmetic to spot a dormant or soon-to-expire credential.

use crate::manage::Listed;
use crate::store::{CredentialRecord, UserRecord};
use serde_json::{json, Value};

/// `active`, `expired` or `revoked` at `now`.
pub fn state(record: &CredentialRecord, now: u64) -> &'static str {
    match (record.revoked, record.expires) {
        (Some(_), _) => "revoked",
        (None, Some(t)) if t <= now => "expired",
        _ => "active",
    }
}

/// "never expires", "expired", or "expires in N days/hours/minutes".
pub fn expiry_text(expires: Option<u64>, now: u64) -> String {
    match expires {
        None => "never expires".into(),
        Some(t) if t <= now => "expired".into(),
        Some(t) => format!("expires in {}", span(t - now)),
    }
}

/// "never used", "used just now", or "used N days/hours/minutes ago".
pub fn last_used_text(at: Option<u64>, now: u64) -> String {
    match at {
        None => "never used".into(),
        Some(t) if now.saturating_sub(t) < 60 => "used just now".into(),
        Some(t) => format!("used {} ago", span(now - t)),
    }
}

fn span(seconds: u64) -> String {
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    if seconds >= 86_400 {
        plural(seconds / 86_400, "day")
    } else if seconds >= 3600 {
        plural(seconds / 3600, "hour")
    } else {
        plural(seconds.div_ceil(60).max(1), "minute")
    }
}

/// The JSON shape of one credential.
pub fn credential_json(listed: &Listed, now: u64) -> Value {
    let r = &listed.record;
    let last_used = listed
        .last_use
        .as_ref()
        .map(|u| json!({ "at": u.at, "clients": u.clients }));
    json!({
        "prefix": r.prefix,
        "kind": r.kind.as_str(),
        "name": r.name,
        "user": r.user,
        "created_by": r.created_by,
        "org": r.org,
        "role": r.role,
        "permissions": r.permissions,
        "created": r.created,
        "expires": r.expires,
        "revoked": r.revoked,
        "state": state(r, now),
        "expiry": expiry_text(r.expires, now),
        "last_used": last_used,
        "last_used_text": last_used_text(listed.last_use.as_ref().map(|u| u.at), now),
    })
}

/// The JSON shape of a list of credentials.
pub fn credentials_json(list: &[Listed], now: u64) -> Value {
    Value::Array(list.iter().map(|l| credential_json(l, now)).collect())
}

/// The terminal table of a list of credentials.
pub fn credentials_table(list: &[Listed], now: u64) -> String {
    let mut out = format!(
        "{:<10}  {:<8}  {:<12}  {:<10}  {:<22}  {:<36}  NAME\n",
        "PREFIX", "STATE", "ORG", "ROLE", "EXPIRES", "LAST USED"
    );
    for listed in list {
        let r = &listed.record;
        let last_used = match &listed.last_use {
            None => last_used_text(None, now),
            Some(u) => match u.clients.first() {
                Some(client) => format!("{} from {client}", last_used_text(Some(u.at), now)),
                None => last_used_text(Some(u.at), now),
            },
        };
        out.push_str(&format!(
            "{:<10}  {:<8}  {:<12}  {:<10}  {:<22}  {:<36}  {}\n",
            r.prefix,
            state(r, now),
            r.org,
            r.role.as_deref().unwrap_or("(live)"),
            expiry_text(r.expires, now),
            last_used,
            r.name
        ));
    }
    out
}

/// The JSON shape of a user; `only_org` limits the memberships shown (an org admin sees its
/// own org only).
pub fn user_json(user: &str, record: &UserRecord, only_org: Option<&str>) -> Value {
    let status = record.status.map_or("unknown", |s| s.as_str());
    let orgs: serde_json::Map<String, Value> = record
        .orgs
        .iter()
        .filter(|(org, _)| only_org.is_none_or(|only| only == org.as_str()))
        .map(|(org, role)| (org.clone(), Value::String(role.clone())))
        .collect();
    json!({ "user": user, "status": status, "orgs": orgs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_said_in_words() {
        assert_eq!(expiry_text(None, 100), "never expires");
        assert_eq!(expiry_text(Some(100), 100), "expired");
        assert_eq!(
            expiry_text(Some(100 + 29 * 86_400 + 5), 100),
            "expires in 29 days"
        );
        assert_eq!(expiry_text(Some(100 + 86_400), 100), "expires in 1 day");
        assert_eq!(expiry_text(Some(100 + 7200), 100), "expires in 2 hours");
        assert_eq!(expiry_text(Some(100 + 61), 100), "expires in 2 minutes");
        assert_eq!(last_used_text(None, 100), "never used");
        assert_eq!(last_used_text(Some(90), 100), "used just now");
        assert_eq!(
            last_used_text(Some(100), 100 + 3 * 86_400),
            "used 3 days ago"
        );
    }
}
