//! The only module that speaks Redis: the key layout (one function per key) and typed
//! operations on it.
//!
//! Key layout (every key starts with `redis.key_prefix`, default `patgate:`):
//!
//! | key | type | fields / members |
//! |---|---|---|
//! | `cred:<prefix>` | hash | `kind` (`pat`/`api_key`), `hash`, `org`, `name`, `created`, `expires`?, `user`? (PAT), `role`? (API key), `created_by`? (API key; a PAT made on its owner's behalf), `permissions`? (space-separated narrowing list), `revoked`? |
//! | `user:<user>` | hash | `status` (`active`/`suspended`/`removed`), `org:<org>` = role in that org |
//! | `user_tokens:<user>` | set | prefixes of the user's PATs |
//! | `org_keys:<org>` | set | prefixes of the org's API keys |
//! | `used:<prefix>` | hash | `at` (last use), `clients` (last 5 distinct client addresses, newest first) |
//! | `audit` | stream | one entry per management action (audit.rs) |
//! | `audit:denied` | stream | one entry per denied request; apart, so a flood cannot push actions out |
//!
//! Times are unix seconds. A credential with an expiry also gets a Redis expiry a week after
//! it (so that "expired" can be told apart from "unknown" for a while); a revoked one is kept
//! for 30 days for listings, then disappears. No secret is ever stored: `hash` is bcrypt for
//! PATs and hex SHA-256 for API keys.
//!
//! Cluster-safe layout: no hash tags, and every command and script touches one key, so one
//! hash slot. Creation is two single-key steps (record, then index; see
//! [`Store::insert_credential`]). Where an operation reads several keys, one server (or a
//! Sentinel primary) gets one pipeline and a cluster one command per key, sent concurrently,
//! since redis-rs refuses cross-slot pipelines. The connection itself (one server, cluster or
//! Sentinel) is the private `store/connection.rs`.
//!
//! Every operation is bounded by `redis.timeout_ms`; errors are classified into
//! [`StoreError`] so the caller can fail closed.

mod batch;
mod commands;
mod connection;
pub mod fence;
pub mod live;
mod packed;
mod wire;

pub use packed::PackedRecord;

use crate::conf::{Freshness, RedisConf};
use crate::token::Kind;
use batch::ReadBatcher;
use bytes::Bytes;
use commands::{Joined, Read};
use connection::Connection;
use live::{Invalidator, LiveCache};
use redis::AsyncCommands;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long a credential record outlives its expiry, so "expired" stays distinguishable.
pub const EXPIRED_RETENTION_SECS: u64 = 7 * 86_400;
/// How long a revoked credential's record is kept for listings.
pub const REVOKED_RETENTION_SECS: u64 = 30 * 86_400;

/// A Redis failure, classified.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No answer within `redis.timeout_ms`.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Connection refused, dropped, or a Redis error reply.
    #[error("redis error")]
    Redis(#[source] redis::RedisError),
    /// A record that does not have the shape patgate writes.
    #[error("corrupt record at {key}: {problem}")]
    Corrupt {
        /// The Redis key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The write is in Redis, but confirmed-mode gateways holding a lease did not
    /// acknowledge it in time (store/fence.rs): they may serve the old state until they do
    /// or their lease runs out.
    #[error(
        "written, but {pending} confirmed gateway instance(s) did not acknowledge it within \
         {waited:?}; they may serve the old state until they do or their lease runs out"
    )]
    Unconfirmed {
        /// Instances with a lease that had not acknowledged.
        pending: u64,
        /// How long the writer waited.
        waited: Duration,
    },
}

impl StoreError {
    /// Whether Redis did not answer in time (the store's deadline or redis-rs's own response
    /// timeout, whichever fired first).
    pub fn is_timeout(&self) -> bool {
        match self {
            StoreError::Timeout(_) => true,
            StoreError::Redis(e) => e.is_timeout(),
            StoreError::Corrupt { .. } | StoreError::Unconfirmed { .. } => false,
        }
    }

    /// A short fixed word for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Timeout(_) => "timeout",
            StoreError::Redis(e) if e.is_timeout() => "timeout",
            StoreError::Redis(e) if e.is_connection_refusal() => "refused",
            StoreError::Redis(e) if e.is_connection_dropped() || e.is_io_error() => "connection",
            StoreError::Redis(_) => "reply",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Unconfirmed { .. } => "unconfirmed",
        }
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::Redis(e)
    }
}

/// A user's account status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    /// May use their PATs.
    Active,
    /// Temporarily blocked; `reactivate` undoes it.
    Suspended,
    /// Gone for good.
    Removed,
}

impl UserStatus {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Suspended => "suspended",
            UserStatus::Removed => "removed",
        }
    }

    fn parse(s: &str) -> Option<UserStatus> {
        match s {
            "active" => Some(UserStatus::Active),
            "suspended" => Some(UserStatus::Suspended),
            "removed" => Some(UserStatus::Removed),
            _ => None,
        }
    }
}

/// A stored credential (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// Public 10-character prefix.
    pub prefix: String,
    /// PAT or API key.
    pub kind: Kind,
    /// bcrypt (PAT) or hex SHA-256 (API key) of prefix + secret.
    pub hash: String,
    /// Owning user (PATs only).
    pub user: Option<String>,
    /// For an API key, the admin on whose authority it was made; for a PAT made through the
    /// API by someone other than its owner (the product's admin key), that caller.
    pub created_by: Option<String>,
    /// The org it acts in.
    pub org: String,
    /// Fixed role (API keys only); PATs use the owner's live role.
    pub role: Option<String>,
    /// Human label.
    pub name: String,
    /// Optional narrowing list.
    pub permissions: Option<Vec<String>>,
    /// Creation time.
    pub created: u64,
    /// Expiry time, if any.
    pub expires: Option<u64>,
    /// Revocation time, if revoked.
    pub revoked: Option<u64>,
}

impl CredentialRecord {
    fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("kind", self.kind.as_str().to_string()),
            ("hash", self.hash.clone()),
            ("org", self.org.clone()),
            ("name", self.name.clone()),
            ("created", self.created.to_string()),
        ];
        let optional = [
            ("user", self.user.clone()),
            ("created_by", self.created_by.clone()),
            ("role", self.role.clone()),
            (
                "permissions",
                self.permissions.as_ref().map(|p| p.join(" ")),
            ),
            ("expires", self.expires.map(|e| e.to_string())),
        ];
        fields.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        fields
    }

    fn from_fields(
        key: &str,
        prefix: &str,
        mut fields: HashMap<String, String>,
    ) -> Result<Self, StoreError> {
        let corrupt = |problem: &str| StoreError::Corrupt {
            key: key.to_string(),
            problem: problem.to_string(),
        };
        let mut take = |name: &str| fields.remove(name);
        let number = |value: Option<String>, name: &str| -> Result<Option<u64>, StoreError> {
            value
                .map(|v| {
                    v.parse()
                        .map_err(|_| corrupt(&format!("{name} is not a number")))
                })
                .transpose()
        };
        let kind = take("kind")
            .and_then(|k| Kind::from_record(&k))
            .ok_or_else(|| corrupt("bad kind"))?;
        Ok(CredentialRecord {
            prefix: prefix.to_string(),
            kind,
            hash: take("hash").ok_or_else(|| corrupt("no hash"))?,
            user: take("user"),
            created_by: take("created_by"),
            org: take("org").ok_or_else(|| corrupt("no org"))?,
            role: take("role"),
            name: take("name").unwrap_or_default(),
            permissions: take("permissions")
                .map(|p| p.split_whitespace().map(str::to_string).collect()),
            created: number(take("created"), "created")?.unwrap_or(0),
            expires: number(take("expires"), "expires")?,
            revoked: number(take("revoked"), "revoked")?,
        })
    }
}

/// The mutable part of a credential record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    /// The stored hash now (shared with the cached record in tracked mode, the reply in
    /// strict mode: a warm request copies no hash).
    pub hash: Bytes,
    /// When it was revoked, in unix milliseconds (`revoked_ms`, else `revoked` × 1000;
    /// 0 when neither is a number), or `None` when it is not revoked.
    pub revoked: Option<u64>,
}

impl Liveness {
    /// From the reply to `HMGET cred:<prefix> hash revoked revoked_ms` (the stored hash,
    /// `revoked` in seconds, `revoked_ms`); `None` without a hash (no record). Read in place:
    /// the hash is the only copy made.
    ///
    /// # Errors
    /// An error reply, or a reply that is not three fields with a UTF-8 hash.
    fn from_reply(reply: &redis::Value) -> Result<Option<Liveness>, StoreError> {
        let [hash, revoked, revoked_ms] = hmget_fields(reply)?;
        let number = |field: Option<&[u8]>| {
            field
                .and_then(|bytes| std::str::from_utf8(bytes).ok())
                .and_then(|text| text.parse::<u64>().ok())
        };
        let revoked = revoked.map(|seconds| {
            number(revoked_ms)
                .or_else(|| number(Some(seconds)).map(|s| s.saturating_mul(1000)))
                .unwrap_or(0)
        });
        let hash = match hash {
            Some(hash) => std::str::from_utf8(hash).map_err(|_| unexpected_reply())?,
            None => return Ok(None),
        };
        Ok(Some(Liveness {
            hash: Bytes::copy_from_slice(hash.as_bytes()),
            revoked,
        }))
    }
}

/// The fields of one `HMGET` reply, in order and in place (`None`: no such field or key).
///
/// # Errors
/// An error reply, or a reply that is not `K` fields.
fn hmget_fields<const K: usize>(reply: &redis::Value) -> Result<[Option<&[u8]>; K], StoreError> {
    use redis::Value;
    let items = match reply {
        Value::Array(items) if items.len() == K => items,
        Value::ServerError(e) => return Err(StoreError::Redis(e.clone().into())),
        _ => return Err(unexpected_reply()),
    };
    let mut fields = [None; K];
    for (field, item) in fields.iter_mut().zip(items) {
        *field = match item {
            Value::BulkString(bytes) => Some(bytes.as_slice()),
            Value::Nil => None,
            _ => return Err(unexpected_reply()),
        };
    }
    Ok(fields)
}

fn unexpected_reply() -> StoreError {
    StoreError::Redis(redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "an HMGET reply of another shape than asked for",
    )))
}

/// What the gateway needs about a PAT's owner for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccess {
    /// `None` when the user record or its status is missing (treated as inactive).
    pub status: Option<UserStatus>,
    /// The user's current role in the org asked about.
    pub role: Option<String>,
}

impl UserAccess {
    /// From the reply to `HMGET user:<user> status org:<org>`, read in place (the role is
    /// the only copy made). An unknown or non-UTF-8 status is no status (inactive).
    ///
    /// # Errors
    /// An error reply, or a reply that is not two fields with a UTF-8 role.
    fn from_reply(reply: &redis::Value) -> Result<UserAccess, StoreError> {
        let [status, role] = hmget_fields(reply)?;
        let role = match role {
            Some(role) => Some(
                std::str::from_utf8(role)
                    .map_err(|_| unexpected_reply())?
                    .to_owned(),
            ),
            None => None,
        };
        Ok(UserAccess {
            status: status
                .and_then(|status| std::str::from_utf8(status).ok())
                .and_then(UserStatus::parse),
            role,
        })
    }
}

/// A whole user record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Account status (`None` if the product never wrote one).
    pub status: Option<UserStatus>,
    /// Role per org.
    pub orgs: BTreeMap<String, String>,
}

/// A `user:` hash split into its status and its memberships (`org:<org>` → role), into
/// whichever map the caller keeps them in: the one parse of the user record, for listings
/// ([`UserRecord`]) and tracked mode's cache ([`live::CachedUser`]). Other fields are ignored.
pub(crate) fn user_fields<M: Default + Extend<(String, String)>>(
    fields: HashMap<String, String>,
) -> (Option<UserStatus>, M) {
    let mut status = None;
    let mut orgs = M::default();
    for (field, value) in fields {
        if field == "status" {
            status = UserStatus::parse(&value);
        } else if let Some(org) = field.strip_prefix(MEMBERSHIP_FIELD_PREFIX) {
            orgs.extend([(org.to_string(), value)]);
        }
    }
    (status, orgs)
}

/// Outcome of a revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// Revoked now.
    Now,
    /// It was already revoked.
    Already,
    /// No such credential.
    NotFound,
}

/// Outcome of a suspension or reactivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    /// The status was set.
    Set,
    /// Refused: the user was removed (at the moment of the write).
    Removed,
    /// No such user.
    NoSuchUser,
}

/// The kind part of a credential record's key: `<key_prefix>cred:<prefix>`.
const CREDENTIAL: &str = "cred:";
/// The kind part of a user record's key: `<key_prefix>user:<user>`.
const USER: &str = "user:";

/// Key names, one function per key.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// `<key_prefix><kind><id>`, built without the formatting machinery: these keys are
    /// made on every request (under callgrind, `format!` took about 700 instructions a key).
    fn key(&self, kind: &str, id: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + kind.len() + id.len());
        key.push_str(&self.prefix);
        key.push_str(kind);
        key.push_str(id);
        key
    }

    /// `cred:<prefix>`: the credential record.
    pub fn credential(&self, token_prefix: &str) -> String {
        self.key(CREDENTIAL, token_prefix)
    }

    /// [`Keys::credential`] as pieces, for a request-path command to write without a
    /// `String` of its own (commands.rs).
    fn credential_pieces<'a>(&'a self, token_prefix: &'a str) -> [&'a str; 3] {
        [&self.prefix, CREDENTIAL, token_prefix]
    }

    /// [`Keys::user`] as pieces (see [`Keys::credential_pieces`]).
    fn user_pieces<'a>(&'a self, user: &'a str) -> [&'a str; 3] {
        [&self.prefix, USER, user]
    }

    /// `user:<user>`: status and memberships.
    pub fn user(&self, user: &str) -> String {
        self.key(USER, user)
    }

    /// `user_tokens:<user>`: the user's PAT prefixes.
    pub fn user_tokens(&self, user: &str) -> String {
        self.key("user_tokens:", user)
    }

    /// `org_keys:<org>`: the org's API key prefixes.
    pub fn org_keys(&self, org: &str) -> String {
        self.key("org_keys:", org)
    }

    /// `used:<prefix>`: when and from where the credential was last used.
    pub fn used(&self, token_prefix: &str) -> String {
        self.key("used:", token_prefix)
    }

    /// `audit` or `audit:denied`: an audit stream.
    pub fn audit(&self, stream: AuditStream) -> String {
        match stream {
            AuditStream::Actions => self.key("audit", ""),
            AuditStream::Denied => self.key("audit:denied", ""),
        }
    }

    /// `{fence}:generation`: raised by every writer after its write (store/fence.rs). The
    /// three fence keys share the `{fence}` hash tag (or the prefix's own, if it has one), so
    /// one script reaches them on a cluster too.
    pub fn fence_generation(&self) -> String {
        self.key("{fence}:generation", "")
    }

    /// `{fence}:instances`: confirmed gateways by lease expiry (Redis's clock, ms).
    pub fn fence_instances(&self) -> String {
        self.key("{fence}:instances", "")
    }

    /// `{fence}:acks`: the fence generation each confirmed gateway has applied.
    pub fn fence_acks(&self) -> String {
        self.key("{fence}:acks", "")
    }

    /// A SCAN pattern matching every credential key (glob characters in the key prefix escaped).
    pub fn credential_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 7);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str("cred:*");
        pattern
    }
}

/// The two audit streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditStream {
    /// Management actions: creations, revocations, status and membership changes.
    Actions,
    /// Requests the gateway denied.
    Denied,
}

/// When and from where a credential was last used.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LastUse {
    /// Unix seconds of the last recorded use.
    pub at: u64,
    /// The last distinct client addresses, newest first (at most [`LAST_USED_CLIENTS`]).
    pub clients: Vec<String>,
}

/// How many distinct client addresses a credential's last-used record keeps.
pub const LAST_USED_CLIENTS: usize = 5;
/// How long a last-used record outlives its last write (longer than any credential lives).
pub const LAST_USED_RETENTION_SECS: u64 = 400 * 86_400;

/// A stored audit entry: the stream id (milliseconds-sequence) and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAudit {
    /// The stream id, e.g. `1732700000000-0`.
    pub id: String,
    /// Field/value pairs as written.
    pub fields: Vec<(String, String)>,
}

/// What a field of `user:<user>` holding a role starts with: `org:<org>`.
pub(crate) const MEMBERSHIP_FIELD_PREFIX: &str = "org:";

/// Field of `user:<user>` holding the role in `org`.
pub fn membership_field(org: &str) -> String {
    let mut field = String::with_capacity(MEMBERSHIP_FIELD_PREFIX.len() + org.len());
    field.push_str(MEMBERSHIP_FIELD_PREFIX);
    field.push_str(org);
    field
}

/// Inserts a credential record unless its prefix is taken, with its Redis expiry. One key,
/// so one hash slot: the index entry is added afterwards (see [`Store::insert_credential`]).
/// KEYS: cred. ARGV: expireat (0 = none), then field/value pairs.
const INSERT_CREDENTIAL: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if tonumber(ARGV[1]) > 0 then redis.call('EXPIREAT', KEYS[1], ARGV[1]) end
return 1
";

/// Marks a credential revoked, once. KEYS: cred. ARGV: now, retention seconds, kind.
const REVOKE_CREDENTIAL: &str = r"
local kind = redis.call('HGET', KEYS[1], 'kind')
if not kind or kind ~= ARGV[3] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'revoked') == 1 then return 2 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'revoked', ARGV[1], 'revoked_ms', t[1] * 1000 + math.floor(t[2] / 1000))
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 or ttl > tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
";

/// Sets a user's status unless the user is gone or removed (removal is final: a suspension or
/// reactivation racing a removal must not undo it). One key. KEYS: user. ARGV: status.
/// Returns 1 when set, 0 when the user was removed, 2 when there is no such user.
const SET_STATUS_UNLESS_REMOVED: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 2 end
if redis.call('HGET', KEYS[1], 'status') == 'removed' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return 1
";

/// Merges one instance's report of uses into `used:<prefix>`: `at` only moves forward; the
/// reported clients (oldest first) move to the front of the list, which keeps the last
/// ARGV[3] distinct ones. KEYS: used. ARGV: at, retention seconds, keep, clients...
const RECORD_USE: &str = r"
local at = tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'at') or '0')
if at > current then redis.call('HSET', KEYS[1], 'at', ARGV[1]) end
local clients = {}
for client in string.gmatch(redis.call('HGET', KEYS[1], 'clients') or '', '%S+') do
  clients[#clients + 1] = client
end
for i = 4, #ARGV do
  for j = #clients, 1, -1 do
    if clients[j] == ARGV[i] then table.remove(clients, j) end
  end
  table.insert(clients, 1, ARGV[i])
end
local keep = tonumber(ARGV[3])
while #clients > keep do table.remove(clients) end
redis.call('HSET', KEYS[1], 'clients', table.concat(clients, ' '))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
";

/// Strict reads' RESP2 reply parser (store/wire.rs), for the fuzz target: one reply from the
/// start of `input` and how many bytes it took; `None` while `input` holds only part of it.
///
/// # Errors
/// `input` does not start with a well-formed RESP2 reply.
#[doc(hidden)]
pub fn parse_reply(input: &[u8]) -> Result<Option<(redis::Value, usize)>, redis::RedisError> {
    wire::parse(input, 0)
}

/// One reply of a batch, as `T` (an error reply or an unexpected shape is a Redis error).
fn decode<T: redis::FromRedisValue>(reply: &redis::Value) -> Result<T, StoreError> {
    redis::from_redis_value_ref(reply).map_err(|e| StoreError::Redis(e.into()))
}

/// Typed Redis access with a deadline on every call.
#[derive(Clone)]
pub struct Store {
    conn: Connection,
    /// The gateway's request-path reads in strict mode, coalesced (batch.rs); `None` for
    /// management stores and in tracked mode (cached records need no batching).
    reads: Option<Arc<ReadBatcher>>,
    /// Tracked mode's parsed records, kept coherent by Redis's invalidation pushes (live.rs).
    live: Option<Arc<LiveCache>>,
    /// Tracked mode: an untracked connection, dialled on first use, for every command but the
    /// cache's fills and `PING` ([`Store::plain`]), and for the fills too while the heartbeat
    /// has suspended the cache.
    untracked: Option<Connection>,
    keys: Keys,
    timeout: Duration,
    /// `redis.heartbeat_ms`: how long a confirmed gateway's lease lasts, in heartbeats, and so
    /// how long a write's fence may wait (fence.rs).
    heartbeat: Duration,
}

impl Store {
    /// A plain store for management commands (no client-side cache, whatever the conf says):
    /// the connection is made on first use and remade after a drop.
    ///
    /// # Errors
    /// The URL is invalid.
    pub fn lazy(conf: &RedisConf) -> Result<Store, StoreError> {
        let strict = RedisConf {
            freshness: Freshness::Strict,
            ..conf.clone()
        };
        Ok(Store {
            conn: Connection::open(&strict, None)?,
            reads: None,
            live: None,
            untracked: None,
            keys: Keys::new(&conf.key_prefix),
            timeout: conf.timeout,
            heartbeat: conf.heartbeat,
        })
    }

    /// The gateway's store: as [`Store::lazy`], but in [`Freshness::Tracked`] and
    /// [`Freshness::Confirmed`] mode the connection speaks RESP3 with `CLIENT TRACKING` and up
    /// to `tracked_entries` parsed credential records (and as many user records) are kept in a
    /// [`LiveCache`], invalidated by Redis pushes and dropped with the connection; confirmed
    /// mode serves it only under a lease that fence.rs's task keeps (and acknowledges
    /// writers' fences). In strict mode the request-path reads of concurrent requests are
    /// coalesced into one batch (`ReadBatcher`, store/batch.rs). Must be called inside a Tokio
    /// runtime.
    ///
    /// # Errors
    /// The URL is invalid.
    pub fn for_gateway(conf: &RedisConf, tracked_entries: usize) -> Result<Store, StoreError> {
        let keys = Keys::new(&conf.key_prefix);
        let fence = (conf.freshness == Freshness::Confirmed)
            .then(|| Arc::new(fence::InstanceFence::new(&keys)));
        let live = conf.freshness.caches_records().then(|| {
            Arc::new(match &fence {
                Some(fence) => LiveCache::confirmed(tracked_entries, &keys, Arc::clone(fence)),
                None => LiveCache::new(tracked_entries, &keys),
            })
        });
        let invalidator = live.as_ref().map(|live| Invalidator(Arc::clone(live)));
        let conn = Connection::open(conf, invalidator)?;
        let untracked = match live {
            Some(_) => Some(Connection::open(conf, None)?),
            None => None,
        };
        match (&live, &untracked) {
            (Some(live), Some(untracked)) if fence.is_some() => {
                tokio::spawn(fence::keep_lease(
                    Arc::downgrade(live),
                    conn.clone(),
                    untracked.clone(),
                    keys.clone(),
                    conf.heartbeat,
                    conf.timeout,
                ));
            }
            (Some(live), _) => {
                tokio::spawn(live::heartbeat(
                    Arc::downgrade(live),
                    conn.clone(),
                    conf.heartbeat,
                    conf.timeout,
                ));
            }
            (None, _) => {}
        }
        let reads = live.is_none().then(|| {
            let wire = wire::WireTarget::for_conf(conf);
            Arc::new(ReadBatcher::start(conn.clone(), wire, conf.timeout))
        });
        Ok(Store {
            conn,
            reads,
            live,
            untracked,
            keys,
            timeout: conf.timeout,
            heartbeat: conf.heartbeat,
        })
    }

    /// Raises a fence after a write and waits until every confirmed gateway has applied it
    /// or lost its lease (store/fence.rs); at once when none runs. Every write that decides
    /// requests (credentials, memberships, account status) ends with it, whatever this
    /// store's own mode: the gateways' mode is theirs.
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails; [`StoreError::Unconfirmed`] when a live gateway did
    /// not acknowledge in time.
    async fn confirm_write(&self) -> Result<(), StoreError> {
        fence::confirm(self.plain(), &self.keys, self.timeout, self.heartbeat).await
    }

    /// A writers' fence with no write before it (`patgate check`): proves the scripts run
    /// and every confirmed gateway acknowledges.
    ///
    /// # Errors
    /// As a write's fence.
    pub async fn raise_fence(&self) -> Result<(), StoreError> {
        self.confirm_write().await
    }

    /// Whether strict mode's read batcher has stopped (it never should; a stopped batcher
    /// fails every strict read, and `/readyz` reports it).
    pub fn strict_reads_stopped(&self) -> bool {
        self.reads.as_ref().is_some_and(|reads| reads.is_stopped())
    }

    /// Tracked mode's cache (for `/metrics` and tests); `None` in strict mode.
    pub fn live_cache(&self) -> Option<&LiveCache> {
        self.live.as_deref()
    }

    /// The key layout in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    async fn bounded<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let started = std::time::Instant::now();
        let outcome = match tokio::time::timeout(self.timeout, operation).await {
            Ok(result) => result.map_err(StoreError::Redis),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        };
        if outcome.as_ref().is_err_and(StoreError::is_timeout) {
            // Which of the two connections the operation used is not known here; a probe of
            // one that answers costs a PING.
            self.conn.suspect();
            if let Some(untracked) = &self.untracked {
                untracked.suspect();
            }
        }
        crate::metrics::REDIS_SECONDS.observe(started.elapsed().as_secs_f64());
        outcome
    }

    /// Tracked mode: the credential record for `prefix` from the live cache, or read with
    /// `HGETALL` (which also makes Redis track the key for this connection) and cached.
    async fn live_credential(
        &self,
        live: &LiveCache,
        prefix: &str,
    ) -> Result<live::CachedCredential, StoreError> {
        if let Some(hit) = live.credential(prefix) {
            return Ok(hit);
        }
        let ticket = live.ticket();
        let key = self.keys.credential(prefix);
        let fields: HashMap<String, String> =
            self.bounded(self.live_reader(live).hgetall(&key)).await?;
        let cached = live::parse_credential(&key, prefix, fields)?;
        live.fill_credential(ticket, prefix, cached.clone());
        Ok(cached)
    }

    /// The connection for everything but tracked mode's cache fills and `PING`: in tracked
    /// mode the untracked one. Redis tracks every key a tracking connection reads, also inside
    /// a script, so a last-used stamp written over it (its script reads `used:<prefix>` before
    /// writing it) would push an invalidation back for every write; and each invalidation
    /// pushed is work on the connection that carries the ones that matter.
    fn plain(&self) -> Connection {
        self.untracked.as_ref().unwrap_or(&self.conn).clone()
    }

    /// Tracked mode: the connection a fill reads over: the tracked one (so Redis tracks the
    /// key), or the untracked one while the cache is suspended.
    fn live_reader(&self, live: &LiveCache) -> Connection {
        match &self.untracked {
            Some(untracked) if live.is_suspended() => untracked.clone(),
            _ => self.conn.clone(),
        }
    }

    /// Tracked mode: the user record, from the live cache or read and cached.
    async fn live_user(
        &self,
        live: &LiveCache,
        user: &str,
    ) -> Result<Arc<live::CachedUser>, StoreError> {
        if let Some(hit) = live.user(user) {
            return Ok(hit);
        }
        let ticket = live.ticket();
        let fields: HashMap<String, String> = self
            .bounded(self.live_reader(live).hgetall(self.keys.user(user)))
            .await?;
        let cached = Arc::new(live::parse_user(fields));
        live.fill_user(ticket, user, Arc::clone(&cached));
        Ok(cached)
    }

    /// `operation` (already bounded by the deadline), timed like [`Store::bounded`].
    async fn timed<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let started = std::time::Instant::now();
        let outcome = operation.await;
        crate::metrics::REDIS_SECONDS.observe(started.elapsed().as_secs_f64());
        outcome
    }

    /// PING, within the timeout.
    ///
    /// # Errors
    /// [`StoreError`] when Redis does not answer.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(redis::cmd("PING").query_async::<()>(&mut conn))
            .await
    }

    /// The credential record for `prefix` as the request path needs it: packed, and shared
    /// (in tracked mode the cached copy itself) with the verified-secret cache.
    ///
    /// # Errors
    /// [`StoreError`] on timeout, Redis error or a corrupt record.
    pub async fn credential_for_request(
        &self,
        prefix: &str,
    ) -> Result<Option<Arc<PackedRecord>>, StoreError> {
        if let Some(live) = &self.live {
            return Ok(self.live_credential(live, prefix).await?.record.clone());
        }
        let key = self.keys.credential(prefix);
        match self.read_credential(&key, prefix).await? {
            Some(record) => Ok(Some(Arc::new(PackedRecord::pack(&key, &record, None)?))),
            None => Ok(None),
        }
    }

    /// The credential record for `prefix`, if any, read from Redis (also in tracked mode,
    /// whose cache keeps only what the request path needs).
    ///
    /// # Errors
    /// [`StoreError`] on timeout, Redis error or a corrupt record.
    pub async fn credential(&self, prefix: &str) -> Result<Option<CredentialRecord>, StoreError> {
        self.read_credential(&self.keys.credential(prefix), prefix)
            .await
    }

    async fn read_credential(
        &self,
        key: &str,
        prefix: &str,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        let fields: HashMap<String, String> = match &self.reads {
            Some(reads) => {
                let hgetall = Read::record(Joined::one(key));
                let replied = self.timed(reads.read([hgetall])).await?;
                decode(replied.get(0)?)?
            }
            None => self.bounded(self.plain().hgetall(key)).await?,
        };
        if fields.is_empty() {
            return Ok(None);
        }
        CredentialRecord::from_fields(key, prefix, fields).map(Some)
    }

    /// What can change about a credential already known to this instance (its stored hash
    /// and whether it is revoked; `None` if the record is gone) and its owner's status and
    /// role in `org`, pipelined: one round trip, zero in tracked mode when both are cached.
    /// On a cluster the two keys live in different slots: two concurrent commands, still one
    /// round trip of wall time (to two nodes at most).
    ///
    /// # Errors
    /// [`StoreError`] on timeout or Redis error.
    pub async fn liveness_and_access(
        &self,
        prefix: &str,
        user: &str,
        org: &str,
    ) -> Result<(Option<Liveness>, UserAccess), StoreError> {
        if let Some(live) = &self.live {
            let (credential, owner) = futures_util::future::try_join(
                self.live_credential(live, prefix),
                self.live_user(live, user),
            )
            .await?;
            let liveness = credential.liveness();
            let access = UserAccess {
                status: owner.status,
                role: owner.roles.get(org).cloned(),
            };
            return Ok((liveness, access));
        }
        let (cred, user) = (self.liveness_read(prefix), self.access_read(user, org));
        if let Some(reads) = &self.reads {
            let replied = self.timed(reads.read([cred, user])).await?;
            let liveness = Liveness::from_reply(replied.get(0)?)?;
            return Ok((liveness, UserAccess::from_reply(replied.get(1)?)?));
        }
        let (cred_reply, user_reply): (redis::Value, redis::Value) = if self.conn.is_cluster() {
            // Two slots: the crate refuses a cross-slot pipeline, so the two reads go out
            // at once, each to its node; the request waits for the slower one.
            let (mut a, mut b) = (self.plain(), self.plain());
            self.bounded(async {
                futures_util::future::try_join(
                    cred.to_cmd()?.query_async(&mut a),
                    user.to_cmd()?.query_async(&mut b),
                )
                .await
            })
            .await?
        } else {
            let mut pipe = redis::pipe();
            let to_cmd = |read: Read<'_>| read.to_cmd().map_err(StoreError::Redis);
            pipe.add_command(to_cmd(cred)?).add_command(to_cmd(user)?);
            let mut conn = self.plain();
            self.bounded(pipe.query_async(&mut conn)).await?
        };
        let liveness = Liveness::from_reply(&cred_reply)?;
        Ok((liveness, UserAccess::from_reply(&user_reply)?))
    }

    /// `read` on its own, through redis-rs (a store without a read batcher).
    async fn query_alone(&self, read: Read<'_>) -> Result<redis::Value, StoreError> {
        self.bounded(async { read.to_cmd()?.query_async(&mut self.plain()).await })
            .await
    }

    /// `HMGET cred:<prefix> hash revoked revoked_ms`: what can change about a known
    /// credential (written without a `String` key: commands.rs).
    fn liveness_read<'a>(&'a self, prefix: &'a str) -> Read<'a> {
        Read::liveness(Joined(self.keys.credential_pieces(prefix)))
    }

    /// `HMGET user:<user> status org:<org>`: the owner's status and role in `org`.
    fn access_read<'a>(&'a self, user: &'a str, org: &'a str) -> Read<'a> {
        Read::access(Joined(self.keys.user_pieces(user)), org)
    }

    /// What can change about a credential already known to this instance (its stored hash
    /// and whether it is revoked; `None` if the record is gone): the warm API key's one read
    /// (`HMGET`, batched in strict mode; none in tracked mode while cached).
    ///
    /// # Errors
    /// [`StoreError`] on timeout or Redis error.
    pub async fn liveness(&self, prefix: &str) -> Result<Option<Liveness>, StoreError> {
        if let Some(live) = &self.live {
            return Ok(self.live_credential(live, prefix).await?.liveness());
        }
        let hmget = self.liveness_read(prefix);
        match &self.reads {
            Some(reads) => Liveness::from_reply(self.timed(reads.read([hmget])).await?.get(0)?),
            None => Liveness::from_reply(&self.query_alone(hmget).await?),
        }
    }

    /// The user's status and current role in `org`, in one command.
    ///
    /// # Errors
    /// [`StoreError`] on timeout or Redis error.
    pub async fn access(&self, user: &str, org: &str) -> Result<UserAccess, StoreError> {
        if let Some(live) = &self.live {
            let owner = self.live_user(live, user).await?;
            return Ok(UserAccess {
                status: owner.status,
                role: owner.roles.get(org).cloned(),
            });
        }
        let hmget = self.access_read(user, org);
        match &self.reads {
            Some(reads) => UserAccess::from_reply(self.timed(reads.read([hmget])).await?.get(0)?),
            None => UserAccess::from_reply(&self.query_alone(hmget).await?),
        }
    }

    /// The whole user record, if the user exists.
    ///
    /// # Errors
    /// [`StoreError`] on timeout or Redis error.
    pub async fn user(&self, user: &str) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.plain();
        let fields: HashMap<String, String> =
            self.bounded(conn.hgetall(self.keys.user(user))).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let (status, orgs) = user_fields(fields);
        Ok(Some(UserRecord { status, orgs }))
    }

    /// Sets the user's role in `org` (creating the user as active if new), in one transaction.
    ///
    /// # Errors
    /// [`StoreError`] on timeout or Redis error.
    pub async fn put_membership(
        &self,
        user: &str,
        org: &str,
        role: &str,
    ) -> Result<(), StoreError> {
        let key = self.keys.user(user);
        let mut conn = self.plain();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_nx(&key, "status", UserStatus::Active.as_str())
            .ignore()
            .hset(&key, membership_field(org), role)
            .ignore();
        self.bounded(pipe.query_async::<()>(&mut conn)).await?;
        self.confirm_write().await
    }

    /// Ends the user's membership in `org`; `false` if there was none.
    ///
    /// # Errors
    /// [`StoreError`] on timeout or Redis error.
    pub async fn leave(&self, user: &str, org: &str) -> Result<bool, StoreError> {
        let mut conn = self.plain();
        let removed: u64 = self
            .bounded(conn.hdel(self.keys.user(user), membership_field(org)))
            .await?;
        if removed > 0 {
            self.confirm_write().await?;
        }
        Ok(removed > 0)
    }

    /// Marks the user removed (final: nothing sets another status afterwards).
    ///
    /// # Errors
    /// [`StoreError`] on timeout or Redis error.
    pub async fn set_removed(&self, user: &str) -> Result<(), StoreError> {
        let mut conn = self.plain();
        let status = UserStatus::Removed.as_str();
        self.bounded(conn.hset::<_, _, _, ()>(self.keys.user(user), "status", status))
            .await?;
        self.confirm_write().await
    }

    /// Sets an existing user's status to `status` in one step that refuses a removed user,
    /// so a suspension or reactivation racing a removal cannot undo it.
    ///
    /// # Errors
    /// [`StoreError`] on timeout or Redis error.
    pub async fn set_status_unless_removed(
        &self,
        user: &str,
        status: UserStatus,
    ) -> Result<StatusChange, StoreError> {
        let script = redis::Script::new(SET_STATUS_UNLESS_REMOVED);
        let mut invocation = script.key(self.keys.user(user));
        invocation.arg(status.as_str());
        let mut conn = self.plain();
        let outcome: u8 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        if outcome == 1 {
            self.confirm_write().await?;
        }
        Ok(match outcome {
            1 => StatusChange::Set,
            0 => StatusChange::Removed,
            _ => StatusChange::NoSuchUser,
        })
    }

    /// Stores a new credential (record with its Redis expiry, then its index entry); `false`
    /// if the prefix is already taken.
    ///
    /// Two steps, each on one key, so that every command touches one hash slot: first the
    /// record (one script: refuse if the prefix exists, `HSET`, `EXPIREAT`), then `SADD` to the
    /// user's or org's index. The secret is shown only after both succeeded, so a crash or
    /// error between them leaves a record nobody holds the secret of: it authenticates nobody,
    /// is missing from listings, and disappears with its Redis expiry (a `never` one stays
    /// until revoked by prefix). The reverse order could lose a live credential from its
    /// listing (see [`Store::indexed_credentials`]).
    ///
    /// # Errors
    /// [`StoreError`] on timeout or Redis error.
    pub async fn insert_credential(&self, record: &CredentialRecord) -> Result<bool, StoreError> {
        let index = match (&record.kind, &record.user) {
            (Kind::Pat, Some(user)) => self.keys.user_tokens(user),
            (Kind::Pat, None) => {
                return Err(StoreError::Corrupt {
                    key: self.keys.credential(&record.prefix),
                    problem: "PAT without user".into(),
                })
            }
            (Kind::ApiKey, _) => self.keys.org_keys(&record.org),
        };
        let expire_at = record
            .expires
            .map_or(0, |e| e.saturating_add(EXPIRED_RETENTION_SECS));
        let script = redis::Script::new(INSERT_CREDENTIAL);
        let mut invocation = script.key(self.keys.credential(&record.prefix));
        invocation.arg(expire_at);
        for (field, value) in record.to_fields() {
            invocation.arg(field).arg(value);
        }
        let mut conn = self.plain();
        let inserted: u8 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        if inserted != 1 {
            return Ok(false);
        }
        let _: u64 = self.bounded(conn.sadd(index, &record.prefix)).await?;
        // A gateway may hold the prefix cached as absent (Redis tracks absent keys too): the
        // fence makes the new credential usable everywhere at once. Unconfirmed, it is only
        // refused (unknown) for a while by the gateway that did not acknowledge, which grants
        // nothing; failing here instead would lose the secret shown only on success.
        match self.confirm_write().await {
            Err(unconfirmed @ StoreError::Unconfirmed { .. }) => {
                log::warn!("credential {} created; {unconfirmed}", record.prefix);
            }
            outcome => outcome?,
        }
        Ok(true)
    }

    /// Revokes the credential `prefix` of `kind`, at most once.
    ///
    /// # Errors
    /// [`StoreError`] on timeout or Redis error.
    pub async fn revoke(&self, prefix: &str, kind: Kind, now: u64) -> Result<Revoked, StoreError> {
        let script = redis::Script::new(REVOKE_CREDENTIAL);
        let mut invocation = script.key(self.keys.credential(prefix));
        invocation
            .arg(now)
            .arg(REVOKED_RETENTION_SECS)
            .arg(kind.as_str());
        let mut conn = self.plain();
        let outcome: u8 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        if outcome == 1 {
            self.confirm_write().await?;
        }
        Ok(match outcome {
            1 => Revoked::Now,
            2 => Revoked::Already,
            _ => Revoked::NotFound,
        })
    }

    /// Every credential listed in an index set (a user's PATs or an org's API keys) with its
    /// last use, in two round trips; entries whose record has gone are dropped from the index.
    ///
    /// Dropping cannot lose a live credential: a record is always written before its index
    /// entry, and after `SREM` every dropped prefix whose record exists again (a creation
    /// reusing the prefix, racing this listing) is put back.
    ///
    /// # Errors
    /// [`StoreError`] on timeout, Redis error or a corrupt record.
    pub async fn indexed_credentials(
        &self,
        index: &str,
    ) -> Result<Vec<(CredentialRecord, Option<LastUse>)>, StoreError> {
        let mut conn = self.plain();
        let mut prefixes: Vec<String> = self.bounded(conn.smembers(index)).await?;
        prefixes.sort();
        let found = self.credentials_with_use(&prefixes).await?;
        let mut records = Vec::with_capacity(found.len());
        let mut gone = Vec::new();
        for (prefix, entry) in prefixes.iter().zip(found) {
            match entry {
                Some(entry) => records.push(entry),
                None => gone.push(prefix.clone()),
            }
        }
        if !gone.is_empty() {
            let _: u64 = self.bounded(conn.srem(index, &gone)).await?;
            for prefix in &gone {
                let back: bool = self
                    .bounded(conn.exists(self.keys.credential(prefix)))
                    .await?;
                if back {
                    let _: u64 = self.bounded(conn.sadd(index, prefix)).await?;
                }
            }
        }
        Ok(records)
    }

    /// The records and last uses of `prefixes`, in one pipelined round trip (`None` where the
    /// record is gone); on a cluster, one command per key, sent concurrently.
    ///
    /// # Errors
    /// [`StoreError`] on timeout, Redis error or a corrupt record.
    pub async fn credentials_with_use(
        &self,
        prefixes: &[String],
    ) -> Result<Vec<Option<(CredentialRecord, Option<LastUse>)>>, StoreError> {
        if prefixes.is_empty() {
            return Ok(Vec::new());
        }
        type Reply = Vec<(HashMap<String, String>, (Option<u64>, Option<String>))>;
        let replies: Reply = if self.conn.is_cluster() {
            // Keys in many slots: one command per key, all sent at once.
            let reads = prefixes.iter().map(|prefix| {
                let (mut a, mut b) = (self.plain(), self.plain());
                let (cred, used) = (self.keys.credential(prefix), self.keys.used(prefix));
                async move {
                    futures_util::future::try_join(
                        a.hgetall(cred),
                        b.hmget(used, &["at", "clients"]),
                    )
                    .await
                }
            });
            self.bounded(futures_util::future::try_join_all(reads))
                .await?
        } else {
            let mut pipe = redis::pipe();
            for prefix in prefixes {
                pipe.hgetall(self.keys.credential(prefix))
                    .hmget(self.keys.used(prefix), &["at", "clients"]);
            }
            let mut conn = self.plain();
            self.bounded(pipe.query_async(&mut conn)).await?
        };
        prefixes
            .iter()
            .zip(replies)
            .map(|(prefix, (fields, (at, clients)))| {
                if fields.is_empty() {
                    return Ok(None);
                }
                let key = self.keys.credential(prefix);
                let record = CredentialRecord::from_fields(&key, prefix, fields)?;
                let last_use = at.map(|at| LastUse {
                    at,
                    clients: clients
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(str::to_string)
                        .collect(),
                });
                Ok(Some((record, last_use)))
            })
            .collect()
    }

    /// Every credential prefix in Redis, by SCAN (on every primary of a cluster; for pruning,
    /// never on the request path).
    ///
    /// # Errors
    /// [`StoreError`] on timeout or Redis error.
    pub async fn all_credential_prefixes(&self) -> Result<Vec<String>, StoreError> {
        let pattern = self.keys.credential_pattern();
        let strip = self.keys.credential("");
        let mut conn = self.plain();
        // A cluster's keys are spread over its primaries: SCAN each of them.
        let nodes: Vec<Option<(String, u16)>> = if self.conn.is_cluster() {
            self.bounded(conn.primaries())
                .await?
                .into_iter()
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        let mut prefixes = Vec::new();
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply = match &node {
                    Some((host, port)) => self.bounded(conn.on_node(scan, host, *port)).await?,
                    None => self.bounded(scan.query_async(&mut conn)).await?,
                };
                let (next, keys): (u64, Vec<String>) =
                    redis::from_redis_value(reply).map_err(redis::RedisError::from)?;
                prefixes.extend(
                    keys.iter()
                        .filter_map(|k| k.strip_prefix(&strip))
                        .map(str::to_string),
                );
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        prefixes.sort();
        prefixes.dedup();
        Ok(prefixes)
    }

    /// Records uses reported by this instance, one script call per credential, pipelined in
    /// one round trip (on a cluster: concurrent calls, since each key has its own slot). `uses` holds (prefix, unix time, clients oldest first).
    ///
    /// # Errors
    /// [`StoreError`] on timeout or Redis error.
    pub async fn record_uses(&self, uses: &[(String, u64, Vec<String>)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let script = redis::Script::new(RECORD_USE);
        let invocation = |prefix: &str, at: u64, clients: &[String]| {
            let mut invocation = script.key(self.keys.used(prefix));
            invocation
                .arg(at)
                .arg(LAST_USED_RETENTION_SECS)
                .arg(LAST_USED_CLIENTS);
            for client in clients {
                invocation.arg(client);
            }
            invocation
        };
        if self.conn.is_cluster() {
            // One key per call, in as many slots: concurrent calls, each loading the script
            // on its node if that node lacks it (NOSCRIPT).
            let calls = uses.iter().map(|(prefix, at, clients)| {
                let mut conn = self.plain();
                let invocation = invocation(prefix, *at, clients);
                async move { invocation.invoke_async::<()>(&mut conn).await }
            });
            return self
                .bounded(futures_util::future::try_join_all(calls))
                .await
                .map(|_| ());
        }
        let mut pipe = redis::pipe();
        // SCRIPT LOAD first, so the EVALSHAs cannot miss on a fresh or restarted server.
        pipe.load_script(&script).ignore();
        for (prefix, at, clients) in uses {
            pipe.invoke_script(&invocation(prefix, *at, clients))
                .ignore();
        }
        let mut conn = self.plain();
        self.bounded(pipe.query_async::<()>(&mut conn)).await
    }

    /// Appends entries to the audit stream in one round trip, trimming it to about
    /// `max_entries`.
    ///
    /// # Errors
    /// [`StoreError`] on timeout or Redis error.
    pub async fn append_audit(
        &self,
        stream: AuditStream,
        entries: &[Vec<(&'static str, String)>],
        max_entries: u64,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let key = self.keys.audit(stream);
        let mut pipe = redis::pipe();
        for fields in entries {
            pipe.xadd_maxlen(
                &key,
                redis::streams::StreamMaxlen::Approx(max_entries as usize),
                "*",
                fields,
            )
            .ignore();
        }
        let mut conn = self.plain();
        self.bounded(pipe.query_async::<()>(&mut conn)).await
    }

    /// Audit entries, newest first: up to `count` ids before `before` (exclusive; from the
    /// newest when `None`).
    ///
    /// # Errors
    /// [`StoreError`] on timeout or Redis error.
    pub async fn audit_before(
        &self,
        stream: AuditStream,
        before: Option<&str>,
        count: usize,
    ) -> Result<Vec<StoredAudit>, StoreError> {
        let end = before.map_or_else(|| "+".to_string(), |id| format!("({id}"));
        let mut conn = self.plain();
        let reply: redis::streams::StreamRangeReply = self
            .bounded(conn.xrevrange_count(self.keys.audit(stream), end, "-", count))
            .await?;
        Ok(stored_audit(reply))
    }

    /// Audit entries after `after` (exclusive; from the start when `None`), oldest first.
    ///
    /// # Errors
    /// [`StoreError`] on timeout or Redis error.
    pub async fn audit_after(
        &self,
        stream: AuditStream,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<StoredAudit>, StoreError> {
        let start = after.map_or_else(|| "-".to_string(), |id| format!("({id}"));
        let mut conn = self.plain();
        let reply: redis::streams::StreamRangeReply = self
            .bounded(conn.xrange_count(self.keys.audit(stream), start, "+", count))
            .await?;
        Ok(stored_audit(reply))
    }
}

fn stored_audit(reply: redis::streams::StreamRangeReply) -> Vec<StoredAudit> {
    reply
        .ids
        .into_iter()
        .map(|entry| {
            let mut fields: Vec<(String, String)> = entry
                .map
                .iter()
                .filter_map(|(k, v)| {
                    redis::from_redis_value_ref::<String>(v)
                        .ok()
                        .map(|v| (k.clone(), v))
                })
                .collect();
            fields.sort();
            StoredAudit {
                id: entry.id,
                fields,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{Liveness, StoreError, UserAccess, UserStatus};
    use redis::Value;

    fn bulk(text: &[u8]) -> Value {
        Value::BulkString(text.to_vec())
    }

    #[test]
    fn a_liveness_reply_is_read_in_place() {
        let live = Value::Array(vec![bulk(b"$2b$04$hash"), Value::Nil, Value::Nil]);
        let liveness = Liveness::from_reply(&live)
            .expect("reads")
            .expect("a record");
        assert_eq!(&liveness.hash[..], b"$2b$04$hash");
        assert_eq!(liveness.revoked, None);
        // Revoked: milliseconds when stored, else seconds × 1000, else 0 (still revoked).
        let revoked = |seconds: &[u8], ms: Option<&[u8]>| {
            let ms = ms.map_or(Value::Nil, bulk);
            let reply = Value::Array(vec![bulk(b"h"), bulk(seconds), ms]);
            Liveness::from_reply(&reply)
                .expect("reads")
                .expect("a record")
                .revoked
        };
        assert_eq!(
            revoked(b"1700000000", Some(b"1700000000123")),
            Some(1_700_000_000_123)
        );
        assert_eq!(revoked(b"1700000000", None), Some(1_700_000_000_000));
        assert_eq!(revoked(b"garbage", Some(b"\xff")), Some(0));
        // No hash: no record.
        let gone = Value::Array(vec![Value::Nil, Value::Nil, Value::Nil]);
        assert_eq!(Liveness::from_reply(&gone).expect("reads"), None);
    }

    #[test]
    fn an_access_reply_is_read_in_place() {
        let reply = Value::Array(vec![bulk(b"suspended"), bulk(b"member")]);
        let access = UserAccess::from_reply(&reply).expect("reads");
        assert_eq!(access.status, Some(UserStatus::Suspended));
        assert_eq!(access.role.as_deref(), Some("member"));
        // An unknown status is none (inactive); no membership is no role.
        let reply = Value::Array(vec![bulk(b"\xffactive"), Value::Nil]);
        let access = UserAccess::from_reply(&reply).expect("reads");
        assert_eq!((access.status, access.role), (None, None));
    }

    #[test]
    fn replies_of_another_shape_are_errors_not_empty_records() {
        let error = redis::parse_redis_value(b"-WRONGTYPE not a hash\r\n").expect("parses");
        let shapes = [
            error,
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![bulk(b"h"), Value::Nil]),
            Value::Array(vec![bulk(b"h"), Value::Int(1), Value::Nil]),
            Value::Array(vec![bulk(b"\xff"), Value::Nil, Value::Nil]),
        ];
        for reply in &shapes {
            assert!(
                matches!(Liveness::from_reply(reply), Err(StoreError::Redis(_))),
                "{reply:?}"
            );
        }
        let bad_role = Value::Array(vec![bulk(b"active"), bulk(b"\xff")]);
        for reply in shapes.iter().take(3).chain([&bad_role]) {
            assert!(
                matches!(UserAccess::from_reply(reply), Err(StoreError::Redis(_))),
                "{reply:?}"
            );
        }
    }
}
