//! [`Authenticator`]: the process-wide authentication state, shared by the proxy (every
//! protected request) and the management API (every `/v1/` call), so both authenticate with
//! the same code, caches, limits and live checks. There is no side door.
//!
//! It owns the gateway's Redis connection, the bcrypt pool, the verified-secret and negative
//! caches, the failed-attempt limiter and the recorder (last-used stamps, denied-request audit entries).
//! The connection, the pool and the recorder own threads, sockets or tasks, so each is made
//! on first use inside the running service, never before Pingora daemonizes.

use crate::audit::{Action, Entry};
use crate::cache::{NegativeCache, VerifiedCache, NEGATIVE_ENTRIES};
use crate::conf::Conf;
use crate::credential::{self, Presented};
use crate::denial::{Denial, InvalidReason};
use crate::hasher::BcryptPool;
use crate::limiter::FailureLimiter;
use crate::metrics;
use crate::recorder::Recorder;
use crate::store::Store;
use crate::token::{self, HeldPrefix, Token};
use crate::verify::{Verdict, Verifier};
use http::HeaderMap;
use once_cell::sync::OnceCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The outcome of authenticating one request.
pub struct Authenticated {
    /// Allow with an identity, or the first denial.
    pub verdict: Verdict,
    /// The presented prefix, only for a well-formed token (garbage may be part of a secret).
    pub prefix: Option<HeldPrefix>,
}

/// Shared authentication state of one gateway process.
pub struct Authenticator {
    conf: Arc<Conf>,
    store: OnceCell<Store>,
    pool: OnceCell<BcryptPool>,
    recorder: OnceCell<Recorder>,
    limiter: FailureLimiter,
    cache: VerifiedCache,
    negative: NegativeCache,
}

impl Authenticator {
    /// The state for `conf`; nothing is connected or started yet.
    pub fn new(conf: Arc<Conf>) -> Authenticator {
        Authenticator {
            limiter: FailureLimiter::new(conf.limits),
            cache: VerifiedCache::new(conf.verify.cache_entries),
            negative: NegativeCache::new(conf.verify.negative_ttl, NEGATIVE_ENTRIES),
            conf,
            store: OnceCell::new(),
            pool: OnceCell::new(),
            recorder: OnceCell::new(),
        }
    }

    /// The conf it serves.
    pub fn conf(&self) -> &Conf {
        &self.conf
    }

    /// The gateway's Redis store (made on first use).
    ///
    /// # Errors
    /// [`Denial::AuthUnavailable`] when the client cannot be made.
    pub fn store(&self) -> Result<&Store, Denial> {
        self.store
            .get_or_try_init(|| {
                let store = Store::for_gateway(&self.conf.redis, self.conf.verify.cache_entries)?;
                metrics::watch_tracked_store(&store);
                Ok::<_, crate::store::StoreError>(store)
            })
            .map_err(|e| {
                log::error!("cannot create redis client: {e}");
                Denial::AuthUnavailable
            })
    }

    /// The gateway's store if a request has made it (never makes it: it must be made on the
    /// proxy's runtime, where its tasks run).
    pub fn started_store(&self) -> Option<&Store> {
        self.store.get()
    }

    /// The bcrypt pool (started on first use).
    ///
    /// # Errors
    /// [`Denial::Overloaded`] when its threads cannot start.
    pub fn pool(&self) -> Result<&BcryptPool, Denial> {
        let verify = self.conf.verify;
        self.pool
            .get_or_try_init(|| {
                BcryptPool::start_niced(verify.pool_threads, verify.pool_queue, verify.pool_nice)
            })
            .map_err(|e| {
                log::error!("cannot start bcrypt pool: {e}");
                Denial::Overloaded
            })
    }

    fn recorder(&self) -> Option<&Recorder> {
        let store = self.store().ok()?;
        Some(self.recorder.get_or_init(|| {
            Recorder::start(
                store.clone(),
                self.conf.last_used_interval,
                self.conf.limits.max_tracked,
                self.conf.audit.max_entries,
                self.conf.audit.denied_requests,
            )
        }))
    }

    /// Decides a request presenting `headers` from `client` against `require` (on `route`,
    /// named in the audit trail). Failed attempts are counted, and a client or prefix over its
    /// limit is refused before any Redis or bcrypt work. A use is stamped (last used) and a
    /// denial recorded (audit), both off the request path.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        client: Option<IpAddr>,
        require: &[String],
        route: &str,
    ) -> Authenticated {
        let malformed = Denial::InvalidToken {
            reason: InvalidReason::Malformed,
        };
        let parsed = match credential::presented(headers) {
            Presented::Token(presented) => token::parse(presented).map_err(|_| malformed),
            Presented::Unreadable => Err(malformed),
            Presented::Missing { other_scheme } => Err(Denial::MissingCredential { other_scheme }),
            Presented::Ambiguous => Err(Denial::AmbiguousCredential),
        };
        // One reading of each clock serves the whole request: limits, expiry, last used.
        let (now, unix) = (Instant::now(), unix_now());
        let held = parsed.as_ref().ok().map(Token::held_prefix);
        let prefix = parsed.as_ref().ok().map(Token::prefix);
        // A token verified on this instance before (its keyed digest is in the verified
        // cache) is no guess, so others' failures do not lock it out: a flood of wrong secrets
        // for a public prefix, or from a shared address (a NAT, a proxy), leaves the holders
        // of valid tokens served. Everything else about it is still checked live.
        let limited = self.limiter.retry_after(client, prefix, now).filter(|_| {
            !parsed
                .as_ref()
                .is_ok_and(|t| self.cache.get(&self.cache.digest(t.hash_input())).is_some())
        });
        // SPEC §4's order: a missing or ambiguous credential answers before the limits (they
        // are not attempts at a token); a limited client or prefix is refused before any
        // Redis or bcrypt work on its token, malformed ones included.
        let verdict = match (parsed, limited) {
            (Err(denial @ (Denial::MissingCredential { .. } | Denial::AmbiguousCredential)), _) => {
                Verdict::Deny(denial)
            }
            (_, Some(retry_after)) => Verdict::Deny(Denial::RateLimited { retry_after }),
            (Ok(token), None) => self.verify(&token, require, unix).await,
            (Err(denial), None) => Verdict::Deny(denial),
        };
        if let Verdict::Deny(Denial::InvalidToken { .. }) = verdict {
            // Timed now, not at arrival: the check may have waited long for the bcrypt pool,
            // and a window that started back then would end early.
            self.limiter.record_failure(client, prefix, Instant::now());
        }
        self.record(&verdict, prefix, client, route, now, unix);
        Authenticated {
            verdict,
            prefix: held,
        }
    }

    /// Runs the verification pipeline on a well-formed token.
    async fn verify(&self, token: &Token<'_>, require: &[String], unix: u64) -> Verdict {
        let (store, pool) = match (self.store(), self.pool()) {
            (Ok(store), Ok(pool)) => (store, pool),
            (Err(denial), _) | (_, Err(denial)) => return Verdict::Deny(denial),
        };
        let verifier = Verifier {
            store,
            pool,
            cache: &self.cache,
            negative: &self.negative,
            roles: &self.conf.roles,
        };
        verifier.verify(token, require, unix).await
    }

    /// Last-used stamp for an allowed request; audit entry for a denied one (except when
    /// Redis itself is the problem: that entry could not be written either).
    fn record(
        &self,
        verdict: &Verdict,
        prefix: Option<&str>,
        client: Option<IpAddr>,
        route: &str,
        now: Instant,
        unix: u64,
    ) {
        match verdict {
            Verdict::Allow(identity) => {
                if let Some(recorder) = self.recorder() {
                    recorder.used(identity.prefix(), client, now, unix);
                }
            }
            Verdict::Deny(Denial::AuthUnavailable) => {}
            Verdict::Deny(denial) => {
                if let Some(recorder) = self.recorder() {
                    let actor = prefix.unwrap_or("anonymous");
                    let mut entry = Entry::new(Action::RequestDenied, actor, route, None)
                        .with("error", denial.code())
                        .with("reason", denial.reason());
                    if let Some(client) = client {
                        entry = entry.with("client", client.to_string());
                    }
                    recorder.denied(entry);
                }
            }
        }
    }
}

/// Seconds since the unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
