//! Real processes for the demo, the integration tests and the benches: a private
//! `redis-server` on a free loopback port (alone, as a Redis Cluster, or as a primary and a
//! replica under three Sentinels), and an upstream that echoes what it received.
//! Nothing here is a fake: the tests talk to the same Redis and HTTP a deployment does.

pub mod cluster;
pub mod gateway;
pub mod redis;
pub mod seeder;
pub mod sentinel;
pub mod upstream;

use std::net::TcpListener;

/// A free loopback port: bind 127.0.0.1:0, read the port, release it.
///
/// # Errors
/// The OS could not bind.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
