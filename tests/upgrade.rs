use crate::support::{eventually, patgate_bin, Env, Options};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Starts `patgate -c <conf> serve --upgrade`, logging into the test's dir.
fn start_upgrade(env: &Env, conf: &std::path::Path, log_name: &str) -> std::process::Child {
    let log = std::fs::File::create(env.dir().join(log_name)).expect("log");
    Command::new(patgate_bin())
        .arg("-c")
        .arg(conf)
        .args(["serve", "--upgrade"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn new gateway")
}

#[test]
fn a_graceful_upgrade_that_changes_routes_fails_no_request() {
    // A short grace period keeps the test quick; in-flight requests still get the 10 s
    // shutdown timeout, which a loaded 2-core CI machine needs (1 s cut one request once).
    let mut env = Env::start_with(Options {
        grace_seconds: 1,
        ..Options::default()
    });
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    env.get_bearer("/v2/new", &token)
        .assert_denied(404, "no_route");
    // The new conf adds a route.
    let conf = std::fs::read_to_string(&env.conf_path).expect("conf");
    let upstream = env.upstream.addr().to_string();
    let new_conf = env.dir().join("new.yaml");
    std::fs::write(
        &new_conf,
        format!("{conf}  - name: new\n    path_prefix: /v2/new\n    upstream: {upstream}\n    require: [repos:read]\n"),
    )
    .expect("write new conf");

    // Traffic on fresh connections all along.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, sent, failed) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&failed));
        let (port, token) = (env.port, token.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let outcome = std::panic::catch_unwind(|| {
                    crate::support::get_bearer_on(port, "/v1/repos", &token).status
                });
                sent.fetch_add(1, Ordering::Relaxed);
                if outcome.as_ref().map_or(true, |status| *status != 200) {
                    failed.fetch_add(1, Ordering::Relaxed);
                    failures.push(format!("{outcome:?}"));
                }
            }
            failures
        })
    };

    let old_pid = env.gateway_pid();
    let next = start_upgrade(&env, &new_conf, "new.log");
    let old = env.replace_gateway(next);
    // The new process listens on the upgrade socket; then the old one hands over.
    let socket = env.dir().join("upgrade.sock");
    eventually(
        Duration::from_secs(10),
        "the new process to wait on the upgrade socket",
        || socket.exists(),
        || std::fs::read_to_string(env.dir().join("new.log")).unwrap_or_default(),
    );
    let started = Instant::now();
    let signalled = Command::new("kill")
        .args(["-QUIT", &old_pid.to_string()])
        .status()
        .expect("kill");
    assert!(signalled.success());
    let mut old = old.expect("old gateway");
    eventually(
        Duration::from_secs(30),
        "the old process to drain and exit",
        || matches!(old.try_wait(), Ok(Some(_))),
        || env.log(),
    );
    let handover = started.elapsed();
    eventually(
        Duration::from_secs(10),
        "the new route to answer",
        || env.get_bearer("/v2/new", &token).status == 200,
        || std::fs::read_to_string(env.dir().join("new.log")).unwrap_or_default(),
    );
    // Some more traffic on the new process alone, then stop.
    let before = sent.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(10),
        "more requests",
        || sent.load(Ordering::Relaxed) >= before + 20,
        String::new,
    );
    stop.store(true, Ordering::Relaxed);
    let failures = load.join().expect("load thread");
    let total = sent.load(Ordering::Relaxed);
    eprintln!(
        "upgrade: {total} requests, {} failed, old process exited {handover:?} after SIGQUIT",
        failures.len()
    );
    assert!(total >= 40, "only {total} requests were sent");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "{failures:?}");
    env.get_bearer("/v1/repos", &token).echoed();
    // The admin listener moved too.
    assert_eq!(env.admin_get("/healthz").status, 200);
}

#[test]
fn an_upgrade_with_a_bad_conf_never_replaces_the_running_gateway() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let conf = std::fs::read_to_string(&env.conf_path).expect("conf");
    let bad = env.dir().join("bad.yaml");
    std::fs::write(
        &bad,
        conf.replace("require: [repos:read]", "require: [repos:raed]"),
    )
    .expect("write bad conf");
    let mut next = start_upgrade(&env, &bad, "bad.log");
    let mut status = None;
    eventually(
        Duration::from_secs(10),
        "the bad upgrade to exit",
        || {
            status = next.try_wait().expect("wait");
            status.is_some()
        },
        String::new,
    );
    assert!(!status.expect("exited").success());
    let log = std::fs::read_to_string(env.dir().join("bad.log")).expect("log");
    assert!(log.contains("unknown permission \"repos:raed\""), "{log}");
    assert!(!env.dir().join("upgrade.sock").exists());
    // The running gateway never got a SIGQUIT and keeps serving with its conf.
    env.get_bearer("/v1/repos", &token).echoed();
}

/// Connections the kernel has completed but the gateway has not accepted yet on the
/// listener at `127.0.0.1:port` (a listening socket's `rx_queue` in `/proc/net/tcp`).
fn accept_backlog(port: u16) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // fields: sl, local_address, rem_address, st (0A = LISTEN), tx_queue:rx_queue, ...
        if fields.get(1) != Some(&local.as_str()) || fields.get(3) != Some(&"0A") {
            return None;
        }
        let rx_queue = fields.get(4)?.split(':').nth(1)?;
        u32::from_str_radix(rx_queue, 16).ok()
    })
}

#[test]
fn a_connection_accepted_before_a_graceful_stop_is_served_when_its_request_arrives_after() {
    let env = Env::start_with(Options {
        grace_seconds: 3,
        ..Options::default()
    });
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();

    // A connection the gateway has accepted, whose request has not been sent yet.
    let mut stream = TcpStream::connect(("127.0.0.1", env.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    eventually(
        Duration::from_secs(5),
        "the gateway to accept the connection",
        || accept_backlog(env.port) == Some(0),
        || format!("/proc/net/tcp backlog: {:?}", accept_backlog(env.port)),
    );

    // A graceful stop: the listener closes and shutdown begins.
    let signalled = Command::new("kill")
        .args(["-TERM", &env.gateway_pid().to_string()])
        .status()
        .expect("kill");
    assert!(signalled.success());
    eventually(
        Duration::from_secs(5),
        "the graceful shutdown to begin",
        || env.log().contains("Graceful shutdown started"),
        || env.log(),
    );

    // The request arrives after that, on the connection accepted before: it is served.
    let request = format!(
        "GET /v1/repos HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let response = crate::support::parse_response(&raw);
    assert_eq!(response.status, 200, "{response:?}");
    response.echoed();
}
