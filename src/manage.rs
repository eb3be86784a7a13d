//! The rules for managing users, PATs and API keys, shared by the CLI (and the management
//! API of a later issue) so both refuse exactly the same things.
//!
//! Every check runs before the first write, and each write is one atomic Redis operation, so
//! a refused command leaves nothing half-written. Each change that happened is then appended
//! to the audit trail (audit.rs) with the [`Actor`] who made it. The audit append is a second
//! write, not part of the change's own transaction: the stream lives in another hash slot
//! than the credential (issue 7, Redis Cluster). If it fails, the change stands and the
//! failure is logged at ERROR.

use crate::audit::{Action, Entry};
use crate::conf::Conf;
use crate::hasher::{bcrypt_hash, sha256_hex};
use crate::lifetime::{Lifetime, LifetimeError};
use crate::store::{
    AuditStream, CredentialRecord, LastUse, Revoked, StatusChange, Store, StoreError, UserRecord,
    UserStatus,
};
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

/// Who is making a change, as the audit trail names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// A user id, a credential prefix, or `cli:<os user>`.
    pub name: String,
    /// The org the actor acts in (API callers); user-level entries are filed under it.
    pub org: Option<String>,
}

impl Actor {
    /// An actor outside any org (an operator, a tool, a test), named `name` in the audit trail.
    pub fn named(name: impl Into<String>) -> Actor {
        Actor {
            name: name.into(),
            org: None,
        }
    }

    /// The operator at the command line: `cli:$USER`.
    pub fn cli() -> Actor {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        Actor::named(format!("cli:{user}"))
    }
}

/// A credential as listed: the record and its last use (`None`: never used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The stored record (never the secret).
    pub record: CredentialRecord,
    /// When and from where it was last used, if ever.
    pub last_use: Option<LastUse>,
}

/// Management operations over one store and conf, on behalf of one actor.
pub struct Manager<'a> {
    /// Redis access.
    pub store: &'a Store,
    /// Roles and policy.
    pub conf: &'a Conf,
    /// Who the audit trail names for the changes made.
    pub actor: Actor,
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
        let previous = self.store.user(user).await?;
        if let Some(record) = &previous {
            if record.status == Some(UserStatus::Removed) {
                return refuse(format!("user {user:?} was removed"));
            }
        }
        self.store.put_membership(user, org, role).await?;
        let previous_role = previous
            .and_then(|r| r.orgs.get(org).cloned())
            .unwrap_or_else(|| "none".into());
        self.audit(
            Entry::new(Action::MembershipPut, &self.actor.name, user, Some(org))
                .with("role", role)
                .with("previous_role", previous_role),
        )
        .await;
        Ok(())
    }

    /// Appends `entry` to the audit trail; a failure is logged, never returned (the change
    /// it records has already happened).
    pub async fn audit(&self, entry: Entry) {
        let fields = entry.fields();
        if let Err(e) = self
            .store
            .append_audit(AuditStream::Actions, &[fields], self.conf.audit.max_entries)
            .await
        {
            log::error!(
                "audit entry {} on {} not written: {e}",
                entry.action.as_str(),
                entry.target
            );
        }
    }

    /// Audits a user-level change, filed under the actor's org.
    async fn audit_user(&self, action: Action, user: &str) {
        let entry = Entry::new(action, &self.actor.name, user, self.actor.org.as_deref());
        self.audit(entry).await;
    }

    /// Ends `user`'s membership of `org`.
    ///
    /// # Errors
    /// Not found when there is no such membership.
    pub async fn leave(&self, user: &str, org: &str) -> Result<(), ManageError> {
        check_id("user", user)?;
        check_id("org", org)?;
        if self.store.leave(user, org).await? {
            let entry = Entry::new(Action::MembershipLeave, &self.actor.name, user, Some(org));
            self.audit(entry).await;
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
        check_id("user", user)?;
        self.set_status(user, UserStatus::Suspended).await?;
        self.audit_user(Action::UserSuspend, user).await;
        Ok(())
    }

    /// Reactivates a suspended user.
    ///
    /// # Errors
    /// Not found, or refused for a removed user (removal is final).
    pub async fn reactivate(&self, user: &str) -> Result<(), ManageError> {
        check_id("user", user)?;
        self.set_status(user, UserStatus::Active).await?;
        self.audit_user(Action::UserReactivate, user).await;
        Ok(())
    }

    /// Suspends or reactivates in one step that checks the user was not removed, so a
    /// removal racing this change stays final.
    async fn set_status(&self, user: &str, status: UserStatus) -> Result<(), ManageError> {
        match self.store.set_status_unless_removed(user, status).await? {
            StatusChange::Set => Ok(()),
            StatusChange::Removed => refuse(format!("user {user:?} was removed; removal is final")),
            StatusChange::NoSuchUser => Err(ManageError::NotFound(format!("user {user:?}"))),
        }
    }

    /// Removes a user for good: their PATs stop working; API keys they created survive.
    ///
    /// # Errors
    /// Not found.
    pub async fn remove(&self, user: &str) -> Result<(), ManageError> {
        self.existing_user(user).await?;
        self.store.set_removed(user).await?;
        self.audit_user(Action::UserRemove, user).await;
        Ok(())
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
        // A PAT made through the API by someone other than its owner (the product's admin
        // API key) records who made it (`created_by`, in JSON listings and the API), so its
        // owner can see a token they did not make.
        let on_behalf =
            (self.actor.org.is_some() && self.actor.name != user).then(|| self.actor.name.clone());
        let created = self
            .insert(Kind::Pat, |generated, hash| {
                Ok(CredentialRecord {
                    prefix: generated.prefix().to_string(),
                    kind: Kind::Pat,
                    hash,
                    user: Some(user.clone()),
                    created_by: on_behalf.clone(),
                    org: org.clone(),
                    role: None,
                    name: name.clone(),
                    permissions: permissions.clone(),
                    created: now,
                    expires,
                    revoked: None,
                })
            })
            .await?;
        self.audit_created(Action::TokenCreate, &created.record)
            .await;
        Ok(created)
    }

    async fn audit_created(&self, action: Action, record: &CredentialRecord) {
        let mut entry = Entry::new(action, &self.actor.name, &record.prefix, Some(&record.org))
            .with("name", record.name.clone());
        if let Some(user) = &record.user {
            entry = entry.with("user", user.clone());
        }
        if let Some(role) = &record.role {
            entry = entry.with("role", role.clone());
        }
        if let Some(permissions) = &record.permissions {
            entry = entry.with("permissions", permissions.join(" "));
        }
        self.audit(entry).await;
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
        self.check_authority(&creator, &created_by, &org, &role, key_rank)?;
        let created = self
            .insert(Kind::ApiKey, |generated, hash| {
                Ok(CredentialRecord {
                    prefix: generated.prefix().to_string(),
                    kind: Kind::ApiKey,
                    hash,
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
            .await?;
        // The authority was read before the key was written, in another key (and, on a
        // cluster, another slot), so nothing made the two one step. Read it again now: a
        // demotion or suspension acknowledged before this point must not leave a key created
        // on the old authority. The secret has not been shown, so revoking is enough.
        let still = self
            .existing_user(&created_by)
            .await
            .and_then(|creator| self.check_authority(&creator, &created_by, &org, &role, key_rank));
        if let Err(changed) = still {
            let prefix = created.record.prefix.as_str();
            self.store.revoke(prefix, Kind::ApiKey, now).await?;
            log::warn!("API key {prefix} revoked at creation: the creator's authority changed");
            let entry = Entry::new(Action::ApikeyRevoke, &self.actor.name, prefix, Some(&org))
                .with("reason", "creator_authority_changed_during_creation");
            self.audit(entry).await;
            return Err(changed);
        }
        self.audit_created(Action::ApikeyCreate, &created.record)
            .await;
        Ok(created)
    }

    /// Whether `creator` (the user `created_by`) may create an API key of `role` (rank
    /// `key_rank`) in `org` right now: active, an org admin, and ranked at least as high.
    fn check_authority(
        &self,
        creator: &UserRecord,
        created_by: &str,
        org: &str,
        role: &str,
        key_rank: usize,
    ) -> Result<(), ManageError> {
        if creator.status != Some(UserStatus::Active) {
            return refuse(format!("user {created_by:?} is not active"));
        }
        let creator_role = creator.orgs.get(org).map(String::as_str).unwrap_or("");
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
        Ok(())
    }

    /// Generates tokens until one's prefix is free (a clash is ~1 in 5.7e10), then stores it.
    async fn insert(
        &self,
        kind: Kind,
        build: impl Fn(&token::Generated, String) -> Result<CredentialRecord, ManageError>,
    ) -> Result<Created, ManageError> {
        for _ in 0..5 {
            let generated = token::generate(kind);
            let hash = self.hash(kind, generated.hash_input()).await?;
            let record = build(&generated, hash)?;
            if self.store.insert_credential(&record).await? {
                return Ok(Created {
                    token: generated.token,
                    record,
                });
            }
        }
        refuse("could not find a free prefix after 5 attempts")
    }

    /// The stored hash of a new secret: SHA-256 for API keys; bcrypt at `verify.bcrypt_cost`
    /// for PATs, on Tokio's blocking pool so that the management API's event loop keeps
    /// serving (tens of milliseconds at cost 10).
    async fn hash(&self, kind: Kind, input: &[u8]) -> Result<String, ManageError> {
        match kind {
            Kind::ApiKey => Ok(sha256_hex(input)),
            Kind::Pat => {
                let (input, cost) = (input.to_vec(), self.conf.verify.bcrypt_cost);
                tokio::task::spawn_blocking(move || bcrypt_hash(&input, cost))
                    .await
                    .map_err(|e| ManageError::Refused(format!("hashing task failed: {e}")))?
                    .map_err(ManageError::from)
            }
        }
    }

    /// The user's PATs (including revoked ones kept for listing), with their last use.
    ///
    /// # Errors
    /// Redis failure or a bad id.
    pub async fn list_tokens(&self, user: &str) -> Result<Vec<Listed>, ManageError> {
        check_id("user", user)?;
        let index = self.store.keys().user_tokens(user);
        Ok(listed(self.store.indexed_credentials(&index).await?))
    }

    /// The org's API keys (including revoked ones kept for listing), with their last use.
    ///
    /// # Errors
    /// Redis failure or a bad id.
    pub async fn list_apikeys(&self, org: &str) -> Result<Vec<Listed>, ManageError> {
        check_id("org", org)?;
        let index = self.store.keys().org_keys(org);
        Ok(listed(self.store.indexed_credentials(&index).await?))
    }

    /// One credential by prefix, with its last use.
    ///
    /// # Errors
    /// Refused for a malformed prefix; not found when there is no such credential.
    pub async fn show_credential(&self, prefix: &str) -> Result<Listed, ManageError> {
        if !is_prefix(prefix) {
            return refuse(format!("{prefix:?} is not a credential prefix"));
        }
        let mut found = self
            .store
            .credentials_with_use(&[prefix.to_string()])
            .await?;
        match found.pop().flatten() {
            Some((record, last_use)) => Ok(Listed { record, last_use }),
            None => Err(ManageError::NotFound(format!("credential {prefix}"))),
        }
    }

    /// Revokes the credential with `prefix`, which must be of `kind`. Immediate and final.
    ///
    /// # Errors
    /// Refused for a prefix of another kind or shape; not found when there is no such
    /// credential.
    pub async fn revoke(&self, prefix: &str, kind: Kind, now: u64) -> Result<Revoked, ManageError> {
        let action = match kind {
            Kind::Pat => Action::TokenRevoke,
            Kind::ApiKey => Action::ApikeyRevoke,
        };
        self.revoke_as(prefix, kind, now, action).await
    }

    /// Revokes as [`Manager::revoke`], audited as `action` (a leak or a prune).
    ///
    /// # Errors
    /// As [`Manager::revoke`].
    pub async fn revoke_as(
        &self,
        prefix: &str,
        kind: Kind,
        now: u64,
        action: Action,
    ) -> Result<Revoked, ManageError> {
        if !is_prefix(prefix) || Kind::of_prefix(prefix) != Some(kind) {
            return refuse(format!(
                "{prefix:?} is not a {} prefix ({}xxxxxx)",
                kind,
                kind.tag()
            ));
        }
        let org = self.store.credential(prefix).await?.map(|r| r.org);
        match self.store.revoke(prefix, kind, now).await? {
            Revoked::NotFound => Err(ManageError::NotFound(format!("{kind} {prefix}"))),
            Revoked::Now => {
                let entry = Entry::new(action, &self.actor.name, prefix, org.as_deref());
                self.audit(entry).await;
                Ok(Revoked::Now)
            }
            Revoked::Already => Ok(Revoked::Already),
        }
    }

    /// Credentials (of `org`, or all) that are live and have not been used for `unused_for`
    /// seconds (counting from creation when never used); revoked unless `dry_run`.
    ///
    /// # Errors
    /// Redis failure; the credentials revoked before it stay revoked.
    pub async fn prune(
        &self,
        unused_for: u64,
        org: Option<&str>,
        dry_run: bool,
        now: u64,
    ) -> Result<Vec<Listed>, ManageError> {
        let prefixes = self.store.all_credential_prefixes().await?;
        let mut dormant = Vec::new();
        for chunk in prefixes.chunks(500) {
            for (record, last_use) in self
                .store
                .credentials_with_use(chunk)
                .await?
                .into_iter()
                .flatten()
            {
                let live =
                    record.revoked.is_none() && record.expires.is_none_or(|expires| expires > now);
                let in_scope = org.is_none_or(|org| org == record.org);
                let last = last_use.as_ref().map_or(record.created, |u| u.at);
                if live && in_scope && now.saturating_sub(last) >= unused_for {
                    dormant.push(Listed { record, last_use });
                }
            }
        }
        if !dry_run {
            for listed in &mut dormant {
                let record = &mut listed.record;
                self.revoke_as(&record.prefix, record.kind, now, Action::PruneRevoke)
                    .await?;
                record.revoked = Some(now);
            }
        }
        Ok(dormant)
    }
}

fn listed(found: Vec<(CredentialRecord, Option<LastUse>)>) -> Vec<Listed> {
    found
        .into_iter()
        .map(|(record, last_use)| Listed { record, last_use })
        .collect()
}

/// `pat_`/`key_` and six base62 characters.
pub fn is_prefix(prefix: &str) -> bool {
    prefix.len() == token::PREFIX_LEN
        && Kind::of_prefix(prefix).is_some()
        && prefix.bytes().skip(4).all(|b| b.is_ascii_alphanumeric())
}
