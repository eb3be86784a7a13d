//! The org-wide operations: `GET /v1/audit`, `POST /v1/prune`, `GET /v1/explain`, and the
//! unauthenticated, rate-limited `POST /v1/leaks`.

use super::error::ApiError;
use super::{Call, Reply, Request};
use crate::audit::{self, Action, Record};
use crate::auth::{unix_now, Authenticator};
use crate::hasher::sha256_matches;
use crate::lifetime::Lifetime;
use crate::limiter::FailureLimiter;
use crate::listing;
use crate::manage::{Actor, Manager};
use crate::store::{AuditStream, Store};
use crate::token::{self, Kind};
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// Most entries one `GET /v1/audit` returns.
const AUDIT_PAGE_MAX: usize = 1000;
/// Most stream entries one `GET /v1/audit` reads while filtering for the caller's org.
const AUDIT_SCAN_MAX: usize = 20_000;
/// Most tokens one `POST /v1/leaks` takes. With [`super::LEAK_CALLS_PER_MINUTE`], this bounds
/// the bcrypt work one client can cause (PATs of existing prefixes only) to 200 a minute.
pub const LEAK_BATCH_MAX: usize = 20;

/// `GET /v1/audit?limit=N&before=ID`: the caller's org's management actions, newest first.
pub async fn audit(call: &Call<'_>, query: &HashMap<String, String>) -> Reply {
    call.caller.require_admin()?;
    let limit = match query.get("limit") {
        None => 100,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=AUDIT_PAGE_MAX).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("limit must be 1..={AUDIT_PAGE_MAX}")))?,
    };
    let mut before = match query.get("before") {
        Some(id) if audit::is_stream_id(id) => Some(id.clone()),
        Some(_) => return Err(ApiError::BadRequest("before must be an entry id".into())),
        None => None,
    };
    let mut entries = Vec::new();
    let mut scanned = 0;
    let mut exhausted = false;
    while entries.len() < limit && scanned < AUDIT_SCAN_MAX {
        let page = call
            .store
            .audit_before(AuditStream::Actions, before.as_deref(), 500)
            .await?;
        if page.is_empty() {
            exhausted = true;
            break;
        }
        scanned += page.len();
        for stored in page {
            before = Some(stored.id.clone());
            let record = Record::from_stored(stored);
            if record.org.as_deref() == Some(call.caller.org()) {
                entries.push(record);
                if entries.len() == limit {
                    break;
                }
            }
        }
    }
    let next = if exhausted { None } else { before };
    Ok((200, json!({ "entries": entries, "next_before": next })))
}

/// `POST /v1/prune` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneBody {
    /// How long unused, e.g. `90d`.
    pub unused_for: String,
    /// List without revoking.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/prune`: revokes the org's credentials unused for `unused_for` (or lists them).
pub async fn prune(call: &Call<'_>, body: PruneBody) -> Reply {
    call.caller.require_admin()?;
    let unused_for = match Lifetime::parse(&body.unused_for) {
        Ok(Lifetime::For(duration)) => duration.as_secs(),
        _ => {
            return Err(ApiError::BadRequest(
                "unused_for must be a duration such as 90d".into(),
            ))
        }
    };
    let dormant = call
        .manager()
        .prune(unused_for, Some(call.caller.org()), body.dry_run, call.now)
        .await?;
    Ok((
        200,
        json!({
            "dry_run": body.dry_run,
            "credentials": listing::credentials_json(&dormant, call.now),
        }),
    ))
}

/// `GET /v1/explain?token_prefix=P&method=M&path=/x[&host=H]`: the checks the gateway would
/// run for a credential of the caller's org, as `patgate explain` prints them.
pub async fn explain(call: &Call<'_>, query: &HashMap<String, String>) -> Reply {
    call.caller.require_admin()?;
    let field = |name: &str| {
        query
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| ApiError::BadRequest(format!("missing query parameter {name}")))
    };
    let prefix = field("token_prefix")?;
    let method = query.get("method").map_or("GET", String::as_str);
    let path = field("path")?;
    let host = query.get("host").map(String::as_str);
    if !path.starts_with('/') {
        return Err(ApiError::BadRequest("path must start with /".into()));
    }
    let in_org = crate::manage::is_prefix(prefix)
        && call
            .store
            .credential(prefix)
            .await?
            .is_some_and(|record| record.org == call.caller.org());
    if !in_org {
        return Err(ApiError::NotFound(format!("credential {prefix} not found")));
    }
    let method = method.to_ascii_uppercase();
    let explanation =
        crate::explain::explain(call.store, call.conf, prefix, &method, host, path, call.now)
            .await?;
    let body = serde_json::to_value(&explanation).map_err(|_| ApiError::Internal)?;
    Ok((200, body))
}

/// `POST /v1/leaks` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaksBody {
    /// Raw tokens a secret scanner found.
    pub tokens: Vec<String>,
}

/// `POST /v1/leaks`: revokes every valid token in the batch and audits each. Needs no
/// credential (holding a token is the proof), is rate limited per client address, and
/// answers the same for valid and invalid tokens: `revoked` lists the prefix of every
/// well-formed token, each of which is now unusable (a valid one was revoked; an invalid one
/// never worked), so the answer cannot be used to test guesses.
pub async fn leaks(
    auth: &Authenticator,
    store: &Store,
    limiter: &FailureLimiter,
    client: std::net::IpAddr,
    request: &Request,
) -> Reply {
    let now = Instant::now();
    if let Some(retry_after) = limiter.retry_after(Some(client), None, now) {
        return Err(ApiError::RateLimited(retry_after));
    }
    limiter.record_failure(Some(client), None, now);
    let body: LeaksBody = super::body(request)?;
    if body.tokens.len() > LEAK_BATCH_MAX {
        return Err(ApiError::BadRequest(format!(
            "at most {LEAK_BATCH_MAX} tokens per call"
        )));
    }
    let reporter = client.to_string();
    let manager = Manager {
        store,
        conf: auth.conf(),
        actor: Actor::named(format!("leak-report:{reporter}")),
    };
    let mut revoked = BTreeSet::new();
    let mut malformed = 0;
    for raw in &body.tokens {
        let Ok(token) = token::parse(raw.trim()) else {
            malformed += 1;
            continue;
        };
        revoked.insert(token.prefix().to_string());
        let Some(record) = store.credential(token.prefix()).await? else {
            continue;
        };
        if record.kind != token.kind || record.revoked.is_some() {
            continue;
        }
        let matches = match token.kind {
            Kind::ApiKey => sha256_matches(token.hash_input(), &record.hash),
            Kind::Pat => {
                let pool = auth.pool().map_err(ApiError::Denied)?;
                pool.verify(token.hash_input(), &record.hash)
                    .await
                    .map_err(|_| ApiError::Denied(crate::denial::Denial::Overloaded))?
            }
        };
        if matches {
            manager
                .revoke_as(token.prefix(), token.kind, unix_now(), Action::LeakRevoke)
                .await?;
            log::warn!("leaked {} {} revoked", token.kind, token.prefix());
        }
    }
    Ok((200, json!({ "revoked": revoked, "malformed": malformed })))
}
