//! Graceful shutdown without dropping a connection that was accepted just before the
//! listeners closed.
//!
//! On a graceful upgrade (SIGQUIT) or stop (SIGTERM), Pingora stops the accept loops, then at
//! once runs the app's cleanup. For the HTTP proxy, that cleanup drops every connection still
//! waiting for its request. Most of those are idle keep-alive connections, which clients
//! expect to be closed. But the last connections the old process accepted are there too:
//! their handshake is done and their request is on its way. Dropping them resets requests
//! that were sent correctly. The upgrade test caught it: 1 of 3,763 requests was reset during a
//! handover.
//!
//! [`Lingering`] wraps the proxy app and waits [`LINGER`] (capped at the conf's
//! `server.grace_period_seconds`) between the accept loops ending and that cleanup. The
//! listeners are already closed then, so no new connection arrives. Every accepted
//! connection whose request arrives within the linger is served. Idle keep-alive connections
//! are closed after the linger instead of at once.

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use std::time::Duration;

/// How long accepted connections get to deliver their request once shutdown has begun.
/// A request sent right after the handshake arrives within a round trip, far below this;
/// the default grace period (5 s) leaves the rest for requests in flight.
pub const LINGER: Duration = Duration::from_secs(1);

/// A server app whose cleanup waits `linger` first (see the module docs).
pub struct Lingering<A> {
    inner: Arc<A>,
    linger: Duration,
}

impl<A> Lingering<A> {
    /// `inner`, with [`LINGER`] capped at the grace period Pingora waits before it shuts the
    /// runtimes down, so the linger never outlasts the grace period.
    pub fn new(inner: A, grace_period_seconds: u64) -> Lingering<A> {
        Lingering {
            inner: Arc::new(inner),
            linger: LINGER.min(Duration::from_secs(grace_period_seconds)),
        }
    }

    /// How long cleanup waits.
    pub fn linger(&self) -> Duration {
        self.linger
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Lingering<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(self.linger).await;
        self.inner.cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    #[async_trait]
    impl ServerApp for Nothing {
        async fn process_new(
            self: &Arc<Self>,
            _session: Stream,
            _shutdown: &ShutdownWatch,
        ) -> Option<Stream> {
            None
        }
    }

    #[test]
    fn the_linger_is_capped_by_the_grace_period() {
        assert_eq!(Lingering::new(Nothing, 5).linger(), LINGER);
        assert_eq!(Lingering::new(Nothing, 0).linger(), Duration::ZERO);
    }
}
