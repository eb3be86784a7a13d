//! [`SentinelSet`]: a primary, a replica (`--replicaof`) and three `redis-server --sentinel`
//! processes watching them, each a private [`RedisServer`] on a free loopback port, killed
//! and reaped on drop (also when the start fails half-way). Failure detection is shortened
//! (`down-after-milliseconds 1000`, `failover-timeout 5000`) so a failover takes seconds.

use super::redis::{RedisServer, RedisStartError};
use std::time::{Duration, Instant};

/// The name the Sentinels monitor the primary under.
pub const MASTER_NAME: &str = "patgate";

/// A running primary/replica pair with three Sentinels.
pub struct SentinelSet {
    /// The primary and the replica, in start order (which one is primary changes on failover).
    data: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
}

impl SentinelSet {
    /// Starts the primary, the replica (waits for its link to be up), then three Sentinels,
    /// and waits until each knows the replica and the other two Sentinels (20 s deadline).
    ///
    /// # Errors
    /// A process did not start, or the set did not become ready (logs attached).
    pub fn start() -> Result<SentinelSet, RedisStartError> {
        let primary = RedisServer::start()?;
        let primary_port = primary.port();
        let replica = RedisServer::start_with_args(|_, _| {
            Ok((
                Vec::new(),
                vec![
                    "--replicaof".into(),
                    "127.0.0.1".into(),
                    primary_port.to_string().into(),
                ],
            ))
        })?;
        let mut set = SentinelSet {
            data: vec![primary, replica],
            sentinels: Vec::new(),
        };
        set.wait("the replica's link to the primary", |set| {
            info(set.data[1].port(), "replication").contains("master_link_status:up")
        })?;
        for _ in 0..3 {
            set.sentinels
                .push(RedisServer::start_with_args(|dir, port| {
                    let conf = dir.join("sentinel.conf");
                    std::fs::write(
                        &conf,
                        format!(
                            "port {port}\n\
                             sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
                             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                             sentinel failover-timeout {MASTER_NAME} 5000\n\
                             sentinel parallel-syncs {MASTER_NAME} 1\n"
                        ),
                    )?;
                    Ok((vec![conf.into_os_string()], vec!["--sentinel".into()]))
                })?);
        }
        set.wait("every sentinel to know the replica and the others", |set| {
            set.sentinels.iter().all(|s| {
                let master = sentinel_master(s.port());
                master.contains("num-slaves\n1") && master.contains("num-other-sentinels\n2")
            })
        })?;
        Ok(set)
    }

    fn wait(
        &self,
        what: &str,
        ready: impl Fn(&SentinelSet) -> bool,
    ) -> Result<(), RedisStartError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready(self) {
            if Instant::now() > deadline {
                return Err(RedisStartError::NotReady {
                    port: self.data[0].port(),
                    log: format!("waiting for {what}\n{}", self.logs()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The Sentinels' URLs, `redis://127.0.0.1:<port>`.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port()))
            .collect()
    }

    /// The port of the primary as the first Sentinel that answers names it now.
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let addr: Option<(String, String)> =
                redis::Client::open(format!("redis://127.0.0.1:{}", s.port()))
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
                    .and_then(|mut conn| {
                        redis::cmd("SENTINEL")
                            .arg("GET-MASTER-ADDR-BY-NAME")
                            .arg(MASTER_NAME)
                            .query(&mut conn)
                    })
                    .ok()
                    .flatten();
            addr.and_then(|(_, port)| port.parse().ok())
        })
    }

    /// The data server (primary or replica) on `port`.
    pub fn data_server(&mut self, port: u16) -> Option<&mut RedisServer> {
        self.data.iter_mut().find(|s| s.port() == port)
    }

    /// Waits until the replica has acknowledged every write so far (`WAIT 1`), so a failover
    /// loses nothing the test wrote. Returns how many replicas acknowledged.
    pub fn sync_replica(&self) -> u64 {
        let Some(port) = self.primary_port() else {
            return 0;
        };
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
            .and_then(|mut conn| redis::cmd("WAIT").arg(1).arg(2000).query(&mut conn))
            .unwrap_or(0)
    }

    /// Every process's log, for failure messages.
    pub fn logs(&self) -> String {
        self.data
            .iter()
            .chain(&self.sentinels)
            .map(|s| format!("--- {} ---\n{}", s.port(), s.log()))
            .collect()
    }
}

fn info(port: u16, section: &str) -> String {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut conn| redis::cmd("INFO").arg(section).query(&mut conn))
        .unwrap_or_default()
}

/// `SENTINEL MASTER <name>` as "field\nvalue\n…" text (empty when unanswered).
fn sentinel_master(port: u16) -> String {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut conn| {
            redis::cmd("SENTINEL")
                .arg("MASTER")
                .arg(MASTER_NAME)
                .query::<Vec<String>>(&mut conn)
        })
        .map(|fields| fields.join("\n"))
        .unwrap_or_default()
}
