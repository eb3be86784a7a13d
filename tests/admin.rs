use crate::support::{eventually, Env};
use std::time::Duration;

#[test]
fn healthz_answers_while_the_process_runs() {
    let env = Env::start();
    let response = env.admin_get("/healthz");
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["status"], "ok");
}

#[test]
fn readyz_follows_redis() {
    let env = Env::start();
    assert_eq!(env.admin_get("/readyz").status, 200);
    env.redis.stop().expect("SIGSTOP");
    let response = env.admin_get("/readyz");
    env.redis.resume().expect("SIGCONT");
    assert_eq!(response.status, 503);
    assert_eq!(response.json()["status"], "not_ready");
    eventually(
        Duration::from_secs(5),
        "ready again",
        || env.admin_get("/readyz").status == 200,
        || env.log(),
    );
}

#[test]
fn unknown_admin_paths_are_404() {
    let env = Env::start();
    assert_eq!(env.admin_get("/admin/secrets").status, 404);
}

#[test]
fn request_counters_move_by_route_and_outcome() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let allowed = r#"patgate_requests_total{outcome="allowed",route="repos-read"}"#;
    let missing = r#"patgate_requests_total{outcome="missing_credential",route="repos-read"}"#;
    let no_route = r#"patgate_requests_total{outcome="no_route",route="-"}"#;
    let before = (
        env.metric(allowed),
        env.metric(missing),
        env.metric(no_route),
    );
    for _ in 0..3 {
        env.get_bearer("/v1/repos", &token).echoed();
    }
    for _ in 0..2 {
        env.get("/v1/repos", &[])
            .assert_denied(401, "missing_credential");
    }
    env.get("/nowhere", &[]).assert_denied(404, "no_route");
    let after = (
        env.metric(allowed),
        env.metric(missing),
        env.metric(no_route),
    );
    assert_eq!(
        (after.0 - before.0, after.1 - before.1, after.2 - before.2),
        (3.0, 2.0, 1.0)
    );
}

#[test]
fn cache_and_bcrypt_metrics_show_one_verification_then_hits() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let hits = r#"patgate_verify_cache_total{result="hit"}"#;
    let misses = r#"patgate_verify_cache_total{result="miss"}"#;
    let bcrypt_runs = "patgate_bcrypt_seconds_count";
    let before = (
        env.metric(hits),
        env.metric(misses),
        env.metric(bcrypt_runs),
    );
    for _ in 0..4 {
        env.get_bearer("/v1/repos", &token).echoed();
    }
    let after = (
        env.metric(hits),
        env.metric(misses),
        env.metric(bcrypt_runs),
    );
    assert_eq!(
        (after.0 - before.0, after.1 - before.1, after.2 - before.2),
        (3.0, 1.0, 1.0)
    );
    assert_eq!(env.metric("patgate_bcrypt_queue_depth"), 0.0);
}

#[test]
fn redis_errors_are_counted_by_kind() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let timeouts = r#"patgate_redis_errors_total{kind="timeout"}"#;
    let before = env.metric(timeouts);
    env.redis.stop().expect("SIGSTOP");
    let response = env.get_bearer("/v1/repos", &token);
    env.redis.resume().expect("SIGCONT");
    response.assert_denied(503, "auth_unavailable");
    assert_eq!(env.metric(timeouts) - before, 1.0);
}

fn access_lines(env: &Env) -> Vec<serde_json::Value> {
    env.log()
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn json_access_log_has_one_line_per_request_and_never_the_secret() {
    let env = Env::start_with(crate::support::Options {
        access_log: "json",
        ..Default::default()
    });
    let token = env.user_with_pat("alice", "acme", "member");
    let bearer = format!("Bearer {token}");
    env.get(
        "/v1/repos?page=2",
        &[("Authorization", &bearer), ("X-Request-Id", "ok-1")],
    )
    .echoed();
    env.get(
        "/v1/billing",
        &[("Authorization", &bearer), ("X-Request-Id", "deny-1")],
    )
    .assert_denied(403, "insufficient_scope");
    eventually(
        Duration::from_secs(5),
        "two access lines",
        || access_lines(&env).len() >= 2,
        || env.log(),
    );
    let lines = access_lines(&env);
    let find = |id: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == id)
            .cloned()
            .expect("line")
    };
    let ok = find("ok-1");
    assert_eq!(ok["route"], "repos-read");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/v1/repos");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["outcome"], "allowed");
    assert_eq!(ok["credential_type"], "pat");
    assert_eq!(ok["prefix"], &token[..10]);
    assert_eq!(ok["user"], "alice");
    assert_eq!(ok["org"], "acme");
    assert_eq!(ok["upstream"], env.upstream.addr().to_string());
    assert_eq!(ok["upstream_status"], 200);
    assert!(ok["total_ms"].as_f64().is_some_and(|t| t > 0.0));
    assert!(ok["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    let denied = find("deny-1");
    assert_eq!(denied["status"], 403);
    assert_eq!(denied["outcome"], "insufficient_scope");
    assert_eq!(denied["reason"], "missing_permission");
    assert_eq!(denied["upstream"], serde_json::Value::Null);
    assert!(
        !env.log().contains(&token),
        "the secret never reaches the log"
    );
}

#[test]
fn tracked_invalidations_and_redis_latency_are_reported() {
    let env = Env::start_with(crate::support::Options {
        freshness: "tracked",
        ..Default::default()
    });
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    env.get_bearer("/v1/repos", &token).echoed();
    // The cold request's two reads are timed before it is answered; the last-used stamp is
    // written (and timed) off the request path, so it is waited for, not raced.
    assert!(
        env.metric("patgate_redis_seconds_count") >= 2.0,
        "the cold reads are timed"
    );
    eventually(
        Duration::from_secs(5),
        "the last-used stamp's write to be timed too",
        || env.metric("patgate_redis_seconds_count") >= 3.0,
        || env.admin_get("/metrics").body,
    );
    let before = env.metric("patgate_tracked_invalidations");
    env.member("alice", "acme", "viewer");
    eventually(
        Duration::from_secs(5),
        "the invalidation to be counted",
        || env.metric("patgate_tracked_invalidations") > before,
        || env.admin_get("/metrics").body,
    );
    assert_eq!(env.metric("patgate_bcrypt_busy_threads"), 0.0);
}

#[test]
fn revocation_lag_is_observed_once_for_a_warm_pat() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    env.get_bearer("/v1/repos", &token).echoed();
    let count = "patgate_revocation_lag_seconds_count";
    assert_eq!(env.metric(count), 0.0);
    env.cli(&["token", "revoke", &token[..10]]).expect_ok();
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
    assert_eq!(env.metric(count), 1.0);
    let lag = env.metric("patgate_revocation_lag_seconds_sum");
    assert!((0.0..5.0).contains(&lag), "lag {lag} s");
    // Known once: later requests are denied without observing it again.
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
    assert_eq!(env.metric(count), 1.0);
}
