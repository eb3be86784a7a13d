//! [`Seeder`]: writes users and credentials for the benches through the same
//! [`Manager`] rules as the CLI, on its own current-thread runtime.

use crate::conf::Conf;
use crate::manage::{Actor, Created, ManageError, Manager, NewToken};
use crate::store::Store;
use std::future::Future;

/// A runtime and a Redis connection for seeding data from synchronous bench code.
pub struct Seeder {
    runtime: tokio::runtime::Runtime,
    store: Store,
}

impl Seeder {
    /// A seeder for `conf`'s Redis.
    ///
    /// # Errors
    /// The runtime could not start, or the Redis URL is invalid.
    pub fn new(conf: &Conf) -> Result<Seeder, Box<dyn std::error::Error>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let store = runtime.block_on(async { Store::lazy(&conf.redis) })?;
        Ok(Seeder { runtime, store })
    }

    /// A manager over `conf`, acting as `actor` in the audit trail.
    pub fn manager<'a>(&'a self, conf: &'a Conf, actor: &str) -> Manager<'a> {
        Manager {
            store: &self.store,
            conf,
            actor: Actor::named(actor),
        }
    }

    /// Makes `user` a member of `org` with `role` and creates a PAT of theirs named `name`
    /// (no expiry), as `actor` in the audit trail.
    ///
    /// # Errors
    /// What the manager refuses (policy) or Redis errors.
    pub fn member_with_pat(
        &self,
        conf: &Conf,
        actor: &str,
        (user, org, role): (&str, &str, &str),
        name: &str,
    ) -> Result<Created, ManageError> {
        let manager = self.manager(conf, actor);
        self.run(manager.put_membership(user, org, role))?;
        self.run(manager.create_token(
            NewToken {
                user: user.into(),
                org: org.into(),
                name: name.into(),
                expires: None,
                permissions: None,
            },
            crate::auth::unix_now(),
        ))
    }

    /// Runs `future` to completion on the seeder's runtime.
    pub fn run<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The Redis store.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
