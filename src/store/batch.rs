//! [`ReadBatcher`]: strict mode's request-path reads, coalesced into one pipeline per
//! scheduler tick.
//!
//! Every request in strict mode must read what decides it from Redis *after* it started, so
//! that a write acknowledged before the request is seen. Reads from concurrent requests do not
//! have to travel separately for that: a request adds its commands to the pending batch, and a
//! flusher task takes the whole batch (after letting the requests that are ready to run add
//! theirs) and sends it as one pipeline. Identical commands in a batch (the same credential
//! and owner read by several requests at once) are sent once and their reply shared.
//!
//! Why this keeps the strict guarantee: a command joins only a batch that has not been taken
//! yet, and a batch is written to Redis only after it is taken, so every reply a request
//! receives was read by Redis after that request had started. A batch already on its way
//! is never joined.
//!
//! What it saves: per request, the pipeline, channel and wake-up work of redis-rs and the
//! write/read system calls shrink to a share of one per batch; Redis parses and executes a
//! hot credential's reads once per batch instead of once per request.
//!
//! Failure: each batch has the store's deadline; a timeout or a connection error fails every
//! request of that batch (503 upstream of here), and the next batch tries again: over its own
//! connection (wire.rs), on a new one after any failure; through redis-rs, on a new one if
//! the old one no longer answers a `PING` after a timeout (connection.rs). An error reply to
//! one command (e.g. `WRONGTYPE` on a corrupt key) fails only the requests that asked for it.
//!
//! How a batch travels depends on the topology:
//! - **One server on plain TCP** (`redis://`): the flusher sends each batch itself over a
//!   connection of its own and parses the replies (wire.rs), one batch at a time: the next
//!   batch forms while one is on its way, and is sent when its replies are in. A request
//!   waits for at most one deadline from the moment its batch opened (the batch queued behind
//!   a stalled one fails at its own deadline, unsent, not one deadline after the stalled
//!   one's).
//! - **TLS, a Unix socket, Sentinel**: one pipeline through redis-rs's multiplexed
//!   connection, on a task of its own per batch, so several can be on their way at once.
//! - **Cluster**: the batch cannot be one pipeline (the crate refuses keys from several slots
//!   in one); its distinct commands go out at once, each to its node, which redis-rs
//!   pipelines per node connection. Identical reads are still sent once.

use super::commands::{self, Read};
use super::connection::{Connection, REPLACE_INTERVAL};
use super::wire::{WireConnection, WireTarget};
use super::StoreError;
use redis::{Cmd, Pipeline, RedisError, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What one flushed batch got back: a reply (or that command's own error) per distinct
/// command, or why the batch got none.
type Replies = Result<Vec<Result<Value, RedisError>>, StoreError>;

/// How many of a batch's distinct commands a new command is compared with for dedup. A
/// batch holds one or two commands per waiting request, and a hot credential's reads come
/// early in it; past this, commands are sent as they come. A short linear scan of
/// fingerprints is cheaper than a hash table for the batch sizes seen (BENCHMARKS.md), and
/// cannot be made to degrade.
const DEDUP_SCAN: usize = 64;

/// The batch being filled.
struct Batch {
    /// The distinct commands, back to back, as they go to Redis (RESP).
    packed: Vec<u8>,
    /// Where each distinct command ends in `packed`, and its fingerprint (a fingerprint
    /// shared by two different commands only costs the dedup of the second).
    commands: Vec<(usize, u64)>,
    /// Where the replies are published, once, for every request of this batch.
    outcome: Arc<Outcome>,
    /// How long a batch may take (what a batch dropped unanswered reports).
    timeout: Duration,
    /// When its first command came (the one-server flusher's deadline counts from there).
    opened: Option<Instant>,
}

impl Batch {
    fn new(timeout: Duration) -> Batch {
        Batch {
            packed: Vec::with_capacity(512),
            commands: Vec::with_capacity(8),
            outcome: Arc::new(Outcome::default()),
            timeout,
            opened: None,
        }
    }

    /// Gives every request of this batch `replies`.
    fn publish(&self, replies: Replies) {
        self.outcome.publish(replies);
    }

    /// Adds `read` unless the batch already holds the same command; its position either way.
    fn add(&mut self, read: &Read<'_>) -> usize {
        let start = self.packed.len();
        read.write_resp(&mut self.packed);
        let added = &self.packed[start..];
        let fingerprint = fingerprint(added);
        let mut held_start = 0;
        let same =
            self.commands
                .iter()
                .take(DEDUP_SCAN)
                .position(|&(held_end, held_fingerprint)| {
                    let held = &self.packed[held_start..held_end];
                    held_start = held_end;
                    held_fingerprint == fingerprint && held == added
                });
        match same {
            Some(position) => {
                self.packed.truncate(start);
                position
            }
            None => {
                self.commands.push((self.packed.len(), fingerprint));
                self.commands.len() - 1
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Its distinct commands as redis-rs commands, for the topologies that send through
    /// redis-rs (parsed back from `packed`, which this batch wrote itself).
    fn to_cmds(&self) -> Result<Vec<Cmd>, RedisError> {
        let mut start = 0;
        self.commands
            .iter()
            .map(|&(end, _)| {
                let packed = &self.packed[start..end];
                start = end;
                commands::cmd_from_packed(packed)
            })
            .collect()
    }
}

impl Drop for Batch {
    /// A batch dropped unanswered (its task died, or the flusher ended before sending it)
    /// fails its requests rather than leaving them waiting.
    fn drop(&mut self) {
        if self.outcome.replies.get().is_none() {
            self.outcome.publish(Err(StoreError::Timeout(self.timeout)));
        }
    }
}

/// Where a batch's replies are published, once, for every request in it: a value set once
/// and one `Notify`. (A `watch` channel, before, keeps eight wait lists and a version per
/// value; replacing it saved about 700 instructions a strict request: BENCHMARKS.md.)
#[derive(Default)]
struct Outcome {
    replies: OnceLock<Replies>,
    published: Notify,
}

impl Outcome {
    fn publish(&self, replies: Replies) {
        // Only the first publication counts; a batch is published once.
        let _ = self.replies.set(replies);
        self.published.notify_waiters();
    }

    /// The replies, once published.
    async fn wait(&self) -> &Replies {
        loop {
            let notified = self.published.notified();
            tokio::pin!(notified);
            // Registered before the check, so a publication in between is not missed.
            notified.as_mut().enable();
            if let Some(replies) = self.replies.get() {
                return replies;
            }
            notified.await;
        }
    }
}

/// A hash of a packed command, eight bytes at a time (the multiply-rotate step of rustc's
/// FxHasher) rather than byte at a time (FNV-1a, before): commands are 40 to 120 bytes.
/// The packed form carries each argument's length, so argument boundaries count.
///
/// Not keyed, so a client could craft commands with equal fingerprints; that only costs
/// them their dedup ([`Batch::add`] compares the bytes).
fn fingerprint(packed: &[u8]) -> u64 {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mix = |hash: u64, word: u64| (hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    let mut words = packed.chunks_exact(8);
    let hash = words
        .by_ref()
        .fold(mix(0, packed.len() as u64), |hash, word| {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            mix(hash, u64::from_le_bytes(buf))
        });
    let tail = words.remainder();
    let mut buf = [0u8; 8];
    buf[..tail.len()].copy_from_slice(tail);
    mix(hash, u64::from_le_bytes(buf))
}

struct Shared {
    pending: Mutex<Batch>,
    wake: Notify,
    /// Set once the flusher has ended ([`FlusherExit`]): reads fail instead of waiting.
    stopped: AtomicBool,
    timeout: Duration,
}

impl Shared {
    /// The batch being filled, leaving an empty one in its place; `None` if it is empty.
    fn take_pending(&self) -> Option<Batch> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.is_empty() {
            return None;
        }
        Some(std::mem::replace(&mut *pending, Batch::new(self.timeout)))
    }
}

/// Coalesces concurrent reads into one pipeline (see the module docs). Shared by the store's
/// clones (`Arc`); the flusher task is aborted when it is dropped.
pub struct ReadBatcher {
    shared: Arc<Shared>,
    /// The flusher task, aborted when the batcher is dropped.
    flusher: tokio::task::AbortHandle,
}

/// The replies to one request's `N` commands, in the order it gave them.
pub struct Replied<const N: usize> {
    outcome: Arc<Outcome>,
    positions: [usize; N],
}

impl<const N: usize> Replied<N> {
    /// The reply to the request's `n`th command (`Nil` if the batch answered short).
    ///
    /// # Errors
    /// That command's own failure (a node of a cluster was unreachable, an error reply).
    pub fn get(&self, n: usize) -> Result<&Value, StoreError> {
        const NIL: &Value = &Value::Nil;
        match (self.outcome.replies.get(), self.positions.get(n)) {
            (Some(Ok(values)), Some(&position)) => match values.get(position) {
                Some(Ok(value)) => Ok(value),
                Some(Err(e)) => Err(StoreError::Redis(e.clone())),
                None => Ok(NIL),
            },
            _ => Ok(NIL),
        }
    }
}

impl ReadBatcher {
    /// A batcher sending each batch within `timeout`: itself over a connection of its own
    /// to `wire` when that is given (one server on plain TCP), else on `conn`. Spawns its
    /// flusher on the current Tokio runtime (so it must be called inside one).
    pub fn start(conn: Connection, wire: Option<WireTarget>, timeout: Duration) -> ReadBatcher {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Batch::new(timeout)),
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
            timeout,
        });
        let flusher = match wire {
            Some(target) => {
                let wire = WireConnection::new(target);
                tokio::spawn(flush_over_wire(Arc::clone(&shared), wire)).abort_handle()
            }
            None => tokio::spawn(flush(Arc::clone(&shared), conn)).abort_handle(),
        };
        ReadBatcher { shared, flusher }
    }

    /// Sends `commands` (moved into the batch) with the next batch and waits for their
    /// replies.
    ///
    /// No timer of its own: the wait is bounded by the batch's deadline, because the flusher
    /// takes a batch as soon as it can run (on its own connection, once the batch ahead of
    /// it is answered, and within the deadline counted from when the batch opened), every
    /// taken batch publishes its outcome within the deadline (a batch dropped unanswered, if
    /// its task dies, fails its requests), and a flusher that stops fails the batch it leaves
    /// behind ([`FlusherExit`]). A timer per request cost about 1,100 instructions of strict
    /// mode's warm path (BENCHMARKS.md).
    ///
    /// # Errors
    /// [`StoreError::Timeout`] or [`StoreError::Redis`] when the batch failed.
    pub async fn read<const N: usize>(
        &self,
        commands: [Read<'_>; N],
    ) -> Result<Replied<N>, StoreError> {
        let (positions, outcome, first) = {
            let mut guard = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if self.shared.stopped.load(Ordering::Acquire) {
                // The flusher is gone (see FlusherExit): nothing would send this batch.
                return Err(StoreError::Timeout(self.shared.timeout));
            }
            let batch = &mut *guard;
            let first = batch.is_empty();
            if first {
                batch.opened = Some(Instant::now());
            }
            let positions = commands.map(|read| batch.add(&read));
            (positions, Arc::clone(&batch.outcome), first)
        };
        if first {
            self.shared.wake.notify_one();
        }
        if let Err(e) = outcome.wait().await {
            return Err(match e {
                StoreError::Timeout(t) => StoreError::Timeout(*t),
                StoreError::Redis(e) => StoreError::Redis(e.clone()),
                StoreError::Corrupt { key, problem } => StoreError::Corrupt {
                    key: key.clone(),
                    problem: problem.clone(),
                },
                StoreError::Unconfirmed { pending, waited } => StoreError::Unconfirmed {
                    pending: *pending,
                    waited: *waited,
                },
            });
        }
        Ok(Replied { outcome, positions })
    }
}

impl ReadBatcher {
    /// Whether the flusher has ended (see [`FlusherExit`]): every read now fails.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }
}

impl Drop for ReadBatcher {
    fn drop(&mut self) {
        self.flusher.abort();
    }
}

/// The flusher: wakes when a batch gets its first command, lets every request that is ready
/// to run add its own, then takes the batch and sends it on a task of its own (so the next
/// batch can form meanwhile).
async fn flush(shared: Arc<Shared>, conn: Connection) {
    let _exit = FlusherExit(Arc::clone(&shared));
    loop {
        shared.wake.notified().await;
        tokio::task::yield_now().await;
        let Some(batch) = shared.take_pending() else {
            continue;
        };
        let mut conn = conn.clone();
        let timeout = shared.timeout;
        tokio::spawn(async move {
            let replies = match tokio::time::timeout(timeout, send(&mut conn, &batch)).await {
                Ok(replies) => replies,
                Err(_) => Err(StoreError::Timeout(timeout)),
            };
            // On a cluster each command fails on its own, so a node's timeout shows in its
            // commands' replies rather than as the batch's.
            let timed_out = match &replies {
                Err(e) => e.is_timeout(),
                Ok(values) => values
                    .iter()
                    .any(|value| value.as_ref().is_err_and(RedisError::is_timeout)),
            };
            if timed_out {
                conn.suspect();
            }
            batch.publish(replies);
        });
    }
}

/// The one-server flusher: sends each batch itself over its own connection (wire.rs) and
/// publishes the replies, one batch at a time; the batch that formed meanwhile goes next,
/// without waiting for a wake-up. While nothing is pending it watches the idle connection,
/// so that one closed by the server is dropped before a batch is written into it.
async fn flush_over_wire(shared: Arc<Shared>, mut wire: WireConnection) {
    let _exit = FlusherExit(Arc::clone(&shared));
    let timeout = shared.timeout;
    // Connections dropped after a timeout since the last warning, and when that was: a stalled
    // Redis times out every batch, and one line a second says as much as one per batch.
    let (mut dropped, mut warned) = (0u64, None::<Instant>);
    loop {
        let batch = match shared.take_pending() {
            Some(batch) => batch,
            None => {
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = wire.closed_while_idle() => {
                        log::info!("strict reads: Redis closed the idle connection; the next batch connects anew");
                        continue;
                    }
                }
                // Let every request that is ready to run add its commands first.
                tokio::task::yield_now().await;
                match shared.take_pending() {
                    Some(batch) => batch,
                    None => continue,
                }
            }
        };
        let deadline = batch.opened.unwrap_or_else(Instant::now) + timeout;
        if Instant::now() >= deadline {
            // It waited out its deadline behind a batch that took it all: not sent.
            batch.publish(Err(StoreError::Timeout(timeout)));
            continue;
        }
        let replies = match tokio::time::timeout_at(
            deadline.into(),
            wire.exchange(&batch.packed, batch.commands.len()),
        )
        .await
        {
            Ok(Ok(values)) => Ok(values.into_iter().map(Ok).collect()),
            Ok(Err(e)) => Err(StoreError::Redis(e)),
            Err(_) => {
                // Its replies may still come: they would be read as the next batch's.
                if wire.disconnect() {
                    dropped += 1;
                    if warned.is_none_or(|at| at.elapsed() >= REPLACE_INTERVAL) {
                        log::warn!(
                            "strict reads: Redis did not answer within {timeout:?}; dropped the connection, the next batch connects anew ({dropped} dropped since the last such line)"
                        );
                        (dropped, warned) = (0, Some(Instant::now()));
                    }
                }
                Err(StoreError::Timeout(timeout))
            }
        };
        batch.publish(replies);
    }
}

/// Fails the batch left pending when the flusher ends (aborted with its batcher, or a panic), so
/// that no request waits on a batch nobody will send: the dropped batch publishes
/// [`StoreError::Timeout`] to its requests, and later reads fail at once (`stopped`).
struct FlusherExit(Arc<Shared>);

impl Drop for FlusherExit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            log::error!("the strict-mode read flusher panicked; strict reads now fail (503)");
        }
        self.0.stopped.store(true, Ordering::Release);
        drop(self.0.take_pending());
    }
}

/// One pipeline on one server; on a cluster (whose crate refuses a pipeline spanning slots)
/// every command at once, each to its node, so one unreachable node fails only the requests
/// that read from it.
async fn send(conn: &mut Connection, batch: &Batch) -> Replies {
    let commands = batch.to_cmds().map_err(StoreError::Redis)?;
    if conn.is_cluster() {
        let queries = commands.into_iter().map(|cmd| {
            let mut conn = conn.clone();
            async move { cmd.query_async::<Value>(&mut conn).await }
        });
        return Ok(futures_util::future::join_all(queries).await);
    }
    let mut pipeline = Pipeline::with_capacity(commands.len());
    pipeline.ignore_errors();
    for cmd in commands {
        pipeline.add_command(cmd);
    }
    let values: Vec<Value> = pipeline
        .query_async(conn)
        .await
        .map_err(StoreError::Redis)?;
    Ok(values.into_iter().map(Ok).collect())
}

#[cfg(test)]
mod tests {
    use crate::conf::Conf;
    use crate::store::commands::Joined;
    use crate::store::{Store, StoreError};
    use crate::testkit::redis::RedisServer;
    use std::path::Path;
    use std::time::{Duration, Instant};

    /// A private Redis and the gateway's strict store on it (deadline `timeout_ms`).
    fn setup(timeout_ms: u64) -> (RedisServer, Store, redis::Client) {
        let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
        let text = format!(
            "listen: 127.0.0.1:1\nredis: {{url: '{}', timeout_ms: {timeout_ms}}}\n\
             roles: [{{name: admin, permissions: ['*']}}]\n\
             routes: [{{name: r, path_prefix: /, upstream: '127.0.0.1:1'}}]\n",
            redis.url()
        );
        let conf = Conf::parse(Path::new("test.yaml"), &text).expect("conf");
        let store = Store::for_gateway(&conf.redis, 0).expect("store");
        let client = redis::Client::open(redis.url()).expect("client");
        (redis, store, client)
    }

    /// How many times Redis has run `command` (from `INFO commandstats`).
    fn calls(client: &redis::Client, command: &str) -> u64 {
        let mut conn = client.get_connection().expect("connection");
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut conn)
            .expect("info");
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().expect("a count"))
    }

    fn hset(client: &redis::Client, key: &str, field: &str, value: &str) {
        let mut conn = client.get_connection().expect("connection");
        let _: () = redis::cmd("HSET")
            .arg(key)
            .arg(field)
            .arg(value)
            .query(&mut conn)
            .expect("hset");
    }

    fn hmget(key: &str) -> super::Read<'_> {
        super::Read::liveness(Joined::one(key))
    }

    fn packed(read: super::Read<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        read.write_resp(&mut out);
        out
    }

    #[test]
    fn a_batch_sends_a_command_once_and_never_merges_different_ones() {
        let mut batch = super::Batch::new(std::time::Duration::from_secs(1));
        assert_eq!(batch.add(&hmget("a")), 0);
        assert_eq!(batch.add(&hmget("b")), 1);
        assert_eq!(batch.add(&hmget("a")), 0);
        // A fingerprint that collides with another command's is told apart by its bytes.
        batch.commands[0].1 = super::fingerprint(&packed(hmget("c")));
        assert_eq!(batch.add(&hmget("c")), 2);
        assert_eq!(batch.add(&hmget("c")), 2);
        assert_eq!(batch.commands.len(), 3);
        // What goes to Redis: each distinct command once, in order.
        let expected = [packed(hmget("a")), packed(hmget("b")), packed(hmget("c"))].concat();
        assert_eq!(batch.packed, expected);
        // And what goes through redis-rs on the other topologies is the same.
        let cmds = batch.to_cmds().expect("parses back");
        let repacked: Vec<u8> = cmds
            .iter()
            .flat_map(|cmd| cmd.get_packed_command())
            .collect();
        assert_eq!(repacked, expected);
        // Past the scanned commands, a command is sent again rather than compared.
        let mut long = super::Batch::new(std::time::Duration::from_secs(1));
        let keys: Vec<String> = (0..super::DEDUP_SCAN).map(|n| n.to_string()).collect();
        for (n, key) in keys.iter().enumerate() {
            assert_eq!(long.add(&hmget(key)), n);
        }
        let late = super::DEDUP_SCAN;
        assert_eq!(long.add(&hmget("late")), late);
        assert_eq!(long.add(&hmget("late")), late + 1);
        assert_eq!(long.add(&hmget("0")), 0);
    }

    #[test]
    fn fingerprints_follow_every_byte_and_every_argument_boundary() {
        let cmd = |key: &str, org: &str| {
            super::fingerprint(&packed(super::Read::access(Joined::one(key), org)))
        };
        let key = "patgate:user:alice";
        assert_eq!(cmd(key, "acme"), cmd(key, "acme"));
        // A change in the last byte of a word, of a tail, and a moved boundary.
        assert_ne!(cmd(key, "acme"), cmd("patgate:user:alicf", "acme"));
        assert_ne!(cmd(key, "acme"), cmd(key, "acmf"));
        assert_ne!(cmd("ab", "c"), cmd("a", "bc"));
        // Zero padding of a tail is not the same as a zero byte.
        assert_ne!(super::fingerprint(b"a"), super::fingerprint(b"a\0"));
    }

    #[tokio::test]
    async fn every_waiter_gets_the_one_publication_and_a_dropped_batch_fails_them() {
        let published = super::Batch::new(Duration::from_millis(250));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let outcome = std::sync::Arc::clone(&published.outcome);
                tokio::spawn(async move { outcome.wait().await.as_ref().map(Vec::len).ok() })
            })
            .collect();
        tokio::task::yield_now().await;
        published.publish(Ok(vec![Ok(redis::Value::Nil)]));
        // A second publication changes nothing.
        published.publish(Ok(Vec::new()));
        for waiter in waiters {
            assert_eq!(waiter.await.expect("task"), Some(1));
        }
        // Published before anyone waits: seen at once.
        assert!(published.outcome.wait().await.is_ok());

        let dropped = super::Batch::new(Duration::from_millis(250));
        let outcome = std::sync::Arc::clone(&dropped.outcome);
        let waiter = tokio::spawn(async move {
            matches!(outcome.wait().await, Err(StoreError::Timeout(t)) if t.as_millis() == 250)
        });
        tokio::task::yield_now().await;
        drop(dropped);
        assert!(
            waiter.await.expect("task"),
            "the dropped batch's waiter got a timeout"
        );
    }

    #[tokio::test]
    async fn once_the_flusher_has_ended_a_read_fails_at_once_instead_of_waiting_forever() {
        let (_redis, store, _client) = setup(2000);
        store
            .access("dave", "acme")
            .await
            .expect("the flusher runs");
        let reads = store
            .reads
            .as_ref()
            .expect("a strict gateway store batches");
        assert!(!store.strict_reads_stopped());
        reads.flusher.abort();
        // The abort takes effect when the runtime next polls the flusher; until then a read
        // is still answered. No read may hang: each gets a second.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let read = tokio::time::timeout(Duration::from_secs(1), store.access("dave", "acme"));
            match read.await {
                Err(_) => panic!("a read waited on a batch that no flusher will send"),
                Ok(Err(StoreError::Timeout(_))) => {
                    assert!(store.strict_reads_stopped(), "/readyz would report it");
                    break;
                }
                Ok(other) => {
                    assert!(Instant::now() < deadline, "still answered: {other:?}");
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    #[tokio::test]
    async fn concurrent_reads_of_one_credential_share_one_command() {
        let (_redis, store, client) = setup(2000);
        hset(&client, "patgate:cred:pat_AAAAAA", "hash", "h1");
        hset(&client, "patgate:user:alice", "status", "active");
        hset(&client, "patgate:user:alice", "org:acme", "member");
        let before = calls(&client, "hmget");
        let reads = (0..10).map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .liveness_and_access("pat_AAAAAA", "alice", "acme")
                    .await
            })
        });
        for read in futures_util::future::join_all(reads).await {
            let (live, access) = read.expect("task").expect("read");
            assert_eq!(live.expect("record").hash, "h1");
            assert_eq!(access.role.as_deref(), Some("member"));
        }
        // 10 requests, 2 HMGETs each: the batch sent each distinct command once.
        assert_eq!(calls(&client, "hmget") - before, 2);
    }

    #[tokio::test]
    async fn a_write_acknowledged_before_a_read_is_seen_by_it() {
        let (_redis, store, client) = setup(2000);
        hset(&client, "patgate:user:bob", "status", "active");
        hset(&client, "patgate:user:bob", "org:acme", "admin");
        for role in ["viewer", "member", "admin", "viewer"] {
            hset(&client, "patgate:user:bob", "org:acme", role);
            let access = store.access("bob", "acme").await.expect("read");
            assert_eq!(access.role.as_deref(), Some(role));
        }
    }

    #[tokio::test]
    async fn an_error_reply_fails_only_the_request_that_asked_for_it() {
        let (_redis, store, client) = setup(2000);
        let mut conn = client.get_connection().expect("connection");
        let _: () = redis::cmd("SET")
            .arg("patgate:user:broken")
            .arg("not a hash")
            .query(&mut conn)
            .expect("set");
        hset(&client, "patgate:user:carol", "status", "active");
        let before = calls(&client, "hmget");
        let (broken, fine) = tokio::join!(
            store.access("broken", "acme"),
            store.access("carol", "acme")
        );
        assert!(
            matches!(broken, Err(StoreError::Redis(_))),
            "WRONGTYPE: {broken:?}"
        );
        assert_eq!(
            fine.expect("carol").status,
            Some(crate::store::UserStatus::Active)
        );
        // Both went in one batch, so its error reply did not spill over.
        assert_eq!(calls(&client, "hmget") - before, 2);
    }

    #[tokio::test]
    async fn a_stalled_redis_fails_the_batch_within_the_deadline_and_the_next_one_succeeds() {
        let (redis, store, client) = setup(300);
        hset(&client, "patgate:user:dave", "status", "active");
        store.access("dave", "acme").await.expect("warm connection");
        redis.stop().expect("SIGSTOP");
        let started = Instant::now();
        let stalled = store.access("dave", "acme").await;
        let waited = started.elapsed();
        redis.resume().expect("SIGCONT");
        // The store's deadline or redis-rs's response timeout, whichever fired first.
        assert!(
            stalled.as_ref().is_err_and(StoreError::is_timeout),
            "{stalled:?}"
        );
        assert!(waited < Duration::from_millis(1300), "waited {waited:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match store.access("dave", "acme").await {
                Ok(access) => {
                    assert_eq!(access.status, Some(crate::store::UserStatus::Active));
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("not yet: {e}");
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("Redis is back but reads still fail: {e}"),
            }
        }
    }
}
