//! Coalescing of last-used stamps: the gateway reports every authenticated request here, and
//! at most one write per credential per `last_used.interval_seconds` leaves this instance.
//!
//! The first use of a credential (or the first after a quiet interval) is written at once;
//! uses inside the interval are merged into one pending stamp (latest time, last
//! [`LAST_USED_CLIENTS`] distinct client addresses) that [`Coalescer::due`] hands out when the
//! interval has passed. Pure and clock-injected; recorder.rs does the writing. The table is
//! bounded: when it is full, new credentials are not stamped (counted, never blocking).
//!
//! Memory: the table holds a slot for every credential used within the interval (100,000
//! busy credentials are 100,000 slots), so a slot is 40 bytes: the prefix inline as
//! `[u8; 10]` and the pending stamp boxed, allocated only while uses are being merged.

use crate::store::LAST_USED_CLIENTS;
use crate::token::PREFIX_LEN;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One write to make: the credential, the time of its latest use, its clients oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// The credential's prefix.
    pub prefix: String,
    /// Unix seconds of the latest use.
    pub at: u64,
    /// Distinct client addresses seen, oldest first.
    pub clients: Vec<IpAddr>,
}

/// A credential's prefix, inline (every well-formed prefix is [`PREFIX_LEN`] bytes).
type Key = [u8; PREFIX_LEN];

/// Uses merged inside a window, waiting for it to end.
#[derive(Debug, Default)]
struct Pending {
    at: u64,
    clients: Vec<IpAddr>,
}

#[derive(Debug)]
struct Slot {
    written: Instant,
    pending: Option<Box<Pending>>,
}

fn use_of(key: &Key, at: u64, clients: Vec<IpAddr>) -> Use {
    Use {
        prefix: String::from_utf8_lossy(key).into_owned(),
        at,
        clients,
    }
}

/// Per-credential write windows of one gateway instance.
#[derive(Debug)]
pub struct Coalescer {
    interval: Duration,
    max_tracked: usize,
    slots: Mutex<HashMap<Key, Slot>>,
}

fn remember(clients: &mut Vec<IpAddr>, client: Option<IpAddr>) {
    let Some(client) = client else { return };
    clients.retain(|c| *c != client);
    // Grown one at a time: most credentials are used from one address, and a table of
    // 100,000 pending stamps should not hold room for four more each.
    clients.reserve_exact(1);
    clients.push(client);
    if clients.len() > LAST_USED_CLIENTS {
        clients.remove(0);
    }
}

impl Coalescer {
    /// Windows of `interval`, for at most `max_tracked` credentials at once.
    pub fn new(interval: Duration, max_tracked: usize) -> Coalescer {
        Coalescer {
            interval,
            max_tracked,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Records a use of `prefix` by `client` at `now` (`unix` seconds); returns the write to
    /// make now, if this use opens a new window. `Err(())` when the table is full (or the
    /// prefix is not a well-formed one, which a verified credential always has).
    #[allow(clippy::result_unit_err)]
    pub fn touch(
        &self,
        prefix: &str,
        client: Option<IpAddr>,
        now: Instant,
        unix: u64,
    ) -> Result<Option<Use>, ()> {
        let key: Key = prefix.as_bytes().try_into().map_err(|_| ())?;
        let Ok(mut slots) = self.slots.lock() else {
            return Err(());
        };
        if let Some(slot) = slots.get_mut(&key) {
            if now < slot.written + self.interval {
                let pending = slot.pending.get_or_insert_with(|| {
                    Box::new(Pending {
                        at: unix,
                        clients: Vec::new(),
                    })
                });
                pending.at = pending.at.max(unix);
                remember(&mut pending.clients, client);
                return Ok(None);
            }
            slot.written = now;
            let mut clients = slot.pending.take().map(|p| p.clients).unwrap_or_default();
            remember(&mut clients, client);
            return Ok(Some(use_of(&key, unix, clients)));
        }
        if slots.len() >= self.max_tracked {
            return Err(());
        }
        slots.insert(
            key,
            Slot {
                written: now,
                pending: None,
            },
        );
        let mut clients = Vec::new();
        remember(&mut clients, client);
        Ok(Some(use_of(&key, unix, clients)))
    }

    /// The pending stamps whose window has passed at `now`; forgets quiet credentials.
    pub fn due(&self, now: Instant) -> Vec<Use> {
        let Ok(mut slots) = self.slots.lock() else {
            return Vec::new();
        };
        let mut due = Vec::new();
        for (prefix, slot) in slots.iter_mut() {
            if now < slot.written + self.interval {
                continue;
            }
            if let Some(pending) = slot.pending.take() {
                slot.written = now;
                due.push(use_of(prefix, pending.at, pending.clients));
            }
        }
        let interval = self.interval;
        slots.retain(|_, slot| slot.pending.is_some() || now < slot.written + interval);
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn many_uses_in_one_window_make_one_write_then_one_more() {
        let c = Coalescer::new(Duration::from_secs(60), 100);
        let t0 = Instant::now();
        let first = c.touch("pat_aaaaaa", ip(1), t0, 1000).expect("room");
        assert_eq!(
            first,
            Some(Use {
                prefix: "pat_aaaaaa".into(),
                at: 1000,
                clients: vec![IpAddr::from([127, 0, 0, 1])]
            })
        );
        for i in 1..50u64 {
            let later = t0 + Duration::from_secs(i);
            assert_eq!(c.touch("pat_aaaaaa", ip(2), later, 1000 + i), Ok(None));
        }
        assert!(c.due(t0 + Duration::from_secs(59)).is_empty());
        let due = c.due(t0 + Duration::from_secs(60));
        assert_eq!(
            due,
            vec![Use {
                prefix: "pat_aaaaaa".into(),
                at: 1049,
                clients: vec![IpAddr::from([127, 0, 0, 2])]
            }]
        );
        // Written: the next window starts now, and nothing is pending.
        assert!(c.due(t0 + Duration::from_secs(200)).is_empty());
    }

    #[test]
    fn a_use_after_a_quiet_window_is_written_at_once_with_what_was_pending() {
        let c = Coalescer::new(Duration::from_secs(60), 100);
        let t0 = Instant::now();
        c.touch("pat_aaaaaa", ip(1), t0, 1000).expect("room");
        assert_eq!(
            c.touch("pat_aaaaaa", ip(2), t0 + Duration::from_secs(10), 1010),
            Ok(None)
        );
        let write = c
            .touch("pat_aaaaaa", ip(3), t0 + Duration::from_secs(61), 1061)
            .expect("room")
            .expect("a new window writes");
        assert_eq!(write.at, 1061);
        assert_eq!(
            write.clients,
            vec![IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3])]
        );
    }

    #[test]
    fn clients_are_distinct_newest_last_and_at_most_five() {
        let c = Coalescer::new(Duration::from_secs(60), 100);
        let t0 = Instant::now();
        c.touch("pat_aaaaaa", ip(1), t0, 1000).expect("room");
        for last in [2, 3, 2, 4, 5, 6, 7, 3] {
            c.touch("pat_aaaaaa", ip(last), t0, 1000).expect("room");
        }
        let due = c.due(t0 + Duration::from_secs(60));
        let clients: Vec<String> = due[0].clients.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            clients,
            [
                "127.0.0.4",
                "127.0.0.5",
                "127.0.0.6",
                "127.0.0.7",
                "127.0.0.3"
            ]
        );
    }

    #[test]
    fn a_full_table_refuses_new_credentials_and_quiet_ones_are_forgotten() {
        let c = Coalescer::new(Duration::from_secs(60), 1);
        let t0 = Instant::now();
        assert!(c.touch("pat_aaaaaa", ip(1), t0, 1000).is_ok());
        assert_eq!(c.touch("pat_bbbbbb", ip(1), t0, 1000), Err(()));
        c.due(t0 + Duration::from_secs(61));
        assert!(matches!(
            c.touch("pat_bbbbbb", ip(1), t0 + Duration::from_secs(61), 1061),
            Ok(Some(_))
        ));
    }

    #[test]
    fn a_slot_is_forty_bytes_and_a_malformed_prefix_is_refused() {
        assert!(std::mem::size_of::<(Key, Slot)>() <= 40);
        let c = Coalescer::new(Duration::from_secs(60), 100);
        assert_eq!(c.touch("pat_short", ip(1), Instant::now(), 1000), Err(()));
        assert_eq!(
            c.touch("pat_aaaaaa", ip(1), Instant::now(), 1000)
                .map(|u| u.is_some()),
            Ok(true)
        );
    }
}
