use crate::support::{eventually, get_bearer_on, Env, Options};
use std::time::{Duration, Instant};

fn confirmed() -> Options {
    Options {
        freshness: "confirmed",
        ..Options::default()
    }
}

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// The gateways holding a lease now (`{fence}:instances`, expired entries included until a
/// writer's fence forgets them).
fn leaseholders(env: &Env) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg("patgate:{fence}:instances")
        .arg(0)
        .arg(-1)
        .query(&mut env.redis_conn())
        .expect("ZRANGE")
}

/// Waits until `count` gateways hold a lease: a gateway's lease task starts with its store, on
/// its first authenticated request, and its cache serves only under a lease.
fn wait_for_leaseholders(env: &Env, count: usize) {
    eventually(
        Duration::from_secs(5),
        &format!("{count} gateway(s) to hold a lease"),
        || leaseholders(env).len() == count,
        || format!("{:?}", leaseholders(env)),
    );
}

fn role(response: crate::support::Response) -> Option<String> {
    response.echoed().header("x-auth-role").map(str::to_string)
}

#[test]
fn confirmed_changes_are_in_force_on_every_instance_for_the_next_request() {
    let env = Env::start_with(confirmed());
    let second = env.start_second_gateway();
    let token = env.user_with_pat("alice", "acme", "member");
    // Warm both instances' caches, then flip the role back and forth: each change is in force
    // on both for the very next request, with no retry.
    for _ in 0..2 {
        env.get_bearer("/v1/repos", &token).echoed();
        get_bearer_on(second.port, "/v1/repos", &token).echoed();
    }
    for round in 0..10 {
        let next = if round % 2 == 0 { "viewer" } else { "member" };
        env.member("alice", "acme", next);
        assert_eq!(
            role(env.get_bearer("/v1/repos", &token)).as_deref(),
            Some(next)
        );
        assert_eq!(
            role(get_bearer_on(second.port, "/v1/repos", &token)).as_deref(),
            Some(next),
            "round {round}"
        );
    }
    env.cli(&["user", "suspend", "alice"]).expect_ok();
    get_bearer_on(second.port, "/v1/repos", &token).assert_denied(401, "invalid_token");
    env.cli(&["user", "reactivate", "alice"]).expect_ok();
    get_bearer_on(second.port, "/v1/repos", &token).echoed();
    env.cli(&["token", "revoke", &token[..10]]).expect_ok();
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
    get_bearer_on(second.port, "/v1/repos", &token).assert_denied(401, "invalid_token");
}

#[test]
fn confirmed_warm_requests_make_no_redis_calls() {
    let env = Env::start_with(confirmed());
    let pat = env.user_with_pat("alice", "acme", "admin");
    let key = env.apikey("acme", "viewer", "alice");
    env.get_bearer("/v1/repos", &pat).echoed();
    wait_for_leaseholders(&env, 1);
    for _ in 0..2 {
        env.get_bearer("/v1/repos", &pat).echoed();
        env.get_bearer("/v1/repos", &key).echoed();
    }
    let reads = || (env.redis_calls("hgetall"), env.redis_calls("hmget"));
    let before = reads();
    for _ in 0..10 {
        env.get_bearer("/v1/repos", &pat).echoed();
        env.get_bearer("/v1/repos", &key).echoed();
    }
    assert_eq!(reads(), before, "warm requests were served from the cache");
}

#[test]
fn a_stopped_gateway_holds_a_write_until_its_lease_ends_and_then_reads_redis() {
    let env = Env::start_with(confirmed());
    let second = env.start_second_gateway();
    let token = env.user_with_pat("alice", "acme", "member");
    for _ in 0..2 {
        get_bearer_on(second.port, "/v1/repos", &token).echoed();
    }
    env.get_bearer("/v1/repos", &token).echoed();
    wait_for_leaseholders(&env, 2);
    // Stopped, it can neither apply the revocation's invalidation nor acknowledge the fence:
    // the writer waits for its lease (4 heartbeats of 500 ms, renewed at most one heartbeat
    // ago) to run out in Redis's clock.
    signal(second.pid(), "-STOP");
    let started = Instant::now();
    let revoked = env.cli(&["token", "revoke", &token[..10]]);
    let waited = started.elapsed();
    signal(second.pid(), "-CONT");
    revoked.expect_ok();
    assert!(
        waited >= Duration::from_secs(1),
        "the revocation was confirmed after {waited:?}, before the stopped gateway's lease ended"
    );
    // Resumed, its lease has run out on its own clock too, so its cache is not served: the
    // very next request reads Redis, before any heartbeat could run.
    get_bearer_on(second.port, "/v1/repos", &token).assert_denied(401, "invalid_token");
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
}

#[test]
fn a_write_a_leaseholder_never_acknowledges_is_reported_unconfirmed() {
    let env = Env::start_with(confirmed());
    let token = env.user_with_pat("alice", "acme", "member");
    env.member("bob", "acme", "member");
    // An instance that holds a lease for an hour and acknowledges nothing: the writer cannot
    // know it applied the write, so it says so rather than report the write done.
    let mut conn = env.redis_conn();
    let far = 3_600_000u64
        + 1_000
            * std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs();
    redis::cmd("ZADD")
        .arg("patgate:{fence}:instances")
        .arg(far)
        .arg("silent:1:0")
        .query::<()>(&mut conn)
        .expect("ZADD");
    let refused = env
        .cli(&["token", "revoke", &token[..10]])
        .expect_refused("did not acknowledge");
    assert!(
        refused.stderr.contains("1 confirmed gateway instance"),
        "{}",
        refused.stderr
    );
    // The write itself is in Redis: the gateway denies the token.
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
    // A creation is not failed for it (its secret is shown only on success): the new token is
    // printed once, and the gateway that did acknowledge serves it.
    let created = env
        .cli(&[
            "token", "create", "--user", "bob", "--org", "acme", "--name", "n",
        ])
        .expect_ok();
    env.get_bearer("/v1/repos", created.stdout.trim()).echoed();
}

#[test]
fn check_in_confirmed_mode_raises_a_fence_and_takes_no_lease() {
    let env = Env::start_with(confirmed());
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    let mut conn = env.redis_conn();
    let instances = || leaseholders(&env);
    wait_for_leaseholders(&env, 1);
    let before = instances();
    let generation = |conn: &mut redis::Connection| -> u64 {
        redis::cmd("GET")
            .arg("patgate:{fence}:generation")
            .query::<Option<u64>>(conn)
            .expect("GET")
            .unwrap_or(0)
    };
    let raised = generation(&mut conn);
    let out = env.cli(&["check"]).expect_ok();
    assert!(out.stdout.contains("redis reachable"), "{}", out.stdout);
    assert_eq!(generation(&mut conn), raised + 1, "check raised one fence");
    assert_eq!(instances(), before, "check took no lease of its own");
}
