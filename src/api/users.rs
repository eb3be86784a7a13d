//! `/v1/users/...`: an org admin manages its org's members (show, put a membership, end
//! one, suspend, reactivate, remove), under the same rules as `patgate user`.
//!
//! Status changes are account-wide, so an org admin may make them only for a user who is a
//! member of the admin's org alone; for anyone else it takes an operator (the CLI).

use super::error::ApiError;
use super::{Call, Reply};
use crate::listing;
use serde::Deserialize;

/// `PUT /v1/users/{user}/orgs/{org}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipBody {
    /// The role in the org.
    pub role: String,
}

async fn shown(call: &Call<'_>, user: &str) -> Reply {
    let record = call.manager().show(user).await?;
    Ok((
        200,
        listing::user_json(user, &record, Some(call.caller.org())),
    ))
}

/// `GET /v1/users/{user}`: status and the role in the caller's org.
pub async fn show(call: &Call<'_>, user: &str) -> Reply {
    call.caller.require_admin()?;
    crate::manage::check_id("user", user)?;
    let record = call.store.user(user).await?;
    call.caller
        .require_member(user, record.as_ref(), call.conf)?;
    shown(call, user).await
}

/// `PUT /v1/users/{user}/orgs/{org}`: adds the user to the caller's org or changes their
/// role there (never above the caller's role, never for a member ranked above the caller).
pub async fn put_membership(call: &Call<'_>, user: &str, org: &str, body: MembershipBody) -> Reply {
    call.caller.require_admin()?;
    call.caller.require_org(org)?;
    crate::manage::check_id("user", user)?;
    call.caller
        .require_rank(&body.role, call.conf, "the granted")?;
    if let Some(record) = call.store.user(user).await? {
        if let Some(current) = record.orgs.get(org) {
            call.caller.require_rank(current, call.conf, "the user's")?;
        }
    }
    call.manager().put_membership(user, org, &body.role).await?;
    shown(call, user).await
}

/// `DELETE /v1/users/{user}/orgs/{org}`: ends the membership (the user's PATs for the org
/// stop working at once).
pub async fn leave(call: &Call<'_>, user: &str, org: &str) -> Reply {
    call.caller.require_admin()?;
    call.caller.require_org(org)?;
    crate::manage::check_id("user", user)?;
    let record = call.store.user(user).await?;
    call.caller
        .require_member(user, record.as_ref(), call.conf)?;
    call.manager().leave(user, org).await?;
    shown(call, user).await
}

/// `POST /v1/users/{user}/suspend|reactivate|remove`.
pub async fn set_status(call: &Call<'_>, user: &str, action: &str) -> Reply {
    call.caller.require_admin()?;
    crate::manage::check_id("user", user)?;
    let record = call.store.user(user).await?;
    let record = call
        .caller
        .require_member(user, record.as_ref(), call.conf)?;
    if record.orgs.keys().any(|org| org != call.caller.org()) {
        return Err(ApiError::Forbidden(format!(
            "user {user:?} is also a member of other orgs; an account-wide change needs an operator (patgate user {action})"
        )));
    }
    let manager = call.manager();
    match action {
        "suspend" => manager.suspend(user).await?,
        "reactivate" => manager.reactivate(user).await?,
        _ => manager.remove(user).await?,
    }
    shown(call, user).await
}
