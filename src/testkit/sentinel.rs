//! [`SentinelSet`]: a primary, a replica (`--replicaof`) and three `redis-server --sentinel`
//! processes watching them, each a private [`RedisServer`] on a free loopback port, killed
//! and reaped on drop (also when the start fails half-way). Failure detection is shortened
//! (`down-after-milliseconds 1000`, `failover-timeout 5000`) so a failover takes seconds.
//!
//! [`SentinelSet::start_tls`] makes every process speak only TLS, replication and the
//! Sentinels' own links included (`tls-replication yes`), so the Sentinels name the TLS ports.
//! [`SentinelSet::start_with_primary_password`] protects the primary and the replica with a
//! password the Sentinels do not ask for themselves.

use super::redis::{ExtraArgs, RedisServer, RedisStartError, TlsFiles};
use std::path::Path;
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
        SentinelSet::start_inner(None, None)
    }

    /// As [`SentinelSet::start`], the primary and the replica requiring `password` (the
    /// Sentinels are given it with `sentinel auth-pass`) while the Sentinels require none: the
    /// usual production shape, where a client needs one set of credentials for the Sentinels
    /// and another for the primary.
    ///
    /// # Errors
    /// As [`SentinelSet::start`].
    pub fn start_with_primary_password(password: &str) -> Result<SentinelSet, RedisStartError> {
        SentinelSet::start_inner(None, Some(password))
    }

    /// As [`SentinelSet::start`], every process serving TLS only with `files` (one
    /// certificate for all, naming 127.0.0.1); the Sentinels reach the primary, the replica
    /// and each other over TLS, and the readiness checks speak TLS trusting `files.ca_file`.
    ///
    /// # Errors
    /// As [`SentinelSet::start`].
    pub fn start_tls(files: TlsFiles) -> Result<SentinelSet, RedisStartError> {
        SentinelSet::start_inner(Some(files), None)
    }

    fn start_inner(
        tls: Option<TlsFiles>,
        password: Option<&str>,
    ) -> Result<SentinelSet, RedisStartError> {
        // Over TLS every link is TLS: the replica's to the primary, and the Sentinels' to
        // the data servers and to each other (Sentinel uses `tls-replication` for all).
        let tls_links = || -> Vec<std::ffi::OsString> {
            match tls {
                Some(_) => vec!["--tls-replication".into(), "yes".into()],
                None => Vec::new(),
            }
        };
        let start = |args: &dyn Fn(&Path, u16) -> std::io::Result<ExtraArgs>| match &tls {
            None => RedisServer::start_with_args(args),
            Some(files) => RedisServer::start_tls_with_args(files.clone(), args),
        };
        let start_data = |args: &dyn Fn(&Path, u16) -> std::io::Result<ExtraArgs>| match password {
            Some(password) => RedisServer::start_with_password_and_args(password, args),
            None => start(args),
        };
        let primary = start_data(&|_, _| Ok((Vec::new(), tls_links())))?;
        let primary_port = primary.port();
        let replica = start_data(&|_, _| {
            let mut trailing = vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary_port.to_string().into(),
            ];
            trailing.extend(tls_links());
            Ok((Vec::new(), trailing))
        })?;
        let mut set = SentinelSet {
            data: vec![primary, replica],
            sentinels: Vec::new(),
        };
        set.wait("the replica's link to the primary", |set| {
            info(&set.data[1], "replication").contains("master_link_status:up")
        })?;
        for _ in 0..3 {
            set.sentinels.push(start(&|dir, port| {
                // Over TLS, RedisServer's own arguments (after this file) add `tls-port` and
                // the certificate files; the file turns plain TCP off and TLS links on.
                let listen = match tls {
                    None => format!("port {port}\n"),
                    Some(_) => "port 0\ntls-replication yes\n".to_string(),
                };
                let auth = password
                    .map(|password| format!("sentinel auth-pass {MASTER_NAME} {password}\n"))
                    .unwrap_or_default();
                let conf = dir.join("sentinel.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "{listen}\
                         sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
                         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                         sentinel failover-timeout {MASTER_NAME} 5000\n\
                         sentinel parallel-syncs {MASTER_NAME} 1\n\
                         {auth}"
                    ),
                )?;
                Ok((vec![conf.into_os_string()], vec!["--sentinel".into()]))
            })?);
        }
        set.wait("every sentinel to know the replica and the others", |set| {
            set.sentinels.iter().all(|s| {
                let master = sentinel_master(s);
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

    /// The Sentinels' URLs, `redis://127.0.0.1:<port>` (`rediss://` over TLS).
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::node_url).collect()
    }

    /// The port of the primary as the first Sentinel that answers names it now.
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let addr: Option<(String, String)> = s
                .connection(Duration::from_millis(500))
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

    /// Every process: the two data servers, then the Sentinels.
    pub fn servers(&self) -> impl Iterator<Item = &RedisServer> {
        self.data.iter().chain(&self.sentinels)
    }

    /// The data server (primary or replica) on `port`.
    pub fn data_server(&mut self, port: u16) -> Option<&mut RedisServer> {
        self.data.iter_mut().find(|s| s.port() == port)
    }

    /// Waits until the replica has acknowledged every write so far (`WAIT 1`), so a failover
    /// loses nothing the test wrote. Returns how many replicas acknowledged.
    pub fn sync_replica(&self) -> u64 {
        let Some(primary) = self
            .primary_port()
            .and_then(|port| self.data.iter().find(|s| s.port() == port))
        else {
            return 0;
        };
        primary
            .connection(Duration::from_millis(500))
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

fn info(server: &RedisServer, section: &str) -> String {
    server
        .connection(Duration::from_millis(500))
        .and_then(|mut conn| redis::cmd("INFO").arg(section).query(&mut conn))
        .unwrap_or_default()
}

/// `SENTINEL MASTER <name>` as "field\nvalue\n…" text (empty when unanswered).
fn sentinel_master(sentinel: &RedisServer) -> String {
    sentinel
        .connection(Duration::from_millis(500))
        .and_then(|mut conn| {
            redis::cmd("SENTINEL")
                .arg("MASTER")
                .arg(MASTER_NAME)
                .query::<Vec<String>>(&mut conn)
        })
        .map(|fields| fields.join("\n"))
        .unwrap_or_default()
}
