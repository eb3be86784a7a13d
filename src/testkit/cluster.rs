//! [`RedisCluster`]: a real Redis Cluster of private `redis-server --cluster-enabled yes`
//! processes on free loopback ports, joined with `redis-cli --cluster create`. Every node
//! is a [`RedisServer`], so each is killed and reaped on drop, also when the start fails
//! half-way (the nodes already running are dropped with the error).

use super::redis::{RedisServer, RedisStartError};
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
        let total = primaries * (1 + replicas);
        let mut nodes = Vec::with_capacity(total);
        for _ in 0..total {
            nodes.push(RedisServer::start_with_args(|_, _| {
                // The bus port is chosen free too: port + 10000 may be above 65535.
                let bus = super::free_port()?.to_string();
                Ok((
                    Vec::new(),
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                        "--cluster-port",
                        &bus,
                    ]
                    .iter()
                    .map(Into::into)
                    .collect(),
                ))
            })?);
        }
        let cluster = RedisCluster { nodes };
        let cli = std::env::var("PATGATE_REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
        let output = Command::new(&cli)
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
            .all(|n| cluster_ok(n.port()) && replica_link_up(n.port()))
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

    /// The seed URLs, `redis://127.0.0.1:<port>` for every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port()))
            .collect()
    }

    /// The nodes, for per-node assertions and faults.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The node on `port`, mutable (to kill it).
    pub fn node_mut(&mut self, port: u16) -> Option<&mut RedisServer> {
        self.nodes.iter_mut().find(|n| n.port() == port)
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- node {} ---\n{}", n.port(), n.log()))
            .collect()
    }
}

/// Whether the node on `port` is a primary, or a replica whose link to its primary is up.
fn replica_link_up(port: u16) -> bool {
    let info = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut conn| {
            redis::cmd("INFO")
                .arg("replication")
                .query::<String>(&mut conn)
        });
    info.is_ok_and(|info| info.contains("role:master") || info.contains("master_link_status:up"))
}

/// Whether the node on `port` answers `CLUSTER INFO` with `cluster_state:ok`.
fn cluster_ok(port: u16) -> bool {
    let info = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut conn| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut conn));
    info.is_ok_and(|info| info.contains("cluster_state:ok"))
}
