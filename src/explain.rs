//! `patgate explain`: how the gateway would decide a request for a credential, without the
//! secret, check by check, so operators can debug routes and rules offline. It reads the same
//! live state the gateway reads; it never sees or needs a secret, so the secret check itself
//! is reported as not checked.

use crate::conf::Conf;
use crate::denial::{Denial, InvalidReason};
use crate::routes::{path_is_safe, Access};
use crate::store::{Store, StoreError, UserStatus};
use crate::token::{self, Kind};
use serde::Serialize;

/// One check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Passed.
    Pass,
    /// Failed: the decision is this check's denial.
    Fail,
    /// Not evaluated offline (the secret), or not reached.
    NotChecked,
}

/// One line of the explanation.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub check: &'static str,
    /// Its result.
    pub outcome: Outcome,
    /// What was found.
    pub detail: String,
}

/// The whole explanation.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The route chosen, if any.
    pub route: Option<String>,
    /// Every check, in the gateway's order.
    pub checks: Vec<Check>,
    /// `allowed` (provided the secret matches), `open`, or the denial's error code.
    pub decision: String,
    /// The denial's stable reason, if denied.
    pub reason: Option<&'static str>,
}

struct Builder {
    route: Option<String>,
    checks: Vec<Check>,
}

impl Builder {
    fn pass(&mut self, check: &'static str, detail: impl Into<String>) {
        self.checks.push(Check {
            check,
            outcome: Outcome::Pass,
            detail: detail.into(),
        });
    }

    fn fail(
        mut self,
        check: &'static str,
        detail: impl Into<String>,
        denial: Denial,
    ) -> Explanation {
        self.checks.push(Check {
            check,
            outcome: Outcome::Fail,
            detail: detail.into(),
        });
        Explanation {
            route: self.route,
            checks: self.checks,
            decision: denial.code().to_string(),
            reason: Some(denial.reason()),
        }
    }

    fn decide(self, decision: &str) -> Explanation {
        Explanation {
            route: self.route,
            checks: self.checks,
            decision: decision.to_string(),
            reason: None,
        }
    }
}

fn invalid(reason: InvalidReason) -> Denial {
    Denial::InvalidToken { reason }
}

/// Explains the decision for credential `prefix` on `method host path` at unix time `now`.
///
/// # Errors
/// Redis failed.
pub async fn explain(
    store: &Store,
    conf: &Conf,
    prefix: &str,
    method: &str,
    host: Option<&str>,
    path: &str,
    now: u64,
) -> Result<Explanation, StoreError> {
    let mut b = Builder {
        route: None,
        checks: Vec::new(),
    };
    if !path_is_safe(path) {
        return Ok(b.fail(
            "path",
            format!("{path:?} is not canonical: dot or empty segments, or needless encoding"),
            Denial::BadPath,
        ));
    }
    let Ok(route) = conf.routes.lookup(host, method, path) else {
        return Ok(b.fail(
            "path",
            format!("{path:?}: read with and without its ; parameters it takes routes that do not cover each other"),
            Denial::BadPath,
        ));
    };
    b.pass(
        "path",
        "canonical: no dot or empty segments, nothing needlessly encoded",
    );
    let Some(route) = route else {
        return Ok(b.fail(
            "route",
            format!(
                "no route for {method} {} {path}",
                host.unwrap_or("(any host)")
            ),
            Denial::NoRoute,
        ));
    };
    b.route = Some(route.name.clone());
    let require = match &route.access {
        Access::Open => {
            b.pass("route", format!("{:?}, auth: none", route.name));
            return Ok(b.decide("open"));
        }
        Access::Protected { require } => {
            b.pass(
                "route",
                format!("{:?}, requires [{}]", route.name, require.join(", ")),
            );
            require
        }
    };
    let kind = match Kind::of_prefix(prefix) {
        Some(kind) if prefix.len() == token::PREFIX_LEN => kind,
        _ => {
            return Ok(b.fail(
                "prefix",
                format!("{prefix:?} is not a pat_/key_ prefix"),
                invalid(InvalidReason::Malformed),
            ))
        }
    };
    b.pass("prefix", format!("{kind} {prefix}"));
    let Some(record) = store.credential(prefix).await? else {
        return Ok(b.fail(
            "record",
            "no credential with this prefix",
            invalid(InvalidReason::Unknown),
        ));
    };
    if record.kind != kind {
        return Ok(b.fail(
            "record",
            format!("stored kind is {}", record.kind),
            invalid(InvalidReason::Unknown),
        ));
    }
    if let Some(at) = record.revoked {
        return Ok(b.fail(
            "revocation",
            format!("revoked at {at}"),
            invalid(InvalidReason::Revoked),
        ));
    }
    b.pass("record", format!("{:?} in org {}", record.name, record.org));
    b.checks.push(Check {
        check: "secret",
        outcome: Outcome::NotChecked,
        detail: "explain never sees a secret; the gateway checks it".into(),
    });
    match record.expires {
        Some(at) if now >= at => {
            return Ok(b.fail(
                "expiry",
                format!("expired at {at}"),
                invalid(InvalidReason::Expired),
            ))
        }
        Some(at) => b.pass("expiry", format!("expires at {at}")),
        None => b.pass("expiry", "never expires"),
    }
    let role = match (&record.kind, &record.user) {
        (Kind::Pat, Some(user)) => {
            let access = store.access(user, &record.org).await?;
            if access.status != Some(UserStatus::Active) {
                let status = access.status.map_or("no status", |s| s.as_str());
                return Ok(b.fail(
                    "owner",
                    format!("user {user} is {status}"),
                    invalid(InvalidReason::AccountInactive),
                ));
            }
            b.pass("owner", format!("user {user} is active"));
            let Some(role) = access.role else {
                return Ok(b.fail(
                    "membership",
                    format!("user {user} has no role in org {}", record.org),
                    Denial::NoOrgAccess,
                ));
            };
            b.pass("membership", format!("role {role} in org {}", record.org));
            role
        }
        (Kind::ApiKey, _) => match &record.role {
            Some(role) => {
                b.pass("role", format!("fixed role {role}"));
                role.clone()
            }
            None => {
                return Ok(b.fail(
                    "role",
                    "API key record without a role",
                    invalid(InvalidReason::Unknown),
                ))
            }
        },
        (Kind::Pat, None) => {
            return Ok(b.fail(
                "owner",
                "PAT record without a user",
                invalid(InvalidReason::Unknown),
            ))
        }
    };
    if conf.roles.get(&role).is_none() {
        return Ok(b.fail(
            "role",
            format!("{role:?} is not a role the conf defines, so it grants nothing"),
            Denial::NoOrgAccess,
        ));
    }
    let effective = conf.roles.effective(&role, record.permissions.as_deref());
    let missing = effective.missing(require);
    let granted = conf.roles.listed(&effective).join(" ");
    if !missing.is_empty() {
        let detail = format!("grants [{granted}], lacks [{}]", missing.join(", "));
        return Ok(b.fail("permissions", detail, Denial::InsufficientScope { missing }));
    }
    b.pass("permissions", format!("grants [{granted}]"));
    Ok(b.decide("allowed"))
}
