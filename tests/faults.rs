use crate::support::{eventually, Env, Options};
use std::time::{Duration, Instant};

#[test]
fn stopped_redis_fails_closed_with_503_and_recovers_without_restart() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    env.redis.stop().expect("SIGSTOP");
    let started = Instant::now();
    let response = env.get_bearer("/v1/repos", &token);
    let took = started.elapsed();
    env.redis.resume().expect("SIGCONT");
    response.assert_denied(503, "auth_unavailable");
    assert_eq!(response.header("retry-after"), Some("1"));
    assert!(
        took < Duration::from_secs(2),
        "answered in {took:?}, the timeout is 200 ms"
    );
    assert_eq!(
        env.upstream.count(),
        1,
        "nothing forwarded while Redis was stopped"
    );
    eventually(
        Duration::from_secs(5),
        "service to return",
        || env.get_bearer("/v1/repos", &token).status == 200,
        || env.log(),
    );
}

#[test]
fn killed_redis_fails_closed_and_a_restarted_empty_one_knows_no_token() {
    let mut env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    env.redis.kill();
    env.get_bearer("/v1/repos", &token)
        .assert_denied(503, "auth_unavailable");
    env.redis.restart().expect("restart redis");
    // The data is gone with the old process: the token is now unknown, never allowed.
    eventually(
        Duration::from_secs(5),
        "gateway to reconnect",
        || env.get_bearer("/v1/repos", &token).status == 401,
        || env.log(),
    );
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
    // And new data works without restarting the gateway.
    let fresh = env.user_with_pat("bob", "acme", "member");
    env.get_bearer("/v1/repos", &fresh).echoed();
    assert_eq!(env.upstream.count(), 2);
}

#[test]
fn redis_down_at_start_is_503_until_it_appears() {
    let mut env = Env::start();
    env.redis.kill();
    env.stop_gateway();
    // A gateway started while Redis is down serves 503s, then recovers once Redis is up.
    let mut env = restart_gateway(env);
    env.get_bearer(
        "/v1/repos",
        &patgate::token::generate(patgate::token::Kind::Pat).token,
    )
    .assert_denied(503, "auth_unavailable");
    env.redis.restart().expect("restart redis");
    let token = env.user_with_pat("alice", "acme", "member");
    eventually(
        Duration::from_secs(5),
        "gateway to connect",
        || env.get_bearer("/v1/repos", &token).status == 200,
        || env.log(),
    );
    env.stop_gateway();
}

fn restart_gateway(mut env: Env) -> Env {
    env.respawn_gateway();
    env
}

#[test]
fn a_full_bcrypt_queue_answers_503_overloaded_at_once() {
    // One bcrypt thread, one waiting slot, and cost-12 hashes (~0.3 s each): of six concurrent
    // first requests with six different tokens at most two can be taken, the rest must be
    // refused at once. (Six requests with one token would share one bcrypt run.)
    let env = Env::start_with(Options {
        bcrypt_cost: 12,
        pool_threads: 1,
        pool_queue: 1,
        ..Options::default()
    });
    env.member("alice", "acme", "member");
    let tokens: Vec<String> = (0..6).map(|_| env.pat_with("alice", "acme", &[])).collect();
    let responses: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = tokens
            .iter()
            .map(|token| scope.spawn(|| env.get_bearer("/v1/repos", token)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect()
    });
    let overloaded: Vec<_> = responses.iter().filter(|r| r.status == 503).collect();
    let ok = responses.iter().filter(|r| r.status == 200).count();
    assert!(
        !overloaded.is_empty(),
        "{:?}",
        responses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(ok + overloaded.len(), 6);
    for response in overloaded {
        response.assert_denied(503, "overloaded");
        assert_eq!(response.header("retry-after"), Some("1"));
    }
    assert_eq!(
        env.upstream.count(),
        ok,
        "only verified requests were forwarded"
    );
}
