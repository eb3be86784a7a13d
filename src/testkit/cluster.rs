//! [`RedisCluster`]: a real Redis Cluster of private `redis-server --cluster-enabled yes`
//! processes on free loopback ports, joined with `redis-cli --cluster create`. Every node
//! is a [`RedisServer`], so each is killed and reaped on drop, also when the start fails
//! half-way (the nodes already running are dropped with the error).
//!
//! [`RedisCluster::start_tls`] makes the same cluster speak only TLS: clients, the cluster
//! bus (`--tls-cluster yes`) and replication (`--tls-replication yes`), so `CLUSTER SLOTS`
//! names the TLS ports and the nodes' `rediss://` URLs are the only way in.
//!
//! [`RedisCluster::behind_relays`] puts a [`Relay`] in front of every node and makes the
//! cluster announce the relays, so a test can silence one node's client connections.

use super::redis::{RedisServer, RedisStartError, TlsFiles};
use super::relay::Relay;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running cluster: primaries, and optionally replicas for failover.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `primaries` cluster-enabled servers, assigns all 16384 slots among them
    /// (`redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`) and waits until
    /// every node reports `cluster_state:ok` (20 s deadline).
    ///
    /// # Errors
    /// A node did not start, `redis-cli` failed (its output is attached), or the cluster did
    /// not become ready (the node logs are attached).
    pub fn start(primaries: usize) -> Result<RedisCluster, RedisStartError> {
        RedisCluster::start_with_replicas(primaries, 0)
    }

    /// As [`RedisCluster::start`], with `replicas` replicas per primary
    /// (`--cluster-replicas`), so that a killed primary is failed over by the cluster itself;
    /// also waits until every replica's link to its primary is up.
    ///
    /// # Errors
    /// As [`RedisCluster::start`].
    pub fn start_with_replicas(
        primaries: usize,
        replicas: usize,
    ) -> Result<RedisCluster, RedisStartError> {
        RedisCluster::start_inner(primaries, replicas, None)
    }

    /// As [`RedisCluster::start`], every node serving TLS only with `files` (one certificate
    /// for all, naming 127.0.0.1), the bus and replication included; `redis-cli --tls`
    /// creates the cluster and the readiness checks speak TLS trusting `files.ca_file`.
    ///
    /// # Errors
    /// As [`RedisCluster::start`].
    pub fn start_tls(primaries: usize, files: TlsFiles) -> Result<RedisCluster, RedisStartError> {
        RedisCluster::start_inner(primaries, 0, Some(files))
    }

    fn start_inner(
        primaries: usize,
        replicas: usize,
        tls: Option<TlsFiles>,
    ) -> Result<RedisCluster, RedisStartError> {
        let total = primaries * (1 + replicas);
        let mut nodes = Vec::with_capacity(total);
        for _ in 0..total {
            let args = |_: &std::path::Path, _: u16| {
                // The bus port is chosen free too: port + 10000 may be above 65535.
                let bus = super::free_port()?.to_string();
                let mut trailing = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    &bus,
                ];
                if tls.is_some() {
                    trailing.extend(["--tls-cluster", "yes", "--tls-replication", "yes"]);
                }
                Ok((Vec::new(), trailing.into_iter().map(Into::into).collect()))
            };
            nodes.push(match &tls {
                None => RedisServer::start_with_args(args)?,
                Some(files) => RedisServer::start_tls_with_args(files.clone(), args)?,
            });
        }
        let cluster = RedisCluster { nodes };
        let cli = std::env::var("PATGATE_REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
        let mut command = Command::new(&cli);
        if let Some(files) = &tls {
            command.arg("--tls").arg("--cacert").arg(&files.ca_file);
        }
        let output = command
            .arg("--cluster")
            .arg("create")
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port())),
            )
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => RedisStartError::Missing(cli.clone()),
                _ => RedisStartError::Io(e),
            })?;
        if !output.status.success() {
            return Err(RedisStartError::Io(std::io::Error::other(format!(
                "redis-cli --cluster create failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster
            .nodes
            .iter()
            .all(|n| cluster_ok(n) && replica_link_up(n))
        {
            if Instant::now() > deadline {
                return Err(RedisStartError::NotReady {
                    port: cluster.nodes[0].port(),
                    log: cluster.logs(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(cluster)
    }

    /// The seed URLs, `redis://127.0.0.1:<port>` (`rediss://` over TLS) for every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::node_url).collect()
    }

    /// The nodes, for per-node assertions and faults.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The node on `port`, mutable (to kill it).
    pub fn node_mut(&mut self, port: u16) -> Option<&mut RedisServer> {
        self.nodes.iter_mut().find(|n| n.port() == port)
    }

    /// Puts a [`Relay`] in front of every node (returned in [`RedisCluster::nodes`]' order)
    /// and has each node announce its relay's port to clients (`cluster-announce-port`, while
    /// the bus stays direct: `cluster-announce-bus-port`), so a client that follows
    /// `CLUSTER SLOTS` reaches every node through its relay and [`Relay::silence`] makes one
    /// node's client connections go silent. Waits until every node names only relay ports
    /// (20 s deadline). Plain TCP clusters only.
    ///
    /// # Errors
    /// A relay could not listen, a node refused the config, or the announcement did not
    /// spread in time (the node logs are attached).
    pub fn behind_relays(&self) -> Result<Vec<Relay>, RedisStartError> {
        let mut relays = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let relay = Relay::start(([127, 0, 0, 1], node.port()).into())?;
            let mut conn = node
                .connection(Duration::from_secs(2))
                .map_err(|e| std::io::Error::other(format!("node {}: {e}", node.port())))?;
            let configured: redis::RedisResult<()> = (|| {
                let bus: Vec<String> = redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("cluster-port")
                    .query(&mut conn)?;
                let bus = bus.get(1).cloned().unwrap_or_default();
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("cluster-announce-bus-port")
                    .arg(bus)
                    .arg("cluster-announce-port")
                    .arg(relay.addr().port())
                    .query(&mut conn)
            })();
            configured.map_err(|e| std::io::Error::other(format!("node {}: {e}", node.port())))?;
            relays.push(relay);
        }
        let relayed: Vec<u16> = relays.iter().map(|r| r.addr().port()).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.nodes.iter().all(|n| {
            let ports = slot_owner_ports(n);
            !ports.is_empty() && ports.iter().all(|p| relayed.contains(p))
        }) {
            if Instant::now() > deadline {
                return Err(RedisStartError::NotReady {
                    port: self.nodes[0].port(),
                    log: format!(
                        "waiting for the relay ports in CLUSTER SLOTS\n{}",
                        self.logs()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(relays)
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- node {} ---\n{}", n.port(), n.log()))
            .collect()
    }
}

/// Whether `node` is a primary, or a replica whose link to its primary is up.
fn replica_link_up(node: &RedisServer) -> bool {
    let info = node
        .connection(Duration::from_millis(500))
        .and_then(|mut conn| {
            redis::cmd("INFO")
                .arg("replication")
                .query::<String>(&mut conn)
        });
    info.is_ok_and(|info| info.contains("role:master") || info.contains("master_link_status:up"))
}

/// Whether `node` answers `CLUSTER INFO` with `cluster_state:ok`.
fn cluster_ok(node: &RedisServer) -> bool {
    let info = node
        .connection(Duration::from_millis(500))
        .and_then(|mut conn| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut conn));
    info.is_ok_and(|info| info.contains("cluster_state:ok"))
}

/// The ports `node`'s `CLUSTER SLOTS` names for the slot owners (empty when unanswered).
fn slot_owner_ports(node: &RedisServer) -> Vec<u16> {
    let slots: Vec<redis::Value> = node
        .connection(Duration::from_millis(500))
        .and_then(|mut conn| redis::cmd("CLUSTER").arg("SLOTS").query(&mut conn))
        .unwrap_or_default();
    slots
        .iter()
        .filter_map(|range| match range {
            redis::Value::Array(parts) => match parts.get(2) {
                Some(redis::Value::Array(owner)) => owner
                    .get(1)
                    .and_then(|port| redis::from_redis_value_ref::<u16>(port).ok()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
