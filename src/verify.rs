//! The verification pipeline: a presented token and a route's requirements in, a [`Verdict`]
//! out. Each step is a named function; the first failure answers.
//!
//! 1. parse: format and checksum, done by the caller (no Redis) so that limits can key on
//!    the prefix before any work;
//! 2. read the live credential record by prefix; for a credential already verified on this
//!    instance, only what can change (stored hash, `revoked`), plus for a PAT the owner's
//!    status and role, in one round trip;
//! 3. the secret: the [`VerifiedCache`] entry if its hash equals the live one; else for API
//!    keys constant-time SHA-256; for PATs a [`NegativeCache`] entry if this very token was
//!    refused against that live hash moments ago (401 without bcrypt), else bcrypt on the
//!    [`BcryptPool`] (single flight; a refusal is remembered in the negative cache);
//! 4. `check_expiry`;
//! 5. the role: for a PAT, the owner's *current* status and role in the token's org; for an
//!    API key, its fixed role;
//! 6. `allow`: (role permissions as the conf says now) ∩ narrowing ⊇ route's `require`.
//!
//! Round trips per request: API key 1 (warm: `HMGET` of hash and revocation; first on this
//! instance: the record); warm PAT 1; cold PAT 2 (record, then owner). In strict mode
//! concurrent requests share their round trips (store/batch.rs); in tracked mode cached
//! records make the warm paths 0.
//!
//! Fail closed: any Redis error or timeout is [`Denial::AuthUnavailable`], a full pool is
//! [`Denial::Overloaded`]; only a completed pipeline yields [`Verdict::Allow`].

use crate::cache::{Digest, NegativeCache, Verified, VerifiedCache};
use crate::causes::with_causes;
use crate::denial::{Denial, InvalidReason};
use crate::hasher::{sha256_matches, BcryptPool, PoolError};
use crate::metrics;
use crate::permissions::Roles;
use crate::store::{Liveness, PackedRecord, Store, StoreError, UserAccess, UserStatus};
use crate::token::{Kind, Token};
use std::sync::Arc;

pub use crate::identity::Identity;

/// The outcome of verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed.
    Allow(Identity),
    /// The first check that failed.
    Deny(Denial),
}

/// What the pipeline needs; borrowed from the gateway for one request.
pub struct Verifier<'a> {
    /// Redis access.
    pub store: &'a Store,
    /// bcrypt pool.
    pub pool: &'a BcryptPool,
    /// Verified-secret cache.
    pub cache: &'a VerifiedCache,
    /// Recently refused secrets (same digests as `cache`).
    pub negative: &'a NegativeCache,
    /// Roles as the conf defines them now.
    pub roles: &'a Roles,
}

type Step<T> = Result<T, Denial>;

impl Verifier<'_> {
    /// Runs the pipeline for a parsed `token` against a route requiring `require`, at unix
    /// time `now`.
    pub async fn verify(&self, token: &Token<'_>, require: &[String], now: u64) -> Verdict {
        let outcome = match token.kind {
            Kind::Pat => self.verify_pat(token, require, now).await,
            Kind::ApiKey => self.verify_api_key(token, require, now).await,
        };
        match outcome {
            Ok(identity) => Verdict::Allow(identity),
            Err(denial) => Verdict::Deny(denial),
        }
    }

    /// API key. Warm (its SHA-256 matched on this instance before): one read of what can
    /// change (the stored hash, `revoked`); the remembered match counts only if the live hash
    /// is the one it was made against. Cold: the whole record, SHA-256, then remembered.
    /// Then expiry, the fixed role and scope.
    async fn verify_api_key(
        &self,
        token: &Token<'_>,
        require: &[String],
        now: u64,
    ) -> Step<Identity> {
        let digest = self.cache.digest(token.hash_input());
        if let Some(seen) = self.cache.get(&digest) {
            let record = &seen.record;
            let live = self
                .store
                .liveness(token.prefix())
                .await
                .map_err(|e| unavailable(&e, token.prefix()))?;
            if record.kind() == Kind::ApiKey && self.still_matches(&digest, record, live)? {
                return self.api_key_may_act(record, require, now);
            }
        }
        let record = self.load(token).await?;
        if !sha256_matches(token.hash_input(), record.hash()) {
            return Err(invalid(InvalidReason::WrongSecret));
        }
        self.cache.insert(
            digest,
            Verified {
                record: Arc::clone(&record),
            },
        );
        self.api_key_may_act(&record, require, now)
    }

    /// Whether the remembered match of the token with `digest` still counts against the live
    /// state: denied if the record is gone or revoked (a revocation of a credential verified
    /// here before is observed once as revocation lag, and forgotten); `false` if the stored
    /// hash changed (check the secret afresh); `true` if it is the hash it was matched with.
    fn still_matches(
        &self,
        digest: &Digest,
        record: &PackedRecord,
        live: Option<Liveness>,
    ) -> Step<bool> {
        match live {
            None => Err(invalid(InvalidReason::Unknown)),
            Some(Liveness {
                revoked: Some(revoked_ms),
                ..
            }) => {
                self.cache.remove(digest);
                let lag_ms = unix_now_ms().saturating_sub(revoked_ms);
                metrics::REVOCATION_LAG.observe(lag_ms as f64 / 1e3);
                Err(invalid(InvalidReason::Revoked))
            }
            Some(live) if record.hash_is(&live.hash) => {
                metrics::CACHE_HITS.inc();
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    /// An API key acts with its fixed role until it expires.
    fn api_key_may_act(
        &self,
        record: &Arc<PackedRecord>,
        require: &[String],
        now: u64,
    ) -> Step<Identity> {
        check_expiry(record, now)?;
        let role = record.role().ok_or(invalid(InvalidReason::Unknown))?;
        self.allow(record, role, require)
    }

    /// PAT. Warm (verified on this instance before): one pipelined read of what can change
    /// (the stored hash, `revoked`, the owner's status and role); the cached verification
    /// counts only if the live hash is the one it was made against. Cold: the record, bcrypt
    /// (once per token and hash), then the owner's state. A token bcrypt refused against the
    /// live hash less than `verify.negative_ttl_ms` ago is refused again after the record read
    /// (so revoked and unknown still answer first), without bcrypt.
    async fn verify_pat(&self, token: &Token<'_>, require: &[String], now: u64) -> Step<Identity> {
        let digest = self.cache.digest(token.hash_input());
        if let Some(seen) = self.cache.get(&digest) {
            let record = &seen.record;
            let (user, org) = (owner(record)?, record.org());
            let (live, access) = self
                .store
                .liveness_and_access(token.prefix(), user, org)
                .await
                .map_err(|e| unavailable(&e, token.prefix()))?;
            if self.still_matches(&digest, record, live)? {
                check_expiry(record, now)?;
                return self.owner_may_act(record, access, require);
            }
        }
        let record = self.load(token).await?;
        if self
            .negative
            .is_refuted(&digest, record.hash(), tokio::time::Instant::now())
        {
            metrics::NEGATIVE_HITS.inc();
            return Err(invalid(InvalidReason::WrongSecret));
        }
        metrics::CACHE_MISSES.inc();
        self.check_bcrypt(token, digest, &record).await?;
        check_expiry(&record, now)?;
        let access = self
            .store
            .access(owner(&record)?, record.org())
            .await
            .map_err(|e| unavailable(&e, record.prefix()))?;
        self.owner_may_act(&record, access, require)
    }

    /// The PAT owner's live state decides: active, with a role in the token's org, whose
    /// permissions (narrowed) cover the route.
    fn owner_may_act(
        &self,
        record: &Arc<PackedRecord>,
        access: UserAccess,
        require: &[String],
    ) -> Step<Identity> {
        if access.status != Some(UserStatus::Active) {
            return Err(invalid(InvalidReason::AccountInactive));
        }
        let role = access.role.ok_or(Denial::NoOrgAccess)?;
        self.allow(record, &role, require)
    }

    /// Reads the record for the token's prefix and checks kind and revocation. The record
    /// is shared with the verified cache (and, in tracked mode, the record cache): one copy.
    async fn load(&self, token: &Token<'_>) -> Step<Arc<PackedRecord>> {
        let record = self
            .store
            .credential_for_request(token.prefix())
            .await
            .map_err(|e| unavailable(&e, token.prefix()))?;
        checked(record, token)
    }

    /// bcrypt on the pool, once for all concurrent requests with this token and hash; a match
    /// is remembered in the verified cache, a mismatch in the negative cache.
    async fn check_bcrypt(
        &self,
        token: &Token<'_>,
        digest: Digest,
        record: &Arc<PackedRecord>,
    ) -> Step<()> {
        let hash: Arc<str> = record.hash().into();
        let check = self.pool.verify(token.hash_input(), record.hash());
        match self.cache.single_flight(digest, hash.clone(), check).await {
            Ok(true) => {
                self.cache.insert(
                    digest,
                    Verified {
                        record: Arc::clone(record),
                    },
                );
                Ok(())
            }
            Ok(false) => {
                self.negative
                    .remember(digest, hash, tokio::time::Instant::now());
                Err(invalid(InvalidReason::WrongSecret))
            }
            Err(PoolError::Overloaded) => Err(Denial::Overloaded),
            Err(PoolError::Stopped) => Err(Denial::AuthUnavailable),
        }
    }

    /// Role check (a role the conf does not define is no role: 403 `no_org_access`), scope
    /// check, then the identity sent upstream.
    /// The identity's header values come ready from the conf's role table (built here only
    /// for a narrowed list); the credential's own values are slices of the shared record.
    fn allow(&self, record: &Arc<PackedRecord>, role: &str, require: &[String]) -> Step<Identity> {
        let Some(defined) = self.roles.get(role) else {
            // A role the conf does not define (removed from the conf, or written by hand)
            // grants nothing, not even a route that requires nothing: the upstream would be
            // told a role it cannot know the meaning of.
            log::warn!(
                "credential {} acts with role {role:?}, which the conf does not define: refused",
                record.prefix()
            );
            return Err(Denial::NoOrgAccess);
        };
        let effective = self.roles.effective_of(defined, record.permissions());
        let missing = effective.missing(require);
        if !missing.is_empty() {
            return Err(Denial::InsufficientScope { missing });
        }
        let (role, permissions) = self
            .roles
            .header_values(defined, &effective)
            .ok_or(invalid(InvalidReason::Unknown))?;
        Ok(Identity::new(Arc::clone(record), role, permissions))
    }
}

/// A PAT's owner (a PAT record without one is corrupt, and refused).
fn owner(record: &PackedRecord) -> Step<&str> {
    record.user().ok_or(invalid(InvalidReason::Unknown))
}

/// A record that exists, is of the token's kind, and is not revoked.
fn checked(record: Option<Arc<PackedRecord>>, token: &Token<'_>) -> Step<Arc<PackedRecord>> {
    let record = record.ok_or(invalid(InvalidReason::Unknown))?;
    if record.kind() != token.kind {
        return Err(invalid(InvalidReason::Unknown));
    }
    if record.revoked_ms().is_some() {
        return Err(invalid(InvalidReason::Revoked));
    }
    Ok(record)
}

fn check_expiry(record: &PackedRecord, now: u64) -> Step<()> {
    match record.expires() {
        Some(expires) if now >= expires => Err(invalid(InvalidReason::Expired)),
        _ => Ok(()),
    }
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn invalid(reason: InvalidReason) -> Denial {
    Denial::InvalidToken { reason }
}

fn unavailable(error: &StoreError, prefix: &str) -> Denial {
    metrics::REDIS_ERRORS
        .with_label_values(&[error.kind()])
        .inc();
    // The cause chain goes to the log (a `redis.ca_file` that did not issue the server's
    // certificate reads "invalid peer certificate: UnknownIssuer"; behind Sentinel nothing
    // else logs it). The client gets the fixed 503.
    log::warn!(
        "redis {} while verifying {prefix}: {}",
        error.kind(),
        with_causes(error)
    );
    Denial::AuthUnavailable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::NEGATIVE_ENTRIES;
    use crate::conf::Conf;
    use crate::manage::{Manager, NewToken};
    use crate::testkit::redis::RedisServer;
    use crate::token::{generate, parse, seal};
    use std::path::Path;
    use std::time::Duration;

    /// A private Redis, a conf pointing at it, a store and one member with a PAT.
    struct Fixture {
        redis: RedisServer,
        conf: Conf,
        store: Store,
        cache: VerifiedCache,
        negative: NegativeCache,
        /// A pool that runs bcrypt.
        pool: BcryptPool,
        /// A pool without threads: any bcrypt attempt fails as `AuthUnavailable`, so a
        /// verdict obtained with it was reached without bcrypt.
        no_bcrypt: BcryptPool,
        token: String,
    }

    impl Fixture {
        async fn start() -> Fixture {
            let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
            let text = format!(
                "listen: 127.0.0.1:1\nredis: {{url: '{}', timeout_ms: 2000}}\nverify: {{bcrypt_cost: 4}}\n\
                 roles: [{{name: member, permissions: [repos:read]}}, {{name: admin, permissions: ['*']}}]\n\
                 routes: [{{name: api, path_prefix: /api, upstream: '127.0.0.1:1', require: [repos:read]}}]\n",
                redis.url()
            );
            let conf = Conf::parse(Path::new("test.yaml"), &text).expect("conf");
            // The gateway's store: strict reads go through the batcher, as in production.
            let store = Store::for_gateway(&conf.redis, 0).expect("store");
            let manager = Manager {
                store: &store,
                conf: &conf,
                actor: crate::manage::Actor::named("test"),
            };
            manager
                .put_membership("alice", "acme", "member")
                .await
                .expect("member");
            let request = NewToken {
                user: "alice".into(),
                org: "acme".into(),
                name: "t".into(),
                expires: None,
                permissions: None,
            };
            let token = manager
                .create_token(request, crate::proxy::unix_now())
                .await
                .expect("token")
                .token;
            Fixture {
                negative: NegativeCache::new(conf.verify.negative_ttl, NEGATIVE_ENTRIES),
                redis,
                conf,
                store,
                cache: VerifiedCache::new(100),
                pool: BcryptPool::start(1, 8).expect("pool"),
                no_bcrypt: BcryptPool::start(0, 1).expect("pool"),
                token,
            }
        }

        fn verifier<'a>(&'a self, pool: &'a BcryptPool) -> Verifier<'a> {
            Verifier {
                store: &self.store,
                pool,
                cache: &self.cache,
                negative: &self.negative,
                roles: &self.conf.roles,
            }
        }

        async fn verify(&self, presented: &str, pool: &BcryptPool) -> Verdict {
            let token = parse(presented).expect("well-formed");
            let require = ["repos:read".to_string()];
            self.verifier(pool)
                .verify(&token, &require, crate::proxy::unix_now())
                .await
        }

        /// The fixture's token prefix with another secret: well-formed, wrong.
        fn wrong_secret(&self) -> String {
            let other = generate(Kind::Pat).token;
            seal(&format!(
                "{}{}",
                &self.token[..10],
                &other[10..other.len() - 6]
            ))
        }

        fn redis(&self) -> redis::Connection {
            redis::Client::open(self.redis.url())
                .expect("client")
                .get_connection()
                .expect("connection")
        }
    }

    fn denied(reason: InvalidReason) -> Verdict {
        Verdict::Deny(invalid(reason))
    }

    #[tokio::test]
    async fn a_repeated_wrong_secret_is_refused_without_bcrypt() {
        let f = Fixture::start().await;
        let wrong = f.wrong_secret();
        assert_eq!(
            f.verify(&wrong, &f.no_bcrypt).await,
            Verdict::Deny(Denial::AuthUnavailable)
        );
        assert_eq!(
            f.verify(&wrong, &f.pool).await,
            denied(InvalidReason::WrongSecret)
        );
        assert_eq!(f.negative.len(), 1);
        let hits = metrics::NEGATIVE_HITS.get();
        for _ in 0..3 {
            assert_eq!(
                f.verify(&wrong, &f.no_bcrypt).await,
                denied(InvalidReason::WrongSecret),
                "answered from the negative cache: the thread-less pool was never asked"
            );
        }
        assert!(metrics::NEGATIVE_HITS.get() >= hits + 3);
        // The right secret is another digest: verified by bcrypt, allowed.
        assert!(matches!(
            f.verify(&f.token, &f.pool).await,
            Verdict::Allow(_)
        ));
    }

    #[tokio::test]
    async fn the_live_record_answers_before_the_negative_cache() {
        let f = Fixture::start().await;
        let wrong = f.wrong_secret();
        assert_eq!(
            f.verify(&wrong, &f.pool).await,
            denied(InvalidReason::WrongSecret)
        );
        let key = f.store.keys().credential(&f.token[..10]);
        let mut conn = f.redis();
        redis::cmd("HSET")
            .arg(&key)
            .arg("revoked")
            .arg(1)
            .exec(&mut conn)
            .expect("HSET");
        assert_eq!(
            f.verify(&wrong, &f.no_bcrypt).await,
            denied(InvalidReason::Revoked)
        );
        redis::cmd("DEL").arg(&key).exec(&mut conn).expect("DEL");
        assert_eq!(
            f.verify(&wrong, &f.no_bcrypt).await,
            denied(InvalidReason::Unknown)
        );
    }

    #[tokio::test]
    async fn a_warm_api_key_reads_only_what_can_change_and_obeys_it() {
        let f = Fixture::start().await;
        let manager = Manager {
            store: &f.store,
            conf: &f.conf,
            actor: crate::manage::Actor::named("test"),
        };
        manager
            .put_membership("root", "acme", "admin")
            .await
            .expect("admin");
        let key = manager
            .create_apikey(
                crate::manage::NewApiKey {
                    org: "acme".into(),
                    role: "member".into(),
                    created_by: "root".into(),
                    name: "k".into(),
                    expires: None,
                    permissions: None,
                },
                crate::proxy::unix_now(),
            )
            .await
            .expect("api key")
            .token;
        assert!(matches!(f.verify(&key, &f.pool).await, Verdict::Allow(_)));
        assert_eq!(f.cache.len(), 1, "the key's match is remembered");
        assert!(matches!(f.verify(&key, &f.pool).await, Verdict::Allow(_)));
        // Another stored hash (a product re-keyed the record): the remembered match is void.
        let cred = f.store.keys().credential(&key[..10]);
        redis::cmd("HSET")
            .arg(&cred)
            .arg("hash")
            .arg(crate::hasher::sha256_hex(b"something else"))
            .exec(&mut f.redis())
            .expect("HSET");
        assert_eq!(
            f.verify(&key, &f.pool).await,
            denied(InvalidReason::WrongSecret)
        );
        // The record gone: unknown, whatever was remembered.
        redis::cmd("DEL")
            .arg(&cred)
            .exec(&mut f.redis())
            .expect("DEL");
        assert_eq!(
            f.verify(&key, &f.pool).await,
            denied(InvalidReason::Unknown)
        );
    }

    #[tokio::test]
    async fn a_changed_stored_hash_makes_the_negative_entry_useless() {
        let f = Fixture::start().await;
        let wrong = f.wrong_secret();
        assert_eq!(
            f.verify(&wrong, &f.pool).await,
            denied(InvalidReason::WrongSecret)
        );
        // The stored hash is now the wrong token's: the old refusal must not answer.
        let hash =
            crate::hasher::bcrypt_hash(&wrong.as_bytes()[..wrong.len() - 6], 4).expect("hash");
        let key = f.store.keys().credential(&f.token[..10]);
        redis::cmd("HSET")
            .arg(&key)
            .arg("hash")
            .arg(hash)
            .exec(&mut f.redis())
            .expect("HSET");
        assert_eq!(
            f.verify(&wrong, &f.no_bcrypt).await,
            Verdict::Deny(Denial::AuthUnavailable),
            "bcrypt was asked again"
        );
        assert!(matches!(f.verify(&wrong, &f.pool).await, Verdict::Allow(_)));
    }

    #[tokio::test]
    async fn zero_negative_ttl_checks_every_wrong_secret_with_bcrypt() {
        let mut f = Fixture::start().await;
        f.negative = NegativeCache::new(Duration::ZERO, NEGATIVE_ENTRIES);
        let wrong = f.wrong_secret();
        assert_eq!(
            f.verify(&wrong, &f.pool).await,
            denied(InvalidReason::WrongSecret)
        );
        assert_eq!(
            f.verify(&wrong, &f.no_bcrypt).await,
            Verdict::Deny(Denial::AuthUnavailable)
        );
    }

    #[test]
    fn a_redis_error_is_logged_with_its_cause() {
        let io = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let error = StoreError::Redis(redis::RedisError::from(io));
        assert_eq!(
            with_causes(&error),
            "redis error: invalid peer certificate: UnknownIssuer"
        );
        let timeout = StoreError::Timeout(Duration::from_millis(50));
        assert_eq!(with_causes(&timeout), "redis did not answer within 50ms");
    }
}
