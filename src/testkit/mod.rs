//! Real processes for the demo, the integration tests and the benches: a private
//! `redis-server` on a free loopback port (alone, as a Redis Cluster, or as a primary and a
//! replica under three Sentinels; each plain or TLS only), and an upstream that echoes what it
//! received, and a TCP relay that can go silent (a connection dying without a word).
//! Nothing here is a fake: the tests talk to the same Redis and HTTP a deployment does.

pub mod cluster;
pub mod gateway;
pub mod redis;
pub mod relay;
pub mod seeder;
pub mod sentinel;
pub mod upstream;
pub mod wrk;

use once_cell::sync::Lazy;
use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Every port [`free_port`] has handed out in this process.
static HANDED_OUT: Lazy<Mutex<HashSet<u16>>> = Lazy::new(|| Mutex::new(HashSet::new()));

/// A free loopback port: bind 127.0.0.1:0, read the port, release it. Never the same port
/// twice in one process: tests run in parallel threads, and a port released by one test
/// could otherwise be handed to another while the first one's server still listens on it.
///
/// # Errors
/// The OS could not bind, or kept returning ports already handed out.
pub fn free_port() -> std::io::Result<u16> {
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let fresh = HANDED_OUT
            .lock()
            .map_or(true, |mut ports| ports.insert(port));
        if fresh {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(
        "no port that was not handed out before after 1000 tries",
    ))
}
