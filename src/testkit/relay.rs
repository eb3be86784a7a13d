//! A TCP relay that can go silent, for the tests of a Redis connection that dies without a
//! word: [`Relay::silence`] stops forwarding on every connection open at that moment (both
//! ends stay open, nothing passes either way, as behind a partition or a dropped NAT entry),
//! while connections made afterwards are relayed as usual.
//!
//! Plain threads (two per connection), so the synchronous integration tests can use it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

/// A relay from a loopback port to `target` (see the module docs).
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    /// Bumped by [`Relay::silence`]; a connection forwards only while it is the value it was
    /// accepted under.
    epoch: AtomicU64,
    stopped: AtomicBool,
}

impl Relay {
    /// Listens on a free loopback port and relays every connection to `target`.
    ///
    /// # Errors
    /// The listener could not be bound.
    pub fn start(target: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopped.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let epoch = accepting.epoch.load(Ordering::Acquire);
                let (Ok(client_reader), Ok(server_reader)) =
                    (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                let (up, down) = (Arc::clone(&accepting), Arc::clone(&accepting));
                thread::spawn(move || pump(client_reader, server, epoch, &up));
                thread::spawn(move || pump(server_reader, client, epoch, &down));
            }
        });
        Ok(Relay { addr, shared })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on, nothing passes on the connections open now; new ones work.
    pub fn silence(&self) {
        self.shared.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        // Wakes the accept loop so it sees `stopped`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` → `to` while the relay's epoch is `epoch`; after that, reads and discards
/// (the connection stays open and silent) until `from` closes.
fn pump(mut from: TcpStream, mut to: TcpStream, epoch: u64, shared: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if shared.epoch.load(Ordering::Acquire) != epoch {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if shared.epoch.load(Ordering::Acquire) == epoch {
        let _ = to.shutdown(Shutdown::Write);
    }
}
