//! The operator's conf: one YAML file, parsed in two layers.
//!
//! [`File`] mirrors the YAML (`deny_unknown_fields`, defaults only where the sample documents
//! them). [`Conf::load`] parses it, validates every key, and builds the runtime values
//! (socket addresses, durations, the [`Roles`] and the [`RouteTable`]). Runtime code never
//! sees the serde layer. Every error names the file, the key and what is wrong; a bad conf is
//! an error, never a panic, and `patgate check` runs exactly this code.

use crate::access_log::Format as AccessLogFormat;
use crate::client_addr::Network;
use crate::forward_auth::Caller;
use crate::lifetime::{ExpiryPolicy, Lifetime};
use crate::limiter::Limits;
use crate::permissions::{is_identifier, Roles};
use crate::routes::{Access, HostMatch, Route, RouteTable};
use crate::tls::{CaBundle, DownstreamTls, UpstreamTls};
use bytes::Bytes;
use redis::IntoConnectionInfo;
use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A conf that cannot be used, with the file and key it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The conf file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not fit the schema (unknown key, wrong type, missing key).
    #[error("{path}: {source}")]
    Syntax {
        /// The conf file.
        path: PathBuf,
        /// The parser's error, with line and column.
        #[source]
        source: serde_yaml::Error,
    },
    /// A value that parses but is not acceptable.
    #[error("{path}: {key}: {problem}")]
    Invalid {
        /// The conf file.
        path: PathBuf,
        /// Where in the file, e.g. `routes[2] "repos-read": require`.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

/// The YAML layer, exactly as written by ops. No `Debug`: it holds Redis passwords.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    listen: String,
    #[serde(default)]
    admin_listen: Option<String>,
    #[serde(default)]
    tls_listen: Option<String>,
    #[serde(default)]
    tls: Option<TlsFile>,
    redis: RedisFile,
    #[serde(default)]
    verify: VerifyFile,
    #[serde(default)]
    policy: PolicyFile,
    #[serde(default)]
    identity_headers: IdentityHeadersFile,
    #[serde(default)]
    server: ServerFile,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    forward_auth: Option<ForwardAuthFile>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    access_log: AccessLogFile,
    #[serde(default)]
    audit: AuditFile,
    #[serde(default)]
    last_used: LastUsedFile,
    roles: Vec<RoleFile>,
    #[serde(default)]
    permissions: Vec<String>,
    routes: Vec<RouteFile>,
}

/// `redis:` as written. No `Debug`: its URLs may hold passwords.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisFile {
    /// One node (`redis://`, `rediss://`); exactly one of `url`, `cluster`, `sentinel`.
    #[serde(default)]
    url: Option<String>,
    /// Seed nodes of a Redis Cluster.
    #[serde(default)]
    cluster: Option<Vec<String>>,
    /// A Sentinel-managed primary.
    #[serde(default)]
    sentinel: Option<SentinelFile>,
    #[serde(default = "default_key_prefix")]
    key_prefix: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default)]
    freshness: Freshness,
    #[serde(default = "default_heartbeat_ms")]
    heartbeat_ms: u64,
    #[serde(default)]
    ca_file: Option<PathBuf>,
}

/// `redis.sentinel` as written. No `Debug`: it holds a password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SentinelFile {
    nodes: Vec<String>,
    master_name: String,
    /// The primary's own credentials, when they differ from the Sentinels'.
    #[serde(default)]
    primary_username: Option<String>,
    #[serde(default)]
    primary_password: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: PathBuf,
    key_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamTlsFile {
    #[serde(default)]
    sni: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct VerifyFile {
    bcrypt_cost: u32,
    pool_threads: usize,
    pool_queue: usize,
    cache_entries: usize,
    negative_ttl_ms: u64,
    pool_nice: i32,
}

impl Default for VerifyFile {
    fn default() -> Self {
        VerifyFile {
            bcrypt_cost: 10,
            pool_threads: 2,
            pool_queue: 1024,
            cache_entries: 100_000,
            negative_ttl_ms: 5_000,
            pool_nice: 10,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PolicyFile {
    default_lifetime: String,
    max_lifetime: String,
    allow_no_expiry: bool,
    admin_role: String,
}

impl Default for PolicyFile {
    fn default() -> Self {
        PolicyFile {
            default_lifetime: "30d".into(),
            max_lifetime: "365d".into(),
            allow_no_expiry: false,
            admin_role: "admin".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct IdentityHeadersFile {
    prefix: String,
    signing_key_file: Option<PathBuf>,
}

impl Default for IdentityHeadersFile {
    fn default() -> Self {
        IdentityHeadersFile {
            prefix: "X-Auth-".into(),
            signing_key_file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ServerFile {
    threads: usize,
    work_stealing: Option<bool>,
    pid_file: String,
    upgrade_sock: String,
    error_log: Option<String>,
    grace_period_seconds: u64,
    graceful_shutdown_timeout_seconds: u64,
}

impl Default for ServerFile {
    fn default() -> Self {
        ServerFile {
            threads: 1,
            work_stealing: None,
            pid_file: "/tmp/patgate.pid".into(),
            upgrade_sock: "/tmp/patgate_upgrade.sock".into(),
            error_log: None,
            grace_period_seconds: 5,
            graceful_shutdown_timeout_seconds: 5,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LimitsFile {
    window_seconds: u64,
    failures_per_client: u32,
    failures_per_prefix: u32,
    max_tracked: usize,
    max_header_bytes: usize,
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            window_seconds: 60,
            failures_per_client: 30,
            failures_per_prefix: 10,
            max_tracked: 100_000,
            max_header_bytes: 32_768,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AccessLogFile {
    format: AccessLogFormat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AuditFile {
    max_entries: u64,
    denied_requests: bool,
}

impl Default for AuditFile {
    fn default() -> Self {
        AuditFile {
            max_entries: 100_000,
            denied_requests: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LastUsedFile {
    interval_seconds: u64,
}

impl Default for LastUsedFile {
    fn default() -> Self {
        LastUsedFile {
            interval_seconds: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardAuthFile {
    path: String,
    caller: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    name: String,
    permissions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    name: String,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    methods: Option<Vec<String>>,
    path_prefix: String,
    upstream: OneOrMany,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    require: Option<Vec<String>>,
    #[serde(default)]
    forward_credentials: bool,
    #[serde(default)]
    sign_identity: bool,
    #[serde(default)]
    upstream_tls: Option<UpstreamTlsFile>,
}

fn default_key_prefix() -> String {
    "patgate:".into()
}

fn default_heartbeat_ms() -> u64 {
    500
}

fn default_timeout_ms() -> u64 {
    50
}

/// How the gateway keeps what it reads from Redis fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// Every request reads what decides it from Redis, in one round trip on the warm path.
    /// A write acknowledged to its writer is in force for every request that starts after it.
    #[default]
    Strict,
    /// Zero round trips on the warm path: records are cached client-side and Redis pushes
    /// invalidations (RESP3 `CLIENT TRACKING`). Lag: the time an invalidation takes to arrive.
    Tracked,
    /// Tracked mode's warm path with strict mode's guarantee: every gateway holds a lease and
    /// confirms each fence a writer raises after its write, so a write is acknowledged only
    /// once every live gateway has applied its invalidation, or has lost its lease and stopped
    /// serving from its cache (store/fence.rs). One server or Sentinel; not a cluster.
    Confirmed,
}

impl Freshness {
    /// Whether the gateway keeps a client-side record cache (tracked and confirmed).
    pub fn caches_records(self) -> bool {
        matches!(self, Freshness::Tracked | Freshness::Confirmed)
    }
}

/// Which Redis deployment patgate talks to. Routing and failover are the redis crate's
/// (cluster slots, Sentinel discovery); patgate never shards by itself. Its `Debug` is
/// [`Topology::describe`], so a debug dump never shows a password.
#[derive(Clone, PartialEq, Eq)]
pub enum Topology {
    /// `redis.url`: one server (`redis://`, `rediss://`).
    Single {
        /// The connection URL.
        url: String,
    },
    /// `redis.cluster`: seed nodes of a Redis Cluster (the rest is discovered).
    Cluster {
        /// Seed node URLs, all `redis://` or all `rediss://`, database 0.
        nodes: Vec<String>,
    },
    /// `redis.sentinel`: a primary found through Sentinel, rediscovered after a failover.
    Sentinel {
        /// Sentinel URLs, all `redis://` or all `rediss://`, all with the same username and
        /// password (the Sentinels'); the primary is reached with the same scheme and the
        /// database of the first one.
        nodes: Vec<String>,
        /// The name the Sentinels monitor the primary under.
        master_name: String,
        /// The primary's credentials: `redis.sentinel.primary_username` /
        /// `primary_password` when either is set, else the nodes' own.
        primary_auth: Option<PrimaryAuth>,
    },
}

/// The credentials the primary behind Sentinel is reached with, when they are not the
/// Sentinels' (Sentinels commonly run without a password while the data nodes have one).
#[derive(Clone, PartialEq, Eq)]
pub struct PrimaryAuth {
    /// ACL username (`None`: the default user).
    pub username: Option<String>,
    /// Password (`None`: no `AUTH`; an empty `primary_password` in the conf gives `None`).
    pub password: Option<String>,
}

impl std::fmt::Debug for PrimaryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimaryAuth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())?;
        if let Topology::Sentinel {
            primary_auth: Some(auth),
            ..
        } = self
        {
            write!(f, " primary {auth:?}")?;
        }
        Ok(())
    }
}

impl Topology {
    /// A one-line description for logs and `check`, passwords redacted.
    pub fn describe(&self) -> String {
        let list = |nodes: &[String]| {
            nodes
                .iter()
                .map(|n| crate::serve::redacted_url(n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Topology::Single { url } => crate::serve::redacted_url(url),
            Topology::Cluster { nodes } => format!("cluster [{}]", list(nodes)),
            Topology::Sentinel {
                nodes, master_name, ..
            } => {
                format!("sentinel {master_name:?} via [{}]", list(nodes))
            }
        }
    }

    /// The conf key that names this topology (`redis.url`, `redis.cluster`, `redis.sentinel`).
    pub fn key(&self) -> &'static str {
        match self {
            Topology::Single { .. } => "redis.url",
            Topology::Cluster { .. } => "redis.cluster",
            Topology::Sentinel { .. } => "redis.sentinel",
        }
    }
}

/// Where Redis is and how long the gateway waits for it.
#[derive(Debug, Clone)]
pub struct RedisConf {
    /// One server, a cluster, or a Sentinel-managed primary.
    pub topology: Topology,
    /// `redis.ca_file`: the CA bundle a `rediss://` server's certificate is verified against
    /// instead of the system roots.
    pub ca: Option<CaBundle>,
    /// Prefix of every key patgate reads or writes.
    pub key_prefix: String,
    /// Per-operation deadline; past it the request fails closed with 503.
    pub timeout: Duration,
    /// Strict (read every request), tracked (record cache kept coherent by invalidations, on
    /// every topology) or confirmed (tracked, with writes confirmed by every gateway).
    pub freshness: Freshness,
    /// Tracked mode: how often the invalidation connection is proven alive with a `PING`
    /// (`redis.heartbeat_ms`); with its deadline, the bound on stale service when that
    /// connection goes silent. Confirmed mode: how often the lease is renewed (it lasts
    /// [`crate::store::fence::LEASE_HEARTBEATS`] heartbeats).
    pub heartbeat: Duration,
}

/// The bcrypt pool and the cost of new PAT hashes.
#[derive(Debug, Clone, Copy)]
pub struct VerifyConf {
    /// bcrypt cost for newly created PATs (4..=31).
    pub bcrypt_cost: u32,
    /// Threads in the dedicated bcrypt pool.
    pub pool_threads: usize,
    /// Jobs that may wait for a pool thread; one more is answered `overloaded`.
    pub pool_queue: usize,
    /// Bound of the verified-secret cache (and of the tracked-mode record cache); 0 disables.
    pub cache_entries: usize,
    /// How long a PAT secret that bcrypt refused against a stored hash is answered 401 from
    /// the negative cache instead of being bcrypt-checked again; zero disables it.
    pub negative_ttl: Duration,
    /// Nice value (0..=19) of the pool threads: above 0, the proxy's event loops win the CPU
    /// over bcrypt whenever both want it, so a flood of PAT guesses cannot starve verified
    /// traffic; cold PATs then verify in the CPU left over.
    pub pool_nice: i32,
}

/// Credential policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Lifetime rules.
    pub expiry: ExpiryPolicy,
    /// Role from which a member counts as an org admin.
    pub admin_role: String,
}

/// Names of the identity headers sent upstream, all under one prefix.
#[derive(Debug, Clone)]
pub struct IdentityHeaderNames {
    /// The prefix, lowercased, for stripping client-sent headers.
    pub prefix_lower: String,
    /// `<prefix>Credential-Type`. The six identity header names are kept as shared buffers
    /// in the operator's spelling, so setting one on a request copies nothing.
    pub credential_type: Bytes,
    /// `<prefix>Token-Prefix`.
    pub token_prefix: Bytes,
    /// `<prefix>User`.
    pub user: Bytes,
    /// `<prefix>Org`.
    pub org: Bytes,
    /// `<prefix>Role`.
    pub role: Bytes,
    /// `<prefix>Permissions`.
    pub permissions: Bytes,
    /// The six names lowercased, in the order credential type, token prefix, org, role,
    /// permissions, user: what [`crate::identity::make_forwardable`] inserts.
    pub lowercase: [http::HeaderName; 6],
    /// `<prefix>Required-Permissions`: on 403 responses, what the route requires.
    pub required_permissions: String,
    /// `<prefix>Assertion`: the signed identity on `sign_identity` routes.
    pub assertion: String,
    /// The HMAC key for `<prefix>Assertion`, read from `signing_key_file`.
    pub signing_key: Option<Vec<u8>>,
}

impl IdentityHeaderNames {
    /// The names under `prefix`; an error if one is not a valid header name.
    fn new(prefix: &str) -> Result<IdentityHeaderNames, http::header::InvalidHeaderName> {
        let name = |suffix: &str| Bytes::from(format!("{prefix}{suffix}"));
        let lower = |suffix: &str| {
            http::HeaderName::from_bytes(
                format!("{prefix}{suffix}").to_ascii_lowercase().as_bytes(),
            )
        };
        let lowercase = [
            lower("Credential-Type")?,
            lower("Token-Prefix")?,
            lower("Org")?,
            lower("Role")?,
            lower("Permissions")?,
            lower("User")?,
        ];
        Ok(IdentityHeaderNames {
            lowercase,
            prefix_lower: prefix.to_ascii_lowercase(),
            credential_type: name("Credential-Type"),
            token_prefix: name("Token-Prefix"),
            user: name("User"),
            org: name("Org"),
            role: name("Role"),
            permissions: name("Permissions"),
            required_permissions: format!("{prefix}Required-Permissions"),
            assertion: format!("{prefix}Assertion"),
            signing_key: None,
        })
    }
}

/// Pingora process settings (`server:` in the conf).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Proxy worker threads.
    pub threads: usize,
    /// One Tokio runtime shared by the worker threads, which steal each other's tasks
    /// (`true`), or one single-threaded runtime per thread (`false`: a task wake costs less).
    /// Unset, it is `false` for one thread and `true` for several: with several, a socket
    /// stays tied to the I/O driver of the thread that opened it (the listener's, for every
    /// client connection) while its task may run on another (README, DESIGN.md).
    pub work_stealing: bool,
    /// PID file (used by daemon mode and upgrades).
    pub pid_file: String,
    /// Socket over which a new process takes the listeners during a graceful upgrade.
    pub upgrade_sock: String,
    /// Where Pingora writes its error log in daemon mode.
    pub error_log: Option<String>,
    /// Seconds to keep serving after SIGTERM before draining.
    pub grace_period_seconds: u64,
    /// Seconds allowed for the drain.
    pub graceful_shutdown_timeout_seconds: u64,
}

/// Forward-auth mode (`forward_auth:`): where other proxies ask, and which proxy asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuth {
    /// The endpoint's path on `listen`, e.g. `/_patgate/auth`.
    pub path: String,
    /// The calling proxy: its headers, and only those, name the original request.
    pub caller: Caller,
}

/// A validated conf: every value parsed and checked.
#[derive(Debug)]
pub struct Conf {
    /// The file it came from.
    pub path: PathBuf,
    /// The proxy's listening address.
    pub listen: SocketAddr,
    /// Health, metrics and management address, if any.
    pub admin_listen: Option<SocketAddr>,
    /// The HTTPS listener (`tls_listen` with `tls:`), if any: HTTP/1.1 and HTTP/2 over TLS,
    /// the same routes and checks as `listen`.
    pub tls: Option<DownstreamTls>,
    /// Redis settings.
    pub redis: RedisConf,
    /// bcrypt settings.
    pub verify: VerifyConf,
    /// Credential policy.
    pub policy: Policy,
    /// Identity header names.
    pub identity_headers: IdentityHeaderNames,
    /// Pingora process settings.
    pub server: ServerSettings,
    /// Failed-attempt limits.
    pub limits: Limits,
    /// The forward-auth endpoint and its caller, if forward-auth mode is on.
    pub forward_auth: Option<ForwardAuth>,
    /// Proxies whose `X-Forwarded-For` names the client ([`crate::client_addr`]).
    pub trusted_proxies: Vec<Network>,
    /// How each request is logged.
    pub access_log: AccessLogFormat,
    /// The audit trail's settings.
    pub audit: AuditConf,
    /// Last-used stamps: written at most once per this interval per credential per instance.
    pub last_used_interval: Duration,
    /// Roles and known permissions.
    pub roles: Roles,
    /// Routes, most specific first.
    pub routes: RouteTable,
}

impl Conf {
    /// Reads, parses and validates the conf at `path`.
    ///
    /// # Errors
    /// [`ConfError`] naming the file, the key and the problem.
    pub fn load(path: &Path) -> Result<Conf, ConfError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Conf::parse(path, &text)
    }

    /// Parses and validates YAML text; `path` is only used in messages.
    ///
    /// # Errors
    /// [`ConfError`] naming the file, the key and the problem.
    pub fn parse(path: &Path, text: &str) -> Result<Conf, ConfError> {
        let file: File = serde_yaml::from_str(text).map_err(|source| ConfError::Syntax {
            path: path.to_path_buf(),
            source,
        })?;
        Builder { path }.build(file)
    }

    /// For unit tests elsewhere: the smallest valid conf (one admin role, one route, Redis on
    /// the default port, never dialled by a parse), plus `extra` top-level YAML.
    #[cfg(test)]
    pub(crate) fn minimal_with(extra: &str) -> Conf {
        let text = format!(
            "listen: 127.0.0.1:1\nredis: {{url: 'redis://127.0.0.1/'}}\nroles: [{{name: admin, permissions: ['*']}}]\nroutes: [{{name: r, path_prefix: /, upstream: '127.0.0.1:1'}}]\n{extra}"
        );
        Conf::parse(Path::new("t.yaml"), &text).expect("a valid conf")
    }
}

/// Permissions patgate itself checks, known in every conf (so `*` grants them and a role or
/// narrowing list may name them): `patgate:tokens` lets a PAT owner manage their own PATs
/// through the management API; `patgate:admin` lets a caller manage its org there.
pub const BUILT_IN_PERMISSIONS: [&str; 2] = [PERMISSION_TOKENS, PERMISSION_ADMIN];
/// Self-service PAT management through the API.
pub const PERMISSION_TOKENS: &str = "patgate:tokens";
/// Org administration through the API.
pub const PERMISSION_ADMIN: &str = "patgate:admin";

/// The audit trail's settings (`audit:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditConf {
    /// The stream is trimmed to about this many entries.
    pub max_entries: u64,
    /// Whether every denied request on a protected route is appended.
    pub denied_requests: bool,
}

/// Turns a [`File`] into a [`Conf`], naming the key in every error.
struct Builder<'a> {
    path: &'a Path,
}

impl Builder<'_> {
    fn invalid(&self, key: impl Into<String>, problem: impl Into<String>) -> ConfError {
        ConfError::Invalid {
            path: self.path.to_path_buf(),
            key: key.into(),
            problem: problem.into(),
        }
    }

    fn build(&self, file: File) -> Result<Conf, ConfError> {
        // Destructured exhaustively so that a new key cannot be ignored silently.
        let File {
            listen,
            admin_listen,
            tls_listen,
            tls,
            redis,
            verify,
            policy,
            identity_headers,
            server,
            limits,
            forward_auth,
            trusted_proxies,
            access_log,
            audit,
            last_used,
            roles,
            permissions,
            routes,
        } = file;
        let AccessLogFile { format: access_log } = access_log;
        let listen = self.socket_addr("listen", &listen)?;
        let admin_listen = admin_listen
            .map(|a| self.socket_addr("admin_listen", &a))
            .transpose()?;
        let tls = self.downstream_tls(tls_listen, tls, &[Some(listen), admin_listen])?;
        let redis = self.redis(redis)?;
        let verify = self.verify(verify)?;
        let roles = self.roles(roles, permissions)?;
        let policy = self.policy(policy, &roles)?;
        let identity_headers = self.identity_headers(identity_headers)?;
        let server = self.server(server)?;
        let limits = self.limits(limits)?;
        let forward_auth = forward_auth
            .map(|file| self.forward_auth(file))
            .transpose()?;
        let trusted_proxies = trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, text)| {
                Network::parse(text).map_err(|e| self.invalid(format!("trusted_proxies[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let audit = self.audit(audit)?;
        let LastUsedFile { interval_seconds } = last_used;
        let last_used_interval = Duration::from_secs(self.in_range(
            "last_used.interval_seconds",
            interval_seconds,
            1..=86_400,
        )?);
        let signing = identity_headers.signing_key.is_some();
        let routes = self.routes(routes, &roles, signing)?;
        Ok(Conf {
            path: self.path.to_path_buf(),
            listen,
            admin_listen,
            tls,
            redis,
            verify,
            policy,
            identity_headers,
            server,
            limits,
            forward_auth,
            trusted_proxies,
            access_log,
            audit,
            last_used_interval,
            roles,
            routes,
        })
    }

    /// `tls_listen` and `tls:` go together; the address is not one already in use by
    /// `listen` or `admin_listen`; the certificate and key load and match.
    fn downstream_tls(
        &self,
        tls_listen: Option<String>,
        tls: Option<TlsFile>,
        taken: &[Option<SocketAddr>],
    ) -> Result<Option<DownstreamTls>, ConfError> {
        let (listen, files) = match (tls_listen, tls) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(self.invalid("tls_listen", "needs tls.cert_file and tls.key_file"))
            }
            (None, Some(_)) => return Err(self.invalid("tls", "is set but tls_listen is not")),
            (Some(listen), Some(files)) => (listen, files),
        };
        let listen = self.socket_addr("tls_listen", &listen)?;
        if taken.contains(&Some(listen)) {
            return Err(self.invalid(
                "tls_listen",
                format!("{listen} is already listen or admin_listen"),
            ));
        }
        let TlsFile {
            cert_file,
            key_file,
        } = files;
        DownstreamTls::load(listen, &cert_file, &key_file)
            .map(Some)
            .map_err(|(field, problem)| self.invalid(format!("tls.{field}"), problem))
    }

    fn audit(&self, audit: AuditFile) -> Result<AuditConf, ConfError> {
        let AuditFile {
            max_entries,
            denied_requests,
        } = audit;
        self.in_range("audit.max_entries", max_entries, 100..=100_000_000)?;
        Ok(AuditConf {
            max_entries,
            denied_requests,
        })
    }

    fn forward_auth(&self, file: ForwardAuthFile) -> Result<ForwardAuth, ConfError> {
        let ForwardAuthFile { path, caller } = file;
        let path = self.forward_auth_path(path)?;
        let Some(name) = caller else {
            return Err(self.invalid(
                "forward_auth.caller",
                format!(
                    "missing: name the proxy that calls the endpoint ({}); it decides which \
                     headers name the original request",
                    Caller::NAMES
                ),
            ));
        };
        let caller = Caller::parse(&name).ok_or_else(|| {
            self.invalid(
                "forward_auth.caller",
                format!("{name:?} is not a known caller: write {}", Caller::NAMES),
            )
        })?;
        Ok(ForwardAuth { path, caller })
    }

    fn forward_auth_path(&self, path: String) -> Result<String, ConfError> {
        let plain = path.len() > 1
            && path.starts_with('/')
            && !path.ends_with('/')
            && crate::routes::path_is_safe(&path)
            && !path.contains('?');
        if plain {
            Ok(path)
        } else {
            Err(self.invalid(
                "forward_auth.path",
                format!("{path:?} must be an absolute path like /_patgate/auth"),
            ))
        }
    }

    fn limits(&self, limits: LimitsFile) -> Result<Limits, ConfError> {
        let LimitsFile {
            window_seconds,
            failures_per_client,
            failures_per_prefix,
            max_tracked,
            max_header_bytes,
        } = limits;
        self.in_range("limits.window_seconds", window_seconds, 1..=86_400)?;
        self.in_range(
            "limits.failures_per_client",
            failures_per_client,
            1..=u32::MAX,
        )?;
        self.in_range(
            "limits.failures_per_prefix",
            failures_per_prefix,
            1..=u32::MAX,
        )?;
        self.in_range("limits.max_tracked", max_tracked, 1..=100_000_000)?;
        self.in_range(
            "limits.max_header_bytes",
            max_header_bytes,
            1024..=1_048_576,
        )?;
        Ok(Limits {
            window: Duration::from_secs(window_seconds),
            failures_per_client,
            failures_per_prefix,
            max_tracked,
            max_header_bytes,
        })
    }

    /// Refuses `value` for `key` unless it lies in `range`.
    fn in_range<T>(&self, key: &str, value: T, range: RangeInclusive<T>) -> Result<T, ConfError>
    where
        T: PartialOrd + std::fmt::Display + Copy,
    {
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(self.invalid(
                key,
                format!("{value} is outside {}..={}", range.start(), range.end()),
            ))
        }
    }

    fn socket_addr(&self, key: &str, value: &str) -> Result<SocketAddr, ConfError> {
        value
            .parse()
            .map_err(|_| self.invalid(key, format!("{value:?} is not an IP:port address")))
    }

    fn redis(&self, redis: RedisFile) -> Result<RedisConf, ConfError> {
        let RedisFile {
            url,
            cluster,
            sentinel,
            key_prefix,
            timeout_ms,
            freshness,
            heartbeat_ms,
            ca_file,
        } = redis;
        let (topology, tls) = self.topology(url, cluster, sentinel)?;
        let ca = match ca_file {
            None => None,
            Some(_) if !tls => {
                let problem = match &topology {
                    Topology::Single { .. } => "needs a rediss:// url".to_string(),
                    other => format!("needs rediss:// nodes in {}", other.key()),
                };
                return Err(self.invalid("redis.ca_file", problem));
            }
            Some(path) => Some(
                CaBundle::load(&path).map_err(|problem| self.invalid("redis.ca_file", problem))?,
            ),
        };
        if key_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(self.invalid(
                "redis.key_prefix",
                "must not contain spaces or control characters",
            ));
        }
        self.in_range("redis.timeout_ms", timeout_ms, 1..=60_000)?;
        self.in_range("redis.heartbeat_ms", heartbeat_ms, 50..=10_000)?;
        if freshness == Freshness::Confirmed && matches!(topology, Topology::Cluster { .. }) {
            // A fence is ordered after a write's invalidation only on one connection: in a
            // cluster the two come from different nodes.
            return Err(self.invalid(
                "redis.freshness",
                "confirmed needs one server or Sentinel, not redis.cluster (use strict or tracked)",
            ));
        }
        Ok(RedisConf {
            topology,
            ca,
            key_prefix,
            timeout: Duration::from_millis(timeout_ms),
            freshness,
            heartbeat: Duration::from_millis(heartbeat_ms),
        })
    }

    /// Exactly one of `redis.url`, `redis.cluster`, `redis.sentinel`; every URL parses, none
    /// turns certificate checks off, and a list does not mix TLS and plain nodes. Returns the
    /// topology and whether it speaks TLS.
    fn topology(
        &self,
        url: Option<String>,
        cluster: Option<Vec<String>>,
        sentinel: Option<SentinelFile>,
    ) -> Result<(Topology, bool), ConfError> {
        match (url, cluster, sentinel) {
            (Some(url), None, None) => {
                let tls = self.redis_url("redis.url", &url)?.0;
                Ok((Topology::Single { url }, tls))
            }
            (None, Some(nodes), None) => {
                let tls = self.redis_nodes("redis.cluster", &nodes)?;
                self.same_credentials(
                    "redis.cluster",
                    &nodes,
                    "redis-rs reaches every node with the first seed's",
                )?;
                for (i, node) in nodes.iter().enumerate() {
                    if self.redis_url(&format!("redis.cluster[{i}]"), node)?.1 != 0 {
                        return Err(self.invalid(
                            format!("redis.cluster[{i}]"),
                            "a cluster has only database 0",
                        ));
                    }
                }
                Ok((Topology::Cluster { nodes }, tls))
            }
            (
                None,
                None,
                Some(SentinelFile {
                    nodes,
                    master_name,
                    primary_username,
                    primary_password,
                }),
            ) => {
                let tls = self.redis_nodes("redis.sentinel.nodes", &nodes)?;
                self.same_credentials(
                    "redis.sentinel.nodes",
                    &nodes,
                    "every Sentinel is reached with the same ones (put the primary's in \
                     redis.sentinel.primary_username / primary_password)",
                )?;
                if master_name.trim().is_empty()
                    || master_name.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(self.invalid(
                        "redis.sentinel.master_name",
                        "must be the non-empty name the sentinels monitor, without spaces",
                    ));
                }
                let primary_auth = match (primary_username, primary_password) {
                    (None, None) => None,
                    // An empty value names a primary without one (the default user, no AUTH).
                    (username, password) => Some(PrimaryAuth {
                        username: username.filter(|u| !u.is_empty()),
                        password: password.filter(|p| !p.is_empty()),
                    }),
                };
                Ok((
                    Topology::Sentinel {
                        nodes,
                        master_name,
                        primary_auth,
                    },
                    tls,
                ))
            }
            (None, None, None) => Err(self.invalid(
                "redis",
                "needs one of url (one server), cluster (seed nodes) or sentinel (nodes and master_name)",
            )),
            _ => Err(self.invalid(
                "redis",
                "url, cluster and sentinel are mutually exclusive; choose one",
            )),
        }
    }

    /// A non-empty list of node URLs, all plain or all TLS; returns whether they are TLS.
    fn redis_nodes(&self, key: &str, nodes: &[String]) -> Result<bool, ConfError> {
        let mut schemes = Vec::with_capacity(nodes.len());
        for (i, node) in nodes.iter().enumerate() {
            schemes.push(self.redis_url(&format!("{key}[{i}]"), node)?.0);
        }
        match schemes.first() {
            None => Err(self.invalid(key, "needs at least one node URL")),
            Some(first) if schemes.iter().any(|s| s != first) => Err(self.invalid(
                key,
                "mixes redis:// and rediss:// nodes; use one scheme for all",
            )),
            Some(first) => Ok(*first),
        }
    }

    /// Every URL in `nodes` carries the first one's username and password: redis-rs reaches
    /// all Sentinels, and all cluster nodes, with one set, so another would be silently
    /// ignored. `why` ends the message.
    fn same_credentials(&self, key: &str, nodes: &[String], why: &str) -> Result<(), ConfError> {
        let credentials = |node: &String| {
            node.as_str().into_connection_info().ok().map(|info| {
                let settings = info.redis_settings();
                (
                    settings.username().map(str::to_string),
                    settings.password().map(str::to_string),
                )
            })
        };
        let first = nodes.first().and_then(credentials);
        match nodes.iter().position(|node| credentials(node) != first) {
            Some(i) => Err(self.invalid(
                format!("{key}[{i}]"),
                format!("has another username or password than {key}[0]; {why}"),
            )),
            None => Ok(()),
        }
    }

    /// One Redis URL under `key`: returns (speaks TLS, database). Verification is never off:
    /// `#insecure` would accept any certificate.
    fn redis_url(&self, key: &str, url: &str) -> Result<(bool, i64), ConfError> {
        let info = url
            .into_connection_info()
            .map_err(|e| self.invalid(key, format!("{e}")))?;
        let tls = match info.addr() {
            redis::ConnectionAddr::TcpTls { insecure, .. } => {
                if *insecure {
                    return Err(self.invalid(
                        key,
                        "#insecure turns certificate verification off; trust a private CA with redis.ca_file instead",
                    ));
                }
                true
            }
            _ => false,
        };
        Ok((tls, info.redis_settings().db()))
    }

    fn verify(&self, verify: VerifyFile) -> Result<VerifyConf, ConfError> {
        let VerifyFile {
            bcrypt_cost,
            pool_threads,
            pool_queue,
            cache_entries,
            negative_ttl_ms,
            pool_nice,
        } = verify;
        self.in_range("verify.pool_nice", pool_nice, 0..=19)?;
        self.in_range("verify.cache_entries", cache_entries, 0..=100_000_000)?;
        // "Short": a minute at most, so a flood of guesses cannot pin entries for long.
        self.in_range("verify.negative_ttl_ms", negative_ttl_ms, 0..=60_000)?;
        self.in_range("verify.bcrypt_cost", bcrypt_cost, 4..=31)?;
        self.in_range("verify.pool_threads", pool_threads, 1..=256)?;
        self.in_range("verify.pool_queue", pool_queue, 1..=1_000_000)?;
        Ok(VerifyConf {
            bcrypt_cost,
            pool_threads,
            pool_queue,
            cache_entries,
            negative_ttl: Duration::from_millis(negative_ttl_ms),
            pool_nice,
        })
    }

    fn roles(&self, roles: Vec<RoleFile>, permissions: Vec<String>) -> Result<Roles, ConfError> {
        let pairs = roles
            .into_iter()
            .map(|RoleFile { name, permissions }| (name, permissions))
            .collect();
        let mut known = permissions;
        known.extend(BUILT_IN_PERMISSIONS.iter().map(|p| p.to_string()));
        Roles::new(pairs, known).map_err(|e| self.invalid("roles", e.to_string()))
    }

    fn lifetime(&self, key: &str, value: &str) -> Result<Lifetime, ConfError> {
        Lifetime::parse(value).map_err(|e| self.invalid(key, e.to_string()))
    }

    fn policy(&self, policy: PolicyFile, roles: &Roles) -> Result<Policy, ConfError> {
        let PolicyFile {
            default_lifetime,
            max_lifetime,
            allow_no_expiry,
            admin_role,
        } = policy;
        let default_lifetime = self.lifetime("policy.default_lifetime", &default_lifetime)?;
        if default_lifetime == Lifetime::Never {
            // SPEC §1: a credential without expiry is created explicitly so, never by default.
            return Err(self.invalid(
                "policy.default_lifetime",
                "never is not a default: a credential without expiry must be asked for \
                 explicitly (--expires never)"
                    .to_string(),
            ));
        }
        let max_lifetime = self.lifetime("policy.max_lifetime", &max_lifetime)?;
        let expiry = ExpiryPolicy {
            default_lifetime,
            max_lifetime,
            allow_no_expiry,
        };
        if let Err(e) = expiry.expiry(None, 0) {
            return Err(self.invalid("policy.default_lifetime", e.to_string()));
        }
        if roles.get(&admin_role).is_none() {
            return Err(self.invalid(
                "policy.admin_role",
                format!("{admin_role:?} is not a role defined under roles"),
            ));
        }
        Ok(Policy { expiry, admin_role })
    }

    fn identity_headers(
        &self,
        headers: IdentityHeadersFile,
    ) -> Result<IdentityHeaderNames, ConfError> {
        let IdentityHeadersFile {
            prefix,
            signing_key_file,
        } = headers;
        let valid = prefix.len() >= 2
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        // Every header under the prefix is stripped from requests, so it must not cover a
        // header the gateway or the HTTP framing relies on: these names, or any name under
        // these families.
        let lower = prefix.to_ascii_lowercase();
        let names = [
            "authorization",
            "x-api-key",
            "x-request-id",
            "host",
            "connection",
            "keep-alive",
            "expect",
            "upgrade",
            "te",
            "trailer",
        ];
        let families = ["content-", "transfer-", "proxy-"];
        let reserved = names.iter().any(|name| name.starts_with(&lower))
            || families
                .iter()
                .any(|family| family.starts_with(&lower) || lower.starts_with(family));
        let names = match IdentityHeaderNames::new(&prefix) {
            Ok(names) if valid && !reserved => names,
            _ => {
                return Err(self.invalid(
                    "identity_headers.prefix",
                    format!("{prefix:?} must be 2+ letters, digits or '-' and must not cover standard headers"),
                ))
            }
        };
        let mut names = names;
        if let Some(path) = signing_key_file {
            names.signing_key = Some(self.signing_key(&path)?);
        }
        Ok(names)
    }

    /// The identity-signing key: the file's bytes, surrounding whitespace trimmed, at least 32.
    fn signing_key(&self, path: &Path) -> Result<Vec<u8>, ConfError> {
        let key = "identity_headers.signing_key_file";
        let bytes = std::fs::read(path)
            .map_err(|e| self.invalid(key, format!("cannot read {}: {e}", path.display())))?;
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < 32 {
            return Err(self.invalid(key, format!("{} holds fewer than 32 bytes", path.display())));
        }
        Ok(trimmed.to_vec())
    }

    fn server(&self, server: ServerFile) -> Result<ServerSettings, ConfError> {
        let ServerFile {
            threads,
            work_stealing,
            pid_file,
            upgrade_sock,
            error_log,
            grace_period_seconds,
            graceful_shutdown_timeout_seconds,
        } = server;
        self.in_range("server.threads", threads, 1..=1024)?;
        Ok(ServerSettings {
            threads,
            work_stealing: work_stealing.unwrap_or(threads > 1),
            pid_file,
            upgrade_sock,
            error_log,
            grace_period_seconds,
            graceful_shutdown_timeout_seconds,
        })
    }

    fn routes(
        &self,
        routes: Vec<RouteFile>,
        roles: &Roles,
        signing: bool,
    ) -> Result<RouteTable, ConfError> {
        if routes.is_empty() {
            return Err(self.invalid("routes", "at least one route is required"));
        }
        let mut built: Vec<Route> = Vec::with_capacity(routes.len());
        for (i, route) in routes.into_iter().enumerate() {
            let label = format!("routes[{i}] {:?}", route.name);
            let key = |field: &str| format!("{label}: {field}");
            if route.sign_identity && !signing {
                return Err(self.invalid(
                    key("sign_identity"),
                    "needs identity_headers.signing_key_file",
                ));
            }
            let route = self.route(route, roles, &key)?;
            if let Some(other) = built.iter().find(|other| other.name == route.name) {
                return Err(self.invalid(
                    key("name"),
                    format!("duplicate route name {:?}", other.name),
                ));
            }
            if let Some(other) = built.iter().find(|other| other.conflicts_with(&route)) {
                return Err(self.invalid(
                    key("methods"),
                    format!(
                        "same host and path_prefix as route {:?} with overlapping methods",
                        other.name
                    ),
                ));
            }
            built.push(route);
        }
        Ok(RouteTable::new(built))
    }

    fn route(
        &self,
        route: RouteFile,
        roles: &Roles,
        key: &dyn Fn(&str) -> String,
    ) -> Result<Route, ConfError> {
        let RouteFile {
            name,
            host,
            methods,
            path_prefix,
            upstream,
            auth,
            require,
            forward_credentials,
            sign_identity,
            upstream_tls,
        } = route;
        if !is_identifier(&name) {
            return Err(self.invalid(
                key("name"),
                "must be 1-64 characters of letters, digits, '_' or '-'",
            ));
        }
        let host = HostMatch::parse(host.as_deref()).map_err(|e| self.invalid(key("host"), e))?;
        let methods = match methods {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(
                    self.invalid(key("methods"), "must not be empty; omit it for all methods")
                )
            }
            Some(list) => {
                let mut upper = Vec::with_capacity(list.len());
                for method in list {
                    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                        return Err(self
                            .invalid(key("methods"), format!("{method:?} is not an HTTP method")));
                    }
                    upper.push(method.to_ascii_uppercase());
                }
                Some(upper)
            }
        };
        if !path_prefix.starts_with('/')
            || !crate::routes::path_is_safe(&path_prefix)
            || path_prefix.contains('?')
            || path_prefix.contains(';')
        {
            return Err(self.invalid(
                key("path_prefix"),
                format!(
                    "{path_prefix:?} must be an absolute path without '?', ';', empty, '.' or \
                     '..' segments, or needlessly encoded characters"
                ),
            ));
        }
        let upstreams = match upstream {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        };
        if upstreams.is_empty() {
            return Err(self.invalid(key("upstream"), "needs at least one host:port"));
        }
        let upstream_tls = upstream_tls
            .map(|UpstreamTlsFile { sni, ca_file }| {
                UpstreamTls::new(sni, ca_file.as_deref()).map_err(|(field, problem)| {
                    self.invalid(key(&format!("upstream_tls.{field}")), problem)
                })
            })
            .transpose()?;
        if let Some(tls) = &upstream_tls {
            for upstream in &upstreams {
                let name = tls.server_name(crate::tls::upstream_host(upstream));
                // Without a name there is nothing to verify the certificate against.
                crate::tls::check_server_name(name).map_err(|problem| {
                    self.invalid(
                        key("upstream_tls.sni"),
                        format!("needed for upstream {upstream:?}: {problem}"),
                    )
                })?;
            }
        }
        let mut addrs = Vec::with_capacity(upstreams.len());
        for upstream in &upstreams {
            // Names are resolved once, here, so the request path never blocks on DNS.
            let addr = upstream
                .to_socket_addrs()
                .ok()
                .and_then(|mut it| it.next())
                .ok_or_else(|| {
                    self.invalid(
                        key("upstream"),
                        format!("{upstream:?} is not a resolvable host:port"),
                    )
                })?;
            addrs.push(addr);
        }
        let access = match (auth.as_deref(), require) {
            (Some("none"), None) => Access::Open,
            (Some("none"), Some(_)) => {
                return Err(self.invalid(key("require"), "cannot be combined with auth: none"))
            }
            (Some("required") | None, require) => {
                let require = require.unwrap_or_default();
                if let Some(unknown) = roles.first_unknown(&require) {
                    return Err(
                        self.invalid(key("require"), format!("unknown permission {unknown:?}"))
                    );
                }
                Access::Protected { require }
            }
            (Some(other), _) => {
                return Err(self.invalid(
                    key("auth"),
                    format!("{other:?} is not one of: none, required"),
                ))
            }
        };
        let route = Route::new(
            name,
            host,
            methods,
            path_prefix,
            addrs,
            access,
            forward_credentials,
        );
        let hosts = upstreams
            .iter()
            .map(|u| crate::tls::upstream_host(u).to_string())
            .collect();
        Ok(route
            .signing_identity(sign_identity)
            .speaking_tls(upstream_tls, hosts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
listen: 127.0.0.1:8080
redis:
  url: redis://127.0.0.1:6379/0
roles:
  - name: viewer
    permissions: [repos:read]
  - name: admin
    permissions: ["*"]
routes:
  - name: repos
    path_prefix: /v1/repos
    upstream: 127.0.0.1:3000
    require: [repos:read]
"#;

    fn parse(text: &str) -> Result<Conf, ConfError> {
        Conf::parse(Path::new("test.yaml"), text)
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("must be refused").to_string()
    }

    #[test]
    fn minimal_conf_gets_documented_defaults() {
        let conf = parse(BASE).expect("valid");
        assert_eq!(conf.redis.key_prefix, "patgate:");
        assert_eq!(conf.redis.timeout, Duration::from_millis(50));
        assert_eq!(conf.verify.bcrypt_cost, 10);
        assert_eq!(conf.verify.pool_threads, 2);
        assert_eq!(conf.verify.pool_queue, 1024);
        assert_eq!(conf.verify.negative_ttl, Duration::from_millis(5_000));
        assert_eq!(conf.policy.admin_role, "admin");
        assert!(!conf.policy.expiry.allow_no_expiry);
        assert_eq!(conf.identity_headers.user, "X-Auth-User");
        assert_eq!(conf.routes.len(), 1);
        assert_eq!(conf.server.threads, 1);
        assert!(!conf.server.work_stealing);
    }

    #[test]
    fn work_stealing_defaults_to_the_thread_count_and_an_explicit_value_wins() {
        let server = |yaml: &str| parse(&format!("{BASE}server: {yaml}\n")).map(|c| c.server);
        let stealing = |yaml: &str| server(yaml).expect("valid").work_stealing;
        assert!(!stealing("{threads: 1}"));
        assert!(stealing("{threads: 3}"));
        assert!(stealing("{threads: 1, work_stealing: true}"));
        assert!(!stealing("{threads: 3, work_stealing: false}"));
        let refused = server("{work_stealing: sometimes}").expect_err("not a boolean");
        assert!(refused.to_string().contains("work_stealing"), "{refused}");
    }

    #[test]
    fn every_sample_conf_in_the_repo_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
        let mut loaded = 0;
        for entry in std::fs::read_dir(&dir).expect("conf/ exists") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                Conf::load(&path).unwrap_or_else(|e| panic!("{e}"));
                loaded += 1;
            }
        }
        assert!(loaded >= 1);
    }

    #[test]
    fn confirmed_freshness_is_for_one_server_or_sentinel_not_a_cluster() {
        let single = with_redis("  url: redis://127.0.0.1:6379/0\n  freshness: confirmed\n");
        let conf = parse(&single).expect("valid");
        assert_eq!(conf.redis.freshness, Freshness::Confirmed);
        assert!(conf.redis.freshness.caches_records());
        assert!(!Freshness::Strict.caches_records() && Freshness::Tracked.caches_records());
        let cluster = with_redis(
            "  cluster: [redis://10.0.0.1:7000, redis://10.0.0.2:7000]\n  freshness: confirmed\n",
        );
        assert_eq!(
            error(&cluster),
            "test.yaml: redis.freshness: confirmed needs one server or Sentinel, not \
             redis.cluster (use strict or tracked)"
        );
    }

    #[test]
    fn freshness_is_strict_by_default_and_tracked_on_request() {
        assert_eq!(
            parse(BASE).expect("valid").redis.freshness,
            Freshness::Strict
        );
        let tracked = BASE.replace(
            "  url: redis://127.0.0.1:6379/0",
            "  url: redis://127.0.0.1:6379/0\n  freshness: tracked",
        );
        assert_eq!(
            parse(&tracked).expect("valid").redis.freshness,
            Freshness::Tracked
        );
        let bad = BASE.replace(
            "  url: redis://127.0.0.1:6379/0",
            "  url: redis://127.0.0.1:6379/0\n  freshness: eventual",
        );
        assert!(
            error(&bad).contains("unknown variant `eventual`"),
            "{}",
            error(&bad)
        );
    }

    #[test]
    fn sign_identity_needs_a_key_of_32_bytes() {
        let signed = BASE.replace(
            "    require: [repos:read]",
            "    require: [repos:read]\n    sign_identity: true",
        );
        assert!(error(&signed).contains("sign_identity: needs identity_headers.signing_key_file"));
        let dir = tempfile::tempdir().expect("tempdir");
        let short = dir.path().join("short.key");
        std::fs::write(&short, "too short\n").expect("write");
        let with_short = format!(
            "{signed}identity_headers:\n  signing_key_file: {}\n",
            short.display()
        );
        assert!(error(&with_short).contains("fewer than 32 bytes"));
        let good = dir.path().join("good.key");
        std::fs::write(&good, format!("{}\n", "k".repeat(40))).expect("write");
        let with_good = format!(
            "{signed}identity_headers:\n  signing_key_file: {}\n",
            good.display()
        );
        let conf = parse(&with_good).expect("valid");
        assert_eq!(
            conf.identity_headers.signing_key.as_deref(),
            Some("k".repeat(40).as_bytes())
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = BASE.replace("listen:", "listn: x\nlisten:");
        assert!(
            error(&text).contains("unknown field `listn`"),
            "{}",
            error(&text)
        );
    }

    #[test]
    fn unknown_permission_in_require_names_the_route() {
        let text = BASE.replace("require: [repos:read]", "require: [repo:read]");
        assert_eq!(
            error(&text),
            r#"test.yaml: routes[0] "repos": require: unknown permission "repo:read""#
        );
    }

    #[test]
    fn auth_none_with_require_is_refused() {
        let text = BASE.replace(
            "    require: [repos:read]",
            "    auth: none\n    require: [repos:read]",
        );
        assert!(error(&text).contains("cannot be combined with auth: none"));
    }

    #[test]
    fn unknown_auth_mode_is_refused() {
        let text = BASE.replace("    require: [repos:read]", "    auth: maybe");
        assert!(error(&text).contains(r#"auth: "maybe" is not one of"#));
    }

    #[test]
    fn bad_listen_address_is_refused() {
        let text = BASE.replace("listen: 127.0.0.1:8080", "listen: localhost");
        assert_eq!(
            error(&text),
            r#"test.yaml: listen: "localhost" is not an IP:port address"#
        );
    }

    #[test]
    fn bcrypt_cost_out_of_range_is_refused() {
        let text = format!("{BASE}verify:\n  bcrypt_cost: 3\n");
        assert!(error(&text).contains("verify.bcrypt_cost: 3 is outside"));
    }

    #[test]
    fn negative_ttl_is_short_and_zero_disables_it() {
        let off = format!("{BASE}verify:\n  negative_ttl_ms: 0\n");
        assert_eq!(
            parse(&off).expect("valid").verify.negative_ttl,
            Duration::ZERO
        );
        let long = format!("{BASE}verify:\n  negative_ttl_ms: 600000\n");
        assert_eq!(
            error(&long),
            "test.yaml: verify.negative_ttl_ms: 600000 is outside 0..=60000"
        );
        let negative = format!("{BASE}verify:\n  negative_ttl_ms: -1\n");
        assert!(error(&negative).contains("verify"), "{}", error(&negative));
    }

    #[test]
    fn zero_pool_is_refused() {
        let text = format!("{BASE}verify:\n  pool_threads: 0\n");
        assert!(error(&text).contains("verify.pool_threads"));
    }

    #[test]
    fn admin_role_must_exist() {
        let text = format!("{BASE}policy:\n  admin_role: owner\n");
        assert!(error(&text).contains(r#"policy.admin_role: "owner" is not a role"#));
    }

    #[test]
    fn default_lifetime_must_fit_policy() {
        let text = format!("{BASE}policy:\n  default_lifetime: 400d\n");
        assert!(error(&text).contains("policy.default_lifetime"));
        let text = format!("{BASE}policy:\n  max_lifetime: 10x\n");
        assert!(error(&text).contains("policy.max_lifetime: invalid duration"));
        let text = format!("{BASE}policy:\n  default_lifetime: \"30日\"\n");
        assert!(error(&text).contains("policy.default_lifetime: invalid duration"));
        let text = format!("{BASE}policy:\n  max_lifetime: 36501d\n");
        assert!(error(&text).contains("policy.max_lifetime: duration \"36501d\" is longer"));
    }

    #[test]
    fn forward_auth_names_its_caller() {
        let text = format!("{BASE}forward_auth:\n  path: /_patgate/auth\n  caller: traefik\n");
        let conf = parse(&text).expect("valid");
        let forward_auth = conf.forward_auth.expect("on");
        assert_eq!(forward_auth.path, "/_patgate/auth");
        assert_eq!(forward_auth.caller, Caller::Traefik);
        let text = format!("{BASE}forward_auth:\n  path: /_patgate/auth\n");
        assert!(error(&text).contains("forward_auth.caller: missing: name the proxy"));
        let text = format!("{BASE}forward_auth:\n  path: /_patgate/auth\n  caller: haproxy\n");
        assert!(error(&text).contains(r#"forward_auth.caller: "haproxy" is not a known caller"#));
    }

    #[test]
    fn trusted_proxies_are_networks() {
        let text = format!("{BASE}trusted_proxies: [10.0.0.0/8, \"::1\", 192.0.2.7]\n");
        assert_eq!(parse(&text).expect("valid").trusted_proxies.len(), 3);
        let text = format!("{BASE}trusted_proxies: [10.0.0.0/8, 10.0.0.0/40]\n");
        assert!(error(&text).contains("trusted_proxies[1]: \"10.0.0.0/40\": the prefix length"));
        assert!(parse(BASE).expect("valid").trusted_proxies.is_empty());
    }

    #[test]
    fn no_expiry_is_never_the_default() {
        let text = format!(
            "{BASE}policy:\n  default_lifetime: never\n  max_lifetime: never\n  allow_no_expiry: true\n"
        );
        assert!(error(&text).contains("policy.default_lifetime: never is not a default"));
    }

    #[test]
    fn duplicate_route_names_and_overlaps_are_refused() {
        let dup = format!(
            "{BASE}  - name: repos\n    path_prefix: /other\n    upstream: 127.0.0.1:3000\n"
        );
        assert!(error(&dup).contains("duplicate route name"));
        let overlap = format!(
            "{BASE}  - name: repos2\n    path_prefix: /v1/repos\n    upstream: 127.0.0.1:3000\n"
        );
        assert!(error(&overlap).contains("overlapping methods"));
    }

    #[test]
    fn bad_route_fields_are_refused() {
        let cases = [
            (
                "path_prefix: /v1/repos",
                "path_prefix: v1/repos",
                "path_prefix",
            ),
            (
                "path_prefix: /v1/repos",
                "path_prefix: /v1/../x",
                "path_prefix",
            ),
            ("upstream: 127.0.0.1:3000", "upstream: []", "upstream"),
            ("upstream: 127.0.0.1:3000", "upstream: nohost", "upstream"),
            ("name: repos", "name: \"re pos\"", "name"),
        ];
        for (from, to, key) in cases {
            let message = error(&BASE.replace(from, to));
            assert!(message.contains(key), "{to}: {message}");
        }
        let methods = BASE.replace("    require:", "    methods: [\"GE T\"]\n    require:");
        assert!(error(&methods).contains("is not an HTTP method"));
        let empty = BASE.replace("    require:", "    methods: []\n    require:");
        assert!(error(&empty).contains("must not be empty"));
    }

    #[test]
    fn upstream_list_and_host_are_accepted() {
        let text = BASE.replace(
            "upstream: 127.0.0.1:3000",
            "host: \"*.example.com\"\n    methods: [get, HEAD]\n    upstream: [127.0.0.1:3000, 127.0.0.1:3001]",
        );
        let conf = parse(&text).expect("valid");
        let route = conf
            .routes
            .lookup(Some("api.example.com"), "GET", "/v1/repos")
            .ok()
            .flatten()
            .expect("route");
        assert_eq!(route.upstreams.len(), 2);
        assert_eq!(
            route.methods.as_deref(),
            Some(&["GET".to_string(), "HEAD".to_string()][..])
        );
    }

    #[test]
    fn identity_prefix_may_not_cover_standard_headers() {
        let text = format!("{BASE}identity_headers:\n  prefix: \"X-\"\n");
        // "X-" would strip X-API-Key's siblings and every X- header: refused.
        assert!(error(&text).contains("identity_headers.prefix"));
        let ok = format!("{BASE}identity_headers:\n  prefix: \"X-Gw-\"\n");
        assert_eq!(parse(&ok).expect("valid").identity_headers.org, "X-Gw-Org");
        // A prefix covering a framing header (Expect: 100-continue, Upgrade) or a family.
        for prefix in ["Ex", "up", "Te", "X-Request", "Proxy-Auth-", "Content-"] {
            let text = format!("{BASE}identity_headers:\n  prefix: \"{prefix}\"\n");
            assert!(error(&text).contains("identity_headers.prefix"), "{prefix}");
        }
        // A prefix that only starts like one of those names covers none of them.
        for prefix in ["Tenant-", "Hostname-", "Expected-Auth-"] {
            let text = format!("{BASE}identity_headers:\n  prefix: \"{prefix}\"\n");
            assert!(parse(&text).is_ok(), "{prefix}");
        }
    }

    /// A CA, a server certificate for localhost and its key, in a temp dir (rcgen).
    fn tls_material() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let ca = params.self_signed(&ca_key).expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .signed_by(&key, &ca, &ca_key)
            .expect("cert");
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        write("ca.pem", ca.pem());
        write("cert.pem", cert.pem());
        write("key.pem", key.serialize_pem());
        dir
    }

    #[test]
    fn tls_listen_and_tls_go_together() {
        let dir = tls_material();
        let d = dir.path().display();
        let tls = format!("tls:\n  cert_file: {d}/cert.pem\n  key_file: {d}/key.pem\n");
        let both = format!("{BASE}tls_listen: 127.0.0.1:8443\n{tls}");
        let conf = parse(&both).expect("valid");
        let listener = conf.tls.expect("tls listener");
        assert_eq!(listener.listen.port(), 8443);
        assert_eq!(
            error(&format!("{BASE}tls_listen: 127.0.0.1:8443\n")),
            "test.yaml: tls_listen: needs tls.cert_file and tls.key_file"
        );
        assert_eq!(
            error(&format!("{BASE}{tls}")),
            "test.yaml: tls: is set but tls_listen is not"
        );
        let same = format!("{BASE}tls_listen: 127.0.0.1:8080\n{tls}");
        assert!(error(&same).contains("tls_listen: 127.0.0.1:8080 is already listen"));
        let unknown = both.replace("  key_file:", "  chain_file: x\n  key_file:");
        assert!(error(&unknown).contains("unknown field `chain_file`"));
        let no_key = format!("{BASE}tls_listen: 127.0.0.1:8443\ntls:\n  cert_file: {d}/cert.pem\n");
        assert!(error(&no_key).contains("missing field `key_file`"));
    }

    #[test]
    fn tls_files_are_read_and_must_match() {
        let dir = tls_material();
        let d = dir.path().display();
        let conf = |cert: &str, key: &str| {
            format!("{BASE}tls_listen: 127.0.0.1:8443\ntls:\n  cert_file: {d}/{cert}\n  key_file: {d}/{key}\n")
        };
        let missing = error(&conf("nope.pem", "key.pem"));
        assert!(
            missing.starts_with("test.yaml: tls.cert_file: cannot read")
                && missing.contains("nope.pem"),
            "{missing}"
        );
        let key_as_cert = error(&conf("key.pem", "key.pem"));
        assert!(
            key_as_cert.contains("tls.cert_file:")
                && key_as_cert.contains("holds no PEM certificate"),
            "{key_as_cert}"
        );
        let cert_as_key = error(&conf("cert.pem", "cert.pem"));
        assert!(
            cert_as_key.contains("tls.key_file:")
                && cert_as_key.contains("no usable PEM private key"),
            "{cert_as_key}"
        );
        // The CA's certificate with the server's key: they do not belong together.
        let mismatch = error(&conf("ca.pem", "key.pem"));
        assert!(
            mismatch.contains("tls.key_file:")
                && mismatch.contains("not usable with the certificate"),
            "{mismatch}"
        );
        assert!(
            !mismatch.contains("PRIVATE KEY"),
            "no key material in messages"
        );
    }

    /// BASE with its `redis.url` line replaced by `redis_lines` (indented under `redis:`).
    fn with_redis(redis_lines: &str) -> String {
        BASE.replace("  url: redis://127.0.0.1:6379/0\n", redis_lines)
    }

    #[test]
    fn the_heartbeat_is_half_a_second_by_default_and_bounded() {
        assert_eq!(
            parse(BASE).expect("valid").redis.heartbeat,
            Duration::from_millis(500)
        );
        let set = with_redis("  url: redis://127.0.0.1:6379/0\n  heartbeat_ms: 100\n");
        assert_eq!(
            parse(&set).expect("valid").redis.heartbeat,
            Duration::from_millis(100)
        );
        for bad in ["10", "20000"] {
            let text = with_redis(&format!(
                "  url: redis://127.0.0.1:6379/0\n  heartbeat_ms: {bad}\n"
            ));
            assert!(error(&text).contains("redis.heartbeat_ms"), "{bad}");
        }
    }

    #[test]
    fn a_cluster_is_a_list_of_seed_nodes() {
        let conf = parse(&with_redis(
            "  cluster: [redis://10.0.0.1:7000, redis://10.0.0.2:7000]\n",
        ))
        .expect("valid");
        assert_eq!(
            conf.redis.topology,
            Topology::Cluster {
                nodes: vec![
                    "redis://10.0.0.1:7000".to_string(),
                    "redis://10.0.0.2:7000".to_string()
                ]
            }
        );
        assert_eq!(conf.redis.topology.key(), "redis.cluster");
    }

    #[test]
    fn a_sentinel_set_names_its_nodes_and_master() {
        let conf = parse(&with_redis(
            "  sentinel:\n    nodes: [redis://10.0.0.1:26379, redis://10.0.0.2:26379]\n    master_name: patgate\n",
        ))
        .expect("valid");
        assert_eq!(
            conf.redis.topology,
            Topology::Sentinel {
                nodes: vec![
                    "redis://10.0.0.1:26379".to_string(),
                    "redis://10.0.0.2:26379".to_string()
                ],
                master_name: "patgate".to_string(),
                primary_auth: None,
            }
        );
    }

    #[test]
    fn a_sentinel_primary_may_have_credentials_of_its_own() {
        let conf = parse(&with_redis(
            "  sentinel:\n    nodes: [redis://10.0.0.1:26379]\n    master_name: patgate\n    primary_password: s3cret\n",
        ))
        .expect("valid");
        let Topology::Sentinel { primary_auth, .. } = &conf.redis.topology else {
            panic!("sentinel expected");
        };
        let auth = primary_auth.as_ref().expect("primary credentials");
        assert_eq!(auth.username, None);
        assert_eq!(auth.password.as_deref(), Some("s3cret"));
        // Never printed, also not by a debug dump of the conf, the node URLs' included.
        assert!(!format!("{:?}", conf.redis).contains("s3cret"));
        let conf = parse(&with_redis(
            "  sentinel:\n    nodes: [redis://:sentinel-pw@10.0.0.1:26379]\n    master_name: patgate\n    primary_password: s3cret\n",
        ))
        .expect("valid");
        let dump = format!("{conf:?}");
        assert!(
            !dump.contains("s3cret") && !dump.contains("sentinel-pw"),
            "{dump}"
        );
        let conf = parse(&with_redis(
            "  sentinel:\n    nodes: [redis://10.0.0.1:26379]\n    master_name: patgate\n    primary_username: app\n    primary_password: \"\"\n",
        ))
        .expect("valid");
        let Topology::Sentinel { primary_auth, .. } = &conf.redis.topology else {
            panic!("sentinel expected");
        };
        assert_eq!(
            primary_auth
                .as_ref()
                .map(|a| (a.username.as_deref(), a.password.as_deref())),
            Some((Some("app"), None))
        );
    }

    #[test]
    fn every_sentinel_url_carries_the_same_credentials() {
        assert_eq!(
            parse(&with_redis(
                "  sentinel:\n    nodes: [redis://:a@10.0.0.1:26379, redis://:a@10.0.0.2:26379, redis://:b@10.0.0.3:26379]\n    master_name: m\n",
            ))
            .expect_err("refused")
            .to_string(),
            "test.yaml: redis.sentinel.nodes[2]: has another username or password than \
             redis.sentinel.nodes[0]; every Sentinel is reached with the same ones (put the \
             primary's in redis.sentinel.primary_username / primary_password)"
        );
        assert!(parse(&with_redis(
            "  sentinel:\n    nodes: [redis://u:a@10.0.0.1:26379, redis://u:a@10.0.0.2:26379]\n    master_name: m\n",
        ))
        .is_ok());
        assert_eq!(
            parse(&with_redis(
                "  cluster: [redis://:a@10.0.0.1:7000, redis://10.0.0.2:7000]\n",
            ))
            .expect_err("refused")
            .to_string(),
            "test.yaml: redis.cluster[1]: has another username or password than redis.cluster[0]; \
             redis-rs reaches every node with the first seed's"
        );
    }

    #[test]
    fn url_cluster_and_sentinel_are_mutually_exclusive() {
        assert_eq!(
            error(&with_redis(
                "  url: redis://127.0.0.1:6379/0\n  cluster: [redis://127.0.0.1:7000]\n"
            )),
            "test.yaml: redis: url, cluster and sentinel are mutually exclusive; choose one"
        );
        assert_eq!(
            error(&with_redis("  timeout_ms: 50\n")),
            "test.yaml: redis: needs one of url (one server), cluster (seed nodes) or sentinel (nodes and master_name)"
        );
    }

    #[test]
    fn cluster_nodes_are_checked_one_by_one() {
        assert_eq!(
            error(&with_redis("  cluster: []\n")),
            "test.yaml: redis.cluster: needs at least one node URL"
        );
        assert!(error(&with_redis(
            "  cluster: [redis://127.0.0.1:7000, http://127.0.0.1:7001]\n"
        ))
        .starts_with("test.yaml: redis.cluster[1]: "));
        assert_eq!(
            error(&with_redis(
                "  cluster: [redis://127.0.0.1:7000, rediss://127.0.0.1:7001]\n"
            )),
            "test.yaml: redis.cluster: mixes redis:// and rediss:// nodes; use one scheme for all"
        );
        assert_eq!(
            error(&with_redis("  cluster: [redis://127.0.0.1:7000/2]\n")),
            "test.yaml: redis.cluster[0]: a cluster has only database 0"
        );
        assert!(error(&with_redis(
            "  cluster: [rediss://127.0.0.1:7000#insecure]\n"
        ))
        .contains("redis.cluster[0]: #insecure turns certificate verification off"));
    }

    #[test]
    fn sentinel_needs_nodes_and_a_master_name() {
        assert_eq!(
            error(&with_redis(
                "  sentinel:\n    nodes: [redis://127.0.0.1:26379]\n    master_name: \"\"\n"
            )),
            "test.yaml: redis.sentinel.master_name: must be the non-empty name the sentinels monitor, without spaces"
        );
        assert_eq!(
            error(&with_redis(
                "  sentinel:\n    nodes: []\n    master_name: patgate\n"
            )),
            "test.yaml: redis.sentinel.nodes: needs at least one node URL"
        );
        assert!(error(&with_redis(
            "  sentinel:\n    nodes: [redis://127.0.0.1:26379]\n"
        ))
        .contains("missing field `master_name`"));
        assert!(error(&with_redis(
            "  sentinel:\n    nodes: [redis://127.0.0.1:26379]\n    master_name: m\n    master: x\n"
        ))
        .contains("unknown field `master`"));
    }

    #[test]
    fn a_ca_file_needs_tls_nodes_in_a_cluster_or_sentinel_set() {
        let dir = tls_material();
        let d = dir.path().display();
        assert_eq!(
            error(&with_redis(&format!(
                "  cluster: [redis://127.0.0.1:7000]\n  ca_file: {d}/ca.pem\n"
            ))),
            "test.yaml: redis.ca_file: needs rediss:// nodes in redis.cluster"
        );
        let conf = parse(&with_redis(&format!(
            "  sentinel:\n    nodes: [rediss://127.0.0.1:26379]\n    master_name: m\n  ca_file: {d}/ca.pem\n"
        )))
        .expect("valid");
        assert!(conf.redis.ca.is_some());
    }

    #[test]
    fn redis_ca_file_needs_rediss_and_verification_stays_on() {
        let dir = tls_material();
        let d = dir.path().display();
        let with = |url: &str, ca: &str| {
            BASE.replace(
                "  url: redis://127.0.0.1:6379/0",
                &format!("  url: {url}\n  ca_file: {d}/{ca}"),
            )
        };
        let conf = parse(&with("rediss://127.0.0.1:6380/0", "ca.pem")).expect("valid");
        assert!(conf.redis.ca.is_some());
        assert_eq!(
            error(&with("redis://127.0.0.1:6379/0", "ca.pem")),
            "test.yaml: redis.ca_file: needs a rediss:// url"
        );
        assert!(error(&with("rediss://127.0.0.1:6380/0", "nope.pem"))
            .contains("redis.ca_file: cannot read"));
        let insecure = BASE.replace(
            "  url: redis://127.0.0.1:6379/0",
            "  url: rediss://127.0.0.1:6380/0#insecure",
        );
        assert!(
            error(&insecure).contains("redis.url: #insecure turns certificate verification off")
        );
        // rediss:// alone trusts the system roots.
        let system = BASE.replace("redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6380/0");
        assert!(parse(&system).expect("valid").redis.ca.is_none());
    }

    #[test]
    fn upstream_tls_checks_its_name_and_ca_file() {
        let dir = tls_material();
        let d = dir.path().display();
        let with = |tls: &str| {
            BASE.replace(
                "    require: [repos:read]",
                &format!("    require: [repos:read]\n    upstream_tls: {tls}"),
            )
        };
        let conf = parse(&with(&format!(
            "{{sni: api.internal, ca_file: {d}/ca.pem}}"
        )))
        .expect("valid");
        let route = conf
            .routes
            .lookup(None, "GET", "/v1/repos")
            .ok()
            .flatten()
            .expect("route");
        let tls = route.upstream_tls.as_ref().expect("tls");
        assert_eq!(tls.server_name("127.0.0.1"), "api.internal");
        assert_eq!(route.upstream_hosts, vec!["127.0.0.1".to_string()]);
        assert!(parse(&with("{}")).expect("system roots").routes.len() == 1);
        assert_eq!(
            error(&with("{sni: \"bad name\"}")),
            r#"test.yaml: routes[0] "repos": upstream_tls.sni: "bad name" is not a DNS name or an IP address"#
        );
        let missing = error(&with(&format!("{{ca_file: {d}/nope.pem}}")));
        assert!(
            missing.contains(r#"routes[0] "repos": upstream_tls.ca_file: cannot read"#),
            "{missing}"
        );
        let key_as_ca = error(&with(&format!("{{ca_file: {d}/key.pem}}")));
        assert!(
            key_as_ca.contains("holds no PEM certificate"),
            "{key_as_ca}"
        );
        assert!(error(&with("{verify: false}")).contains("unknown field `verify`"));
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = Conf::load(Path::new("/nonexistent/patgate.yaml")).expect_err("missing");
        assert!(e
            .to_string()
            .starts_with("/nonexistent/patgate.yaml: cannot read"));
    }
}
