use crate::support::{eventually, get_bearer_on, same_prefix_other_secret, Env, Options};
use std::time::Duration;

fn slow_pool() -> Options {
    // One bcrypt thread, one waiting slot, cost 12 (~0.3 s per verification).
    Options {
        bcrypt_cost: 12,
        pool_threads: 1,
        pool_queue: 1,
        ..Options::default()
    }
}

/// The default `server.threads: 1`, so its single-threaded runtime (`work_stealing` unset),
/// in `freshness`: concurrent clients are served, and a revocation is in force on the next
/// request (strict) or within the tracked lag.
fn one_thread_runtime_serves_and_revokes(freshness: &'static str) {
    let env = Env::start_with(Options {
        server_threads: 1,
        freshness,
        ..Options::default()
    });
    let token = env.user_with_pat("alice", "acme", "member");
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    (0..10)
                        .map(|_| env.get_bearer("/v1/repos", &token).status)
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(statuses, vec![200; 80]);
    env.cli(&["token", "revoke", &token[..10]]).expect_ok();
    if freshness == "strict" {
        env.get_bearer("/v1/repos", &token)
            .assert_denied(401, "invalid_token");
    } else {
        eventually(
            Duration::from_secs(5),
            "the revocation to reach the tracked cache",
            || env.get_bearer("/v1/repos", &token).status == 401,
            || env.log(),
        );
    }
}

#[test]
fn one_thread_runtime_serves_concurrent_clients_and_revokes_at_once_in_strict_mode() {
    one_thread_runtime_serves_and_revokes("strict");
}

#[test]
fn one_thread_runtime_serves_concurrent_clients_and_revokes_in_tracked_mode() {
    one_thread_runtime_serves_and_revokes("tracked");
}

#[test]
fn concurrent_first_requests_with_one_token_share_one_bcrypt_run() {
    let env = Env::start_with(slow_pool());
    let token = env.user_with_pat("alice", "acme", "member");
    // Six verifications would overflow a pool of one thread and one slot; one shared run cannot.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| env.get_bearer("/v1/repos", &token).status))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(statuses, vec![200; 6]);
}

#[test]
fn a_verified_token_needs_no_bcrypt_even_while_the_pool_is_full() {
    let env = Env::start_with(slow_pool());
    env.member("alice", "acme", "member");
    let warm = env.pat_with("alice", "acme", &[]);
    let cold: Vec<String> = (0..6).map(|_| env.pat_with("alice", "acme", &[])).collect();
    env.get_bearer("/v1/repos", &warm).echoed();
    std::thread::scope(|scope| {
        // Six cold tokens at once: one runs (~0.3 s), at most one waits, the rest are refused.
        let busy: Vec<_> = cold
            .iter()
            .map(|t| scope.spawn(|| env.get_bearer("/v1/repos", t).status))
            .collect();
        // A refusal has been answered: the pool is full now, and stays so for ~0.3 s.
        eventually(
            Duration::from_secs(5),
            "a cold token to be refused as overloaded",
            || env.log().contains("outcome=overloaded"),
            || env.log(),
        );
        // The verified token is still served: it needs no bcrypt.
        env.get_bearer("/v1/repos", &warm).echoed();
        let statuses: Vec<u16> = busy
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        assert!(statuses.contains(&503), "{statuses:?}");
    });
}

#[test]
fn a_changed_stored_hash_invalidates_the_cached_verification() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    let other = same_prefix_other_secret(&token);
    let new_hash = bcrypt::hash(&other.as_bytes()[..other.len() - 6], 4).expect("hash");
    let mut conn = env.redis_conn();
    let key = format!("patgate:cred:{}", &token[..10]);
    redis::cmd("HSET")
        .arg(&key)
        .arg("hash")
        .arg(new_hash)
        .exec(&mut conn)
        .expect("HSET");
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
    env.get_bearer("/v1/repos", &other).echoed();
}

#[test]
fn a_credential_whose_record_vanished_is_denied_despite_the_cache() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    let mut conn = env.redis_conn();
    let key = format!("patgate:cred:{}", &token[..10]);
    redis::cmd("DEL").arg(&key).exec(&mut conn).expect("DEL");
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
}

/// bcrypt runs and negative-cache hits so far, from the gateway's `/metrics`.
fn bcrypt_runs_and_negative_hits(env: &Env) -> (f64, f64) {
    (
        env.metric("patgate_bcrypt_seconds_count"),
        env.metric("patgate_verify_negative_hits_total"),
    )
}

#[test]
fn a_repeated_wrong_secret_is_bcrypt_checked_once_and_revocation_still_answers_first() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let wrong = same_prefix_other_secret(&token);
    let (runs, hits) = bcrypt_runs_and_negative_hits(&env);
    const TRIES: usize = 8;
    for _ in 0..TRIES {
        let response = env.get_bearer("/v1/repos", &wrong);
        response.assert_denied(401, "invalid_token");
        // Wrong, unknown and revoked read the same to the client, cached or not.
        assert_eq!(response.json()["reason"], "revoked_or_unknown");
    }
    let (runs_after, hits_after) = bcrypt_runs_and_negative_hits(&env);
    assert_eq!(
        runs_after - runs,
        1.0,
        "bcrypt ran once for {TRIES} identical tries"
    );
    assert_eq!(hits_after - hits, (TRIES - 1) as f64);
    // The right secret is not affected by its prefix's negative entry.
    env.get_bearer("/v1/repos", &token).echoed();
    // The live record is read before the negative cache: revoked answers as revoked, and
    // without touching the cache.
    env.cli(&["token", "revoke", &token[..10]]).expect_ok();
    env.get_bearer("/v1/repos", &wrong)
        .assert_denied(401, "invalid_token");
    assert_eq!(bcrypt_runs_and_negative_hits(&env).1, hits_after);
    assert!(env.log().contains("reason=revoked_or_unknown"));
    assert!(
        !env.log().contains(&wrong[10..]),
        "the secret is never logged"
    );
    assert_eq!(
        env.upstream.count(),
        1,
        "only the right secret was forwarded"
    );
}

#[test]
fn with_the_negative_cache_off_every_wrong_secret_is_bcrypt_checked() {
    let env = Env::start_with(Options {
        negative_ttl_ms: 0,
        ..Options::default()
    });
    let token = env.user_with_pat("alice", "acme", "member");
    let wrong = same_prefix_other_secret(&token);
    let (runs, hits) = bcrypt_runs_and_negative_hits(&env);
    for _ in 0..3 {
        env.get_bearer("/v1/repos", &wrong)
            .assert_denied(401, "invalid_token");
    }
    let (runs_after, hits_after) = bcrypt_runs_and_negative_hits(&env);
    assert_eq!((runs_after - runs, hits_after - hits), (3.0, 0.0));
}

#[test]
fn strict_warm_pat_reads_record_and_owner_once_per_request() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    let before = (env.redis_calls("hgetall"), env.redis_calls("hmget"));
    for _ in 0..10 {
        env.get_bearer("/v1/repos", &token).echoed();
    }
    let after = (env.redis_calls("hgetall"), env.redis_calls("hmget"));
    // Per warm request: HMGET cred:<p> hash revoked + HMGET user:<u> status org:<o>, pipelined.
    assert_eq!((after.0 - before.0, after.1 - before.1), (0, 20));
}

#[test]
fn strict_changes_are_in_force_on_every_instance_for_the_next_request() {
    let env = Env::start();
    let second = env.start_second_gateway();
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    get_bearer_on(second.port, "/v1/repos", &token).echoed();
    env.member("alice", "acme", "viewer");
    let role = |r: crate::support::Response| r.echoed().header("x-auth-role").map(str::to_string);
    assert_eq!(
        role(env.get_bearer("/v1/repos", &token)).as_deref(),
        Some("viewer")
    );
    assert_eq!(
        role(get_bearer_on(second.port, "/v1/repos", &token)).as_deref(),
        Some("viewer")
    );
    env.cli(&["token", "revoke", &token[..10]]).expect_ok();
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
    get_bearer_on(second.port, "/v1/repos", &token).assert_denied(401, "invalid_token");
}

fn tracked() -> Options {
    Options {
        freshness: "tracked",
        ..Options::default()
    }
}

#[test]
fn tracked_warm_requests_make_no_redis_calls() {
    let env = Env::start_with(tracked());
    let pat = env.user_with_pat("alice", "acme", "admin");
    let key = env.apikey("acme", "viewer", "alice");
    for _ in 0..2 {
        // The first PAT request is cold (record, bcrypt, owner); the second fills the warm reads.
        env.get_bearer("/v1/repos", &pat).echoed();
        env.get_bearer("/v1/repos", &key).echoed();
    }
    let before = (env.redis_calls("hgetall"), env.redis_calls("hmget"));
    for _ in 0..10 {
        env.get_bearer("/v1/repos", &pat).echoed();
        env.get_bearer("/v1/repos", &key).echoed();
    }
    let after = (env.redis_calls("hgetall"), env.redis_calls("hmget"));
    assert_eq!(
        after, before,
        "warm requests were served from the tracked cache"
    );
}

#[test]
fn a_last_used_stamp_neither_invalidates_nor_discards_tracked_fills() {
    // A heartbeat missed on a loaded machine would clear the cache and count one more; with a
    // 2 s deadline it cannot happen within this test.
    let env = Env::start_with(Options {
        timeout_ms: 2000,
        ..tracked()
    });
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    eventually(
        Duration::from_secs(5),
        "the first use's last-used stamp to be written",
        || env.metric(r#"patgate_records_total{kind="last_used",result="written"}"#) >= 1.0,
        || env.admin_get("/metrics").body,
    );
    // Redis pushes invalidations to the tracked connection in the order it executes writes,
    // so once the role change's push is counted, any push the stamp caused was counted too.
    env.member("alice", "acme", "viewer");
    eventually(
        Duration::from_secs(5),
        "the role change's invalidation to be counted",
        || env.metric("patgate_tracked_invalidations") >= 1.0,
        || env.admin_get("/metrics").body,
    );
    assert_eq!(
        env.metric("patgate_tracked_invalidations"),
        1.0,
        "only user:alice was invalidated; the stamp's used: key is not tracked"
    );
    assert_eq!(env.metric("patgate_tracked_discarded_fills"), 0.0);
}

#[test]
fn tracked_mode_applies_revocations_and_role_changes_once_invalidated() {
    let env = Env::start_with(tracked());
    let token = env.user_with_pat("alice", "acme", "member");
    let bearer = format!("Bearer {token}");
    let post = || {
        env.request("POST", "/v1/repos", &[("Authorization", &bearer)])
            .status
    };
    assert_eq!(post(), 200);
    env.member("alice", "acme", "viewer");
    eventually(
        Duration::from_secs(2),
        "downgrade to apply",
        || post() == 403,
        || env.log(),
    );
    env.cli(&["token", "revoke", &token[..10]]).expect_ok();
    eventually(
        Duration::from_secs(2),
        "revocation to apply",
        || env.get_bearer("/v1/repos", &token).status == 401,
        || env.log(),
    );
}

#[test]
fn tracked_mode_drops_its_cache_when_the_connection_drops() {
    let env = Env::start_with(tracked());
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    env.get_bearer("/v1/repos", &token).echoed();
    let reads = || env.redis_calls("hgetall") + env.redis_calls("hmget");
    let warm = reads();
    let mut conn = env.redis_conn();
    patgate::testkit::redis::kill_other_clients(&mut conn).expect("CLIENT KILL");
    // Invalidations for the killed connection are lost, so its cache must go with it: the
    // gateway reads Redis again (and is still correct) instead of serving what it had.
    eventually(
        Duration::from_secs(5),
        "the cache to be dropped and refilled",
        || env.get_bearer("/v1/repos", &token).status == 200 && reads() > warm,
        || env.log(),
    );
}
