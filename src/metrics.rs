//! Every metric patgate exports, as a lazily registered static with its help text, and the
//! text rendering served at `/metrics`. Nothing else.
//!
//! Labels are route names (bounded by the conf) and fixed words; never a user, org or prefix.

use once_cell::sync::Lazy;
use prometheus::{
    register_histogram, register_int_counter_vec, register_int_gauge, Encoder, Histogram,
    IntCounterVec, IntGauge, TextEncoder,
};

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
    register_int_counter_vec!(
        "patgate_verify_cache_total",
        "Verified-secret cache lookups for PATs: hit (no bcrypt needed) or miss.",
        &["result"]
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
    register_int_counter_vec!(
        "patgate_redis_errors_total",
        "Redis failures on the request path, by kind.",
        &["kind"]
    )
    .expect("registered once")
});

/// Every registered metric in Prometheus' text format.
pub fn render() -> Vec<u8> {
    // Touch each metric so that it is listed (with zero values) before its first use.
    Lazy::force(&REQUESTS);
    Lazy::force(&AUTH_SECONDS);
    Lazy::force(&VERIFY_CACHE);
    Lazy::force(&BCRYPT_QUEUE);
    Lazy::force(&BCRYPT_SECONDS);
    Lazy::force(&REDIS_ERRORS);
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metric families.
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut out);
    out
}
