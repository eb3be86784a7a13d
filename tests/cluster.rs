//! Real Redis topologies started by the test itself: a 3-primary Redis Cluster
//! (`testkit::cluster`) and a primary with a replica under three Sentinels
//! (`testkit::sentinel`). Each test runs real `patgate` gateways and the CLI against the
//! topology's conf (`redis.cluster` / `redis.sentinel`), and every process it starts is
//! killed on drop, also when an assertion fails.
//!
//! Failover is tested on both: a Sentinel set, and a cluster of 3 primaries with one
//! replica each, where the cluster itself promotes a replica.
//!
//! Both topologies also run TLS only (`rediss://` nodes, `redis.ca_file` trusting a CA made
//! at run time, cluster bus and replication over TLS too): traffic, a revocation seen by two
//! gateways, and a CA that did not issue the servers' certificate failing closed.

use crate::support::certs::Ca;
use crate::support::{
    conf_text, eventually, get_bearer_on, patgate_bin, run_cli, Cli, CliFor, Options, Response,
};
use patgate::testkit::cluster::RedisCluster;
use patgate::testkit::free_port;
use patgate::testkit::redis::{RedisServer, TlsFiles};
use patgate::testkit::sentinel::{SentinelSet, MASTER_NAME};
use patgate::testkit::upstream::Upstream;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `redis.timeout_ms` over TLS. redis-rs 1.8 reads and parses the system roots for every TLS
/// connection it opens, even when `redis.ca_file` replaces them (25-75 ms each in this debug
/// build on a busy 2-core machine, 3-8 ms optimised), and finding the primary through the
/// Sentinels opens five (three Sentinels, the candidate's `ROLE`, the primary) before the first
/// command: a CLI run, whose first command pays for all of them, took 180-270 ms here, beyond
/// the 200 ms the other tests allow.
const TLS_TIMEOUT_MS: u64 = 1000;

/// One gateway process, killed on drop.
struct Gateway {
    port: u16,
    child: Child,
    log_path: PathBuf,
}

impl Gateway {
    fn get(&self, token: &str) -> Response {
        get_bearer_on(self.port, "/v1/repos", token)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Gateways (one per freshness given) on one topology and one echo upstream, plus the CLI
/// with the first gateway's conf.
struct Fleet {
    gateways: Vec<Gateway>,
    upstream: Upstream,
    conf_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fleet {
    /// Starts one gateway per entry of `freshness`, with `location` under `redis:`.
    fn start(location: &str, freshness: &[&'static str]) -> Fleet {
        Fleet::start_with(location, freshness, None)
    }

    /// As [`Fleet::start`]; with `redis_tls`, the conf trusts its `ca_file` (`redis.ca_file`)
    /// for the `rediss://` nodes in `location`, and allows [`TLS_TIMEOUT_MS`].
    fn start_with(
        location: &str,
        freshness: &[&'static str],
        redis_tls: Option<&TlsFiles>,
    ) -> Fleet {
        let upstream = Upstream::start().expect("echo upstream");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut gateways = Vec::new();
        let mut conf_path = PathBuf::new();
        for (i, freshness) in freshness.iter().enumerate() {
            let gw_dir = dir.path().join(format!("gateway-{i}"));
            std::fs::create_dir_all(&gw_dir).expect("dir");
            let port = free_port().expect("port");
            let defaults = Options::default();
            let options = Options {
                freshness,
                redis_tls: redis_tls.cloned(),
                timeout_ms: match redis_tls {
                    Some(_) => TLS_TIMEOUT_MS,
                    None => defaults.timeout_ms,
                },
                ..defaults
            };
            let conf = conf_text(
                &options,
                port,
                free_port().expect("port"),
                location,
                &upstream.addr().to_string(),
                &gw_dir,
            );
            let path = gw_dir.join("patgate.yaml");
            std::fs::write(&path, conf).expect("write conf");
            if i == 0 {
                conf_path = path.clone();
            }
            let log_path = gw_dir.join("gateway.log");
            let log = std::fs::File::create(&log_path).expect("log");
            let child = Command::new(patgate_bin())
                .arg("-c")
                .arg(&path)
                .arg("serve")
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("spawn patgate");
            let gateway = Gateway {
                port,
                child,
                log_path,
            };
            eventually(
                Duration::from_secs(20),
                "gateway to listen",
                || TcpStream::connect(("127.0.0.1", port)).is_ok(),
                || gateway.log(),
            );
            gateways.push(gateway);
        }
        Fleet {
            gateways,
            upstream,
            conf_path,
            _dir: dir,
        }
    }

    fn cli(&self, args: &[&str]) -> Cli {
        run_cli(&self.conf_path, args)
    }

    fn member(&self, user: &str, org: &str, role: &str) {
        CliFor(&self.conf_path).member(user, org, role);
    }

    fn pat(&self, user: &str, org: &str) -> String {
        CliFor(&self.conf_path).pat_with(user, org, &[])
    }

    fn apikey(&self, org: &str, role: &str, admin: &str) -> String {
        CliFor(&self.conf_path).apikey(org, role, admin)
    }

    fn logs(&self) -> String {
        self.gateways
            .iter()
            .enumerate()
            .map(|(i, g)| format!("--- gateway {i} ---\n{}", g.log()))
            .collect()
    }
}

fn cluster_location(cluster: &RedisCluster) -> String {
    format!("cluster: [{}]", cluster.urls().join(", "))
}

fn sentinel_location(set: &SentinelSet) -> String {
    format!(
        "sentinel:\n    nodes: [{}]\n    master_name: {MASTER_NAME}",
        set.sentinel_urls().join(", ")
    )
}

/// A plain connection of the test's own to one node.
fn node(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .expect("client")
        .get_connection()
        .expect("connection to a test node")
}

/// Keys on the node at `port` matching `pattern` (KEYS is fine on a test node).
fn keys_on(port: u16, pattern: &str) -> usize {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query(&mut node(port))
        .expect("KEYS");
    keys.len()
}

/// Calls of `command` served so far by the nodes on `ports` together (`INFO commandstats`).
fn calls_on(ports: impl IntoIterator<Item = u16>, command: &str) -> u64 {
    let needle = format!("cmdstat_{command}:calls=");
    ports
        .into_iter()
        .map(|port| {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query(&mut node(port))
                .expect("INFO");
            info.lines()
                .find_map(|line| line.strip_prefix(&needle))
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// The reads a request can make (`HGETALL` fills the tracked cache, `HMGET` is strict's),
/// served so far by the nodes on `ports`.
fn reads_on(ports: impl IntoIterator<Item = u16> + Clone) -> (u64, u64) {
    (calls_on(ports.clone(), "hgetall"), calls_on(ports, "hmget"))
}

/// Warm requests of `token` on a tracked `gateway` come to be allowed and read nothing from
/// the nodes on `ports` (within 5 s: after a failover or a replaced connection the cache
/// waits for the next heartbeat to answer, and requests may fail closed meanwhile): they are
/// served from its record cache.
fn assert_served_from_cache(gateway: &Gateway, token: &str, ports: &[u16]) {
    let allowed = |times: usize| (0..times).all(|_| gateway.get(token).status == 200);
    eventually(
        Duration::from_secs(5),
        "warm tracked requests to be served from the record cache",
        || {
            if !allowed(2) {
                return false;
            }
            let before = reads_on(ports.iter().copied());
            allowed(5) && reads_on(ports.iter().copied()) == before
        },
        || gateway.log(),
    );
}

#[test]
fn cluster_serves_pats_and_api_keys_whose_keys_live_on_different_nodes() {
    let cluster = RedisCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let fleet = Fleet::start(&cluster_location(&cluster), &["strict"]);
    let gateway = &fleet.gateways[0];
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    for user in users {
        fleet.member(user, "acme", "admin");
    }
    let pats: Vec<String> = users.iter().map(|u| fleet.pat(u, "acme")).collect();
    let key = fleet.apikey("acme", "viewer", "alice");
    // The records really are spread: the CLI wrote through the cluster, not to one node.
    let spread = |pattern: &str| -> Vec<usize> {
        cluster
            .nodes()
            .iter()
            .map(|n| keys_on(n.port(), pattern))
            .collect()
    };
    let creds = spread("patgate:cred:*");
    let people = spread("patgate:user:*");
    assert_eq!(creds.iter().sum::<usize>(), 7, "{creds:?}");
    assert!(creds.iter().filter(|&&n| n > 0).count() >= 2, "{creds:?}");
    assert!(people.iter().filter(|&&n| n > 0).count() >= 2, "{people:?}");

    for _ in 0..2 {
        for (user, pat) in users.iter().zip(&pats) {
            let seen = gateway.get(pat).echoed();
            assert_eq!(seen.header("x-auth-user"), Some(*user));
            assert_eq!(seen.header("x-auth-org"), Some("acme"));
        }
        let seen = gateway.get(&key).echoed();
        assert_eq!(seen.header("x-auth-credential-type"), Some("api_key"));
        assert_eq!(seen.header("x-auth-role"), Some("viewer"));
    }
    assert_eq!(fleet.upstream.count(), 14);

    // Listings read many slots (index, records, last uses).
    let listed = fleet
        .cli(&["token", "list", "--user", "alice", "--json"])
        .expect_ok();
    assert!(listed.stdout.contains(&pats[0][..10]), "{}", listed.stdout);
    let listed = fleet
        .cli(&["apikey", "list", "--org", "acme", "--json"])
        .expect_ok();
    assert!(listed.stdout.contains(&key[..10]), "{}", listed.stdout);

    // Writes on any node are in force for the next request.
    fleet.cli(&["token", "revoke", &pats[1][..10]]).expect_ok();
    gateway.get(&pats[1]).assert_denied(401, "invalid_token");
    fleet.cli(&["user", "suspend", "carol"]).expect_ok();
    gateway.get(&pats[2]).assert_denied(401, "invalid_token");
    fleet.cli(&["apikey", "revoke", &key[..10]]).expect_ok();
    gateway.get(&key).assert_denied(401, "invalid_token");
    gateway.get(&pats[0]).echoed();
    assert_eq!(fleet.upstream.count(), 15, "{}", fleet.logs());
}

#[test]
fn cluster_revocation_is_seen_by_two_gateways_at_once_strict_and_tracked() {
    let cluster = RedisCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let fleet = Fleet::start(&cluster_location(&cluster), &["strict", "tracked"]);
    let (strict, tracked) = (&fleet.gateways[0], &fleet.gateways[1]);
    fleet.member("alice", "acme", "member");
    let token = fleet.pat("alice", "acme");
    for _ in 0..2 {
        strict.get(&token).echoed();
    }
    // Tracking works on a cluster: warm requests on the tracked gateway read nothing.
    assert_served_from_cache(tracked, &token, &node_ports(&cluster));
    // Tracked is in force once the invalidation has arrived from the node holding the key.
    let lag = revoke_on_strict_and_tracked(&fleet, &[&token]);
    eprintln!("cluster: revocation in force on both gateways {lag:?} after the CLI returned");
}

#[test]
fn sentinel_serves_traffic_and_a_revocation_reaches_a_strict_and_a_tracked_gateway() {
    let set = SentinelSet::start().unwrap_or_else(|e| panic!("{e}"));
    let fleet = Fleet::start(&sentinel_location(&set), &["strict", "tracked"]);
    let (pat, key) = serve_a_pat_and_a_key(&fleet);
    // Tracking works behind Sentinel: warm requests on the tracked gateway read nothing.
    let primary = set.primary_port().expect("the sentinels name a primary");
    assert_served_from_cache(&fleet.gateways[1], &pat, &[primary]);
    assert_served_from_cache(&fleet.gateways[1], &key, &[primary]);
    revoke_on_strict_and_tracked(&fleet, &[&pat, &key]);
}

#[test]
fn sentinel_failover_fails_closed_then_recovers_without_restarting_strict_and_tracked_gateways() {
    let mut set = SentinelSet::start().unwrap_or_else(|e| panic!("{e}"));
    let fleet = Fleet::start(&sentinel_location(&set), &["strict", "tracked"]);
    let tracked = &fleet.gateways[1];
    fleet.member("alice", "acme", "admin");
    let good = fleet.pat("alice", "acme");
    let revoked = fleet.pat("alice", "acme");
    let key = fleet.apikey("acme", "viewer", "alice");
    for gateway in &fleet.gateways {
        gateway.get(&good).echoed();
        // Verified once (so it sits in the verified-secret cache), then revoked.
        gateway.get(&revoked).echoed();
    }
    revoke_on_strict_and_tracked(&fleet, &[&revoked]);
    assert!(
        set.sync_replica() >= 1,
        "the replica acknowledged every write before the primary dies"
    );
    let old = set.primary_port().expect("the sentinels name a primary");
    // The tracked gateway serves `good` from its cache on the old primary's connection.
    assert_served_from_cache(tracked, &good, &[old]);
    let forwarded = fleet.upstream.count();

    set.data_server(old).expect("the primary").kill();
    let recovered = ride_out_failover(&fleet.gateways, &good, &revoked, || {
        format!("{}\n{}", fleet.logs(), set.logs())
    });
    for ((after, unavailable), mode) in recovered.iter().zip(["strict", "tracked"]) {
        eprintln!(
            "sentinel failover, {mode}: first 200 {after:?} after the primary was killed \
             ({unavailable} requests answered 503 auth_unavailable meanwhile)"
        );
    }
    assert!(
        recovered[0].1 > 0,
        "the killed primary was noticed by the strict gateway (fail closed)"
    );
    let new = set.primary_port().expect("a new primary");
    assert_ne!(new, old, "the replica was promoted");
    // Nothing was forwarded except the one request each gateway let through.
    assert_eq!(fleet.upstream.count(), forwarded + fleet.gateways.len());

    // The same gateway processes, on the new primary: reads and writes both work.
    for gateway in &fleet.gateways {
        gateway.get(&revoked).assert_denied(401, "invalid_token");
        gateway.get(&key).echoed();
    }
    // The tracked gateway caches again, now tracked by the new primary...
    assert_served_from_cache(tracked, &good, &[new]);
    // ...which sends it the invalidation of a revocation written there.
    revoke_on_strict_and_tracked(&fleet, &[&good]);
}

#[test]
fn sentinel_primary_with_a_password_of_its_own_serves_strict_and_tracked_gateways() {
    const PASSWORD: &str = "primary-s3cret";
    let set = SentinelSet::start_with_primary_password(PASSWORD).unwrap_or_else(|e| panic!("{e}"));
    // The Sentinels need no password and are told none; the primary needs its own.
    let without = Fleet::start(&sentinel_location(&set), &["strict"]);
    let refused = without.cli(&["check"]);
    assert!(!refused.ok, "{}", refused.stdout);
    assert!(
        refused
            .stderr
            .contains("redis.sentinel: cannot reach sentinel")
            && refused.stderr.contains("NOAUTH"),
        "{}",
        refused.stderr
    );
    let token = patgate::token::generate(patgate::token::Kind::Pat).token;
    without.gateways[0]
        .get(&token)
        .assert_denied(503, "auth_unavailable");
    assert_eq!(without.upstream.count(), 0);

    let location = format!(
        "{}\n    primary_password: {PASSWORD}",
        sentinel_location(&set)
    );
    let fleet = Fleet::start(&location, &["strict", "tracked"]);
    serve_then_revoke_on_strict_and_tracked(&fleet);
    let logs = format!("{}{}", fleet.logs(), without.logs());
    assert!(!logs.contains(PASSWORD), "a password was logged:\n{logs}");
}

#[test]
fn cluster_replaces_a_silent_node_connection_strict_and_tracked() {
    let cluster = RedisCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let relays = cluster.behind_relays().unwrap_or_else(|e| panic!("{e}"));
    let seeds: Vec<String> = relays
        .iter()
        .map(|relay| format!("redis://{}", relay.addr()))
        .collect();
    let fleet = Fleet::start(
        &format!("cluster: [{}]", seeds.join(", ")),
        &["strict", "tracked"],
    );
    let (strict, tracked) = (&fleet.gateways[0], &fleet.gateways[1]);
    fleet.member("alice", "acme", "member");
    let token = fleet.pat("alice", "acme");
    strict.get(&token).echoed();
    assert_served_from_cache(tracked, &token, &node_ports(&cluster));
    // The node holding the credential's record goes silent for the connections open now (a
    // partition that dropped them): nothing answers on them, and nothing closes them.
    let pattern = format!("*cred:{}", &token[..10]);
    let holder = cluster
        .nodes()
        .iter()
        .position(|n| keys_on(n.port(), &pattern) == 1)
        .expect("a node holds the record");
    relays[holder].silence();
    let silenced = Instant::now();

    // Strict fails closed (503) until the timed-out reads make it probe, find the node
    // silent and make the cluster connection anew; then it serves again.
    let mut unavailable = 0;
    eventually(
        Duration::from_secs(10),
        "the strict gateway to serve again after replacing its cluster connection",
        || {
            let response = strict.get(&token);
            match response.status {
                200 => true,
                503 => {
                    response.assert_denied(503, "auth_unavailable");
                    unavailable += 1;
                    false
                }
                other => panic!("a silent node gave {other}: {}", response.body),
            }
        },
        || fleet.logs(),
    );
    eprintln!(
        "cluster, silent node: strict served again {:?} after the silence ({unavailable} \
         requests answered 503 meanwhile)",
        silenced.elapsed()
    );
    assert!(unavailable > 0, "the silent node was noticed (fail closed)");
    // Tracked notices through its heartbeat (a PING to every primary) and replaces its
    // connection too, dropping what it cached, and caches again over the new one.
    eventually(
        Duration::from_secs(10),
        "both gateways to replace their cluster connection",
        || {
            fleet.gateways.iter().all(|g| {
                g.log()
                    .contains("did not answer a PING after a timeout; replaced it")
            })
        },
        || fleet.logs(),
    );
    assert_served_from_cache(tracked, &token, &node_ports(&cluster));
    // Writes on the new connections reach both: the invalidation arrives on the new one.
    revoke_on_strict_and_tracked(&fleet, &[&token]);
}

/// The ports of the cluster's nodes, for reading their stats directly (not through a relay,
/// where there is one).
fn node_ports(cluster: &RedisCluster) -> Vec<u16> {
    cluster.nodes().iter().map(|n| n.port()).collect()
}

/// The cluster role of the node on `port`: `master` or `slave`.
fn role(port: u16) -> String {
    let Ok(mut conn) = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
    else {
        return "down".into();
    };
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut conn)
        .unwrap_or_default();
    if info.contains("role:master") {
        "master".into()
    } else {
        "slave".into()
    }
}

/// Waits until every replica has processed all its primary has (replication offsets equal).
fn replicas_caught_up(cluster: &RedisCluster) -> bool {
    cluster.nodes().iter().all(|n| {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut node(n.port()))
            .unwrap_or_default();
        if info.contains("role:master") {
            let offset = info
                .lines()
                .find_map(|l| l.strip_prefix("master_repl_offset:"))
                .unwrap_or("0")
                .trim()
                .to_string();
            info.lines()
                .filter(|l| l.starts_with("slave") && l.contains("offset="))
                .all(|l| l.contains(&format!("offset={offset},")))
        } else {
            true
        }
    })
}

#[test]
fn cluster_failover_fails_closed_then_recovers_without_restarting_strict_and_tracked_gateways() {
    let mut cluster = RedisCluster::start_with_replicas(3, 1).unwrap_or_else(|e| panic!("{e}"));
    let fleet = Fleet::start(&cluster_location(&cluster), &["strict", "tracked"]);
    let (strict, tracked) = (&fleet.gateways[0], &fleet.gateways[1]);
    fleet.member("alice", "acme", "admin");
    let good = fleet.pat("alice", "acme");
    let revoked = fleet.pat("alice", "acme");
    for gateway in &fleet.gateways {
        gateway.get(&good).echoed();
        // Verified once (so it sits in the verified-secret cache), then revoked.
        gateway.get(&revoked).echoed();
    }
    revoke_on_strict_and_tracked(&fleet, &[&revoked]);
    eventually(
        Duration::from_secs(10),
        "the replicas to hold every write",
        || replicas_caught_up(&cluster),
        || cluster.logs(),
    );
    assert_served_from_cache(tracked, &good, &node_ports(&cluster));
    // Kill the primary holding the valid token's record.
    let pattern = format!("*cred:{}", &good[..10]);
    let old = cluster
        .nodes()
        .iter()
        .map(|n| n.port())
        .find(|&port| role(port) == "master" && keys_on(port, &pattern) == 1)
        .expect("a primary holds the record");
    let forwarded = fleet.upstream.count();
    cluster.node_mut(old).expect("the primary").kill();
    let recovered = ride_out_failover(&fleet.gateways, &good, &revoked, || {
        format!("{}\n{}", fleet.logs(), cluster.logs())
    });
    for ((after, unavailable), mode) in recovered.iter().zip(["strict", "tracked"]) {
        eprintln!(
            "cluster failover, {mode}: first 200 {after:?} after the primary was killed \
             ({unavailable} requests answered 503 auth_unavailable meanwhile)"
        );
    }
    assert!(
        recovered[0].1 > 0,
        "the killed primary was noticed by the strict gateway (fail closed)"
    );
    // Nothing was forwarded except the one request each gateway let through.
    assert_eq!(fleet.upstream.count(), forwarded + fleet.gateways.len());
    // The same gateways, on the promoted replica: reads and writes work. The other nodes may
    // still be converging on the new slot map for a moment, so each is polled (a 503 or a
    // refused CLI write meanwhile is failing closed, never a wrong answer).
    for gateway in &fleet.gateways {
        eventually(
            Duration::from_secs(10),
            "the revoked token to answer 401",
            || {
                let response = gateway.get(&revoked);
                assert_ne!(response.status, 200, "a revoked token was allowed");
                response.status == 401
            },
            || fleet.logs(),
        );
    }
    let alive: Vec<u16> = node_ports(&cluster)
        .into_iter()
        .filter(|&port| port != old)
        .collect();
    assert_served_from_cache(tracked, &good, &alive);
    eventually(
        Duration::from_secs(10),
        "a CLI revocation on the new primary",
        || fleet.cli(&["token", "revoke", &good[..10]]).ok,
        || cluster.logs(),
    );
    strict.get(&good).assert_denied(401, "invalid_token");
    eventually(
        Duration::from_secs(2),
        "the tracked gateway to apply a revocation written on the new primary",
        || tracked.get(&good).status == 401,
        || fleet.logs(),
    );
}

/// Right after a primary was killed: presents `good` and `revoked` to each gateway in turn
/// until every gateway has allowed `good` once (40 s deadline), after which `good` is no
/// longer sent to it. Meanwhile `good` may only get 503 `auth_unavailable` with `Retry-After`,
/// and `revoked` only 401 or 503: failing closed, never a wrong answer. Returns, per gateway,
/// the time to its first 200 and how many 503s `good` got before it.
fn ride_out_failover(
    gateways: &[Gateway],
    good: &str,
    revoked: &str,
    logs: impl Fn() -> String,
) -> Vec<(Duration, usize)> {
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(40);
    let mut unavailable = vec![0; gateways.len()];
    let mut recovered: Vec<Option<Duration>> = vec![None; gateways.len()];
    while recovered.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "no recovery 40 s after the primary was killed\n{}",
            logs()
        );
        for (i, gateway) in gateways.iter().enumerate() {
            if recovered[i].is_none() {
                let response = gateway.get(good);
                match response.status {
                    200 => recovered[i] = Some(killed.elapsed()),
                    503 => {
                        response.assert_denied(503, "auth_unavailable");
                        assert!(response.header("retry-after").is_some());
                        unavailable[i] += 1;
                    }
                    other => panic!(
                        "during failover a valid token got {other}: {}",
                        response.body
                    ),
                }
            }
            let response = gateway.get(revoked);
            match response.status {
                401 => assert_eq!(response.error(), "invalid_token"),
                503 => assert_eq!(response.error(), "auth_unavailable"),
                other => panic!("during failover a revoked token got {other}"),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    recovered.into_iter().flatten().zip(unavailable).collect()
}

/// The files every TLS node serves: one certificate naming 127.0.0.1 (the address the
/// cluster and the Sentinels announce), from a CA made now in `pki`.
fn tls_files(pki: &Path) -> TlsFiles {
    let ca = Ca::new(pki, "redis");
    let cert = ca.issue("redis", &["127.0.0.1"]);
    TlsFiles {
        cert_file: cert.cert_file,
        key_file: cert.key_file,
        ca_file: ca.ca_file(),
    }
}

/// Each of `servers` speaks TLS only: a plain-TCP PING on its port gets no answer.
fn assert_tls_only<'a>(servers: impl IntoIterator<Item = &'a RedisServer>) {
    for server in servers {
        assert!(server.node_url().starts_with("rediss://"));
        let plain = redis::Client::open(format!("redis://127.0.0.1:{}", server.port()))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
            .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn));
        assert!(plain.is_err(), "port {} answered plain TCP", server.port());
    }
}

/// Presents `pat` (alice, admin in acme) and `key` (acme's viewer key) to `gateway`, and
/// checks the identity the echo upstream received for each.
fn assert_identities(gateway: &Gateway, pat: &str, key: &str) {
    let seen = gateway.get(pat).echoed();
    assert_eq!(seen.header("x-auth-credential-type"), Some("pat"));
    assert_eq!(seen.header("x-auth-token-prefix"), Some(&pat[..10]));
    assert_eq!(seen.header("x-auth-user"), Some("alice"));
    assert_eq!(seen.header("x-auth-org"), Some("acme"));
    assert_eq!(seen.header("x-auth-role"), Some("admin"));
    assert_eq!(seen.header("authorization"), None);
    let seen = gateway.get(key).echoed();
    assert_eq!(seen.header("x-auth-credential-type"), Some("api_key"));
    assert_eq!(seen.header("x-auth-token-prefix"), Some(&key[..10]));
    assert_eq!(seen.header("x-auth-user"), None);
    assert_eq!(seen.header("x-auth-org"), Some("acme"));
    assert_eq!(seen.header("x-auth-role"), Some("viewer"));
}

#[test]
fn cluster_over_tls_serves_pats_and_api_keys_and_two_gateways_see_a_revocation() {
    let started = Instant::now();
    let pki = tempfile::tempdir().expect("tempdir");
    let files = tls_files(pki.path());
    let cluster = RedisCluster::start_tls(3, files.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_tls_only(cluster.nodes());
    let fleet = Fleet::start_with(
        &cluster_location(&cluster),
        &["strict", "tracked"],
        Some(&files),
    );
    let (strict, tracked) = (&fleet.gateways[0], &fleet.gateways[1]);
    assert!(fleet
        .cli(&["check"])
        .expect_ok()
        .stdout
        .contains("redis reachable"));
    // Several users, so the records spread over the shards and the crate follows the slot
    // map to every node over TLS.
    for user in ["alice", "bob", "carol"] {
        fleet.member(user, "acme", "admin");
    }
    let pat = fleet.pat("alice", "acme");
    let others = [fleet.pat("bob", "acme"), fleet.pat("carol", "acme")];
    let key = fleet.apikey("acme", "viewer", "alice");
    let holding: Vec<usize> = cluster
        .nodes()
        .iter()
        .map(|n| {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("patgate:*")
                .query(&mut n.connection(Duration::from_secs(2)).expect("TLS node"))
                .expect("KEYS");
            keys.len()
        })
        .collect();
    assert!(
        holding.iter().filter(|&&n| n > 0).count() >= 2,
        "{holding:?}"
    );
    for gateway in [strict, tracked] {
        for _ in 0..2 {
            assert_identities(gateway, &pat, &key);
        }
        for (user, token) in ["bob", "carol"].iter().zip(&others) {
            assert_eq!(
                gateway.get(token).echoed().header("x-auth-user"),
                Some(*user)
            );
        }
    }
    assert_eq!(fleet.upstream.count(), 12);

    fleet.cli(&["token", "revoke", &pat[..10]]).expect_ok();
    fleet.cli(&["apikey", "revoke", &key[..10]]).expect_ok();
    let revoked = Instant::now();
    // Strict reads Redis on every request: the very next ones are refused.
    strict.get(&pat).assert_denied(401, "invalid_token");
    strict.get(&key).assert_denied(401, "invalid_token");
    // Tracked: in force once the invalidations have arrived over the nodes' TLS connections.
    eventually(
        Duration::from_secs(2),
        "the tracked gateway to apply both revocations",
        || tracked.get(&pat).status == 401 && tracked.get(&key).status == 401,
        || fleet.logs(),
    );
    eprintln!(
        "cluster over TLS: revocations in force on both gateways {:?} after the CLI returned",
        revoked.elapsed()
    );
    tracked.get(&pat).assert_denied(401, "invalid_token");
    tracked.get(&key).assert_denied(401, "invalid_token");
    strict.get(&others[0]).echoed();
    assert_eq!(fleet.upstream.count(), 13, "{}", fleet.logs());
    eprintln!("cluster over TLS: test took {:?}", started.elapsed());
}

#[test]
fn sentinel_over_tls_serves_traffic_and_a_strict_and_a_tracked_gateway_see_a_revocation() {
    let started = Instant::now();
    let pki = tempfile::tempdir().expect("tempdir");
    let files = tls_files(pki.path());
    let set = SentinelSet::start_tls(files.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_tls_only(set.servers());
    let fleet = Fleet::start_with(
        &sentinel_location(&set),
        &["strict", "tracked"],
        Some(&files),
    );
    serve_then_revoke_on_strict_and_tracked(&fleet);
    eprintln!("sentinel over TLS: test took {:?}", started.elapsed());
}

/// What every topology must do with a strict gateway (`fleet.gateways[0]`) and a tracked one
/// (`[1]`): [`serve_a_pat_and_a_key`], then [`revoke_on_strict_and_tracked`].
fn serve_then_revoke_on_strict_and_tracked(fleet: &Fleet) {
    let (pat, key) = serve_a_pat_and_a_key(fleet);
    revoke_on_strict_and_tracked(fleet, &[&pat, &key]);
}

/// `patgate check` reaches Redis, and a new PAT and API key serve every gateway of `fleet`
/// twice with the right identity; returns them.
fn serve_a_pat_and_a_key(fleet: &Fleet) -> (String, String) {
    assert!(fleet
        .cli(&["check"])
        .expect_ok()
        .stdout
        .contains("redis reachable"));
    fleet.member("alice", "acme", "admin");
    let pat = fleet.pat("alice", "acme");
    let key = fleet.apikey("acme", "viewer", "alice");
    for gateway in &fleet.gateways {
        for _ in 0..2 {
            assert_identities(gateway, &pat, &key);
        }
    }
    (pat, key)
}

/// Revokes `tokens` (PATs or API keys) with the CLI: in force on the strict gateway
/// (`fleet.gateways[0]`) at the next request and on the tracked one (`[1]`) once the
/// invalidations have arrived; nothing is forwarded for them after but what the tracked
/// gateway allowed within that lag. Returns the time from the last revocation's
/// acknowledgement to the tracked gateway refusing them all.
fn revoke_on_strict_and_tracked(fleet: &Fleet, tokens: &[&str]) -> Duration {
    let (strict, tracked) = (&fleet.gateways[0], &fleet.gateways[1]);
    let forwarded = fleet.upstream.count();
    for token in tokens {
        let what = if token.starts_with("key_") {
            "apikey"
        } else {
            "token"
        };
        fleet.cli(&[what, "revoke", &token[..10]]).expect_ok();
    }
    let revoked = Instant::now();
    // Strict reads Redis on every request: the very next ones are refused.
    for token in tokens {
        strict.get(token).assert_denied(401, "invalid_token");
    }
    // Tracked: in force once the invalidations have arrived.
    let mut late = 0;
    eventually(
        Duration::from_secs(2),
        "the tracked gateway to apply the revocations",
        || {
            let statuses: Vec<u16> = tokens.iter().map(|t| tracked.get(t).status).collect();
            late += statuses.iter().filter(|&&status| status == 200).count();
            statuses.iter().all(|&status| status == 401)
        },
        || fleet.logs(),
    );
    let lag = revoked.elapsed();
    for token in tokens {
        tracked.get(token).assert_denied(401, "invalid_token");
    }
    assert_eq!(fleet.upstream.count(), forwarded + late, "{}", fleet.logs());
    lag
}

/// A gateway on `location` (TLS nodes) whose `redis.ca_file` is `other_ca`, not the CA in
/// `files` that issued the nodes' certificate: a valid PAT (written by the CLI with the right
/// CA) answers 503 `auth_unavailable` with `Retry-After`, nothing is forwarded, and
/// `patgate check` refuses the conf.
fn assert_another_ca_fails_closed(location: &str, files: &TlsFiles, other_ca: &Path) {
    let wrong = TlsFiles {
        ca_file: other_ca.to_path_buf(),
        ..files.clone()
    };
    let fleet = Fleet::start_with(location, &["strict"], Some(&wrong));
    let conf = std::fs::read_to_string(&fleet.conf_path).expect("conf");
    let right = conf.replace(
        &other_ca.display().to_string(),
        &files.ca_file.display().to_string(),
    );
    assert_ne!(conf, right);
    let right_path = fleet.conf_path.with_file_name("right-ca.yaml");
    std::fs::write(&right_path, right).expect("write conf");
    run_cli(&right_path, &["check"]).expect_ok();
    run_cli(
        &right_path,
        &["user", "put", "alice", "--org", "acme", "--role", "admin"],
    )
    .expect_ok();
    let args = [
        "token", "create", "--user", "alice", "--org", "acme", "--name", "test",
    ];
    let pat = run_cli(&right_path, &args)
        .expect_ok()
        .stdout
        .trim()
        .to_string();

    let gateway = &fleet.gateways[0];
    for _ in 0..3 {
        let response = gateway.get(&pat);
        response.assert_denied(503, "auth_unavailable");
        assert!(response.header("retry-after").is_some(), "{response:?}");
    }
    assert_eq!(fleet.upstream.count(), 0, "nothing was forwarded");
    // The operator finds the cause in the gateway's log and in `check`'s message.
    let cause = "invalid peer certificate: UnknownIssuer";
    assert!(gateway.log().contains(cause), "{}", fleet.logs());
    let check = fleet.cli(&["check"]);
    assert!(
        !check.ok,
        "check passed with the wrong CA: {}",
        check.stdout
    );
    assert!(check.stderr.contains("cannot reach"), "{}", check.stderr);
    fleet
        .cli(&["token", "list", "--user", "alice"])
        .expect_refused("redis");
}

#[test]
fn cluster_and_sentinel_over_tls_trusting_another_ca_fail_closed_and_forward_nothing() {
    let started = Instant::now();
    let pki = tempfile::tempdir().expect("tempdir");
    let files = tls_files(pki.path());
    let other = Ca::new(pki.path(), "other");
    let cluster = RedisCluster::start_tls(3, files.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_another_ca_fails_closed(&cluster_location(&cluster), &files, &other.ca_file());
    drop(cluster);
    let set = SentinelSet::start_tls(files.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_another_ca_fails_closed(&sentinel_location(&set), &files, &other.ca_file());
    eprintln!("another CA over TLS: test took {:?}", started.elapsed());
}
