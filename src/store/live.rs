//! [`LiveCache`]: tracked mode's parsed copies of the credential and user records, kept
//! coherent by the invalidations Redis pushes (`CLIENT TRACKING` on the gateway's RESP3
//! connection), so a warm request costs two in-memory lookups and no Redis call, no reply
//! parsing and no key formatting.
//!
//! Coherence rules:
//! - An entry is dropped when Redis pushes an invalidation for its key; every entry is dropped
//!   on a flush (`FLUSHALL`/`FLUSHDB` pushes a null) and when the connection that carries the
//!   invalidations is lost (redis-rs pushes `Disconnection`): invalidations sent to a dead
//!   connection are lost, so nothing read through it is trusted again.
//! - A fill that raced an invalidation never lands: each fill notes the cache's generation
//!   before it sends its read, and inserts only if no invalidation of a credential or user
//!   key, flush or disconnection was applied meanwhile (checked and inserted under the same
//!   lock the invalidation takes). A fill may be thrown away needlessly; a stale fill is never
//!   kept. A pushed key of another kind moves nothing.
//! - The tracked connection carries only the fills and `PING`s (the heartbeat's, `patgate
//!   check`'s; store.rs sends every other command over the untracked one): Redis tracks
//!   whatever a tracking connection reads, so a last-used stamp's script would otherwise push
//!   an invalidation back for each stamp written.
//! - Redis tracks keys per connection and remembers a key once read, also a key that does
//!   not exist, so an absent record is cached as absent and its creation invalidates it.
//!
//! - A connection can also die silently (a partition, a stopped server): no invalidation and
//!   no `Disconnection` arrive, and warm requests send nothing that would notice. So a
//!   heartbeat ([`heartbeat`]) sends `PING` on the same connection every `redis.heartbeat_ms`
//!   (default 500 ms); one that fails or takes longer than its deadline suspends the cache
//!   (dropped, no lookups, no fills; reads go over a second, untracked connection, because
//!   redis-rs's own reply cache on the tracked one would be as stale) until a `PING` is
//!   answered again. A `PONG` also proves every push Redis sent before it has reached the
//!   connection. Stale service is thus bounded by the heartbeat period plus its deadline, and
//!   requests meanwhile read Redis (and fail closed if it does not answer).
//!
//! The lag this leaves (an invalidation travels from Redis to this cache after the writer got
//! its acknowledgement) is what the revocation-lag bench measures for tracked mode.

use super::connection::Connection;
use super::fence::InstanceFence;
use super::{CredentialRecord, Keys, PackedRecord, StoreError, UserStatus};
use crate::token::PREFIX_LEN;
use redis::aio::AsyncPushSender;
use redis::{PushInfo, PushKind, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

/// The least time a heartbeat `PING` is given before the connection counts as silent (the
/// store's own deadline when that is longer), so a busy moment does not drop the cache.
pub const HEARTBEAT_DEADLINE: Duration = Duration::from_millis(200);

/// A credential record as cached: `None` when the key does not exist. Held by value (one
/// pointer), under the prefix inline, so an entry costs no allocation besides the shared
/// record (whose revocation time keeps `revoked_ms`).
#[derive(Debug, Clone)]
pub struct CachedCredential {
    /// The parsed record, packed as the request path needs it, shared with the
    /// verified-secret cache.
    pub record: Option<Arc<PackedRecord>>,
}

impl CachedCredential {
    /// The hash and revocation, as a strict read would give them.
    pub fn liveness(&self) -> Option<super::Liveness> {
        self.record.as_ref().map(|record| super::Liveness {
            hash: record.hash_bytes(),
            revoked: record.revoked_ms(),
        })
    }
}

/// A user record as cached (status `None` when the key does not exist).
#[derive(Debug, Default)]
pub struct CachedUser {
    /// `status`.
    pub status: Option<UserStatus>,
    /// `org:<org>` → role. foldhash, not SipHash: looked up on every warm request, and the
    /// org ids come from records written by admins, not from requests.
    pub roles: HashMap<String, String, foldhash::fast::RandomState>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Invalidation pushes received (one per key, flushes and disconnections included; a key
    /// of a kind the cache never holds is counted and otherwise ignored).
    pub invalidations: AtomicU64,
    /// Fills dropped because an invalidation, flush or disconnection was applied while they
    /// were in flight (not those made while the cache is suspended, which never land).
    pub discarded_fills: AtomicU64,
}

/// The cache (see the module docs).
pub struct LiveCache {
    credentials: quick_cache::sync::Cache<PrefixKey, CachedCredential>,
    users: quick_cache::sync::Cache<String, Arc<CachedUser>>,
    /// Bumped by every invalidation of a cached kind of key, flush and disconnection; a fill
    /// lands only if it did not move.
    generation: AtomicU64,
    /// The heartbeat found the connection silent: nothing is served or filled.
    suspended: AtomicBool,
    /// Taken shared by fills (check + insert), exclusively by invalidations (bump + remove).
    gate: RwLock<()>,
    credential_key_prefix: String,
    user_key_prefix: String,
    /// Confirmed mode: the instance's lease (nothing is served without it) and the wake-up
    /// a raised fence sends (fence.rs).
    fence: Option<Arc<InstanceFence>>,
    /// Counters.
    pub stats: LiveStats,
}

/// A credential prefix, inline: every well-formed prefix is [`PREFIX_LEN`] bytes (a request
/// with another length never reaches the store).
type PrefixKey = [u8; PREFIX_LEN];

fn prefix_key(prefix: &str) -> Option<PrefixKey> {
    prefix.as_bytes().try_into().ok()
}

/// The cached entry an invalidation names.
enum Invalidated<'a> {
    /// `cred:<prefix>`.
    Credential(PrefixKey),
    /// `user:<user>`.
    User(&'a str),
}

/// Where a fill stands: the generation it started at.
#[derive(Debug, Clone, Copy)]
pub struct FillTicket(u64);

impl LiveCache {
    /// A cache of at most `entries` credential records and as many user records, for keys
    /// laid out by `keys`.
    pub fn new(entries: usize, keys: &Keys) -> LiveCache {
        let entries = entries.max(1);
        LiveCache {
            credentials: quick_cache::sync::Cache::new(entries),
            users: quick_cache::sync::Cache::new(entries),
            generation: AtomicU64::new(0),
            suspended: AtomicBool::new(false),
            gate: RwLock::new(()),
            credential_key_prefix: keys.credential(""),
            user_key_prefix: keys.user(""),
            fence: None,
            stats: LiveStats::default(),
        }
    }

    /// Confirmed mode's cache: as [`LiveCache::new`], but it serves only while `fence`
    /// holds its lease, and starts suspended (no lease yet; fence.rs's task grants it).
    pub fn confirmed(entries: usize, keys: &Keys, fence: Arc<InstanceFence>) -> LiveCache {
        LiveCache {
            fence: Some(fence),
            suspended: AtomicBool::new(true),
            ..LiveCache::new(entries, keys)
        }
    }

    /// Confirmed mode's fence.
    pub fn fence(&self) -> Option<Arc<InstanceFence>> {
        self.fence.clone()
    }

    /// Whether entries may be served now: not suspended and, in confirmed mode, under the
    /// lease. A lease found run out suspends the cache (dropped; the request reads Redis over
    /// the untracked connection) until fence.rs's task renews it: the pushes that arrived
    /// meanwhile may not all be applied yet, and the writers have stopped waiting for this
    /// instance.
    fn serving(&self) -> bool {
        if self.suspended.load(Ordering::Acquire) {
            return false;
        }
        match &self.fence {
            Some(fence) if !fence.holds_lease(Instant::now()) => {
                self.suspend("its lease ran out");
                false
            }
            _ => true,
        }
    }

    /// The cached credential record for `prefix` (none while not [serving]).
    ///
    /// [serving]: LiveCache::serving
    pub fn credential(&self, prefix: &str) -> Option<CachedCredential> {
        if !self.serving() {
            return None;
        }
        self.credentials.get(&prefix_key(prefix)?)
    }

    /// The cached user record for `user` (none while not [serving]).
    ///
    /// [serving]: LiveCache::serving
    pub fn user(&self, user: &str) -> Option<Arc<CachedUser>> {
        if !self.serving() {
            return None;
        }
        self.users.get(user)
    }

    /// The invalidation connection went silent (`why`): drop everything and serve nothing
    /// until [`resume`].
    ///
    /// [`resume`]: LiveCache::resume
    pub fn suspend(&self, why: &str) {
        if !self.suspended.swap(true, Ordering::AcqRel) {
            log::warn!(
                "redis record cache suspended: {why}; cache dropped, every request reads Redis \
                 until the invalidation connection answers again"
            );
        }
        self.clear();
    }

    /// The connection answered a heartbeat (in confirmed mode: the lease was renewed): cache
    /// again. Fills started while suspended read over another connection (whose keys Redis
    /// does not track for this one), so they are discarded: resuming moves the generation.
    pub fn resume(&self) {
        let _exclusive = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        if self.suspended.swap(false, Ordering::AcqRel) {
            self.generation.fetch_add(1, Ordering::AcqRel);
            log::info!("redis record cache: the invalidation connection answers; caching");
        }
    }

    /// Whether the heartbeat has suspended the cache.
    pub fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::Acquire)
    }

    /// Taken before a fill's read is sent.
    pub fn ticket(&self) -> FillTicket {
        FillTicket(self.generation.load(Ordering::Acquire))
    }

    /// Caches `credential` for `prefix` unless an invalidation was applied since `ticket`.
    pub fn fill_credential(&self, ticket: FillTicket, prefix: &str, value: CachedCredential) {
        let Some(key) = prefix_key(prefix) else {
            return;
        };
        self.fill(ticket, || self.credentials.insert(key, value));
    }

    /// Caches `user` unless an invalidation was applied since `ticket`.
    pub fn fill_user(&self, ticket: FillTicket, user: &str, value: Arc<CachedUser>) {
        self.fill(ticket, || self.users.insert(user.to_string(), value));
    }

    fn fill(&self, ticket: FillTicket, insert: impl FnOnce()) {
        let _shared = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            self.stats.discarded_fills.fetch_add(1, Ordering::Relaxed);
        } else if !self.suspended.load(Ordering::Acquire) {
            insert();
        }
    }

    /// Applies an invalidation of `key` (a full Redis key name). A key outside the
    /// credential and user records cannot make a fill stale (fills read only those), so it
    /// moves nothing: otherwise each such push would throw away the fills in flight.
    pub fn invalidate(&self, key: &[u8]) {
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
        let Ok(key) = std::str::from_utf8(key) else {
            return;
        };
        if let Some(fence) = self.fence.as_ref().filter(|f| f.is_generation_key(key)) {
            // A writer raised a fence: its writes' invalidations came before this one and
            // are applied; fence.rs's task proves it with a read and acknowledges.
            fence.wake();
            return;
        }
        let named = if let Some(prefix) = key.strip_prefix(&self.credential_key_prefix) {
            prefix_key(prefix).map(Invalidated::Credential)
        } else {
            key.strip_prefix(&self.user_key_prefix)
                .map(Invalidated::User)
        };
        let Some(entry) = named else {
            return;
        };
        let _exclusive = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        match entry {
            Invalidated::Credential(prefix) => {
                self.credentials.remove(&prefix);
            }
            Invalidated::User(user) => {
                self.users.remove(user);
            }
        }
    }

    /// Drops everything (a flush, or the invalidation connection was lost).
    pub fn clear(&self) {
        let _exclusive = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
        self.credentials.clear();
        self.users.clear();
    }

    /// Entries held (credentials + users).
    pub fn len(&self) -> usize {
        self.credentials.len() + self.users.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sends `PING` on `conn` every `period` (deadline: the longer of `timeout` and
/// [`HEARTBEAT_DEADLINE`]) and suspends or resumes `live` by the answer; returns when the
/// cache is dropped (its store is gone).
pub async fn heartbeat(
    live: Weak<LiveCache>,
    mut conn: Connection,
    period: Duration,
    timeout: Duration,
) {
    let deadline = timeout.max(HEARTBEAT_DEADLINE);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<()>(&mut conn);
        let answered = matches!(tokio::time::timeout(deadline, ping).await, Ok(Ok(())));
        let Some(live) = live.upgrade() else {
            return;
        };
        if answered {
            live.resume();
        } else {
            live.suspend("the invalidation connection did not answer a heartbeat");
            conn.suspect();
        }
    }
}

/// Parses an `HGETALL cred:<prefix>` reply for the cache.
///
/// # Errors
/// [`StoreError::Corrupt`] for a record without the shape patgate writes.
pub fn parse_credential(
    key: &str,
    prefix: &str,
    fields: HashMap<String, String>,
) -> Result<CachedCredential, StoreError> {
    if fields.is_empty() {
        return Ok(CachedCredential { record: None });
    }
    let revoked_ms = fields.get("revoked_ms").and_then(|ms| ms.parse().ok());
    let record = CredentialRecord::from_fields(key, prefix, fields)?;
    Ok(CachedCredential {
        record: Some(Arc::new(PackedRecord::pack(key, &record, revoked_ms)?)),
    })
}

/// Parses an `HGETALL user:<user>` reply for the cache.
pub fn parse_user(fields: HashMap<String, String>) -> CachedUser {
    let (status, roles) = super::user_fields(fields);
    CachedUser { status, roles }
}

/// Feeds Redis's pushes into a [`LiveCache`]; given to redis-rs as the connection's push
/// sender, so it runs on the connection's own task and must not block (it only takes the
/// cache's lock for a few removals).
pub struct Invalidator(pub Arc<LiveCache>);

impl AsyncPushSender for Invalidator {
    fn send(&self, info: PushInfo) -> Result<(), redis::aio::SendError> {
        match info.kind {
            PushKind::Invalidate => match info.data.first() {
                Some(Value::Array(keys)) => {
                    for key in keys {
                        if let Value::BulkString(key) = key {
                            self.0.invalidate(key);
                        } else {
                            self.0.clear();
                        }
                    }
                }
                // A null after FLUSHALL / FLUSHDB, or anything unexpected: drop it all.
                _ => self.0.clear(),
            },
            PushKind::Disconnection => self.0.clear(),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> LiveCache {
        LiveCache::new(100, &Keys::new("patgate:"))
    }

    fn user(role: &str) -> Arc<CachedUser> {
        Arc::new(CachedUser {
            status: Some(UserStatus::Active),
            roles: [("acme".to_string(), role.to_string())]
                .into_iter()
                .collect(),
        })
    }

    #[test]
    fn an_invalidation_drops_exactly_its_key() {
        let cache = cache();
        cache.fill_user(cache.ticket(), "alice", user("admin"));
        cache.fill_user(cache.ticket(), "bob", user("member"));
        cache.invalidate(b"patgate:user:alice");
        assert!(cache.user("alice").is_none());
        assert_eq!(cache.user("bob").expect("kept").roles["acme"], "member");
        cache.invalidate(b"otherapp:user:bob");
        assert!(
            cache.user("bob").is_some(),
            "another prefix's key is not ours"
        );
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_discarded() {
        let cache = cache();
        let ticket = cache.ticket();
        // The read was sent; meanwhile Redis pushed an invalidation (of any cached kind).
        cache.invalidate(b"patgate:cred:pat_Zz9Zz9");
        cache.fill_user(ticket, "alice", user("admin"));
        assert!(cache.user("alice").is_none());
        assert_eq!(cache.stats.discarded_fills.load(Ordering::Relaxed), 1);
        // A fill that started after it lands.
        cache.fill_user(cache.ticket(), "alice", user("viewer"));
        assert_eq!(cache.user("alice").expect("filled").roles["acme"], "viewer");
    }

    #[test]
    fn a_key_the_cache_never_holds_discards_no_fill() {
        let cache = cache();
        let ticket = cache.ticket();
        for key in [
            &b"patgate:used:pat_Ab3dE9"[..],
            b"patgate:user_tokens:alice",
            b"patgate:audit",
            b"patgate:cred:short",
            b"otherapp:cred:pat_Ab3dE9",
        ] {
            cache.invalidate(key);
        }
        cache.fill_user(ticket, "alice", user("admin"));
        assert_eq!(cache.user("alice").expect("filled").roles["acme"], "admin");
        assert_eq!(cache.stats.invalidations.load(Ordering::Relaxed), 5);
        assert_eq!(cache.stats.discarded_fills.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_disconnection_or_a_flush_drops_everything_and_in_flight_fills() {
        for push in [
            PushInfo {
                kind: PushKind::Disconnection,
                data: vec![],
            },
            PushInfo {
                kind: PushKind::Invalidate,
                data: vec![Value::Nil],
            },
        ] {
            let cache = Arc::new(cache());
            cache.fill_user(cache.ticket(), "alice", user("admin"));
            let ticket = cache.ticket();
            Invalidator(Arc::clone(&cache)).send(push).expect("sent");
            assert!(cache.is_empty());
            cache.fill_user(ticket, "bob", user("admin"));
            assert!(cache.user("bob").is_none(), "a fill from before the push");
        }
    }

    #[test]
    fn a_suspended_cache_serves_and_keeps_nothing_until_resumed() {
        let cache = cache();
        cache.fill_user(cache.ticket(), "alice", user("admin"));
        let ticket = cache.ticket();
        cache.suspend("a test");
        assert!(cache.is_suspended() && cache.user("alice").is_none());
        cache.fill_user(cache.ticket(), "bob", user("admin"));
        assert!(cache.is_empty(), "no fill lands while suspended");
        let during = cache.ticket();
        cache.resume();
        assert!(cache.user("alice").is_none(), "dropped, not hidden");
        cache.fill_user(ticket, "carol", user("admin"));
        assert!(
            cache.user("carol").is_none(),
            "a fill from before the suspension"
        );
        cache.fill_user(during, "erin", user("admin"));
        assert!(cache.user("erin").is_none(), "a fill read while suspended");
        cache.fill_user(cache.ticket(), "dave", user("admin"));
        assert!(cache.user("dave").is_some());
    }

    #[test]
    fn a_confirmed_cache_serves_only_under_its_lease() {
        let keys = Keys::new("patgate:");
        let fence = Arc::new(InstanceFence::new(&keys));
        let cache = LiveCache::confirmed(100, &keys, Arc::clone(&fence));
        assert!(cache.is_suspended(), "no lease yet");
        cache.fill_user(cache.ticket(), "alice", user("admin"));
        assert!(
            cache.user("alice").is_none(),
            "nothing lands before the first renewal"
        );
        fence.grant_for_test(Instant::now() + Duration::from_secs(60));
        cache.resume();
        cache.fill_user(cache.ticket(), "alice", user("admin"));
        assert!(cache.user("alice").is_some());
        // The lease ran out (a stopped process, a renewal that failed): nothing is served,
        // and what was held is dropped, not hidden.
        fence.grant_for_test(Instant::now());
        assert!(cache.user("alice").is_none());
        assert!(cache.is_suspended() && cache.is_empty());
    }

    #[test]
    fn a_raised_fence_wakes_the_lease_task_and_discards_no_fill() {
        let keys = Keys::new("patgate:");
        let fence = Arc::new(InstanceFence::new(&keys));
        let cache = LiveCache::confirmed(100, &keys, Arc::clone(&fence));
        let ticket = cache.ticket();
        cache.invalidate(keys.fence_generation().as_bytes());
        assert_eq!(
            cache.ticket().0,
            ticket.0,
            "the generation key is no record"
        );
        let woken = fence.woken_for_test();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), woken.notified())
                .await
                .expect("the push left a wake-up for the lease task");
        });
    }

    #[test]
    fn pushed_key_lists_are_applied() {
        let cache = Arc::new(cache());
        cache.fill_user(cache.ticket(), "alice", user("admin"));
        cache.fill_user(cache.ticket(), "bob", user("admin"));
        let push = PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(vec![
                Value::BulkString(b"patgate:user:alice".to_vec()),
                Value::BulkString(b"patgate:cred:pat_AAAAAA".to_vec()),
            ])],
        };
        Invalidator(Arc::clone(&cache)).send(push).expect("sent");
        assert!(cache.user("alice").is_none());
        assert!(cache.user("bob").is_some());
    }

    #[test]
    fn records_parse_with_absent_keys_cached_as_absent() {
        let absent = parse_credential("k", "pat_AAAAAA", HashMap::new()).expect("absent");
        assert!(absent.record.is_none());
        let user = parse_user(HashMap::from([
            ("status".to_string(), "suspended".to_string()),
            ("org:acme".to_string(), "admin".to_string()),
        ]));
        assert_eq!(user.status, Some(UserStatus::Suspended));
        assert_eq!(user.roles["acme"], "admin");
    }

    #[test]
    fn listings_and_the_cache_read_a_user_record_alike() {
        let fields = || {
            HashMap::from([
                ("status".to_string(), "active".to_string()),
                ("org:acme".to_string(), "admin".to_string()),
                ("org:beta".to_string(), "viewer".to_string()),
                ("created_ms".to_string(), "1".to_string()),
            ])
        };
        let (status, listed): (_, std::collections::BTreeMap<String, String>) =
            super::super::user_fields(fields());
        let cached = parse_user(fields());
        assert_eq!(status, Some(UserStatus::Active));
        assert_eq!(cached.status, status);
        assert_eq!(listed.len(), 2, "only org: fields are memberships");
        assert!(listed
            .iter()
            .all(|(org, role)| cached.roles.get(org) == Some(role)));
    }
}
