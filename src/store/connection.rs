//! The connection behind [`super::Store`]: one type over the three Redis topologies, so every
//! typed operation is written once against redis-rs's `aio::ConnectionLike`.
//!
//! - **One server**: redis-rs's `ConnectionManager` (lazy, reconnects after a drop; in tracked
//!   mode RESP3 with `CLIENT TRACKING`, its pushes going to live.rs's record cache), inside a
//!   [`SingleConnection`] that replaces it when it goes silent: the manager reconnects only
//!   after an error, and a connection that simply stops answering (a partition, a dropped NAT
//!   entry) gives none until TCP gives up, many minutes later. After an operation times out,
//!   [`Connection::suspect`] sends a `PING`; unanswered within the deadline, the manager is
//!   replaced by a new one (at most once per [`REPLACE_INTERVAL`]), and in tracked mode the
//!   record cache is dropped with it, since invalidations sent to the old connection are lost.
//! - **Cluster**: redis-rs's async `ClusterConnection`. The crate routes each command to the
//!   node owning its key's slot, follows `MOVED`/`ASK`, refreshes the slot map after a
//!   failover, and in tracked mode forwards every node connection's pushes to the record
//!   cache. It refuses a pipeline whose keys span slots (CrossSlot, before anything is sent),
//!   so the store never builds one in cluster mode (see [`Connection::is_cluster`]). Like the
//!   manager, it retries a command that timed out on the same node connection and reconnects
//!   only after an error, so it sits in a [`ClusterHandle`] too: after a timeout a `PING` goes
//!   to every primary, and if it times out, the whole cluster connection is made anew.
//! - **Sentinel**: redis-rs finds the primary through the Sentinels (`SENTINEL MASTERS`, then
//!   `ROLE` on the candidate); [`SentinelConnection`] keeps one multiplexed connection to it
//!   and forgets it after a connection error, a timeout or a
//!   `READONLY`/`MASTERDOWN`/`LOADING`/`TRYAGAIN` reply,
//!   so the next request asks the Sentinels again. Nothing is retried inside a request: it
//!   fails closed (503) and the next one reconnects. In tracked mode each connection is RESP3
//!   with `CLIENT TRACKING`, and forgetting it drops the record cache: the keys it tracked die
//!   with it (and after a failover live on another server).
//!
//! Each operation's deadline (`redis.timeout_ms`) is enforced by the store around these
//! calls; the connect and response timeouts set here are the same value, so a connection
//! attempt cannot outlive it either.

use super::live::Invalidator;
use super::live::{LiveCache, HEARTBEAT_DEADLINE};
use crate::conf::{PrimaryAuth, RedisConf, Topology};
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::caching::CacheConfig;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    RedisResult, ServerErrorKind, TlsMode, Value,
};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The least time between two replacements of a silent connection (see [`Replaceable`]),
/// so a Redis that is stalled rather than gone is not flooded with new connections.
pub const REPLACE_INTERVAL: Duration = Duration::from_secs(1);

/// Entries of redis-rs's own client-side cache on a tracked connection (see
/// [`Connection::open`]). It holds whole replies (an `HGETALL` of a record is a few KB of
/// `Value`s) that patgate's own cache makes redundant, so it is kept tiny: at 1024 entries a
/// gateway with 100,000 cached credentials held 1.8 MiB more (BENCHMARKS.md, memory, seventh
/// run).
const REDIS_RS_CACHE_ENTRIES: usize = 16;

/// A cloneable handle on the gateway's Redis, whatever its topology.
#[derive(Clone)]
pub enum Connection {
    /// `redis.url`.
    Single(SingleConnection),
    /// `redis.cluster`.
    Cluster(ClusterHandle),
    /// `redis.sentinel`.
    Sentinel(SentinelConnection),
}

impl Connection {
    /// A lazy connection for `conf` (nothing is dialled until the first command). With
    /// `tracking`, a RESP3 connection with `CLIENT TRACKING` on (re-enabled by redis-rs on
    /// every reconnection) whose invalidation pushes, and a `Disconnection` push when it is
    /// lost, go to the [`Invalidator`]. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// A URL the redis crate refuses (conf.rs has checked them, so this is unexpected).
    pub fn open(conf: &RedisConf, tracking: Option<Invalidator>) -> RedisResult<Connection> {
        let certificates = conf.ca.as_ref().map(|ca| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.pem.clone()),
        });
        // redis-rs turns tracking on only for a connection with a client-side cache of its
        // own; patgate keeps the parsed records itself (live.rs), so this one stays small.
        let cache = || {
            let size = NonZeroUsize::new(REDIS_RS_CACHE_ENTRIES).expect("non-zero");
            CacheConfig::new().set_size(size)
        };
        let live = tracking
            .as_ref()
            .map(|invalidator| Arc::clone(&invalidator.0));
        match &conf.topology {
            Topology::Single { url } => {
                let mut config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(conf.timeout))
                    .set_response_timeout(Some(conf.timeout))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(Duration::from_millis(200));
                let mut info = url.as_str().into_connection_info()?;
                if let Some(invalidator) = tracking {
                    let resp3 = info
                        .redis_settings()
                        .clone()
                        .set_protocol(redis::ProtocolVersion::RESP3);
                    info = info.set_redis_settings(resp3);
                    config = config
                        .set_cache_config(cache())
                        .set_push_sender(invalidator);
                }
                let client = match certificates {
                    // rediss:// trusting a private CA instead of the system roots (conf.rs has
                    // checked the URL is rediss:// and the bundle parses).
                    Some(certificates) => redis::Client::build_with_tls(info, certificates)?,
                    None => redis::Client::open(info)?,
                };
                let make =
                    move || ConnectionManager::new_lazy_with_config(client.clone(), config.clone());
                Ok(Connection::Single(Replaceable::new(
                    Box::new(make),
                    conf.timeout.max(HEARTBEAT_DEADLINE),
                    live,
                )?))
            }
            Topology::Cluster { nodes } => {
                let mut builder = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(conf.timeout)
                    .response_timeout(conf.timeout)
                    // One retry, as for one server: a MOVED after a failover is followed
                    // within the same deadline; the store's timeout bounds the whole call.
                    .retries(1)
                    .min_retry_wait(10)
                    .max_retry_wait(100);
                if let Some(certificates) = certificates {
                    builder = builder.certs(certificates);
                }
                if let Some(invalidator) = tracking {
                    builder = builder
                        .use_protocol(redis::ProtocolVersion::RESP3)
                        .cache_config(cache())
                        .push_sender(invalidator);
                }
                let client = builder.build()?;
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(conf.timeout)
                    .set_response_timeout(conf.timeout);
                // Pending: the nodes are dialled in the background by the crate's own task,
                // which also reconnects; the first commands wait for it within their deadline.
                let make =
                    move || Ok(client.get_pending_async_connection_with_config(config.clone()));
                Ok(Connection::Cluster(Replaceable::new(
                    Box::new(make),
                    conf.timeout.max(HEARTBEAT_DEADLINE),
                    live,
                )?))
            }
            Topology::Sentinel {
                nodes,
                master_name,
                primary_auth,
            } => {
                let tracking = tracking.map(|invalidator| SentinelTracking {
                    cache: cache(),
                    invalidator,
                });
                Ok(Connection::Sentinel(SentinelConnection::new(
                    nodes,
                    master_name,
                    primary_auth.as_ref(),
                    certificates,
                    conf.timeout,
                    tracking,
                )?))
            }
        }
    }

    /// An operation on this connection timed out: check that it still answers, and replace it
    /// if not (one server or a cluster; see [`Replaceable::suspect`]). A Sentinel connection
    /// is already forgotten after a timeout.
    pub fn suspect(&self) {
        match self {
            Connection::Single(conn) => conn.suspect(),
            Connection::Cluster(conn) => conn.suspect(),
            Connection::Sentinel(_) => {}
        }
    }

    /// Whether keys in one pipeline must share a hash slot (Redis Cluster).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Connection::Cluster(_))
    }

    /// The cluster's primaries as (host, port), from `CLUSTER SLOTS` (cluster only; empty
    /// otherwise).
    ///
    /// # Errors
    /// Redis error or an unexpected reply.
    pub async fn primaries(&mut self) -> RedisResult<Vec<(String, u16)>> {
        let Connection::Cluster(conn) = self else {
            return Ok(Vec::new());
        };
        let slots: Vec<Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn.current().1)
            .await?;
        let mut primaries = Vec::new();
        for range in slots {
            // [start, end, [host, port, id, ...], replicas...]
            let Value::Array(parts) = range else { continue };
            let Some(Value::Array(primary)) = parts.get(2) else {
                continue;
            };
            let host: Option<String> = primary
                .first()
                .and_then(|v| redis::from_redis_value_ref(v).ok());
            let port: Option<u16> = primary
                .get(1)
                .and_then(|v| redis::from_redis_value_ref(v).ok());
            if let (Some(host), Some(port)) = (host, port) {
                if !primaries.contains(&(host.clone(), port)) {
                    primaries.push((host, port));
                }
            }
        }
        Ok(primaries)
    }

    /// Runs `cmd` on the node at `host:port` (cluster only; elsewhere on the one server).
    ///
    /// # Errors
    /// Redis error.
    pub async fn on_node(&mut self, cmd: Cmd, host: &str, port: u16) -> RedisResult<Value> {
        match self {
            Connection::Cluster(conn) => {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.to_string(),
                    port,
                });
                conn.current().1.route_command(cmd, route).await
            }
            other => cmd.query_async(other).await,
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
            Connection::Sentinel(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Sentinel(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
            Connection::Sentinel(conn) => conn.get_db(),
        }
    }
}

/// A connection that is replaced when it goes silent (see the module docs): redis-rs's
/// `ConnectionManager` for one server, its `ClusterConnection` for a cluster. Both reconnect
/// by themselves after an error, but neither after a timeout, and a connection that simply
/// stops answering gives nothing else until TCP gives up.
#[derive(Clone)]
pub struct Replaceable<C> {
    shared: Arc<ReplaceableShared<C>>,
}

/// Makes a fresh (lazy) connection.
type MakeConnection<C> = Box<dyn Fn() -> RedisResult<C> + Send + Sync>;

struct ReplaceableShared<C> {
    make: MakeConnection<C>,
    /// The connection in use and its generation (so a late verdict cannot replace a newer one).
    current: Mutex<(u64, C)>,
    /// A `PING` probe is under way.
    probing: AtomicBool,
    /// When the connection was last replaced.
    replaced: Mutex<Option<Instant>>,
    /// How long the probe waits for `PONG`.
    probe_deadline: Duration,
    /// Tracked mode: the cache fed by this connection's invalidations.
    live: Option<Arc<LiveCache>>,
}

/// One server.
pub type SingleConnection = Replaceable<ConnectionManager>;

/// A Redis Cluster: on a cluster `PING` goes to every primary, so one silent node fails the
/// probe and the whole cluster connection (every node connection, and the slot map) is made
/// anew, dialling the seed nodes again.
pub type ClusterHandle = Replaceable<ClusterConnection>;

impl<C: Clone + ConnectionLike + Send + 'static> Replaceable<C> {
    fn new(
        make: MakeConnection<C>,
        probe_deadline: Duration,
        live: Option<Arc<LiveCache>>,
    ) -> RedisResult<Replaceable<C>> {
        let first = make()?;
        Ok(Replaceable {
            shared: Arc::new(ReplaceableShared {
                make,
                current: Mutex::new((0, first)),
                probing: AtomicBool::new(false),
                replaced: Mutex::new(None),
                probe_deadline,
                live,
            }),
        })
    }

    /// The connection in use (a cheap clone of a handle) and its generation.
    fn current(&self) -> (u64, C) {
        self.shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends `PING` on the current connection (one probe at a time, on a task of its own)
    /// and replaces the connection if the `PING` times out: no `PONG` within the deadline,
    /// or redis-rs's own response timeout. Called after an operation timed out; a connection
    /// that answers is kept, so a slow command costs one `PING`. An error answer (a refused
    /// or dropped connection, a node down during a failover) is left to redis-rs, which
    /// reconnects after errors by itself: only silence needs a new connection. Outside a
    /// Tokio runtime it does nothing.
    pub fn suspect(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.shared.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        runtime.spawn(async move {
            let (generation, mut conn) = this.current();
            let ping = redis::cmd("PING");
            let probe = ping.query_async::<()>(&mut conn);
            let silent = match tokio::time::timeout(this.shared.probe_deadline, probe).await {
                Err(_elapsed) => true,
                Ok(Err(e)) => e.is_timeout(),
                Ok(Ok(())) => false,
            };
            if silent {
                this.replace(generation);
            }
            this.shared.probing.store(false, Ordering::Release);
        });
    }

    /// Puts a new (lazy) connection in place of connection `generation` if it is still in
    /// use and the last replacement is at least [`REPLACE_INTERVAL`] old; in tracked mode
    /// drops the cache after the swap, so a fill read over the old connection is discarded
    /// too.
    fn replace(&self, generation: u64) {
        let mut replaced = self
            .shared
            .replaced
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if replaced.is_some_and(|at| at.elapsed() < REPLACE_INTERVAL) {
            return;
        }
        let fresh = match (self.shared.make)() {
            Ok(fresh) => fresh,
            Err(e) => {
                log::warn!("redis: could not set up a replacement connection: {e}");
                return;
            }
        };
        {
            let mut current = self
                .shared
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if current.0 != generation {
                return;
            }
            *current = (generation + 1, fresh);
        }
        *replaced = Some(Instant::now());
        if let Some(live) = &self.shared.live {
            live.clear();
        }
        log::warn!(
            "redis: the connection did not answer a PING after a timeout; replaced it \
             (connection {})",
            generation + 1
        );
    }
}

impl<C: Clone + ConnectionLike + Send + Sync + 'static> ConnectionLike for Replaceable<C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let (_, mut conn) = self.current();
        Box::pin(async move { conn.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let (_, mut conn) = self.current();
        Box::pin(async move { conn.req_packed_commands(pipeline, offset, count).await })
    }

    fn get_db(&self) -> i64 {
        self.current().1.get_db()
    }
}

/// One multiplexed connection to the primary the Sentinels name, replaced after a failure.
///
/// In tracked mode the connection speaks RESP3 with `CLIENT TRACKING` and its pushes feed the
/// record cache. Redis tracks keys per connection, so invalidations for what was read over
/// a connection reach only that connection: when it is forgotten (after a failure, or when
/// the store's deadline gave up on it), the cache is dropped right after, and a fill read
/// over the old one is discarded (see [`SentinelConnection::forget`]).
#[derive(Clone)]
pub struct SentinelConnection {
    shared: Arc<SentinelShared>,
}

/// What a tracked Sentinel connection needs: redis-rs's (small) reply cache, without which it
/// does not turn tracking on, and where the pushes go.
pub struct SentinelTracking {
    cache: CacheConfig,
    invalidator: Invalidator,
}

struct SentinelShared {
    /// Asks the Sentinels; the async mutex also makes concurrent reconnects single-flight.
    client: tokio::sync::Mutex<SentinelClient>,
    /// The live connection and its generation (so a late failure cannot forget a newer one).
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    config: AsyncConnectionConfig,
    db: i64,
    /// Tracked mode: the cache fed by this connection's invalidations.
    live: Option<Arc<LiveCache>>,
}

impl SentinelConnection {
    /// Reaches the Sentinels with the first URL's username and password (conf.rs has checked
    /// every URL carries the same) and the primary with `primary_auth`, or with those too.
    fn new(
        nodes: &[String],
        master_name: &str,
        primary_auth: Option<&PrimaryAuth>,
        certificates: Option<redis::TlsCertificates>,
        timeout: Duration,
        tracking: Option<SentinelTracking>,
    ) -> RedisResult<SentinelConnection> {
        let infos = nodes
            .iter()
            .map(|n| n.as_str().into_connection_info())
            .collect::<RedisResult<Vec<_>>>()?;
        let first = infos.first().ok_or_else(|| {
            RedisError::from((ErrorKind::InvalidClientConfig, "no sentinel nodes"))
        })?;
        let settings = first.redis_settings().clone();
        let tls = matches!(first.addr(), redis::ConnectionAddr::TcpTls { .. });
        let mut builder = SentinelClientBuilder::new(
            infos.iter().map(|i| i.addr().clone()),
            master_name,
            SentinelServerType::Master,
        )?
        .set_client_to_redis_db(settings.db());
        if let Some(username) = settings.username() {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = settings.password() {
            builder = builder.set_client_to_sentinel_password(password);
        }
        let (primary_username, primary_password) = match primary_auth {
            Some(auth) => (auth.username.as_deref(), auth.password.as_deref()),
            None => (settings.username(), settings.password()),
        };
        if let Some(username) = primary_username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = primary_password {
            builder = builder.set_client_to_redis_password(password);
        }
        let mut config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let live = tracking
            .as_ref()
            .map(|tracking| Arc::clone(&tracking.invalidator.0));
        if let Some(SentinelTracking { cache, invalidator }) = tracking {
            builder = builder.set_client_to_redis_protocol(redis::ProtocolVersion::RESP3);
            config = config.set_cache_config(cache).set_push_sender(invalidator);
        }
        if tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(certificates) = certificates {
                builder = builder
                    .set_client_to_redis_certificates(certificates.clone())
                    .set_client_to_sentinel_certificates(certificates);
            }
        }
        Ok(SentinelConnection {
            shared: Arc::new(SentinelShared {
                client: tokio::sync::Mutex::new(builder.build()?),
                current: Mutex::new(None),
                generation: AtomicU64::new(0),
                config,
                db: settings.db(),
                live,
            }),
        })
    }

    fn cached(&self) -> Option<(u64, MultiplexedConnection)> {
        self.shared
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The current connection, or a new one to the primary the Sentinels name now.
    async fn get(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.cached() {
            return Ok(current);
        }
        let mut client = self.shared.client.lock().await;
        if let Some(current) = self.cached() {
            return Ok(current);
        }
        let conn = client
            .get_async_connection_with_config(&self.shared.config)
            .await?;
        let generation = self.shared.generation.fetch_add(1, Ordering::Relaxed) + 1;
        log::info!("redis.sentinel: connected to the primary (connection {generation})");
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    /// Drops connection `generation` (if still current) so the next call asks the Sentinels;
    /// in tracked mode then drops the cache. The order is what keeps the cache coherent: a
    /// fill takes its ticket before its read asks for a connection, so a fill that can still
    /// land after the clear got its connection after the slot was emptied, i.e. a newer one.
    fn forget(&self, generation: u64) {
        let forgotten = {
            let mut current = self
                .shared
                .current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let forgotten = current.as_ref().is_some_and(|(g, _)| *g == generation);
            if forgotten {
                *current = None;
            }
            forgotten
        };
        if let (true, Some(live)) = (forgotten, &self.shared.live) {
            live.clear();
        }
    }

    /// Runs `cmd` on the current connection (see [`ForgetOnDrop`] for when it is dropped).
    async fn command(&self, cmd: &Cmd) -> RedisResult<Value> {
        let (generation, mut conn) = self.get().await?;
        let guard = ForgetOnDrop::new(self, generation);
        let outcome = conn.req_packed_command(cmd).await;
        guard.settle(&outcome);
        outcome
    }

    /// Runs part of `pipeline` on the current connection, as [`SentinelConnection::command`].
    async fn commands(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let (generation, mut conn) = self.get().await?;
        let guard = ForgetOnDrop::new(self, generation);
        let outcome = conn.req_packed_commands(pipeline, offset, count).await;
        guard.settle(&outcome);
        outcome
    }
}

/// Forgets a connection when the error says it (or the node behind it) is no longer good,
/// or when the caller gave up waiting: the store's deadline dropped the future mid-flight,
/// which is what a primary that stopped answering looks like.
struct ForgetOnDrop<'a> {
    connection: &'a SentinelConnection,
    generation: u64,
    armed: bool,
}

impl<'a> ForgetOnDrop<'a> {
    fn new(connection: &'a SentinelConnection, generation: u64) -> Self {
        ForgetOnDrop {
            connection,
            generation,
            armed: true,
        }
    }

    /// Keeps the connection unless `outcome` calls for a new primary.
    fn settle<T>(mut self, outcome: &RedisResult<T>) {
        self.armed = outcome.as_ref().err().is_some_and(needs_new_primary);
    }
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.connection.forget(self.generation);
        }
    }
}

/// Errors after which the connection (or the node behind it) must be replaced.
fn needs_new_primary(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
            )
        )
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.commands(pipeline, offset, count))
    }

    fn get_db(&self) -> i64 {
        self.shared.db
    }
}
