//! The verification pipeline: a presented token and a route's requirements in, a [`Verdict`]
//! out. Each step is a named function; the first failure answers.
//!
//! 1. parse: format and checksum, done by the caller (no Redis) so that limits can key on
//!    the prefix before any work;
//! 2. `load`: the credential record by prefix (one Redis read);
//! 3. `check_secret`: bcrypt on the [`BcryptPool`] for PATs, constant-time SHA-256 for keys;
//! 4. `check_expiry`;
//! 5. `live_role`: for a PAT, the owner's *current* status and role in the token's org (one
//!    Redis read); for an API key, its fixed role;
//! 6. `check_scope`: (role permissions as the conf says now) ∩ narrowing ⊇ route's `require`.
//!
//! Fail closed: any Redis error or timeout is [`Denial::AuthUnavailable`], a full pool is
//! [`Denial::Overloaded`]; only a completed pipeline yields [`Verdict::Allow`].

use crate::denial::{Denial, InvalidReason};
use crate::hasher::{sha256_matches, BcryptPool, PoolError};
use crate::permissions::Roles;
use crate::store::{CredentialRecord, Store, StoreError, UserStatus};
use crate::token::{Kind, Token};

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
    /// Roles as the conf defines them now.
    pub roles: &'a Roles,
}

type Step<T> = Result<T, Denial>;

impl Verifier<'_> {
    /// Runs the pipeline for a parsed `token` against a route requiring `require`, at unix
    /// time `now`.
    pub async fn verify(&self, token: &Token<'_>, require: &[String], now: u64) -> Verdict {
        match self.run(token, require, now).await {
            Ok(identity) => Verdict::Allow(identity),
            Err(denial) => Verdict::Deny(denial),
        }
    }

    async fn run(&self, token: &Token<'_>, require: &[String], now: u64) -> Step<Identity> {
        let record = self.load(token).await?;
        self.check_secret(token, &record).await?;
        check_expiry(&record, now)?;
        let role = self.live_role(&record).await?;
        let permissions = self.check_scope(&record, &role, require)?;
        Ok(Identity {
            kind: record.kind,
            prefix: record.prefix,
            user: record.user,
            org: record.org,
            role,
            permissions,
        })
    }

    async fn load(&self, token: &Token<'_>) -> Step<CredentialRecord> {
        let record = self
            .store
            .credential(token.prefix())
            .await
            .map_err(|e| unavailable(&e, token.prefix()))?
            .ok_or(invalid(InvalidReason::Unknown))?;
        if record.kind != token.kind {
            return Err(invalid(InvalidReason::Unknown));
        }
        if record.revoked.is_some() {
            return Err(invalid(InvalidReason::Revoked));
        }
        Ok(record)
    }

    async fn check_secret(&self, token: &Token<'_>, record: &CredentialRecord) -> Step<()> {
        let matched = match record.kind {
            Kind::ApiKey => sha256_matches(token.hash_input(), &record.hash),
            Kind::Pat => match self.pool.verify(token.hash_input(), &record.hash).await {
                Ok(matched) => matched,
                Err(PoolError::Overloaded) => return Err(Denial::Overloaded),
                Err(PoolError::Stopped) => return Err(Denial::AuthUnavailable),
            },
        };
        if matched {
            Ok(())
        } else {
            Err(invalid(InvalidReason::WrongSecret))
        }
    }

    async fn live_role(&self, record: &CredentialRecord) -> Step<String> {
        match record.kind {
            Kind::ApiKey => record.role.clone().ok_or(invalid(InvalidReason::Unknown)),
            Kind::Pat => {
                let user = record
                    .user
                    .as_deref()
                    .ok_or(invalid(InvalidReason::Unknown))?;
                let access = self
                    .store
                    .access(user, &record.org)
                    .await
                    .map_err(|e| unavailable(&e, &record.prefix))?;
                if access.status != Some(UserStatus::Active) {
                    return Err(invalid(InvalidReason::AccountInactive));
                }
                access.role.ok_or(Denial::NoOrgAccess)
            }
        }
    }

    fn check_scope(
        &self,
        record: &CredentialRecord,
        role: &str,
        require: &[String],
    ) -> Step<Vec<String>> {
        let effective = self.roles.effective(role, record.permissions.as_deref());
        let missing = effective.missing(require);
        if missing.is_empty() {
            Ok(self.roles.listed(&effective))
        } else {
            Err(Denial::InsufficientScope { missing })
        }
    }
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
