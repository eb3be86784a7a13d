//! The verification pipeline: a presented token and a route's requirements in, a [`Verdict`]
//! out. Each step is a named function; the first failure answers.
//!
//! 1. parse: format and checksum, done by the caller (no Redis) so that limits can key on
//!    the prefix before any work;
//! 2. read the live credential record by prefix; for a PAT already verified on this instance,
//!    the owner's status and role are read in the same pipelined round trip;
//! 3. the secret: constant-time SHA-256 for API keys; for PATs, the [`VerifiedCache`] entry if
//!    its hash equals the live record's, else bcrypt on the [`BcryptPool`] (single flight);
//! 4. `check_expiry`;
//! 5. the role: for a PAT, the owner's *current* status and role in the token's org; for an
//!    API key, its fixed role;
//! 6. `allow`: (role permissions as the conf says now) ∩ narrowing ⊇ route's `require`.
//!
//! Round trips per request: API key 1; warm PAT 1; cold PAT 2 (record, then owner).
//! In tracked mode, cached replies make the warm paths 0.
//!
//! Fail closed: any Redis error or timeout is [`Denial::AuthUnavailable`], a full pool is
//! [`Denial::Overloaded`]; only a completed pipeline yields [`Verdict::Allow`].

use crate::cache::{Digest, Verified, VerifiedCache};
use crate::denial::{Denial, InvalidReason};
use crate::hasher::{sha256_matches, BcryptPool, PoolError};
use crate::permissions::Roles;
use crate::store::{CredentialRecord, Store, StoreError, UserStatus};
use crate::token::{Kind, Token};
use std::sync::Arc;

/// Who is calling, as sent upstream in the identity headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// PAT or API key.
    pub kind: Kind,
    /// The credential's public prefix.
    pub prefix: String,
    /// The PAT owner (none for API keys).
    pub user: Option<String>,
    /// The org the credential acts in.
    pub org: String,
    /// The role in effect for this request.
    pub role: String,
    /// Effective permissions, sorted.
    pub permissions: Vec<String>,
}

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

    /// API key: one read of the record, SHA-256, expiry, fixed role, scope.
    async fn verify_api_key(
        &self,
        token: &Token<'_>,
        require: &[String],
        now: u64,
    ) -> Step<Identity> {
        let record = self.load(token).await?;
        if !sha256_matches(token.hash_input(), &record.hash) {
            return Err(invalid(InvalidReason::WrongSecret));
        }
        check_expiry(&record, now)?;
        let role = record.role.clone().ok_or(invalid(InvalidReason::Unknown))?;
        self.allow(record, role, require)
    }

    /// PAT: the live record (with the owner's live state in the same round trip when the
    /// cache knows the owner), the secret (bcrypt once per token and stored hash), expiry,
    /// the owner's current status and role in the token's org, scope.
    async fn verify_pat(&self, token: &Token<'_>, require: &[String], now: u64) -> Step<Identity> {
        let digest = self.cache.digest(token.hash_input());
        // The entry only says which user key to read alongside the record; it proves nothing
        // until its hash is compared with the live record's below.
        let hint = self.cache.get(&digest);
        let (record, hinted_access) = match &hint {
            Some(seen) => {
                let (record, access) = self
                    .store
                    .credential_and_access(token.prefix(), &seen.user, &seen.org)
                    .await
                    .map_err(|e| unavailable(&e, token.prefix()))?;
                (checked(record, token)?, Some(access))
            }
            None => (self.load(token).await?, None),
        };
        let user = record
            .user
            .as_deref()
            .ok_or(invalid(InvalidReason::Unknown))?;
        match &hint {
            Some(seen) if *seen.hash == *record.hash => {}
            _ => self.check_bcrypt(token, digest, &record, user).await?,
        }
        check_expiry(&record, now)?;
        let same_owner = hint
            .as_ref()
            .is_some_and(|seen| *seen.user == *user && *seen.org == *record.org);
        let access = match hinted_access {
            Some(access) if same_owner => access,
            _ => self
                .store
                .access(user, &record.org)
                .await
                .map_err(|e| unavailable(&e, &record.prefix))?,
        };
        if access.status != Some(UserStatus::Active) {
            return Err(invalid(InvalidReason::AccountInactive));
        }
        let role = access.role.ok_or(Denial::NoOrgAccess)?;
        self.allow(record, role, require)
    }

    /// Reads the record for the token's prefix and checks kind and revocation.
    async fn load(&self, token: &Token<'_>) -> Step<CredentialRecord> {
        let record = self
            .store
            .credential(token.prefix())
            .await
            .map_err(|e| unavailable(&e, token.prefix()))?;
        checked(record, token)
    }

    /// bcrypt on the pool, once for all concurrent requests with this token and hash; a match
    /// is remembered in the cache.
    async fn check_bcrypt(
        &self,
        token: &Token<'_>,
        digest: Digest,
        record: &CredentialRecord,
        user: &str,
    ) -> Step<()> {
        let hash: Arc<str> = record.hash.as_str().into();
        let check = self.pool.verify(token.hash_input(), &record.hash);
        match self
            .cache
            .single_flight(digest, Arc::clone(&hash), check)
            .await
        {
            Ok(true) => {
                let verified = Verified {
                    hash,
                    user: user.into(),
                    org: record.org.as_str().into(),
                };
                self.cache.insert(digest, verified);
                Ok(())
            }
            Ok(false) => Err(invalid(InvalidReason::WrongSecret)),
            Err(PoolError::Overloaded) => Err(Denial::Overloaded),
            Err(PoolError::Stopped) => Err(Denial::AuthUnavailable),
        }
    }

    /// Scope check, then the identity sent upstream.
    fn allow(&self, record: CredentialRecord, role: String, require: &[String]) -> Step<Identity> {
        let effective = self.roles.effective(&role, record.permissions.as_deref());
        let missing = effective.missing(require);
        if !missing.is_empty() {
            return Err(Denial::InsufficientScope { missing });
        }
        Ok(Identity {
            kind: record.kind,
            prefix: record.prefix,
            user: record.user,
            org: record.org,
            role,
            permissions: self.roles.listed(&effective),
        })
    }
}

/// A record that exists, is of the token's kind, and is not revoked.
fn checked(record: Option<CredentialRecord>, token: &Token<'_>) -> Step<CredentialRecord> {
    let record = record.ok_or(invalid(InvalidReason::Unknown))?;
    if record.kind != token.kind {
        return Err(invalid(InvalidReason::Unknown));
    }
    if record.revoked.is_some() {
        return Err(invalid(InvalidReason::Revoked));
    }
    Ok(record)
}

fn check_expiry(record: &CredentialRecord, now: u64) -> Step<()> {
    match record.expires {
        Some(expires) if now >= expires => Err(invalid(InvalidReason::Expired)),
        _ => Ok(()),
    }
}

fn invalid(reason: InvalidReason) -> Denial {
    Denial::InvalidToken { reason }
}

fn unavailable(error: &StoreError, prefix: &str) -> Denial {
    log::warn!("redis {} while verifying {prefix}: {error}", error.kind());
    Denial::AuthUnavailable
}
