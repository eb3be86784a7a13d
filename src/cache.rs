//! The verified-secret cache: remembers, per presented token, that its secret matched a given
//! stored hash, so a PAT verified once on this instance is not bcrypt-checked again while its
//! stored hash is unchanged (and a warm API key needs only its hash and revocation read, not
//! its whole record).
//!
//! Security invariants, enforced here and in verify.rs:
//! - Keyed by a keyed BLAKE3 hash of the token under a random per-process key (a MAC: without
//!   the key no one can compute or aim at a digest), never by the token; the secret is never
//!   cached, logged or kept beyond the request.
//! - An entry is a fact that cannot go stale ("this secret matches hash H"): it is trusted only
//!   after this request has read the live record from Redis and found the same H. Revocation,
//!   expiry, suspension, role and membership are always decided from that live read, so a
//!   refill that raced a revocation can never bring the old state back.
//! - Bounded in entries (`verify.cache_entries`, S3-FIFO eviction by quick_cache).
//! - Concurrent first requests for one token share one bcrypt run (single flight).
//!
//! [`NegativeCache`] is its mirror image for wrong secrets: "this presented token does *not*
//! match hash H", kept for `verify.negative_ttl_ms`, so a client repeating one wrong token is
//! answered without another bcrypt run. Same key (the keyed digest, never the token), same
//! binding to the live hash, bounded by [`NEGATIVE_ENTRIES`].

use crate::hasher::PoolError;
use crate::store::PackedRecord;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// Bound of the negative cache: wrong secrets remembered at once. A flood of distinct guesses
/// evicts older entries (S3-FIFO), which only costs the bcrypt runs it would have cost anyway.
pub const NEGATIVE_ENTRIES: usize = 10_000;

/// Keyed BLAKE3 hash (256 bits) of a presented token under the process key.
pub type Digest = [u8; 32];

/// What a cache entry knows: the credential record whose stored hash the secret matched.
/// Records are immutable apart from `revoked` (patgate never rewrites one; a recreated record
/// has a new hash), so the entry also supplies the owner, org, narrowing and expiry, and a
/// warm request reads only what can change: the live hash, `revoked`, and the owner's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The record as read when the secret was verified, packed (store/packed.rs).
    pub record: Arc<PackedRecord>,
}

type Flight = Arc<OnceCell<Result<bool, PoolError>>>;

/// The cache and its single-flight table.
pub struct VerifiedCache {
    /// The random process key of [`Self::digest`]; it never leaves this process.
    key: [u8; 32],
    entries: Option<quick_cache::sync::Cache<Digest, Verified>>,
    in_flight: Mutex<HashMap<(Digest, Arc<str>), Flight>>,
}

impl VerifiedCache {
    /// A cache of at most `capacity` entries (0 disables caching; single flight still works).
    pub fn new(capacity: usize) -> VerifiedCache {
        let mut key = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut key[..]);
        VerifiedCache {
            key,
            entries: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The keyed digest of `token` (prefix + secret).
    ///
    /// BLAKE3 in keyed mode is a MAC with 256-bit output, like the HMAC-SHA256 it replaced, at
    /// about a tenth of the cost on a CPU without SHA extensions (613 against 7,115
    /// instructions for a 52-byte token; BENCHMARKS.md): it runs on every authenticated request.
    pub fn digest(&self, token: &[u8]) -> Digest {
        *blake3::keyed_hash(&self.key, token).as_bytes()
    }

    /// The entry for `digest`, if any. Not proof of anything until its hash is compared with
    /// the live record's.
    pub fn get(&self, digest: &Digest) -> Option<Verified> {
        self.entries.as_ref()?.get(digest)
    }

    /// Remembers that the token with `digest` matched `verified.hash`.
    pub fn insert(&self, digest: Digest, verified: Verified) {
        if let Some(entries) = &self.entries {
            entries.insert(digest, verified);
        }
    }

    /// Forgets `digest` (its credential was found revoked).
    pub fn remove(&self, digest: &Digest) {
        if let Some(entries) = &self.entries {
            entries.remove(digest);
        }
    }

    /// Number of entries (for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |e| e.len())
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `check` (a bcrypt verification of the token with `digest` against `hash`) once for
    /// all concurrent callers with the same digest and hash; the others await its result.
    ///
    /// # Errors
    /// Whatever `check` returned (e.g. [`PoolError::Overloaded`]), shared by every waiter.
    pub async fn single_flight<F>(
        &self,
        digest: Digest,
        hash: Arc<str>,
        check: F,
    ) -> Result<bool, PoolError>
    where
        F: Future<Output = Result<bool, PoolError>>,
    {
        let key = (digest, hash);
        let flight = {
            let Ok(mut table) = self.in_flight.lock() else {
                return check.await;
            };
            Arc::clone(table.entry(key.clone()).or_default())
        };
        let result = *flight.get_or_init(|| check).await;
        if let Ok(mut table) = self.in_flight.lock() {
            // Only the flight we joined is removed; a newer one under the same key stays.
            if table.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                table.remove(&key);
            }
        }
        result
    }

    /// Flights in progress (for tests).
    pub fn flights(&self) -> usize {
        self.in_flight.lock().map_or(0, |t| t.len())
    }
}

/// A wrong secret, as remembered: the stored hash it failed against, and until when.
#[derive(Debug, Clone)]
struct Refuted {
    /// The stored hash bcrypt refused the token against; any other live hash means a new check.
    hash: Arc<str>,
    /// After this instant the entry is ignored.
    until: Instant,
}

/// Recently refuted PAT secrets: a repeated identical wrong token is answered 401 from here
/// instead of being bcrypt-checked again.
///
/// Security invariants, enforced here and in verify.rs:
/// - Keyed by the [`VerifiedCache::digest`] of the token, never the token.
/// - Consulted only after the request has read the live record (so revoked and unknown still
///   answer as such) and only if the live hash is the one the token failed against; bcrypt is
///   deterministic, so a token refused against H can never match H, and a valid token can
///   never be denied from here.
/// - Short-lived (`verify.negative_ttl_ms`, at most a minute) and bounded
///   ([`NEGATIVE_ENTRIES`]). It saves bcrypt work only; failed-attempt limits still count
///   every request it answers.
pub struct NegativeCache {
    /// How long an entry is trusted.
    ttl: Duration,
    /// `None` when the TTL is zero (disabled).
    entries: Option<quick_cache::sync::Cache<Digest, Refuted>>,
}

impl NegativeCache {
    /// A negative cache keeping entries for `ttl`, at most `capacity` of them; a zero `ttl` or
    /// `capacity` disables it.
    pub fn new(ttl: Duration, capacity: usize) -> NegativeCache {
        let enabled = !ttl.is_zero() && capacity > 0;
        NegativeCache {
            ttl,
            entries: enabled.then(|| quick_cache::sync::Cache::new(capacity)),
        }
    }

    /// Whether the token with `digest` was refused against the live stored `hash` less than
    /// the TTL before `now`.
    pub fn is_refuted(&self, digest: &Digest, hash: &str, now: Instant) -> bool {
        let Some(entries) = &self.entries else {
            return false;
        };
        entries
            .get(digest)
            .is_some_and(|seen| now < seen.until && *seen.hash == *hash)
    }

    /// Remembers, from `now` on, that bcrypt refused the token with `digest` against `hash`.
    /// A later refusal of the same token replaces the entry (new hash, new deadline).
    pub fn remember(&self, digest: Digest, hash: Arc<str>, now: Instant) {
        if let Some(entries) = &self.entries {
            let until = now + self.ttl;
            entries.insert(digest, Refuted { hash, until });
        }
    }

    /// Number of entries, expired ones included until evicted or replaced (for tests).
    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |e| e.len())
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn verified(hash: &str) -> Verified {
        Verified {
            record: Arc::new(
                PackedRecord::pack(
                    "k",
                    &crate::store::CredentialRecord {
                        prefix: "pat_abcdef".into(),
                        kind: crate::token::Kind::Pat,
                        hash: hash.into(),
                        user: Some("alice".into()),
                        created_by: None,
                        org: "acme".into(),
                        role: None,
                        name: String::new(),
                        permissions: None,
                        created: 0,
                        expires: None,
                        revoked: None,
                    },
                    None,
                )
                .expect("packs"),
            ),
        }
    }

    #[test]
    fn digests_are_keyed_and_deterministic_per_process() {
        let a = VerifiedCache::new(10);
        let b = VerifiedCache::new(10);
        assert_eq!(a.digest(b"pat_x"), a.digest(b"pat_x"));
        assert_ne!(a.digest(b"pat_x"), a.digest(b"pat_y"));
        assert_ne!(
            a.digest(b"pat_x"),
            b.digest(b"pat_x"),
            "another process key, another digest"
        );
    }

    #[test]
    fn entries_are_bounded() {
        let cache = VerifiedCache::new(100);
        for i in 0..1000u32 {
            cache.insert(cache.digest(&i.to_le_bytes()), verified("h"));
        }
        assert!(cache.len() <= 100, "{}", cache.len());
        assert!(!cache.is_empty());
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let cache = VerifiedCache::new(0);
        let digest = cache.digest(b"t");
        cache.insert(digest, verified("h"));
        assert_eq!(cache.get(&digest), None);
    }

    #[tokio::test]
    async fn concurrent_checks_of_one_token_share_one_run() {
        let cache = VerifiedCache::new(10);
        let runs = AtomicUsize::new(0);
        let digest = cache.digest(b"pat_token");
        let check = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            Ok(true)
        };
        let hash: Arc<str> = "h".into();
        let results = tokio::join!(
            cache.single_flight(digest, hash.clone(), check()),
            cache.single_flight(digest, hash.clone(), check()),
            cache.single_flight(digest, hash.clone(), check()),
        );
        assert_eq!(results, (Ok(true), Ok(true), Ok(true)));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(cache.flights(), 0, "finished flights are removed");
    }

    #[tokio::test]
    async fn a_different_hash_is_a_different_flight() {
        let cache = VerifiedCache::new(10);
        let digest = cache.digest(b"pat_token");
        let (a, b) = tokio::join!(
            cache.single_flight(digest, "h1".into(), async { Ok(true) }),
            cache.single_flight(digest, "h2".into(), async { Ok(false) }),
        );
        assert_eq!((a, b), (Ok(true), Ok(false)));
    }

    fn negative(ttl_ms: u64) -> (VerifiedCache, NegativeCache) {
        let negative = NegativeCache::new(Duration::from_millis(ttl_ms), 100);
        (VerifiedCache::new(10), negative)
    }

    #[test]
    fn a_refuted_token_is_remembered_for_the_hash_it_failed_against_only() {
        let (keys, negative) = negative(5_000);
        let now = Instant::now();
        let wrong = keys.digest(b"pat_wrong");
        negative.remember(wrong, "h1".into(), now);
        assert!(negative.is_refuted(&wrong, "h1", now));
        assert!(
            !negative.is_refuted(&wrong, "h2", now),
            "a changed stored hash makes the entry useless"
        );
        assert!(
            !negative.is_refuted(&keys.digest(b"pat_other"), "h1", now),
            "another token is another entry"
        );
    }

    #[test]
    fn a_refuted_token_is_forgotten_after_the_ttl() {
        let (keys, negative) = negative(5_000);
        let now = Instant::now();
        let wrong = keys.digest(b"pat_wrong");
        negative.remember(wrong, "h".into(), now);
        assert!(negative.is_refuted(&wrong, "h", now + Duration::from_millis(4_999)));
        assert!(!negative.is_refuted(&wrong, "h", now + Duration::from_millis(5_000)));
        // Refused again: a new deadline.
        negative.remember(wrong, "h".into(), now + Duration::from_secs(6));
        assert!(negative.is_refuted(&wrong, "h", now + Duration::from_secs(10)));
    }

    #[test]
    fn zero_ttl_disables_the_negative_cache() {
        let (keys, negative) = negative(0);
        let now = Instant::now();
        let wrong = keys.digest(b"pat_wrong");
        negative.remember(wrong, "h".into(), now);
        assert!(!negative.is_refuted(&wrong, "h", now));
        assert!(negative.is_empty());
    }

    #[test]
    fn negative_entries_are_bounded() {
        let (keys, negative) = negative(5_000);
        let now = Instant::now();
        for i in 0..1000u32 {
            negative.remember(keys.digest(&i.to_le_bytes()), "h".into(), now);
        }
        assert!(negative.len() <= 100, "{}", negative.len());
        assert!(!negative.is_empty());
    }
}
