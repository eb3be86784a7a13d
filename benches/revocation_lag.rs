//! Revocation lag: two gateway instances on one Redis; in each trial a PAT is verified on
//! both, revoked (the write acknowledged: by Redis, and in confirmed mode by both gateways
//! too), and then immediately presented to the second instance. Reports, per freshness mode,
//! how many first requests after the acknowledgement were still allowed, how long until the
//! revocation was in force, and how long the revocation itself took to be acknowledged.
//!
//! `cargo bench --bench revocation_lag` runs 1,000 trials per mode (`TRIALS=n` to change);
//! under `cargo test --benches` it runs 20 trials and fails if strict or confirmed mode ever
//! allowed one.

use patgate::conf::Conf;
use patgate::manage::NewToken;
use patgate::testkit::free_port;
use patgate::testkit::gateway::GatewayProcess;
use patgate::testkit::redis::RedisServer;
use patgate::testkit::upstream::Upstream;
use patgate::token::Kind;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn conf_text(
    port: u16,
    redis: &str,
    upstream: &str,
    freshness: &str,
    dir: &std::path::Path,
) -> String {
    let dir = dir.display();
    format!(
        "listen: 127.0.0.1:{port}\nredis: {{url: '{redis}', timeout_ms: 500, freshness: {freshness}}}\n\
         verify: {{bcrypt_cost: 4, pool_threads: 1}}\n\
         limits: {{failures_per_client: 1000000, failures_per_prefix: 1000000}}\n\
         server: {{threads: 1, pid_file: '{dir}/{port}.pid', upgrade_sock: '{dir}/{port}.sock'}}\n\
         roles: [{{name: member, permissions: [repos:read]}}, {{name: admin, permissions: ['*']}}]\n\
         routes: [{{name: api, path_prefix: /api, upstream: '{upstream}', require: [repos:read]}}]\n"
    )
}

fn status(port: u16, token: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let request = format!("GET /api HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).expect("status line");
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

struct Outcome {
    allowed_after_ack: usize,
    lags: Vec<Duration>,
    /// How long each revocation took to be acknowledged to its writer.
    writes: Vec<Duration>,
}

fn run_mode(freshness: &str, trials: usize) -> Outcome {
    let redis = RedisServer::start().expect("redis-server");
    let upstream = Upstream::start().expect("upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = [free_port().expect("port"), free_port().expect("port")];
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_patgate"));
    let gateways: Vec<GatewayProcess> = ports
        .iter()
        .map(|&port| {
            let path = dir.path().join(format!("{port}.yaml"));
            let text = conf_text(
                port,
                &redis.url(),
                &upstream.addr().to_string(),
                freshness,
                dir.path(),
            );
            std::fs::write(&path, text).expect("conf");
            GatewayProcess::start(binary, &path, port).expect("gateway")
        })
        .collect();
    let conf_path = dir.path().join(format!("{}.yaml", ports[0]));
    let conf = Conf::load(&conf_path).expect("conf");
    let runtime = patgate::testkit::seeder::Seeder::new(&conf).expect("seeder");
    let manager = runtime.manager(&conf, "revocation-lag-bench");
    runtime
        .run(manager.put_membership("lag", "acme", "member"))
        .expect("member");

    let mut outcome = Outcome {
        allowed_after_ack: 0,
        lags: Vec::with_capacity(trials),
        writes: Vec::with_capacity(trials),
    };
    for _ in 0..trials {
        let request = NewToken {
            user: "lag".into(),
            org: "acme".into(),
            name: "lag".into(),
            expires: None,
            permissions: None,
        };
        let created = runtime
            .run(manager.create_token(request, patgate::proxy::unix_now()))
            .expect("create");
        for gateway in &gateways {
            assert_eq!(status(gateway.port, &created.token), 200, "warm-up");
            assert_eq!(status(gateway.port, &created.token), 200, "warm");
        }
        let prefix = created.record.prefix.clone();
        let writing = Instant::now();
        runtime
            .run(manager.revoke(&prefix, Kind::Pat, patgate::proxy::unix_now()))
            .expect("revoke");
        let acknowledged = Instant::now();
        outcome.writes.push(acknowledged - writing);
        let other = gateways[1].port;
        if status(other, &created.token) == 200 {
            outcome.allowed_after_ack += 1;
            while status(other, &created.token) == 200 {
                assert!(
                    acknowledged.elapsed() < Duration::from_secs(5),
                    "revocation never applied"
                );
            }
        }
        if std::env::var("LAG_DEBUG").is_ok() {
            eprintln!("lag {:?}", acknowledged.elapsed());
        }
        outcome.lags.push(acknowledged.elapsed());
    }
    outcome
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let trials = match std::env::var("TRIALS").ok().and_then(|t| t.parse().ok()) {
        Some(n) => n,
        None if benching => 1000,
        None => 20,
    };
    println!("revocation lag: {trials} trials per mode; lag = revoke acknowledged -> first 401 on the other instance");
    println!(
        "| mode | trials | first request after ack still allowed | lag p50 | lag p99 | lag max | revoke acknowledged p50 | p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for freshness in ["strict", "tracked", "confirmed"] {
        let mut outcome = run_mode(freshness, trials);
        outcome.lags.sort();
        outcome.writes.sort();
        println!(
            "| {freshness} | {trials} | {} | {:?} | {:?} | {:?} | {:?} | {:?} |",
            outcome.allowed_after_ack,
            percentile(&outcome.lags, 0.5),
            percentile(&outcome.lags, 0.99),
            outcome.lags.last().copied().unwrap_or_default(),
            percentile(&outcome.writes, 0.5),
            percentile(&outcome.writes, 0.99),
        );
        if freshness != "tracked" {
            assert_eq!(
                outcome.allowed_after_ack, 0,
                "{freshness} mode allowed a request after the revocation was acknowledged"
            );
        }
    }
}
