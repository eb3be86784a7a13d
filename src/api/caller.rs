//! [`Caller`]: who is calling the management API, and what their credential lets them do.
//!
//! The caller authenticated like any gateway request (auth.rs); here its identity is turned
//! into scope decisions:
//!
//! * everything happens in the caller's org (the credential's org), never outside it;
//! * `patgate:tokens` (PAT callers only): create, list, show and revoke one's own PATs;
//! * `patgate:admin`: manage the org's members, PATs and API keys, and read its audit trail;
//! * nobody acts on a member ranked above them, or grants a role above their own;
//! * a new credential never gets a permission the caller's own credential lacks (a narrowed
//!   token cannot mint a wider one).

use super::error::ApiError;
use crate::conf::{Conf, PERMISSION_ADMIN, PERMISSION_TOKENS};
use crate::manage::Actor;
use crate::store::UserRecord;
use crate::verify::Identity;

/// An authenticated management API caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// As the gateway would send it upstream.
    pub identity: Identity,
    rank: usize,
}

impl Caller {
    /// The caller with `identity`, ranked by its role in `conf`.
    pub fn new(identity: Identity, conf: &Conf) -> Caller {
        let rank = conf.roles.rank(identity.role()).unwrap_or(0);
        Caller { identity, rank }
    }

    /// The org every call acts in.
    pub fn org(&self) -> &str {
        self.identity.org()
    }

    /// The PAT owner (none for API keys).
    pub fn user(&self) -> Option<&str> {
        self.identity.user()
    }

    /// As named in the audit trail: the user, or the API key's prefix.
    pub fn actor(&self) -> Actor {
        Actor {
            name: self
                .identity
                .user()
                .unwrap_or(self.identity.prefix())
                .to_string(),
            org: Some(self.identity.org().to_string()),
        }
    }

    fn has(&self, permission: &str) -> bool {
        self.identity.has_permission(permission)
    }

    /// The caller may administer its org.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] without `patgate:admin`.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.has(PERMISSION_ADMIN) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {PERMISSION_ADMIN} permission"
            )))
        }
    }

    /// Whether `user` is the caller and may manage their own PATs.
    pub fn is_self_service(&self, user: &str) -> bool {
        self.user() == Some(user) && (self.has(PERMISSION_TOKENS) || self.has(PERMISSION_ADMIN))
    }

    /// The caller may manage `user`'s PATs: their own with `patgate:tokens`, anyone's in the
    /// org with `patgate:admin`.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] otherwise.
    pub fn require_tokens_of(&self, user: &str) -> Result<(), ApiError> {
        if self.is_self_service(user) || self.has(PERMISSION_ADMIN) {
            return Ok(());
        }
        let needed = if self.user() == Some(user) {
            format!("{PERMISSION_TOKENS} or {PERMISSION_ADMIN}")
        } else {
            PERMISSION_ADMIN.to_string()
        };
        Err(ApiError::Forbidden(format!(
            "this needs the {needed} permission"
        )))
    }

    /// `org` must be the caller's.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] for another org.
    pub fn require_org(&self, org: &str) -> Result<(), ApiError> {
        if org == self.org() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "your credential acts in org {:?} only",
                self.org()
            )))
        }
    }

    /// Granting or acting on `role` needs a rank at least as high.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] for a role above the caller's.
    pub fn require_rank(&self, role: &str, conf: &Conf, what: &str) -> Result<(), ApiError> {
        match conf.roles.rank(role) {
            Some(rank) if rank > self.rank => Err(ApiError::Forbidden(format!(
                "{what} role {role:?} is above your role {:?}",
                self.identity.role()
            ))),
            _ => Ok(()),
        }
    }

    /// `user` (their record) as a member of the caller's org whom the caller outranks or
    /// equals; a user outside the org is not found.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] or [`ApiError::Forbidden`].
    pub fn require_member<'r>(
        &self,
        user: &str,
        record: Option<&'r UserRecord>,
        conf: &Conf,
    ) -> Result<&'r UserRecord, ApiError> {
        let not_found = || ApiError::NotFound(format!("user {user:?} not found in your org"));
        let record = record.ok_or_else(not_found)?;
        let role = record.orgs.get(self.org()).ok_or_else(not_found)?;
        self.require_rank(role, conf, "the user's")?;
        Ok(record)
    }

    /// The narrowing list a new credential gets: `requested` (or, when none, everything
    /// `role` grants) must lie within the caller's own permissions. When nothing was requested
    /// and the role grants more than the caller has, the new credential inherits the
    /// caller's permissions within the role.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] naming a requested permission the caller lacks.
    pub fn bound_permissions(
        &self,
        requested: Option<Vec<String>>,
        role: &str,
        conf: &Conf,
    ) -> Result<Option<Vec<String>>, ApiError> {
        let identity = &self.identity;
        match requested {
            Some(list) => {
                if let Some(lacking) = list
                    .iter()
                    .find(|p| conf.roles.is_known(p) && !identity.has_permission(p))
                {
                    return Err(ApiError::Forbidden(format!(
                        "your credential lacks {lacking:?}, so it cannot grant it"
                    )));
                }
                Ok(Some(list))
            }
            None => {
                let granted = conf.roles.listed(&conf.roles.effective(role, None));
                if granted.iter().all(|p| identity.has_permission(p)) {
                    Ok(None)
                } else {
                    let within: Vec<String> = granted
                        .into_iter()
                        .filter(|p| identity.has_permission(p))
                        .collect();
                    if within.is_empty() {
                        return Err(ApiError::Forbidden(
                            "your credential shares no permission with that role".into(),
                        ));
                    }
                    Ok(Some(within))
                }
            }
        }
    }
}
