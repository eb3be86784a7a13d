//! Runs the CLI's management commands: parse arguments into manage.rs requests, print results.
//!
//! `create` prints the secret alone on stdout and the details on stderr; nothing else ever
//! prints a secret. Listings have a table form and a `--json` form.

use crate::audit::Record;
use crate::cli::{
    ApikeyCommand, AuditCommand, CreateOptions, ExplainArgs, TokenCommand, UserCommand,
};
use crate::conf::Conf;
use crate::explain;
use crate::lifetime::Lifetime;
use crate::listing;
use crate::manage::{Actor, Created, Listed, ManageError, Manager, NewApiKey, NewToken};
use crate::proxy::unix_now;
use crate::store::{AuditStream, Revoked, Store, UserRecord};
use crate::token::Kind;
use std::io::Write;

/// A private current-thread runtime for one command.
fn runtime() -> Result<tokio::runtime::Runtime, ManageError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ManageError::Refused(format!("cannot start runtime: {e}")))
}

/// Runs `f` with a manager on a private current-thread runtime.
fn with_manager<T>(
    conf: &Conf,
    f: impl for<'a> FnOnce(
        &'a Manager<'a>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<T, ManageError>> + 'a>,
    >,
) -> Result<T, ManageError> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let store = Store::lazy(&conf.redis)?;
        let manager = Manager {
            store: &store,
            conf,
            actor: Actor::cli(),
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
        TokenCommand::Prune {
            unused_for,
            dry_run,
            org,
            json,
        } => {
            let unused_for = match Lifetime::parse(&unused_for)? {
                Lifetime::For(duration) => duration.as_secs(),
                Lifetime::Never => {
                    return Err(ManageError::Refused(
                        "--unused-for needs a duration such as 90d".into(),
                    ))
                }
            };
            let dormant = with_manager(conf, |m| {
                Box::pin(async move { m.prune(unused_for, org.as_deref(), dry_run, now).await })
            })?;
            print_list(&dormant, json, now);
            let verb = if dry_run { "would revoke" } else { "revoked" };
            eprintln!("{verb} {} dormant credential(s)", dormant.len());
        }
    }
    Ok(())
}

/// `patgate audit tail`: the latest entries oldest first, then (with `--follow`) new ones as
/// they come, polling every 250 ms.
///
/// # Errors
/// Redis failed.
pub fn audit(conf: &Conf, command: AuditCommand) -> Result<(), ManageError> {
    let AuditCommand::Tail {
        lines,
        follow,
        denied,
        json,
    } = command;
    let stream = if denied {
        AuditStream::Denied
    } else {
        AuditStream::Actions
    };
    let print = |record: Record| {
        if json {
            println!("{}", serde_json::to_string(&record).unwrap_or_default());
        } else {
            println!("{}", record.line());
        }
        let _ = std::io::stdout().flush();
    };
    let runtime = runtime()?;
    runtime.block_on(async {
        let store = Store::lazy(&conf.redis)?;
        let mut latest = store.audit_before(stream, None, lines).await?;
        latest.reverse();
        let mut last_id = latest.last().map(|e| e.id.clone());
        for stored in latest {
            print(Record::from_stored(stored));
        }
        if !follow {
            return Ok(());
        }
        loop {
            let new = store.audit_after(stream, last_id.as_deref(), 500).await?;
            if new.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                continue;
            }
            last_id = new.last().map(|e| e.id.clone());
            for stored in new {
                print(Record::from_stored(stored));
            }
        }
    })
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
        listing::expiry_text(record.expires, unix_now())
    );
}

fn print_list(records: &[Listed], as_json: bool, now: u64) {
    if as_json {
        println!("{}", listing::credentials_json(records, now));
    } else {
        print!("{}", listing::credentials_table(records, now));
    }
}

fn print_user(user: &str, record: &UserRecord, as_json: bool) {
    if as_json {
        println!("{}", listing::user_json(user, record, None));
        return;
    }
    let status = record.status.map_or("unknown", |s| s.as_str());
    println!("user {user}: {status}");
    for (org, role) in &record.orgs {
        println!("  {org}: {role}");
    }
}
