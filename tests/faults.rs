use crate::support::{eventually, Env, Options, Response};
use patgate::testkit::redis::{kill_other_clients, kill_other_clients_cmd};
use patgate::testkit::relay::Relay;
use std::time::{Duration, Instant};

#[test]
fn stopped_redis_fails_closed_with_503_and_recovers_without_restart() {
    let env = Env::start();
    let timeout = Duration::from_millis(env_timeout_ms());
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    env.redis.stop().expect("SIGSTOP");
    let started = Instant::now();
    let response = env.get_bearer("/v1/repos", &token);
    let took = started.elapsed();
    env.redis.resume().expect("SIGCONT");
    let resumed = Instant::now();
    assert_all_unavailable(&[(response, took)], timeout + ANSWER_MARGIN);
    assert_eq!(
        env.upstream.count(),
        1,
        "nothing forwarded while Redis was stopped"
    );
    recovery_time(&env, &token, resumed, 200, "SIGSTOP");
}

#[test]
fn killed_redis_fails_closed_and_a_restarted_empty_one_knows_no_token() {
    let mut env = Env::start();
    let timeout = Duration::from_millis(env_timeout_ms());
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    env.redis.kill();
    let mut responses = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        responses.push((env.get_bearer("/v1/repos", &token), started.elapsed()));
    }
    assert_all_unavailable(&responses, timeout + ANSWER_MARGIN);
    assert_eq!(
        env.upstream.count(),
        1,
        "nothing forwarded while Redis was down"
    );
    env.redis.restart().expect("restart redis");
    let returned = Instant::now();
    // The data is gone with the old process: the token is now unknown, never allowed from a
    // cache (it was verified, and cached, before the kill).
    recovery_time(&env, &token, returned, 401, "kill + restart empty");
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
    // Measured from when the token exists (creating it through the CLI takes a moment).
    let returned = Instant::now();
    recovery_time(&env, &token, returned, 200, "down at start");
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

/// What each fault test allows beyond the configured Redis timeout before a denial must have
/// been answered: generous for a loaded 2-core CI machine, tight enough to catch a hang.
const ANSWER_MARGIN: Duration = Duration::from_millis(1500);

/// The contract is "service returns within one second of Redis returning"; the assertion
/// allows one more second of scheduling noise on a loaded CI machine. The measured time is
/// printed (`--nocapture`) so a slow reconnect shows long before it fails the test.
const RECOVERY_LIMIT: Duration = Duration::from_secs(2);

/// Sends `count` concurrent protected requests with `token` and times each one.
fn concurrent_requests(env: &Env, token: &str, count: usize) -> Vec<(Response, Duration)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .map(|_| {
                scope.spawn(|| {
                    let started = Instant::now();
                    let response = env.get_bearer("/v1/repos", token);
                    (response, started.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect()
    })
}

/// Every response is 503 `auth_unavailable` with `Retry-After: 1`, answered within `limit`.
#[track_caller]
fn assert_all_unavailable(responses: &[(Response, Duration)], limit: Duration) {
    for (response, took) in responses {
        response.assert_denied(503, "auth_unavailable");
        assert_eq!(response.header("retry-after"), Some("1"), "{response:?}");
        assert!(
            *took < limit,
            "answered in {took:?}, more than {limit:?} (a hang?)"
        );
    }
}

/// Polls until a request with `token` gets `status` again (200, or 401 when the data is gone);
/// returns the time from `returned` (the instant Redis came back) to that answer, and prints it.
#[track_caller]
fn recovery_time(env: &Env, token: &str, returned: Instant, status: u16, fault: &str) -> Duration {
    let mut allowed_at = None;
    eventually(
        RECOVERY_LIMIT,
        "service to return after the fault",
        || {
            let ok = env.get_bearer("/v1/repos", token).status == status;
            if ok {
                allowed_at = Some(Instant::now());
            }
            ok
        },
        || env.log(),
    );
    let took = allowed_at
        .expect("set when eventually returned")
        .saturating_duration_since(returned);
    eprintln!("recovery after {fault}: {took:?} from Redis returning to the first {status}");
    assert!(took < RECOVERY_LIMIT, "recovered after {took:?}");
    took
}

/// The `patgate_redis_errors_total` sample for `kind`.
fn redis_errors(env: &Env, kind: &str) -> f64 {
    env.metric(&format!("patgate_redis_errors_total{{kind=\"{kind}\"}}"))
}

#[test]
fn paused_redis_fails_closed_within_the_timeout_and_recovers_when_the_pause_ends() {
    let env = Env::start();
    let timeout = Duration::from_millis(env_timeout_ms());
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    let timeouts_before = redis_errors(&env, "timeout");

    // CLIENT PAUSE ALL holds every client's commands (on Redis 7.0 even CLIENT UNPAUSE), so
    // the pause is timed, and a PING queued behind it marks the instant Redis answers again.
    let mut control = env.redis_conn();
    let pause = Duration::from_secs(4);
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause.as_millis() as u64)
        .arg("ALL")
        .exec(&mut control)
        .expect("CLIENT PAUSE");
    let paused_at = Instant::now();
    let probe = std::thread::spawn(move || {
        let pong: String = redis::cmd("PING").query(&mut control).expect("PING");
        assert_eq!(pong, "PONG");
        Instant::now()
    });

    let mut responses = concurrent_requests(&env, &token, 4);
    for _ in 0..2 {
        let started = Instant::now();
        responses.push((env.get_bearer("/v1/repos", &token), started.elapsed()));
    }
    assert!(
        paused_at.elapsed() < pause,
        "the requests took longer than the pause; the test proves nothing"
    );
    assert_all_unavailable(&responses, timeout + ANSWER_MARGIN);
    assert_eq!(
        env.upstream.count(),
        1,
        "nothing forwarded during the pause"
    );
    assert!(
        redis_errors(&env, "timeout") - timeouts_before >= responses.len() as f64,
        "each denial was a Redis timeout"
    );

    let returned = probe.join().expect("probe thread");
    recovery_time(&env, &token, returned, 200, "CLIENT PAUSE");
    assert_eq!(env.upstream.count(), 2);
}

#[test]
fn slow_redis_fails_closed_within_the_timeout_and_recovers_when_it_answers_again() {
    let env = Env::start();
    let timeout = Duration::from_millis(env_timeout_ms());
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    let timeouts_before = redis_errors(&env, "timeout");

    // DEBUG SLEEP blocks the whole server (needs `enable-debug-command`, which testkit sets);
    // its reply marks the instant Redis answers again.
    let mut control = env.redis_conn();
    let sleep = Duration::from_secs(3);
    let sleeper = std::thread::spawn(move || {
        redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(sleep.as_secs())
            .exec(&mut control)
            .expect("DEBUG SLEEP");
        Instant::now()
    });
    eventually(
        Duration::from_secs(2),
        "redis to be asleep",
        || !env.redis.ping(),
        || env.redis.log(),
    );
    let asleep_at = Instant::now();

    let mut responses = concurrent_requests(&env, &token, 4);
    for _ in 0..2 {
        let started = Instant::now();
        responses.push((env.get_bearer("/v1/repos", &token), started.elapsed()));
    }
    assert!(
        asleep_at.elapsed() < sleep - Duration::from_millis(200),
        "the requests outlasted the sleep; the test proves nothing"
    );
    assert_all_unavailable(&responses, timeout + ANSWER_MARGIN);
    assert_eq!(
        env.upstream.count(),
        1,
        "nothing forwarded while Redis slept"
    );
    assert!(
        redis_errors(&env, "timeout") - timeouts_before >= responses.len() as f64,
        "each denial was a Redis timeout"
    );

    let returned = sleeper.join().expect("sleeper thread");
    recovery_time(&env, &token, returned, 200, "DEBUG SLEEP");
    assert_eq!(env.upstream.count(), 2);
}

#[test]
fn a_connection_reset_mid_request_fails_closed_at_once_and_the_gateway_reconnects() {
    // A long timeout, so that the denials below can only come from the reset itself.
    let env = Env::start_with(Options {
        timeout_ms: 5000,
        ..Options::default()
    });
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    let dropped_before = redis_errors(&env, "connection");

    // One write: Redis sleeps, then, before it reads any other socket, kills every other
    // client. Requests the gateway sends during the sleep are unread when their connection is
    // reset: a reset in the middle of a request, every time.
    let mut control = env.redis_conn();
    let sleeper = std::thread::spawn(move || {
        let (_, killed): ((), u64) = redis::pipe()
            .cmd("DEBUG")
            .arg("SLEEP")
            .arg(2)
            .add_command(kill_other_clients_cmd())
            .query(&mut control)
            .expect("DEBUG SLEEP + CLIENT KILL");
        (Instant::now(), killed)
    });
    eventually(
        Duration::from_secs(2),
        "redis to be asleep",
        || !env.redis.ping(),
        || env.redis.log(),
    );
    let responses = concurrent_requests(&env, &token, 3);
    let (returned, killed) = sleeper.join().expect("sleeper thread");
    assert!(killed >= 1, "the gateway's connection was killed");
    // The first request's batch was on the killed connection. The others may have waited
    // for it in the next batch (strict reads send one batch at a time: store/batch.rs),
    // which went out on a new connection once Redis was awake: answered, and rightly so.
    let (verified, denied): (Vec<_>, Vec<_>) = responses
        .into_iter()
        .partition(|(response, _)| response.status == 200);
    assert!(!denied.is_empty(), "the killed batch was denied");
    // Answered by the reset (well before the 5 s timeout), not by waiting it out.
    assert_all_unavailable(&denied, Duration::from_secs(4));
    assert_eq!(
        env.upstream.count(),
        1 + verified.len(),
        "nothing forwarded across the reset but what was verified after it"
    );
    assert!(
        redis_errors(&env, "connection") - dropped_before >= denied.len() as f64,
        "each denial was the dropped connection"
    );

    recovery_time(&env, &token, returned, 200, "CLIENT KILL mid-request");
    assert_eq!(env.upstream.count(), 2 + verified.len());
}

#[test]
fn connections_killed_while_requests_flow_never_forward_unverified_and_recover() {
    let env = Env::start();
    let timeout = Duration::from_millis(env_timeout_ms());
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    let mut control = env.redis_conn();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (flowing, recoveries) = std::thread::scope(|scope| {
        let traffic = scope.spawn(|| {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let response = env.get_bearer("/v1/repos", &token);
                seen.push((response, started.elapsed()));
            }
            seen
        });
        let mut recoveries = Vec::new();
        for round in 0..3 {
            let killed = kill_other_clients(&mut control).expect("CLIENT KILL");
            assert!(killed >= 1, "round {round}: nothing to kill");
            let returned = Instant::now();
            recoveries.push(recovery_time(&env, &token, returned, 200, "CLIENT KILL"));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (traffic.join().expect("traffic thread"), recoveries)
    });
    let allowed = flowing.iter().filter(|(r, _)| r.status == 200).count();
    let denied: Vec<_> = flowing
        .into_iter()
        .filter(|(r, _)| r.status != 200)
        .collect();
    eprintln!(
        "CLIENT KILL under traffic: {allowed} allowed, {} denied, recoveries {recoveries:?}",
        denied.len()
    );
    assert_all_unavailable(&denied, timeout + ANSWER_MARGIN);
    // The warm-up, each allowed request of the traffic thread, one per recovery poll.
    assert_eq!(
        env.upstream.count(),
        1 + allowed + recoveries.len(),
        "only verified requests were forwarded"
    );
}

/// The Redis timeout the default [`Options`] give the gateway.
fn env_timeout_ms() -> u64 {
    Options::default().timeout_ms
}

#[test]
fn tracked_mode_stops_serving_its_cache_when_redis_goes_silent() {
    let env = Env::start_with(Options {
        freshness: "tracked",
        ..Options::default()
    });
    let token = env.user_with_pat("alice", "acme", "member");
    for _ in 0..3 {
        env.get_bearer("/v1/repos", &token).echoed();
    }
    // A stopped Redis keeps the connection open and sends nothing: no invalidation, no
    // disconnection. Warm requests would be served from the cache forever; the heartbeat
    // must notice within its period + deadline, and requests then fail closed.
    let forwarded = env.upstream.count();
    env.redis.stop().expect("SIGSTOP");
    let stopped = Instant::now();
    let mut refused = None;
    while stopped.elapsed() < Duration::from_secs(5) {
        let response = env.get_bearer("/v1/repos", &token);
        if response.status == 503 {
            refused = Some(stopped.elapsed());
            break;
        }
        assert_eq!(response.status, 200, "{}", response.body);
    }
    let served_after_stop = env.upstream.count() - forwarded;
    env.redis.resume().expect("SIGCONT");
    let refused = refused.unwrap_or_else(|| {
        panic!(
            "still served from the cache 5 s after Redis stopped\n{}",
            env.log()
        )
    });
    println!(
        "tracked: cache dropped {refused:?} after Redis stopped ({served_after_stop} requests served from it meanwhile)"
    );
    // Heartbeat period 500 ms + deadline max(timeout, 200 ms) + the request's own deadline.
    assert!(refused < Duration::from_millis(2500), "took {refused:?}");
    assert!(env
        .log()
        .contains("did not answer a heartbeat; cache dropped"));
    let resumed = Instant::now();
    recovery_time(&env, &token, resumed, 200, "SIGSTOP under tracked");
}

/// The gateway's Redis connections go through a relay; the relay then silences every
/// connection open at that moment (as a partition or a dropped NAT entry would: nothing
/// closes, nothing answers). redis-rs's manager reconnects only after an error, so without
/// the probe-and-replace of connection.rs every request would answer 503 until TCP gave up,
/// many minutes later. A credential revoked meanwhile (its invalidation sent to the silent
/// connection) must be refused once service returns, never served from the old cache.
fn a_silent_connection_is_replaced_and_nothing_stale_survives(freshness: &'static str) {
    let mut env = Env::start_with(Options {
        freshness,
        ..Options::default()
    });
    let redis_addr = std::net::SocketAddr::from(([127, 0, 0, 1], env.redis.port()));
    let relay = Relay::start(redis_addr).expect("relay");
    let conf = std::fs::read_to_string(&env.conf_path).expect("conf");
    let direct = format!("127.0.0.1:{}/", env.redis.port());
    assert!(conf.contains(&direct), "{conf}");
    let relayed = conf.replace(&direct, &format!("127.0.0.1:{}/", relay.addr().port()));
    std::fs::write(&env.conf_path, relayed).expect("write conf");
    env.respawn_gateway();

    let token = env.user_with_pat("alice", "acme", "member");
    let revoked = env.user_with_pat("bob", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    env.get_bearer("/v1/repos", &revoked).echoed();
    relay.silence();
    // The CLI connects anew, so this write reaches Redis; its invalidation does not reach
    // the gateway's silent connection.
    env.cli(&["token", "revoke", &revoked[..10]]).expect_ok();
    let silenced = Instant::now();
    let mut statuses = Vec::new();
    let mut back_after = None;
    eventually(
        Duration::from_secs(10),
        "service over a new connection",
        || {
            let response = env.get_bearer("/v1/repos", &token);
            if response.status == 200 && statuses.contains(&503) && back_after.is_none() {
                back_after = Some(silenced.elapsed());
            }
            statuses.push(response.status);
            response.status == 200 && silenced.elapsed() > Duration::from_millis(1500)
        },
        || env.log(),
    );
    // Strict: the request's deadline (200 ms), then a PING with the same deadline, then the
    // next request goes over the new connection.
    if let Some(back_after) = back_after {
        assert!(
            back_after < Duration::from_secs(3),
            "{freshness}: back after {back_after:?}"
        );
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{freshness}: only 200 (tracked's bounded stale window) or 503 (fail closed): {statuses:?}"
    );
    assert!(
        statuses.contains(&503) || freshness == "tracked",
        "{freshness}: strict must fail closed while the connection is silent: {statuses:?}"
    );
    eprintln!(
        "{freshness}: first 200 after a 503 {back_after:?} after the silence; \
         answers: {statuses:?}"
    );
    env.get_bearer("/v1/repos", &revoked)
        .assert_denied(401, "invalid_token");
    // Strict's reads have a connection of their own, dropped when a batch outlives its
    // deadline (store/wire.rs); tracked mode's is redis-rs's, probed and replaced.
    let replaced = match freshness {
        "strict" => "strict reads: Redis did not answer within 200ms; dropped the connection",
        _ => "did not answer a PING after a timeout; replaced it",
    };
    assert!(env.log().contains(replaced), "{}", env.log());
    if freshness == "tracked" {
        // Not merely served over the untracked connection: the cache is back in use, on a
        // new tracked connection, whichever noticed the silence first. The heartbeat suspends
        // the cache and resumes it once the new connection answers; another command's
        // timeout (the last-used flush's) replaces the connection, which drops the cache, and
        // the next fill caches over the new one. Either way, warm requests read nothing from
        // Redis again (the first one may fill).
        eventually(
            Duration::from_secs(10),
            "warm requests served from the tracked cache again",
            || {
                env.get_bearer("/v1/repos", &token).echoed();
                let before = env.redis_calls("hgetall");
                env.get_bearer("/v1/repos", &token).echoed();
                env.get_bearer("/v1/repos", &token).echoed();
                env.redis_calls("hgetall") == before
            },
            || env.log(),
        );
    }
}

#[test]
fn strict_replaces_a_silent_connection() {
    a_silent_connection_is_replaced_and_nothing_stale_survives("strict");
}

#[test]
fn tracked_replaces_a_silent_connection_and_drops_what_it_cached() {
    a_silent_connection_is_replaced_and_nothing_stale_survives("tracked");
}
