//! The rules for managing users, PATs and API keys, shared by the CLI (and the management
//! API of a later issue) so both refuse exactly the same things.
//!
//! Every check runs before the first write, and each write is one atomic Redis operation, so
//! a refused command leaves nothing half-written.

use crate::conf::Conf;
use crate::hasher::{bcrypt_hash, sha256_hex};
use crate::lifetime::{Lifetime, LifetimeError};
use crate::store::{CredentialRecord, Revoked, Store, StoreError, UserRecord, UserStatus};
use crate::token::{self, Kind};

/// Why a management operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The request breaks a rule; the message says which.
    #[error("{0}")]
    Refused(String),
    /// What it names does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Redis failed; nothing can be assumed written.
    #[error("redis: {0}")]
    Store(#[from] StoreError),
    /// bcrypt refused to hash.
    #[error("bcrypt: {0}")]
    Hash(#[from] bcrypt::BcryptError),
}

impl From<LifetimeError> for ManageError {
    fn from(e: LifetimeError) -> Self {
        ManageError::Refused(e.to_string())
    }
}

/// A new PAT request.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Owner.
    pub user: String,
    /// Org the token is bound to.
    pub org: String,
    /// Label.
    pub name: String,
    /// Requested lifetime (policy default when `None`).
    pub expires: Option<Lifetime>,
    /// Optional narrowing list.
    pub permissions: Option<Vec<String>>,
}

/// A new API key request.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// Org that owns the key.
    pub org: String,
    /// Fixed role.
    pub role: String,
    /// The admin creating it.
    pub created_by: String,
    /// Label.
    pub name: String,
    /// Requested lifetime (policy default when `None`).
    pub expires: Option<Lifetime>,
    /// Optional narrowing list.
    pub permissions: Option<Vec<String>>,
}

/// A created credential: the secret, shown once, and its stored record.
pub struct Created {
    /// The full token. Print it once; never log it.
    pub token: String,
    /// What was stored.
    pub record: CredentialRecord,
}

/// Management operations over one store and conf.
pub struct Manager<'a> {
    /// Redis access.
    pub store: &'a Store,
    /// Roles and policy.
    pub conf: &'a Conf,
}

fn refuse<T>(message: impl Into<String>) -> Result<T, ManageError> {
    Err(ManageError::Refused(message.into()))
}

/// User and org ids: 1-128 characters of letters, digits, `.`, `_`, `@` or `-`, so they are
/// safe in Redis keys and header values.
pub fn check_id(what: &str, id: &str) -> Result<(), ManageError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
    if ok {
        Ok(())
    } else {
        refuse(format!(
            "invalid {what} id {id:?}: use 1-128 letters, digits, '.', '_', '@' or '-'"
        ))
    }
}

fn check_name(name: &str) -> Result<(), ManageError> {
    if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return refuse("invalid --name: 1-100 characters, no control characters");
    }
    Ok(())
}

impl Manager<'_> {
    fn check_role(&self, role: &str) -> Result<usize, ManageError> {
        self.conf.roles.rank(role).ok_or_else(|| {
            let known: Vec<&str> = self.conf.roles.names().collect();
            ManageError::Refused(format!(
                "unknown role {role:?}; roles are: {}",
                known.join(", ")
            ))
        })
    }

    /// Narrowing list: every permission known, and each granted by `role`.
    fn check_narrowing(
        &self,
        permissions: &Option<Vec<String>>,
        role: &str,
        whose: &str,
    ) -> Result<(), ManageError> {
        let Some(list) = permissions else {
            return Ok(());
        };
        if list.is_empty() {
            return refuse("--permissions must name at least one permission");
        }
        if let Some(unknown) = self.conf.roles.first_unknown(list) {
            return refuse(format!("unknown permission {unknown:?}"));
        }
        let granted = self.conf.roles.effective(role, None);
        let missing = granted.missing(list);
        if !missing.is_empty() {
            return refuse(format!(
                "{whose} role {role:?} does not grant {}",
                missing.join(", ")
            ));
        }
        Ok(())
    }

    async fn existing_user(&self, user: &str) -> Result<UserRecord, ManageError> {
        check_id("user", user)?;
        self.store
            .user(user)
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("user {user:?}")))
    }

    /// Creates or updates `user`'s membership of `org` with `role`.
    ///
    /// # Errors
    /// Refused for bad ids, an unknown role, or a removed user.
    pub async fn put_membership(
        &self,
        user: &str,
        org: &str,
        role: &str,
    ) -> Result<(), ManageError> {
        check_id("user", user)?;
        check_id("org", org)?;
        self.check_role(role)?;
        if let Some(record) = self.store.user(user).await? {
            if record.status == Some(UserStatus::Removed) {
                return refuse(format!("user {user:?} was removed"));
            }
        }
        Ok(self.store.put_membership(user, org, role).await?)
    }

    /// Ends `user`'s membership of `org`.
    ///
    /// # Errors
    /// Not found when there is no such membership.
    pub async fn leave(&self, user: &str, org: &str) -> Result<(), ManageError> {
        check_id("user", user)?;
        check_id("org", org)?;
        if self.store.leave(user, org).await? {
            Ok(())
        } else {
            Err(ManageError::NotFound(format!(
                "membership of {user:?} in {org:?}"
            )))
        }
    }

    /// Suspends an active user: their PATs stop working at once.
    ///
    /// # Errors
    /// Not found, or refused for a removed user.
    pub async fn suspend(&self, user: &str) -> Result<(), ManageError> {
        let record = self.existing_user(user).await?;
        if record.status == Some(UserStatus::Removed) {
            return refuse(format!("user {user:?} was removed"));
        }
        Ok(self.store.set_status(user, UserStatus::Suspended).await?)
    }

    /// Reactivates a suspended user.
    ///
    /// # Errors
    /// Not found, or refused for a removed user (removal is final).
    pub async fn reactivate(&self, user: &str) -> Result<(), ManageError> {
        let record = self.existing_user(user).await?;
        if record.status == Some(UserStatus::Removed) {
            return refuse(format!("user {user:?} was removed; removal is final"));
        }
        Ok(self.store.set_status(user, UserStatus::Active).await?)
    }

    /// Removes a user for good: their PATs stop working; API keys they created survive.
    ///
    /// # Errors
    /// Not found.
    pub async fn remove(&self, user: &str) -> Result<(), ManageError> {
        self.existing_user(user).await?;
        Ok(self.store.set_status(user, UserStatus::Removed).await?)
    }

    /// The user's record.
    ///
    /// # Errors
    /// Not found.
    pub async fn show(&self, user: &str) -> Result<UserRecord, ManageError> {
        self.existing_user(user).await
    }

    /// Creates a PAT for an active member of `org`.
    ///
    /// # Errors
    /// Refused for an inactive user, no membership, a bad name, permissions outside the
    /// owner's role, or a lifetime against policy.
    pub async fn create_token(&self, request: NewToken, now: u64) -> Result<Created, ManageError> {
        let NewToken {
            user,
            org,
            name,
            expires,
            permissions,
        } = request;
        check_id("org", &org)?;
        check_name(&name)?;
        let expires = self.conf.policy.expiry.expiry(expires, now)?;
        let record = self.existing_user(&user).await?;
        if record.status != Some(UserStatus::Active) {
            return refuse(format!("user {user:?} is not active"));
        }
        let Some(role) = record.orgs.get(&org) else {
            return refuse(format!("user {user:?} has no role in org {org:?}"));
        };
        self.check_narrowing(&permissions, role, "the user's")?;
        let cost = self.conf.verify.bcrypt_cost;
        self.insert(Kind::Pat, |generated| {
            Ok(CredentialRecord {
                prefix: generated.prefix().to_string(),
                kind: Kind::Pat,
                hash: bcrypt_hash(generated.hash_input(), cost)?,
                user: Some(user.clone()),
                created_by: None,
                org: org.clone(),
                role: None,
                name: name.clone(),
                permissions: permissions.clone(),
                created: now,
                expires,
                revoked: None,
            })
        })
        .await
    }

    /// Creates an API key; only an active org admin may, with a role no higher than their own.
    ///
    /// # Errors
    /// Refused for an unknown role, a non-admin or inactive creator, a role above the
    /// creator's, bad permissions, a bad name, or a lifetime against policy.
    pub async fn create_apikey(
        &self,
        request: NewApiKey,
        now: u64,
    ) -> Result<Created, ManageError> {
        let NewApiKey {
            org,
            role,
            created_by,
            name,
            expires,
            permissions,
        } = request;
        check_id("org", &org)?;
        check_name(&name)?;
        let key_rank = self.check_role(&role)?;
        self.check_narrowing(&permissions, &role, "the key's")?;
        let expires = self.conf.policy.expiry.expiry(expires, now)?;
        let creator = self.existing_user(&created_by).await?;
        if creator.status != Some(UserStatus::Active) {
            return refuse(format!("user {created_by:?} is not active"));
        }
        let creator_role = creator.orgs.get(&org).map(String::as_str).unwrap_or("");
        let creator_rank = self.conf.roles.rank(creator_role);
        let admin_rank = self.conf.roles.rank(&self.conf.policy.admin_role);
        if creator_rank.is_none() || creator_rank < admin_rank {
            return refuse(format!(
                "user {created_by:?} is not an admin of org {org:?}"
            ));
        }
        if Some(key_rank) > creator_rank {
            return refuse(format!(
                "role {role:?} is above the creator's role {creator_role:?}"
            ));
        }
        self.insert(Kind::ApiKey, |generated| {
            Ok(CredentialRecord {
                prefix: generated.prefix().to_string(),
                kind: Kind::ApiKey,
                hash: sha256_hex(generated.hash_input()),
                user: None,
                created_by: Some(created_by.clone()),
                org: org.clone(),
                role: Some(role.clone()),
                name: name.clone(),
                permissions: permissions.clone(),
                created: now,
                expires,
                revoked: None,
            })
        })
        .await
    }

    /// Generates tokens until one's prefix is free (a clash is ~1 in 5.7e10), then stores it.
    async fn insert(
        &self,
        kind: Kind,
        build: impl Fn(&token::Generated) -> Result<CredentialRecord, ManageError>,
    ) -> Result<Created, ManageError> {
        for _ in 0..5 {
            let generated = token::generate(kind);
            let record = build(&generated)?;
            if self.store.insert_credential(&record).await? {
                return Ok(Created {
                    token: generated.token,
                    record,
                });
            }
        }
        refuse("could not find a free prefix after 5 attempts")
    }

    /// The user's PATs (including revoked ones kept for listing).
    ///
    /// # Errors
    /// Redis failure or a bad id.
    pub async fn list_tokens(&self, user: &str) -> Result<Vec<CredentialRecord>, ManageError> {
        check_id("user", user)?;
        Ok(self
            .store
            .indexed_credentials(&self.store.keys().user_tokens(user))
            .await?)
    }

    /// The org's API keys (including revoked ones kept for listing).
    ///
    /// # Errors
    /// Redis failure or a bad id.
    pub async fn list_apikeys(&self, org: &str) -> Result<Vec<CredentialRecord>, ManageError> {
        check_id("org", org)?;
        Ok(self
            .store
            .indexed_credentials(&self.store.keys().org_keys(org))
            .await?)
    }

    /// Revokes the credential with `prefix`, which must be of `kind`. Immediate and final.
    ///
    /// # Errors
    /// Refused for a prefix of another kind or shape; not found when there is no such
    /// credential.
    pub async fn revoke(&self, prefix: &str, kind: Kind, now: u64) -> Result<Revoked, ManageError> {
        let shaped = prefix.len() == token::PREFIX_LEN
            && prefix.bytes().skip(4).all(|b| b.is_ascii_alphanumeric());
        if !shaped || Kind::of_prefix(prefix) != Some(kind) {
            return refuse(format!(
                "{prefix:?} is not a {} prefix ({}xxxxxx)",
                kind,
                kind.tag()
            ));
        }
        match self.store.revoke(prefix, kind, now).await? {
            Revoked::NotFound => Err(ManageError::NotFound(format!("{kind} {prefix}"))),
            outcome => Ok(outcome),
        }
    }
}
