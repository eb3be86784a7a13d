//! Isolation under a flood of bad credentials (issue 5): while one wrk floods the gateway with
//! wrong secrets under a real PAT prefix (each distinct, so the negative cache cannot help
//! and every one costs a bcrypt run) and random well-formed tokens, how much of its
//! throughput and p99 does valid, already-verified traffic keep?
//!
//! Setup, all started here: a private redis-server, the echo upstream, one gateway (one
//! worker thread, bcrypt cost 10, 2 pool threads, failure limits raised so that the flood is
//! not simply answered 429: this is the distributed-attack case the limiter cannot stop).
//! The gateway is pinned to CPU 0 (`taskset -a`); both wrk processes, Redis and the upstream
//! share CPU 1, the flood's wrk at nice 19 so that it takes client CPU only when the valid
//! client leaves some. Each configuration is measured as interleaved pairs: valid traffic
//! alone, then valid traffic during the flood; medians of `REPS` pairs.
//!
//! `cargo bench --bench isolation` (DURATION=10s, REPS=3 by default); under
//! `cargo test --benches` a 1 s smoke run of each phase checks that the harness works.

use patgate::conf::Conf;
use patgate::testkit::free_port;
use patgate::testkit::gateway::GatewayProcess;
use patgate::testkit::redis::RedisServer;
use patgate::testkit::upstream::Upstream;
use patgate::testkit::wrk::{finish, median, pin, run_settings, Load, Report};
use patgate::token::{self, Kind};
use std::process::{Child, Command, Stdio};

/// Connections of the valid client: enough to keep one gateway worker busy, few enough that
/// its own queueing does not dominate p99.
const VALID_CONNS: u32 = 8;

fn conf_text(
    (port, admin): (u16, u16),
    redis: &str,
    upstream: &str,
    nice: i32,
    dir: &std::path::Path,
) -> String {
    let dir = dir.display();
    format!(
        "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\nredis: {{url: '{redis}', timeout_ms: 1000}}\n\
         verify: {{bcrypt_cost: 10, pool_threads: 2, pool_queue: 1024, pool_nice: {nice}}}\n\
         limits: {{failures_per_client: 1000000000, failures_per_prefix: 1000000000}}\n\
         access_log: {{format: 'off'}}\n\
         audit: {{denied_requests: false}}\n\
         server: {{threads: 1, pid_file: '{dir}/{port}.pid', upgrade_sock: '{dir}/{port}.sock'}}\n\
         roles: [{{name: member, permissions: [repos:read]}}, {{name: admin, permissions: ['*']}}]\n\
         routes: [{{name: api, path_prefix: /api, upstream: '{upstream}', require: [repos:read]}}]\n"
    )
}

/// `wrk` on `cpu` (at `nice`) against `url` for `seconds`; `script` sets per-request headers.
fn wrk(
    cpu: &str,
    nice: i32,
    conns: u32,
    seconds: u32,
    url: &str,
    header: Option<&str>,
    script: Option<&std::path::Path>,
) -> Child {
    let mut load = Load::new(cpu, conns, seconds, url);
    load.nice = nice;
    load.headers.extend(header.map(str::to_string));
    load.script = script.map(std::path::Path::to_path_buf);
    load.spawn()
        .expect("wrk (apt install wrk; scripts/setup --test-tools does)")
}

/// Polls the gateway's `/metrics` until no bcrypt job is queued or running (or 60 s pass).
fn wait_for_idle_pool(admin: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let depth = metrics(admin)
            .lines()
            .find_map(|l| l.strip_prefix("patgate_bcrypt_queue_depth "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if depth == Some(0.0) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the bcrypt pool did not drain in 60 s");
}

fn metrics(admin: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", admin)) else {
        return String::new();
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

/// The flood's tokens: wrong secrets under `prefix` and random well-formed tokens, alternating.
fn flood_tokens(prefix: &str, count: usize) -> String {
    let mut out = String::new();
    for i in 0..count {
        let random = token::generate(Kind::Pat).token;
        if i % 2 == 0 {
            let body = format!(
                "{prefix}{}",
                &random[10..random.len() - token::CHECKSUM_LEN]
            );
            out.push_str(&token::seal(&body));
        } else {
            out.push_str(&random);
        }
        out.push('\n');
    }
    out
}

struct Measured {
    nice: i32,
    alone: Vec<Report>,
    flooded: Vec<Report>,
    flood: Vec<Report>,
}

fn measure(nice: i32, seconds: u32, reps: usize) -> Measured {
    let redis = RedisServer::start().expect("redis-server");
    let upstream = Upstream::start().expect("upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port().expect("port");
    let admin = free_port().expect("port");
    let conf_path = dir.path().join("gateway.yaml");
    let text = conf_text(
        (port, admin),
        &redis.url(),
        &upstream.addr().to_string(),
        nice,
        dir.path(),
    );
    std::fs::write(&conf_path, text).expect("conf");
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_patgate"));
    let gateway = GatewayProcess::start(binary, &conf_path, port).expect("gateway");
    pin(gateway.pid(), "0");
    pin(redis.pid(), "1");
    let conf = Conf::load(&conf_path).expect("conf");
    let created = patgate::testkit::seeder::Seeder::new(&conf)
        .expect("seeder")
        .member_with_pat(
            &conf,
            "isolation-bench",
            ("valid", "acme", "member"),
            "valid",
        )
        .expect("member and PAT");
    let flood_file = dir.path().join("flood.txt");
    std::fs::write(&flood_file, flood_tokens(&created.record.prefix, 20_000)).expect("flood");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/isolation/flood.lua");
    let url = format!("http://127.0.0.1:{port}/api");
    let bearer = format!("Authorization: Bearer {}", created.token);
    // Warm: the first request verifies with bcrypt; then 1 s of valid traffic.
    finish(wrk("1", 0, 4, 1, &url, Some(&bearer), None));
    let mut measured = Measured {
        nice,
        alone: Vec::new(),
        flooded: Vec::new(),
        flood: Vec::new(),
    };
    for _ in 0..reps {
        // bcrypt jobs a previous flood queued must not run during the baseline.
        wait_for_idle_pool(admin);
        measured.alone.push(finish(wrk(
            "1",
            0,
            VALID_CONNS,
            seconds,
            &url,
            Some(&bearer),
            None,
        )));
        std::env::set_var("FLOOD_FILE", &flood_file);
        let flood = wrk("1", 19, 64, seconds + 2, &url, None, Some(&script));
        // Let the flood fill the pool's queue before measuring.
        std::thread::sleep(std::time::Duration::from_secs(1));
        measured.flooded.push(finish(wrk(
            "1",
            0,
            VALID_CONNS,
            seconds,
            &url,
            Some(&bearer),
            None,
        )));
        measured.flood.push(finish(flood));
    }
    drop(gateway);
    measured
}

fn main() {
    let found = Command::new("sh")
        .args(["-c", "command -v wrk && command -v taskset"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "wrk and taskset are needed: scripts/setup --test-tools installs them"
    );
    let (seconds, reps) = run_settings(10, 3);
    println!("isolation: valid warm PAT traffic (wrk -t1 -c{VALID_CONNS}) alone, then during a flood (wrk -t1 -c64, nice 19) of wrong secrets under its prefix and random tokens; {seconds} s runs, median of {reps}");
    println!("| verify.pool_nice | valid alone req/s | alone p99 | valid under flood req/s | flooded p99 | throughput kept | flood req/s (non-2xx) |");
    println!("|---|---|---|---|---|---|---|");
    for nice in [0, 10] {
        let m = measure(nice, seconds, reps);
        let alone = median(m.alone.iter().map(|r| r.rps).collect());
        let flooded = median(m.flooded.iter().map(|r| r.rps).collect());
        let flood_rps = median(m.flood.iter().map(|r| r.rps).collect());
        let flood_non_2xx: u64 = m.flood.iter().map(|r| r.non_2xx).sum();
        let flood_total: f64 = m.flood.iter().map(|r| r.rps).sum::<f64>() * f64::from(seconds + 2);
        println!(
            "| {} | {alone:.0} | {:.2} ms | {flooded:.0} | {:.2} ms | {:.0}% | {flood_rps:.0} ({flood_non_2xx} of ~{flood_total:.0}) |",
            m.nice,
            median(m.alone.iter().map(|r| r.p99_ms).collect()),
            median(m.flooded.iter().map(|r| r.p99_ms).collect()),
            100.0 * flooded / alone,
        );
        assert!(alone > 0.0 && flooded > 0.0, "wrk produced no figures");
        assert!(
            m.flooded.iter().all(|r| r.non_2xx == 0),
            "valid traffic was refused during the flood"
        );
    }
}
