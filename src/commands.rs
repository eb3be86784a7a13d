//! Runs the CLI's management commands: parse arguments into manage.rs requests, print results.
//!
//! `create` prints the secret alone on stdout and the details on stderr; nothing else ever
//! prints a secret. Listings have a table form and a `--json` form.

use crate::cli::{ApikeyCommand, CreateOptions, ExplainArgs, TokenCommand, UserCommand};
use crate::conf::Conf;
use crate::explain;
use crate::lifetime::Lifetime;
use crate::manage::{Created, ManageError, Manager, NewApiKey, NewToken};
use crate::proxy::unix_now;
use crate::store::{CredentialRecord, Revoked, Store, UserRecord};
use crate::token::Kind;
use serde_json::json;
use std::io::Write;

/// Runs `f` with a manager on a private current-thread runtime.
fn with_manager<T>(
    conf: &Conf,
    f: impl for<'a> FnOnce(
        &'a Manager<'a>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<T, ManageError>> + 'a>,
    >,
) -> Result<T, ManageError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ManageError::Refused(format!("cannot start runtime: {e}")))?;
    runtime.block_on(async {
        let store = Store::lazy(&conf.redis)?;
        let manager = Manager {
            store: &store,
            conf,
        };
        f(&manager).await
    })
}

fn lifetime(expires: &Option<String>) -> Result<Option<Lifetime>, ManageError> {
    Ok(expires.as_deref().map(Lifetime::parse).transpose()?)
}

/// `patgate explain`: prints each check and the decision.
///
/// # Errors
/// Redis failed.
pub fn explain(conf: &Conf, args: ExplainArgs) -> Result<(), ManageError> {
    let ExplainArgs {
        token_prefix,
        method,
        path,
        host,
        json: as_json,
    } = args;
    let method = method.to_ascii_uppercase();
    let explanation = with_manager(conf, |m| {
        Box::pin(async move {
            let now = unix_now();
            Ok(explain::explain(
                m.store,
                m.conf,
                &token_prefix,
                &method,
                host.as_deref(),
                &path,
                now,
            )
            .await?)
        })
    })?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string(&explanation).unwrap_or_default()
        );
        return Ok(());
    }
    println!(
        "route: {}",
        explanation.route.as_deref().unwrap_or("(none)")
    );
    for check in &explanation.checks {
        let mark = match check.outcome {
            explain::Outcome::Pass => "pass",
            explain::Outcome::Fail => "FAIL",
            explain::Outcome::NotChecked => "----",
        };
        println!("  [{mark}] {:<12} {}", check.check, check.detail);
    }
    match explanation.reason {
        Some(reason) => println!("decision: {} ({reason})", explanation.decision),
        None => println!("decision: {}", explanation.decision),
    }
    Ok(())
}

/// `patgate user ...`
///
/// # Errors
/// What the rules or Redis refused.
pub fn user(conf: &Conf, command: UserCommand) -> Result<(), ManageError> {
    match command {
        UserCommand::Put { user, org, role } => {
            with_manager(conf, |m| {
                Box::pin(async move { m.put_membership(&user, &org, &role).await })
            })?;
            eprintln!("membership saved");
        }
        UserCommand::Leave { user, org } => {
            with_manager(conf, |m| {
                Box::pin(async move { m.leave(&user, &org).await })
            })?;
            eprintln!("membership ended");
        }
        UserCommand::Suspend { user } => {
            with_manager(conf, |m| Box::pin(async move { m.suspend(&user).await }))?;
            eprintln!("user suspended");
        }
        UserCommand::Reactivate { user } => {
            with_manager(conf, |m| Box::pin(async move { m.reactivate(&user).await }))?;
            eprintln!("user reactivated");
        }
        UserCommand::Remove { user } => {
            with_manager(conf, |m| Box::pin(async move { m.remove(&user).await }))?;
            eprintln!("user removed");
        }
        UserCommand::Show { user, json } => {
            let id = user.clone();
            let record = with_manager(conf, |m| Box::pin(async move { m.show(&user).await }))?;
            print_user(&id, &record, json);
        }
    }
    Ok(())
}

/// `patgate token ...`
///
/// # Errors
/// What the rules or Redis refused.
pub fn token(conf: &Conf, command: TokenCommand) -> Result<(), ManageError> {
    let now = unix_now();
    match command {
        TokenCommand::Create { user, org, options } => {
            let CreateOptions {
                name,
                expires,
                permissions,
            } = options;
            let request = NewToken {
                user,
                org,
                name,
                expires: lifetime(&expires)?,
                permissions,
            };
            let created = with_manager(conf, |m| {
                Box::pin(async move { m.create_token(request, now).await })
            })?;
            print_created(&created);
        }
        TokenCommand::List { user, json } => {
            let records = with_manager(conf, |m| {
                Box::pin(async move { m.list_tokens(&user).await })
            })?;
            print_list(&records, json, now);
        }
        TokenCommand::Revoke { prefix } => revoke(conf, prefix, Kind::Pat, now)?,
    }
    Ok(())
}

/// `patgate apikey ...`
///
/// # Errors
/// What the rules or Redis refused.
pub fn apikey(conf: &Conf, command: ApikeyCommand) -> Result<(), ManageError> {
    let now = unix_now();
    match command {
        ApikeyCommand::Create {
            org,
            role,
            created_by,
            options,
        } => {
            let CreateOptions {
                name,
                expires,
                permissions,
            } = options;
            let request = NewApiKey {
                org,
                role,
                created_by,
                name,
                expires: lifetime(&expires)?,
                permissions,
            };
            let created = with_manager(conf, |m| {
                Box::pin(async move { m.create_apikey(request, now).await })
            })?;
            print_created(&created);
        }
        ApikeyCommand::List { org, json } => {
            let records = with_manager(conf, |m| {
                Box::pin(async move { m.list_apikeys(&org).await })
            })?;
            print_list(&records, json, now);
        }
        ApikeyCommand::Revoke { prefix } => revoke(conf, prefix, Kind::ApiKey, now)?,
    }
    Ok(())
}

fn revoke(conf: &Conf, prefix: String, kind: Kind, now: u64) -> Result<(), ManageError> {
    let shown = prefix.clone();
    let outcome = with_manager(conf, |m| {
        Box::pin(async move { m.revoke(&prefix, kind, now).await })
    })?;
    match outcome {
        Revoked::Already => eprintln!("{shown} was already revoked"),
        _ => eprintln!("{shown} revoked"),
    }
    Ok(())
}

fn print_created(created: &Created) {
    let record = &created.record;
    // The secret, alone on stdout, exactly once.
    println!("{}", created.token);
    let _ = std::io::stdout().flush();
    eprintln!(
        "created {} {} in org {} (name {:?}, {}); the token above is shown only once",
        record.kind,
        record.prefix,
        record.org,
        record.name,
        expiry_text(record.expires, unix_now())
    );
}

fn expiry_text(expires: Option<u64>, now: u64) -> String {
    match expires {
        None => "never expires".into(),
        Some(t) if t <= now => "expired".into(),
        Some(t) => {
            let left = t - now;
            if left >= 86_400 {
                format!("expires in {} days", left / 86_400)
            } else if left >= 3600 {
                format!("expires in {} hours", left / 3600)
            } else {
                format!("expires in {} minutes", left.div_ceil(60))
            }
        }
    }
}

fn state(record: &CredentialRecord, now: u64) -> &'static str {
    match (record.revoked, record.expires) {
        (Some(_), _) => "revoked",
        (None, Some(t)) if t <= now => "expired",
        _ => "active",
    }
}

fn print_list(records: &[CredentialRecord], as_json: bool, now: u64) {
    if as_json {
        let list: Vec<_> = records
            .iter()
            .map(|r| {
                json!({
                    "prefix": r.prefix,
                    "kind": r.kind.as_str(),
                    "name": r.name,
                    "user": r.user,
                    "created_by": r.created_by,
                    "org": r.org,
                    "role": r.role,
                    "permissions": r.permissions,
                    "created": r.created,
                    "expires": r.expires,
                    "revoked": r.revoked,
                    "state": state(r, now),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return;
    }
    println!(
        "{:<10}  {:<8}  {:<12}  {:<10}  {:<22}  NAME",
        "PREFIX", "STATE", "ORG", "ROLE", "EXPIRES"
    );
    for r in records {
        println!(
            "{:<10}  {:<8}  {:<12}  {:<10}  {:<22}  {}",
            r.prefix,
            state(r, now),
            r.org,
            r.role.as_deref().unwrap_or("(live)"),
            expiry_text(r.expires, now),
            r.name
        );
    }
}

fn print_user(user: &str, record: &UserRecord, as_json: bool) {
    let status = record.status.map_or("unknown", |s| s.as_str());
    if as_json {
        println!(
            "{}",
            json!({ "user": user, "status": status, "orgs": record.orgs })
        );
        return;
    }
    println!("user {user}: {status}");
    for (org, role) in &record.orgs {
        println!("  {org}: {role}");
    }
}
