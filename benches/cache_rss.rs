//! Memory with a full verified-secret cache: N distinct PATs (default 100,000) are created
//! (bcrypt cost 4) and each is verified once through a release gateway with
//! `verify.cache_entries: N`; the gateway's resident set size is read from /proc before and
//! after, and every token is then presented again to check that the warm pass needs no
//! bcrypt (the pool has one thread, so 100,000 cold verifications would take far longer).
//!
//! `FRESHNESS=tracked` runs the gateway in tracked mode, where it also keeps the parsed
//! credential records (and their owners') in memory; `FRESHNESS=confirmed` in confirmed
//! mode, which keeps the same.
//!
//! `cargo bench --bench cache_rss` (`TOKENS=n` to change); under `cargo test --benches` it
//! runs with 500 tokens.

use patgate::conf::Conf;
use patgate::manage::{Manager, NewToken};
use patgate::testkit::free_port;
use patgate::testkit::gateway::GatewayProcess;
use patgate::testkit::redis::RedisServer;
use patgate::testkit::upstream::Upstream;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Instant;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sends every token once on one keep-alive connection; returns how many got 200.
fn present_all(port: u16, tokens: &[String]) -> usize {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut ok = 0;
    for token in tokens {
        let request =
            format!("GET /api HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
        writer.write_all(request.as_bytes()).expect("send");
        let mut line = String::new();
        reader.read_line(&mut line).expect("status");
        if line.starts_with("HTTP/1.1 200") {
            ok += 1;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).expect("header");
            if header == "\r\n" {
                break;
            }
            if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        std::io::Read::read_exact(&mut reader, &mut body).expect("body");
    }
    ok
}

/// The value of each series of the gateway's `/metrics` whose line starts with one of
/// `names` (a histogram's `_count`, a counter with its labels), summed per name.
fn scrape(admin_port: u16, names: &[&str]) -> Vec<f64> {
    let mut stream = TcpStream::connect(("127.0.0.1", admin_port)).expect("connect admin");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stream, &mut text).expect("metrics");
    names
        .iter()
        .map(|name| {
            text.lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        })
        .collect()
}

/// What a pass cost the gateway, from `/metrics`: verified-cache hits and misses, bcrypt runs,
/// Redis round trips of the request path, tracked-mode invalidations.
const COUNTERS: [&str; 5] = [
    "patgate_verify_cache_total{result=\"hit\"}",
    "patgate_verify_cache_total{result=\"miss\"}",
    "patgate_bcrypt_seconds_count",
    "patgate_redis_seconds_count",
    "patgate_tracked_invalidations",
];

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("TOKENS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(if benching { 100_000 } else { 500 });
    let freshness = std::env::var("FRESHNESS").unwrap_or_else(|_| "strict".into());
    assert!(
        matches!(freshness.as_str(), "strict" | "tracked" | "confirmed"),
        "FRESHNESS must be strict, tracked or confirmed"
    );
    let redis = RedisServer::start().expect("redis-server");
    let upstream = Upstream::start().expect("upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port().expect("port");
    let admin_port = free_port().expect("port");
    let conf_path = dir.path().join("patgate.yaml");
    let text = format!(
        "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin_port}\nredis: {{url: '{}', timeout_ms: 1000, freshness: {freshness}}}\n\
         verify: {{bcrypt_cost: 4, pool_threads: 1, cache_entries: {n}}}\n\
         server: {{threads: 1, pid_file: '{d}/p.pid', upgrade_sock: '{d}/u.sock'}}\n\
         roles: [{{name: member, permissions: [repos:read]}}, {{name: admin, permissions: ['*']}}]\n\
         routes: [{{name: api, path_prefix: /api, upstream: '{}', require: [repos:read]}}]\n",
        redis.url(),
        upstream.addr(),
        d = dir.path().display()
    );
    std::fs::write(&conf_path, text).expect("conf");
    let conf = Conf::load(&conf_path).expect("conf");

    let started = Instant::now();
    let workers = 2;
    let tokens: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let conf = &conf;
                scope.spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("rt");
                    runtime.block_on(async {
                        let store = patgate::store::Store::lazy(&conf.redis).expect("store");
                        let manager = Manager {
                            store: &store,
                            conf,
                            actor: patgate::manage::Actor::named("bench"),
                        };
                        let user = format!("user{w}");
                        manager
                            .put_membership(&user, "acme", "member")
                            .await
                            .expect("member");
                        let mut mine = Vec::new();
                        for _ in (w..n).step_by(workers) {
                            let request = NewToken {
                                user: user.clone(),
                                org: "acme".into(),
                                name: "rss".into(),
                                expires: None,
                                permissions: None,
                            };
                            let created = manager
                                .create_token(request, patgate::proxy::unix_now())
                                .await
                                .expect("create");
                            mine.push(created.token);
                        }
                        mine
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    println!("created {} PATs in {:.1?}", tokens.len(), started.elapsed());

    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_patgate"));
    let gateway = GatewayProcess::start(binary, &conf_path, port).expect("gateway");
    let pid = gateway.pid();
    present_all(port, &tokens[..1]);
    let before = rss_kib(pid);
    let counted = scrape(admin_port, &COUNTERS);
    let cold = Instant::now();
    let ok_cold = present_all(port, &tokens);
    let cold_time = cold.elapsed();
    let after = rss_kib(pid);
    let after_cold = scrape(admin_port, &COUNTERS);
    let warm = Instant::now();
    let ok_warm = present_all(port, &tokens);
    let warm_time = warm.elapsed();
    let after_warm = rss_kib(pid);
    let counted_warm = scrape(admin_port, &COUNTERS);
    drop(gateway);

    println!("| freshness | credentials | cold pass | warm pass | RSS before | RSS after cold pass | after warm pass | limit |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {freshness} | {n} | {ok_cold} x 200 in {cold_time:.1?} | {ok_warm} x 200 in {warm_time:.1?} | {:.1} MiB | {:.1} MiB | {:.1} MiB | 64 MiB |",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after_warm as f64 / 1024.0
    );
    println!();
    println!("| pass | verified-cache hits | misses | bcrypt runs | Redis round trips | tracked invalidations |");
    println!("|---|---|---|---|---|---|");
    for (pass, from, to) in [
        ("cold", &counted, &after_cold),
        ("warm", &after_cold, &counted_warm),
    ] {
        let delta: Vec<String> = from
            .iter()
            .zip(to)
            .map(|(a, b)| format!("{}", b - a))
            .collect();
        println!("| {pass} | {} |", delta.join(" | "));
    }
    assert_eq!(ok_cold, n, "every token verifies");
    assert_eq!(ok_warm, n, "every token is still valid");
    assert!(after < 64 * 1024, "RSS {after} KiB is above 64 MiB");
}
