//! Every metric patgate exports, as a lazily registered static with its help text, and the
//! text rendering served at `/metrics`. Nothing else.
//!
//! Labels are route names (bounded by the conf) and fixed words; never a user, org or prefix.

use once_cell::sync::Lazy;
use prometheus::{
    register_histogram, register_int_counter, register_int_counter_vec, register_int_gauge,
    Encoder, Histogram, IntCounter, IntCounterVec, IntGauge, TextEncoder,
};
use std::sync::atomic::Ordering;

/// Requests by route and outcome: `allowed`, `open`, or the denial's error code.
pub static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "patgate_requests_total",
        "Requests by route and outcome (allowed, open, or the denial's error code).",
        &["route", "outcome"]
    )
    .expect("registered once")
});

/// Time spent authenticating a request on a protected route.
pub static AUTH_SECONDS: Lazy<Histogram> = Lazy::new(|| {
    register_histogram!(
        "patgate_auth_seconds",
        "Time spent authenticating a request on a protected route.",
        vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
    )
    .expect("registered once")
});

/// Verified-secret cache lookups for PATs: `hit` (no bcrypt) or `miss`.
pub static VERIFY_CACHE: Lazy<IntCounterVec> = Lazy::new(|| {
    let counter = register_int_counter_vec!(
        "patgate_verify_cache_total",
        "Verified-secret cache lookups for PATs: hit (no bcrypt needed) or miss.",
        &["result"]
    )
    .expect("registered once");
    // Listed at zero from the start, so rates and ratios are defined before the first lookup.
    for result in ["hit", "miss"] {
        counter.with_label_values(&[result]);
    }
    counter
});

/// `patgate_verify_cache_total{result="hit"}`, resolved once (no label lookup per request).
pub static CACHE_HITS: Lazy<IntCounter> = Lazy::new(|| VERIFY_CACHE.with_label_values(&["hit"]));

/// `patgate_verify_cache_total{result="miss"}`, resolved once.
pub static CACHE_MISSES: Lazy<IntCounter> = Lazy::new(|| VERIFY_CACHE.with_label_values(&["miss"]));

/// PAT secrets refused from the negative cache (a repeated wrong token), without bcrypt.
pub static NEGATIVE_HITS: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "patgate_verify_negative_hits_total",
        "Wrong PAT secrets answered from the negative cache (refused against the same stored hash moments before), without bcrypt."
    )
    .expect("registered once")
});

/// bcrypt verifications queued or running on the pool.
pub static BCRYPT_QUEUE: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "patgate_bcrypt_queue_depth",
        "bcrypt verifications waiting for or running on the dedicated pool."
    )
    .expect("registered once")
});

/// bcrypt pool threads busy verifying right now.
pub static BCRYPT_BUSY: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "patgate_bcrypt_busy_threads",
        "bcrypt pool threads busy verifying right now."
    )
    .expect("registered once")
});

/// Duration of each Redis operation (one command or one pipeline) made by the gateway.
pub static REDIS_SECONDS: Lazy<Histogram> = Lazy::new(|| {
    register_histogram!(
        "patgate_redis_seconds",
        "Duration of each Redis operation (a command or a pipeline) on the request path; tracked-mode cache hits make none.",
        vec![0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25]
    )
    .expect("registered once")
});

/// Invalidations pushed by Redis and processed (tracked mode).
pub static TRACKED_INVALIDATIONS: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "patgate_tracked_invalidations",
        "Invalidations pushed by Redis to the record cache since start, one per key named, whether cached or not (tracked mode; flushes and dropped connections count one each)."
    )
    .expect("registered once")
});

/// Tracked-mode fills thrown away because an invalidation arrived while they were in flight.
pub static TRACKED_DISCARDED_FILLS: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "patgate_tracked_discarded_fills",
        "Record-cache fills discarded because an invalidation, flush or lost connection was applied while their read was in flight (tracked mode; the request is still answered from the read)."
    )
    .expect("registered once")
});

/// The gateway's store, whose record-cache counters are read at render time.
static TRACKED_STORE: once_cell::sync::OnceCell<crate::store::Store> =
    once_cell::sync::OnceCell::new();

/// Lets `/metrics` report the tracked-mode cache of `store` (the first store given wins).
pub fn watch_tracked_store(store: &crate::store::Store) {
    let _ = TRACKED_STORE.set(store.clone());
}

/// Run time of one bcrypt verification on a pool thread.
pub static BCRYPT_SECONDS: Lazy<Histogram> = Lazy::new(|| {
    register_histogram!(
        "patgate_bcrypt_seconds",
        "Run time of one bcrypt verification on a pool thread.",
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
    )
    .expect("registered once")
});

/// Redis failures on the request path, by kind (timeout, refused, connection, reply, corrupt).
pub static REDIS_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    let counter = register_int_counter_vec!(
        "patgate_redis_errors_total",
        "Redis failures on the request path, by kind.",
        &["kind"]
    )
    .expect("registered once");
    for kind in ["timeout", "refused", "connection", "reply", "corrupt"] {
        counter.with_label_values(&[kind]);
    }
    counter
});

/// Off-path records (last-used stamps, denied-request audit entries) by kind and result:
/// `written`, `dropped` (queue full or table full) or `failed` (Redis refused the batch).
pub static RECORDS: Lazy<IntCounterVec> = Lazy::new(|| {
    let counter = register_int_counter_vec!(
        "patgate_records_total",
        "Off-path records (last_used stamps, denied audit entries) by kind and result (written, dropped, failed).",
        &["kind", "result"]
    )
    .expect("registered once");
    for kind in ["last_used", "denied"] {
        for result in ["written", "dropped", "failed"] {
            counter.with_label_values(&[kind, result]);
        }
    }
    counter
});

/// Time from a revocation's write to the first request it denied on this instance, for
/// credentials this instance had verified before (so the lag is known).
pub static REVOCATION_LAG: Lazy<Histogram> = Lazy::new(|| {
    register_histogram!(
        "patgate_revocation_lag_seconds",
        "Time from a revocation's write (its stored timestamp) to the first request it denied on this instance.",
        vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0]
    )
    .expect("registered once")
});

/// Every registered metric in Prometheus' text format.
pub fn render() -> Vec<u8> {
    // Touch each metric so that it is listed (with zero values) before its first use.
    Lazy::force(&REQUESTS);
    Lazy::force(&AUTH_SECONDS);
    Lazy::force(&VERIFY_CACHE);
    Lazy::force(&NEGATIVE_HITS);
    Lazy::force(&BCRYPT_QUEUE);
    Lazy::force(&BCRYPT_SECONDS);
    Lazy::force(&REDIS_ERRORS);
    Lazy::force(&BCRYPT_BUSY);
    Lazy::force(&REDIS_SECONDS);
    Lazy::force(&RECORDS);
    Lazy::force(&REVOCATION_LAG);
    if let Some(live) = TRACKED_STORE.get().and_then(|s| s.live_cache()) {
        let applied = live.stats.invalidations.load(Ordering::Relaxed);
        TRACKED_INVALIDATIONS.set(i64::try_from(applied).unwrap_or(i64::MAX));
        let discarded = live.stats.discarded_fills.load(Ordering::Relaxed);
        TRACKED_DISCARDED_FILLS.set(i64::try_from(discarded).unwrap_or(i64::MAX));
    }
    Lazy::force(&TRACKED_INVALIDATIONS);
    Lazy::force(&TRACKED_DISCARDED_FILLS);
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metric families.
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use prometheus::core::Collector;

    /// Every series name patgate exports (a histogram's `_bucket`/`_sum`/`_count` included).
    fn exported() -> Vec<String> {
        let others: [&dyn Collector; 9] = [
            &*REQUESTS,
            &*RECORDS,
            &*VERIFY_CACHE,
            &*NEGATIVE_HITS,
            &*BCRYPT_QUEUE,
            &*REDIS_ERRORS,
            &*BCRYPT_BUSY,
            &*TRACKED_INVALIDATIONS,
            &*TRACKED_DISCARDED_FILLS,
        ];
        let mut names: Vec<String> = others
            .iter()
            .flat_map(|c| c.desc())
            .map(|d| d.fq_name.clone())
            .collect();
        for histogram in [
            &*AUTH_SECONDS,
            &*BCRYPT_SECONDS,
            &*REDIS_SECONDS,
            &*REVOCATION_LAG,
        ] {
            for desc in histogram.desc() {
                for suffix in ["", "_bucket", "_sum", "_count"] {
                    names.push(format!("{}{suffix}", desc.fq_name));
                }
            }
        }
        names
    }

    #[test]
    fn cache_and_redis_error_series_are_listed_before_first_use() {
        let text = String::from_utf8(render()).expect("utf-8");
        assert!(
            text.contains(r#"patgate_verify_cache_total{result="hit"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"patgate_redis_errors_total{kind="timeout"}"#),
            "{text}"
        );
    }

    #[test]
    fn every_metric_is_registered_with_the_patgate_prefix() {
        let names = exported();
        for expected in [
            "patgate_requests_total",
            "patgate_auth_seconds",
            "patgate_verify_cache_total",
            "patgate_verify_negative_hits_total",
            "patgate_bcrypt_queue_depth",
            "patgate_bcrypt_seconds",
            "patgate_redis_errors_total",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
    }

    #[test]
    fn the_sample_dashboard_only_queries_exported_metrics() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/grafana-dashboard.json");
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
        let names = exported();
        let panels = dashboard["panels"].as_array().expect("panels");
        assert!(!panels.is_empty());
        for target in panels
            .iter()
            .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("patgate_") {
                    assert!(
                        names.iter().any(|n| n == word),
                        "{word} in {expr:?} is not exported"
                    );
                }
            }
        }
    }
}
