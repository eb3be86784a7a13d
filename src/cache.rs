//! The verified-secret cache: remembers, per presented PAT, that its secret matched a given
//! stored bcrypt hash, so a credential verified once on this instance is not bcrypt-checked
//! again while its stored hash is unchanged.
//!
//! Security invariants, enforced here and in verify.rs:
//! - Keyed by an HMAC-SHA256 of the token under a random per-process key, never by the token;
//!   the secret is never cached, logged or kept beyond the request.
//! - An entry is a fact that cannot go stale ("this secret matches hash H"): it is trusted only
//!   after this request has read the live record from Redis and found the same H. Revocation,
//!   expiry, suspension, role and membership are always decided from that live read, so a
//!   refill that raced a revocation can never bring the old state back.
//! - Bounded in entries (`verify.cache_entries`, S3-FIFO eviction by quick_cache).
//! - Concurrent first requests for one token share one bcrypt run (single flight).

use crate::hasher::PoolError;
use crate::store::CredentialRecord;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// HMAC-SHA256 of a presented token under the process key.
pub type Digest = [u8; 32];

/// What a cache entry knows: the credential record whose stored hash the secret matched.
/// Records are immutable apart from `revoked` (patgate never rewrites one; a recreated record
/// has a new hash), so the entry also supplies the owner, org, narrowing and expiry, and a
/// warm request reads only what can change: the live hash, `revoked`, and the owner's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The record as read when the secret was verified (its `name` dropped to save memory).
    pub record: Arc<CredentialRecord>,
}

type Flight = Arc<OnceCell<Result<bool, PoolError>>>;

/// The cache and its single-flight table.
pub struct VerifiedCache {
    /// HMAC-SHA256 already keyed with the random process key; cloned per digest.
    keyed: Hmac<Sha256>,
    entries: Option<quick_cache::sync::Cache<Digest, Verified>>,
    in_flight: Mutex<HashMap<(Digest, Arc<str>), Flight>>,
}

impl VerifiedCache {
    /// A cache of at most `capacity` entries (0 disables caching; single flight still works).
    pub fn new(capacity: usize) -> VerifiedCache {
        let mut key = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut key[..]);
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes any key length");
        VerifiedCache {
            keyed,
            entries: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The keyed digest of `token` (prefix + secret).
    pub fn digest(&self, token: &[u8]) -> Digest {
        let mut mac = self.keyed.clone();
        mac.update(token);
        mac.finalize().into_bytes().into()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn verified(hash: &str) -> Verified {
        Verified {
            record: Arc::new(CredentialRecord {
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
            }),
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
}
