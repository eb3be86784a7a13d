//! Scale-out (issue 7): the same warm-PAT load through one and through two gateway
//! instances, on each Redis topology patgate supports, with the Redis work each request costs.
//!
//! Per topology (one redis-server; a 3-primary Redis Cluster; a primary + replica behind three
//! Sentinels, all started here on loopback ports) and freshness mode (strict and tracked):
//! two release gateways (`server.threads: 1`), seeded with one member and one PAT (bcrypt cost
//! 4), then
//! - **1 gateway**: `wrk -t1 -c32` against the first;
//! - **2 gateways**: `wrk -t1 -c16` against each at once (the figure is the sum).
//!
//! Pinning (2 cores): both gateways on CPU 0 (`taskset -a`), so "2 gateways" shares one core
//! between two processes: it shows what a second instance costs or saves with the core count
//! fixed, not more cores. wrk, every Redis process and the nginx upstream (`return 200`) on
//! CPU 1. Redis figures are deltas over each run, summed over the data nodes (not the
//! Sentinels): commands executed per request (`INFO commandstats`) and Redis CPU per request
//! (`used_cpu_user + used_cpu_sys`), the inputs of the README's capacity model.
//!
//! `cargo bench --bench scale` (DURATION=10, REPS=3); under `cargo test --benches` each run
//! lasts 1 s once, which checks the harness and that every topology serves (no non-2xx).

use patgate::conf::Conf;
use patgate::testkit::cluster::RedisCluster;
use patgate::testkit::free_port;
use patgate::testkit::gateway::GatewayProcess;
use patgate::testkit::redis::RedisServer;
use patgate::testkit::seeder::Seeder;
use patgate::testkit::sentinel::{SentinelSet, MASTER_NAME};
use patgate::testkit::wrk::{finish, median, pin, run_settings, Load, Report};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A Redis topology under test, kept running for its measurements.
enum Topology {
    Single(RedisServer),
    Cluster(RedisCluster),
    Sentinel(SentinelSet),
}

impl Topology {
    fn name(&self) -> &'static str {
        match self {
            Topology::Single(_) => "one redis-server",
            Topology::Cluster(_) => "cluster, 3 primaries",
            Topology::Sentinel(_) => "Sentinel, primary + replica",
        }
    }

    /// The `redis:` block of the gateway conf (without `freshness`).
    fn conf(&self) -> String {
        let list = |urls: Vec<String>| {
            urls.iter()
                .map(|u| format!("'{u}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Topology::Single(redis) => format!("url: '{}'", redis.url()),
            Topology::Cluster(cluster) => format!("cluster: [{}]", list(cluster.urls())),
            Topology::Sentinel(set) => format!(
                "sentinel: {{nodes: [{}], master_name: {MASTER_NAME}}}",
                list(set.sentinel_urls())
            ),
        }
    }

    /// The processes that hold data (not the Sentinels).
    fn data_nodes(&self) -> Vec<&RedisServer> {
        match self {
            Topology::Single(redis) => vec![redis],
            Topology::Cluster(cluster) => cluster.nodes().iter().collect(),
            // servers(): the two data servers, then the Sentinels.
            Topology::Sentinel(set) => set.servers().take(2).collect(),
        }
    }

    fn every_process(&self) -> Vec<&RedisServer> {
        match self {
            Topology::Sentinel(set) => set.servers().collect(),
            _ => self.data_nodes(),
        }
    }

    /// (commands executed, CPU seconds) summed over the data nodes.
    fn work(&self) -> (u64, f64) {
        let mut total = (0, 0.0);
        for node in self.data_nodes() {
            let Ok(mut conn) = node.connection(Duration::from_secs(2)) else {
                continue;
            };
            let info = |section: &str, conn: &mut redis::Connection| -> String {
                redis::cmd("INFO")
                    .arg(section)
                    .query(conn)
                    .unwrap_or_default()
            };
            for line in info("commandstats", &mut conn).lines() {
                // cmdstat_hmget:calls=12,usec=...
                if let Some(calls) = line
                    .split_once(":calls=")
                    .and_then(|(_, rest)| rest.split(',').next())
                {
                    total.0 += calls.parse::<u64>().unwrap_or(0);
                }
            }
            for line in info("cpu", &mut conn).lines() {
                if let Some(("used_cpu_user" | "used_cpu_sys", seconds)) =
                    line.trim().split_once(':')
                {
                    total.1 += seconds.trim().parse::<f64>().unwrap_or(0.0);
                }
            }
        }
        total
    }
}

/// nginx answering `200 "ok"` (benches/e2e/nginx-upstream.conf.in), stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(cpu: &str) -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port().expect("port");
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/e2e/nginx-upstream.conf.in"),
        )
        .expect("nginx template");
        let prefix = dir.path().join("nginx-upstream");
        std::fs::create_dir_all(&prefix).expect("nginx dir");
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            template
                .replace("@TMP@", &dir.path().display().to_string())
                .replace("@PORT@", &port.to_string()),
        )
        .expect("nginx conf");
        let child = Command::new("taskset")
            .args(["-c", cpu, "nginx", "-p"])
            .arg(format!("{}/", prefix.display()))
            .arg("-c")
            .arg(&conf)
            .args(["-e", "stderr"])
            .env(
                "PATH",
                format!(
                    "{}:/usr/sbin:/sbin",
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (apt install nginx; scripts/setup does)");
        wait_for_port(port);
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM (kill(1), so the bench needs no `unsafe`): the master stops its worker.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port} after 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One measured configuration: requests/s, p99 and Redis work per request.
#[derive(Default)]
struct Row {
    rps: Vec<f64>,
    p99_ms: Vec<f64>,
    non_2xx: u64,
    socket_errors: u64,
    commands_per_request: Vec<f64>,
    redis_us_per_request: Vec<f64>,
}

impl Row {
    fn add(&mut self, reports: &[Report], work: ((u64, f64), (u64, f64))) {
        let rps: f64 = reports.iter().map(|r| r.rps).sum();
        let requests: u64 = reports.iter().map(|r| r.requests).sum();
        self.rps.push(rps);
        self.p99_ms
            .push(reports.iter().map(|r| r.p99_ms).fold(0.0, f64::max));
        self.non_2xx += reports.iter().map(|r| r.non_2xx).sum::<u64>();
        self.socket_errors += reports.iter().map(|r| r.socket_errors).sum::<u64>();
        let ((calls0, cpu0), (calls1, cpu1)) = work;
        if requests > 0 {
            // The INFO calls of the two snapshots themselves are not requests' work.
            let calls = calls1.saturating_sub(calls0).saturating_sub(2);
            self.commands_per_request
                .push(calls as f64 / requests as f64);
            self.redis_us_per_request
                .push((cpu1 - cpu0) * 1e6 / requests as f64);
        }
    }
}

struct Gateways {
    processes: Vec<GatewayProcess>,
    ports: Vec<u16>,
    token: String,
    _dir: tempfile::TempDir,
}

fn start_gateways(topology: &Topology, freshness: &str, upstream: u16) -> Gateways {
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = Path::new(env!("CARGO_BIN_EXE_patgate"));
    let mut processes = Vec::new();
    let mut ports = Vec::new();
    let mut first_conf = None;
    for n in 0..2 {
        let port = free_port().expect("port");
        let conf_path = dir.path().join(format!("gateway-{n}.yaml"));
        let d = dir.path().display();
        std::fs::write(
            &conf_path,
            format!(
                "listen: 127.0.0.1:{port}\n\
                 redis: {{{}, timeout_ms: 200, freshness: {freshness}}}\n\
                 verify: {{bcrypt_cost: 4, pool_threads: 1}}\n\
                 access_log: {{format: 'off'}}\n\
                 server: {{threads: 1, pid_file: '{d}/{port}.pid', upgrade_sock: '{d}/{port}.sock'}}\n\
                 roles: [{{name: member, permissions: [repos:read]}}, {{name: admin, permissions: ['*']}}]\n\
                 routes: [{{name: api, path_prefix: /api, upstream: '127.0.0.1:{upstream}', require: [repos:read]}}]\n",
                topology.conf()
            ),
        )
        .expect("conf");
        let gateway = GatewayProcess::start(binary, &conf_path, port).expect("gateway");
        pin(gateway.pid(), "0");
        processes.push(gateway);
        ports.push(port);
        first_conf.get_or_insert(conf_path);
    }
    let conf = Conf::load(first_conf.as_deref().expect("two confs")).expect("conf");
    let created = Seeder::new(&conf)
        .expect("seeder")
        .member_with_pat(&conf, "scale-bench", ("bench", "acme", "member"), "scale")
        .expect("member and PAT");
    Gateways {
        processes,
        ports,
        token: created.token,
        _dir: dir,
    }
}

fn measure(
    topology: &Topology,
    freshness: &str,
    upstream: u16,
    seconds: u32,
    reps: usize,
) -> [Row; 2] {
    let gateways = start_gateways(topology, freshness, upstream);
    let bearer = format!("Authorization: Bearer {}", gateways.token);
    let url = |port: u16| format!("http://127.0.0.1:{port}/api");
    // Warm-up: each gateway verifies the token once (bcrypt), then serves it from its cache.
    for &port in &gateways.ports {
        let warm = finish(
            Load::new("1", 4, 1, &url(port))
                .header(&bearer)
                .spawn()
                .expect("wrk (scripts/setup --test-tools installs it)"),
        );
        assert!(
            warm.requests > 0 && warm.non_2xx == 0,
            "warm-up against {}: {warm:?}",
            topology.name()
        );
    }
    let mut rows = [Row::default(), Row::default()];
    for _ in 0..reps {
        let before = topology.work();
        let one = finish(
            Load::new("1", 32, seconds, &url(gateways.ports[0]))
                .header(&bearer)
                .spawn()
                .expect("wrk"),
        );
        rows[0].add(&[one], (before, topology.work()));
        let before = topology.work();
        let both: Vec<Child> = gateways
            .ports
            .iter()
            .map(|&port| {
                Load::new("1", 16, seconds, &url(port))
                    .header(&bearer)
                    .spawn()
                    .expect("wrk")
            })
            .collect();
        let reports: Vec<Report> = both.into_iter().map(finish).collect();
        rows[1].add(&reports, (before, topology.work()));
    }
    drop(gateways.processes);
    rows
}

fn main() {
    let (seconds, reps) = run_settings(10, 3);
    let nginx = Nginx::start("1");
    println!("scale: warm PAT through 1 gateway (wrk -t1 -c32) and 2 gateways (wrk -t1 -c16 each, summed); gateways on CPU 0, wrk + Redis + nginx upstream on CPU 1; {seconds} s runs, median of {reps}");
    println!("| Redis | freshness | gateways | req/s | p99 ms | non-2xx | socket errors | Redis commands / request | Redis CPU µs / request |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    let topologies: [fn() -> Topology; 3] = [
        || Topology::Single(RedisServer::start().expect("redis-server")),
        || Topology::Cluster(RedisCluster::start(3).expect("cluster")),
        || Topology::Sentinel(SentinelSet::start().expect("sentinel set")),
    ];
    for start in topologies {
        let topology = start();
        for process in topology.every_process() {
            pin(process.pid(), "1");
        }
        for freshness in ["strict", "tracked"] {
            let rows = measure(&topology, freshness, nginx.port, seconds, reps);
            for (gateways, row) in rows.iter().enumerate() {
                println!(
                    "| {} | {freshness} | {} | {:.0} | {:.2} | {} | {} | {:.3} | {:.2} |",
                    topology.name(),
                    gateways + 1,
                    median(row.rps.clone()),
                    median(row.p99_ms.clone()),
                    row.non_2xx,
                    row.socket_errors,
                    median(row.commands_per_request.clone()),
                    median(row.redis_us_per_request.clone()),
                );
                assert!(median(row.rps.clone()) > 0.0, "no throughput");
                assert_eq!(
                    row.non_2xx,
                    0,
                    "{} {freshness}: refused requests",
                    topology.name()
                );
            }
        }
    }
}
