//! `/v1/tokens` and `/v1/apikeys`: create (the secret is in that one answer only), list,
//! show and revoke, scoped to the caller's org. A PAT owner with `patgate:tokens` manages
//! their own PATs; `patgate:admin` manages every PAT and API key of the org.
//!
//! A credential outside the caller's reach answers 404, exactly like one that does not
//! exist, so the API cannot be used to probe other orgs' prefixes.

use super::error::ApiError;
use super::{Call, Reply};
use crate::lifetime::Lifetime;
use crate::listing;
use crate::manage::{Created, Listed, NewApiKey, NewToken};
use crate::store::Revoked;
use crate::token::Kind;
use serde::Deserialize;
use serde_json::json;

/// `POST /v1/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    /// The owner; the calling user when absent.
    pub user: Option<String>,
    /// A label.
    pub name: String,
    /// `30d`, `12h`, ... or `never`; the policy default when absent.
    pub expires: Option<String>,
    /// Optional narrowing list.
    pub permissions: Option<Vec<String>>,
}

/// `POST /v1/apikeys` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApiKeyBody {
    /// The key's fixed role.
    pub role: String,
    /// A label.
    pub name: String,
    /// The org admin on whose authority it is created; the calling user when absent
    /// (required when the caller is an API key).
    pub created_by: Option<String>,
    /// `30d`, `12h`, ... or `never`; the policy default when absent.
    pub expires: Option<String>,
    /// Optional narrowing list.
    pub permissions: Option<Vec<String>>,
}

fn lifetime(expires: Option<String>) -> Result<Option<Lifetime>, ApiError> {
    expires
        .as_deref()
        .map(Lifetime::parse)
        .transpose()
        .map_err(|e| ApiError::Refused(e.to_string()))
}

fn created(created: &Created, now: u64) -> Reply {
    let listed = Listed {
        record: created.record.clone(),
        last_use: None,
    };
    Ok((
        201,
        json!({
            "token": created.token,
            "credential": listing::credential_json(&listed, now),
            "notice": "the token is shown only in this answer; store it now",
        }),
    ))
}

/// `POST /v1/tokens`: a PAT bound to the caller's org, for the caller (self-service) or,
/// by an admin API key (the product acting for its signed-in user), for a member the key
/// outranks or equals. A person's PAT never mints one for someone else.
pub async fn create_token(call: &Call<'_>, body: NewTokenBody) -> Reply {
    let NewTokenBody {
        user,
        name,
        expires,
        permissions,
    } = body;
    let user = match (user, call.caller.user()) {
        (Some(user), _) => user,
        (None, Some(own)) => own.to_string(),
        (None, None) => {
            return Err(ApiError::BadRequest(
                "an API key has no user: name the token's owner in \"user\"".into(),
            ))
        }
    };
    call.caller.require_tokens_of(&user)?;
    if let Some(own) = call.caller.user().filter(|own| *own != user) {
        // A PAT speaks for its owner (X-Auth-User upstream). A person minting one for someone
        // else would hold a secret that acts as them: impersonation, and an audit trail that
        // names the wrong person. Only the product's own admin API key, which signs its users
        // in itself, creates PATs on a user's behalf.
        return Err(ApiError::Forbidden(format!(
            "{own:?} cannot create a PAT for {user:?}: a PAT is created by its owner (or by the \
             product with an admin API key on the owner's behalf)"
        )));
    }
    crate::manage::check_id("user", &user)?;
    let record = call.store.user(&user).await?;
    let record = if call.caller.is_self_service(&user) {
        record.ok_or_else(|| ApiError::NotFound(format!("user {user:?} not found")))?
    } else {
        call.caller
            .require_member(&user, record.as_ref(), call.conf)?
            .clone()
    };
    let role = record.orgs.get(call.caller.org()).cloned().ok_or_else(|| {
        ApiError::Refused(format!(
            "user {user:?} has no role in org {:?}",
            call.caller.org()
        ))
    })?;
    let permissions = call
        .caller
        .bound_permissions(permissions, &role, call.conf)?;
    let request = NewToken {
        user,
        org: call.caller.org().to_string(),
        name,
        expires: lifetime(expires)?,
        permissions,
    };
    created(
        &call.manager().create_token(request, call.now).await?,
        call.now,
    )
}

/// `GET /v1/tokens?user=U`: U's PATs in the caller's org (U = the caller when absent).
pub async fn list_tokens(call: &Call<'_>, user: Option<&str>) -> Reply {
    let user = match (user, call.caller.user()) {
        (Some(user), _) => user,
        (None, Some(own)) => own,
        (None, None) => {
            return Err(ApiError::BadRequest(
                "an API key has no user: name one with ?user=".into(),
            ))
        }
    };
    call.caller.require_tokens_of(user)?;
    let list: Vec<Listed> = call
        .manager()
        .list_tokens(user)
        .await?
        .into_iter()
        .filter(|l| l.record.org == call.caller.org())
        .collect();
    Ok((200, listing::credentials_json(&list, call.now)))
}

/// The credential `prefix` of `kind` if the caller may see it; else not found.
async fn reachable(call: &Call<'_>, prefix: &str, kind: Kind) -> Result<Listed, ApiError> {
    let not_found = || ApiError::NotFound(format!("{kind} {prefix} not found"));
    if !crate::manage::is_prefix(prefix) || Kind::of_prefix(prefix) != Some(kind) {
        return Err(not_found());
    }
    let listed = match call.manager().show_credential(prefix).await {
        Err(crate::manage::ManageError::NotFound(_)) => return Err(not_found()),
        other => other?,
    };
    let record = &listed.record;
    if record.org != call.caller.org() {
        return Err(not_found());
    }
    match (kind, record.user.as_deref()) {
        (Kind::Pat, Some(owner)) if call.caller.is_self_service(owner) => Ok(listed),
        (Kind::Pat, Some(owner)) => {
            call.caller.require_admin()?;
            // An admin reaches the PATs of members it outranks or equals.
            let owner_role = call
                .store
                .user(owner)
                .await?
                .and_then(|u| u.orgs.get(call.caller.org()).cloned());
            if let Some(role) = owner_role {
                call.caller.require_rank(&role, call.conf, "the owner's")?;
            }
            Ok(listed)
        }
        _ => {
            call.caller.require_admin()?;
            if let Some(role) = &record.role {
                call.caller.require_rank(role, call.conf, "the key's")?;
            }
            Ok(listed)
        }
    }
}

async fn show_or_revoke(call: &Call<'_>, prefix: &str, kind: Kind, revoke: bool) -> Reply {
    let listed = reachable(call, prefix, kind).await?;
    if !revoke {
        return Ok((200, listing::credential_json(&listed, call.now)));
    }
    let outcome = call.manager().revoke(prefix, kind, call.now).await?;
    let listed = call.manager().show_credential(prefix).await?;
    let mut body = listing::credential_json(&listed, call.now);
    body["revocation"] = json!(match outcome {
        Revoked::Now => "revoked now",
        _ => "was already revoked",
    });
    Ok((200, body))
}

/// `GET` or `DELETE /v1/tokens/{prefix}`.
pub async fn one_token(call: &Call<'_>, prefix: &str, revoke: bool) -> Reply {
    show_or_revoke(call, prefix, Kind::Pat, revoke).await
}

/// `GET` or `DELETE /v1/apikeys/{prefix}`.
pub async fn one_apikey(call: &Call<'_>, prefix: &str, revoke: bool) -> Reply {
    call.caller.require_admin()?;
    show_or_revoke(call, prefix, Kind::ApiKey, revoke).await
}

/// `POST /v1/apikeys`: an API key of the caller's org, on the authority of an org admin
/// (the calling user, or `created_by` when the caller is an API key), with a role no higher
/// than that admin's or the caller's.
pub async fn create_apikey(call: &Call<'_>, body: NewApiKeyBody) -> Reply {
    call.caller.require_admin()?;
    let NewApiKeyBody {
        role,
        name,
        created_by,
        expires,
        permissions,
    } = body;
    let created_by = match (created_by, call.caller.user()) {
        (Some(named), Some(own)) if named != own => {
            return Err(ApiError::Forbidden(
                "a user creates API keys on their own authority; leave out created_by".into(),
            ))
        }
        (Some(named), _) => named,
        (None, Some(own)) => own.to_string(),
        (None, None) => {
            return Err(ApiError::BadRequest(
                "an API key caller must name the org admin in \"created_by\"".into(),
            ))
        }
    };
    call.caller.require_rank(&role, call.conf, "the key's")?;
    let permissions = if call.conf.roles.rank(&role).is_some() {
        call.caller
            .bound_permissions(permissions, &role, call.conf)?
    } else {
        permissions
    };
    let request = NewApiKey {
        org: call.caller.org().to_string(),
        role,
        created_by,
        name,
        expires: lifetime(expires)?,
        permissions,
    };
    created(
        &call.manager().create_apikey(request, call.now).await?,
        call.now,
    )
}

/// `GET /v1/apikeys`: the caller's org's API keys.
pub async fn list_apikeys(call: &Call<'_>) -> Reply {
    call.caller.require_admin()?;
    let list = call.manager().list_apikeys(call.caller.org()).await?;
    Ok((200, listing::credentials_json(&list, call.now)))
}
