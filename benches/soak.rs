//! Soak (issue 5): a long run at moderate load with constant credential churn, reporting the
//! gateway's resident memory and the error counts at the start and at the end.
//!
//! Started here: a private redis-server, the echo upstream and the release gateway (one
//! worker thread, bcrypt cost 4 so churn is not bcrypt-bound, failure limits raised because
//! every client here is 127.0.0.1 and each churn round ends in an expected 401). For
//! `DURATION` seconds:
//! * wrk (`benches/soak/steady.lua`, 8 connections, 10 ms between requests on each: ~800
//!   requests/s) presents one long-lived PAT;
//! * a churn loop creates a PAT, uses it 5 times (each must be 200), revokes it, checks the
//!   next request is 401, and starts again; every 10th round also creates, uses and revokes an
//!   API key;
//! * every 10 s the gateway's VmRSS and the counters are sampled.
//!
//! `cargo bench --bench soak` runs 600 s (`DURATION=n` to change); under `cargo test --benches`
//! it runs 5 s and checks that nothing failed.

use patgate::conf::Conf;
use patgate::manage::{NewApiKey, NewToken};
use patgate::testkit::free_port;
use patgate::testkit::gateway::GatewayProcess;
use patgate::testkit::redis::RedisServer;
use patgate::testkit::upstream::Upstream;
use patgate::token::Kind;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn conf_text(port: u16, redis: &str, upstream: &str, dir: &std::path::Path) -> String {
    let dir = dir.display();
    format!(
        "listen: 127.0.0.1:{port}\nredis: {{url: '{redis}', timeout_ms: 500}}\n\
         verify: {{bcrypt_cost: 4, pool_threads: 1}}\n\
         limits: {{failures_per_client: 1000000000, failures_per_prefix: 1000000000}}\n\
         access_log: {{format: 'off'}}\n\
         server: {{threads: 1, pid_file: '{dir}/{port}.pid', upgrade_sock: '{dir}/{port}.sock'}}\n\
         roles: [{{name: member, permissions: [repos:read]}}, {{name: admin, permissions: ['*']}}]\n\
         routes: [{{name: api, path_prefix: /api, upstream: '{upstream}', require: [repos:read]}}]\n"
    )
}

fn status(port: u16, header: &str, token: &str) -> u16 {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let request =
        format!("GET /api HTTP/1.1\r\nHost: x\r\n{header}: {token}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    if stream.read_exact(&mut head).is_err() {
        return 0;
    }
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Default, Clone, Copy)]
struct Counts {
    rounds: u64,
    churn_failures: u64,
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let seconds: u64 = std::env::var("DURATION")
        .ok()
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .unwrap_or(if benching { 600 } else { 5 });
    let redis = RedisServer::start().expect("redis-server");
    let upstream = Upstream::start().expect("upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port().expect("port");
    let conf_path = dir.path().join("gateway.yaml");
    let text = conf_text(port, &redis.url(), &upstream.addr().to_string(), dir.path());
    std::fs::write(&conf_path, text).expect("conf");
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_patgate"));
    let gateway = GatewayProcess::start(binary, &conf_path, port).expect("gateway");
    let conf = Conf::load(&conf_path).expect("conf");
    let runtime = patgate::testkit::seeder::Seeder::new(&conf).expect("seeder");
    let manager = runtime.manager(&conf, "soak");
    runtime
        .run(async {
            manager.put_membership("steady", "acme", "member").await?;
            manager.put_membership("churn", "acme", "member").await?;
            manager.put_membership("boss", "acme", "admin").await
        })
        .expect("members");
    let pat = |user: &str| NewToken {
        user: user.into(),
        org: "acme".into(),
        name: "soak".into(),
        expires: None,
        permissions: None,
    };
    let steady = runtime
        .run(manager.create_token(pat("steady"), patgate::proxy::unix_now()))
        .expect("steady token");
    assert_eq!(
        status(port, "Authorization", &format!("Bearer {}", steady.token)),
        200
    );

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/soak/steady.lua");
    let wrk = Command::new("wrk")
        .args(["-t1", "-c8", "-d", &format!("{seconds}s"), "-H"])
        .arg(format!("Authorization: Bearer {}", steady.token))
        .arg("-s")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}/api"))
        .env("DELAY_MS", "10")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("wrk (scripts/setup --test-tools installs it)");

    let started = Instant::now();
    let mut counts = Counts::default();
    let mut samples: Vec<(u64, u64, Counts)> = Vec::new();
    let mut next_sample = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(seconds) {
        if started.elapsed() >= next_sample {
            samples.push((started.elapsed().as_secs(), rss_kib(gateway.pid()), counts));
            next_sample += Duration::from_secs(10);
            upstream.forget();
        }
        let now = patgate::proxy::unix_now();
        let created = runtime.run(manager.create_token(pat("churn"), now));
        let Ok(created) = created else {
            counts.churn_failures += 1;
            continue;
        };
        let bearer = format!("Bearer {}", created.token);
        let used_ok = (0..5).all(|_| status(port, "Authorization", &bearer) == 200);
        let revoked = runtime.run(manager.revoke(&created.record.prefix, Kind::Pat, now));
        let denied = status(port, "Authorization", &bearer) == 401;
        if !(used_ok && revoked.is_ok() && denied) {
            counts.churn_failures += 1;
        }
        if counts.rounds % 10 == 0 {
            let key = runtime.run(manager.create_apikey(
                NewApiKey {
                    org: "acme".into(),
                    role: "member".into(),
                    created_by: "boss".into(),
                    name: "soak".into(),
                    expires: None,
                    permissions: None,
                },
                now,
            ));
            let ok = match key {
                Ok(key) => {
                    let used = status(port, "X-API-Key", &key.token) == 200;
                    let revoked = runtime
                        .run(manager.revoke(&key.record.prefix, Kind::ApiKey, now))
                        .is_ok();
                    used && revoked && status(port, "X-API-Key", &key.token) == 401
                }
                Err(_) => false,
            };
            if !ok {
                counts.churn_failures += 1;
            }
        }
        counts.rounds += 1;
    }
    samples.push((started.elapsed().as_secs(), rss_kib(gateway.pid()), counts));
    let output = wrk.wait_with_output().expect("wrk output");
    let wrk_text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        wrk_text
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "0".into())
    };
    let (requests, non_2xx, socket_errors) = (
        wrk_text
            .lines()
            .find(|l| l.contains("requests in"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("0")
            .to_string(),
        field("Non-2xx or 3xx responses:"),
        field("Socket errors:"),
    );
    println!("soak: {seconds} s, steady wrk load (8 connections, 10 ms apart) + credential churn");
    println!("| elapsed s | gateway RSS MiB | churn rounds | churn failures |");
    println!("|---|---|---|---|");
    for (elapsed, rss, c) in &samples {
        println!(
            "| {elapsed} | {:.1} | {} | {} |",
            *rss as f64 / 1024.0,
            c.rounds,
            c.churn_failures
        );
    }
    println!(
        "steady load: {requests} requests, non-2xx: {non_2xx}, socket errors: {}",
        if socket_errors == "0" {
            "none".to_string()
        } else {
            socket_errors.clone()
        }
    );
    assert_eq!(counts.churn_failures, 0, "churn rounds failed");
    assert!(counts.rounds > 0, "no churn round ran");
    assert_eq!(non_2xx, "0", "the steady load saw errors");
    assert_eq!(socket_errors, "0", "the steady load saw socket errors");
}
