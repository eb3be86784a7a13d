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
//! busy credentials are 100,000 slots), so a slot with its key is 28 bytes and allocates
//! nothing: the prefix inline as `[u8; 10]`, times as `u32` seconds, and the pending uses'
//! client inline when it is one IPv4 address. Only a credential used from several addresses
//! (or from IPv6) within one window keeps its client list in a side table.

use crate::store::LAST_USED_CLIENTS;
use crate::token::PREFIX_LEN;
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
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

/// One credential's write window.
#[derive(Debug)]
struct Slot {
    /// When the window opened (the last write), in whole seconds after the coalescer's
    /// epoch, rounded up: a window never lasts less than the interval (at most 1 s more).
    written: u32,
    /// Unix seconds of the latest use merged since the last write; `None` while nothing is
    /// pending. (`u32` holds unix seconds until 2106.)
    pending_at: Option<NonZeroU32>,
    /// The clients of the pending uses.
    clients: Clients,
}

/// Where a slot's pending clients are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clients {
    /// None yet.
    None,
    /// Exactly one, an IPv4 address: inline (the common case).
    One([u8; 4]),
    /// In [`Table::listed`]: several, or an IPv6 address.
    Listed,
}

/// The slots, and the client lists of slots whose clients are [`Clients::Listed`].
#[derive(Debug, Default)]
struct Table {
    slots: HashMap<Key, Slot>,
    listed: HashMap<Key, Vec<IpAddr>>,
}

/// The pending clients `clients` of `key`, oldest first, taken out of `listed`.
fn take_clients(
    listed: &mut HashMap<Key, Vec<IpAddr>>,
    key: &Key,
    clients: Clients,
) -> Vec<IpAddr> {
    match clients {
        Clients::None => Vec::new(),
        Clients::One(v4) => vec![IpAddr::from(v4)],
        Clients::Listed => listed.remove(key).unwrap_or_default(),
    }
}

/// Keeps `clients` for `key`: inline if it is one IPv4 address, else in `listed`.
fn keep_clients(listed: &mut HashMap<Key, Vec<IpAddr>>, key: Key, clients: Vec<IpAddr>) -> Clients {
    match clients.as_slice() {
        [] => Clients::None,
        [IpAddr::V4(v4)] => Clients::One(v4.octets()),
        _ => {
            listed.insert(key, clients);
            Clients::Listed
        }
    }
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
    /// The window, in whole seconds (rounded up).
    interval: u32,
    /// The monotonic instant that slot times count from.
    epoch: Instant,
    max_tracked: usize,
    table: Mutex<Table>,
}

fn remember(clients: &mut Vec<IpAddr>, client: Option<IpAddr>) {
    let Some(client) = client else { return };
    clients.retain(|c| *c != client);
    clients.push(client);
    if clients.len() > LAST_USED_CLIENTS {
        clients.remove(0);
    }
}

/// Unix seconds as a pending time (saturating; 0 is stored as 1, a time no request has).
fn pending_time(unix: u64) -> NonZeroU32 {
    NonZeroU32::new(u32::try_from(unix).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
}

impl Coalescer {
    /// Windows of `interval`, for at most `max_tracked` credentials at once, on a clock that
    /// counts from `epoch` (any instant not after the first `touch`).
    pub fn new(interval: Duration, max_tracked: usize, epoch: Instant) -> Coalescer {
        let whole = interval.as_secs() + u64::from(interval.subsec_nanos() > 0);
        Coalescer {
            interval: u32::try_from(whole).unwrap_or(u32::MAX),
            epoch,
            max_tracked,
            table: Mutex::new(Table::default()),
        }
    }

    /// Whole seconds from the epoch to `now`, rounded down (`up`: rounded up).
    fn seconds(&self, now: Instant, up: bool) -> u32 {
        let since = now.saturating_duration_since(self.epoch);
        let whole = since.as_secs() + u64::from(up && since.subsec_nanos() > 0);
        u32::try_from(whole).unwrap_or(u32::MAX)
    }

    fn window_open(&self, slot: &Slot, now: u32) -> bool {
        now < slot.written.saturating_add(self.interval)
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
        let (now_down, now_up) = (self.seconds(now, false), self.seconds(now, true));
        let Ok(mut guard) = self.table.lock() else {
            return Err(());
        };
        let table = &mut *guard;
        if let Some(slot) = table.slots.get_mut(&key) {
            if self.window_open(slot, now_down) {
                let at = pending_time(unix);
                slot.pending_at = Some(slot.pending_at.map_or(at, |pending| pending.max(at)));
                // The common cases, without touching the side table: no address, or one IPv4
                // address that is the only pending client (or the first).
                match (slot.clients, client) {
                    (_, None) => return Ok(None),
                    (Clients::One(held), Some(IpAddr::V4(v4))) if held == v4.octets() => {
                        return Ok(None);
                    }
                    (Clients::None, Some(IpAddr::V4(v4))) => {
                        slot.clients = Clients::One(v4.octets());
                        return Ok(None);
                    }
                    _ => {}
                }
                let mut clients = take_clients(&mut table.listed, &key, slot.clients);
                remember(&mut clients, client);
                slot.clients = keep_clients(&mut table.listed, key, clients);
                return Ok(None);
            }
            let mut clients = take_clients(&mut table.listed, &key, slot.clients);
            slot.written = now_up;
            slot.pending_at = None;
            slot.clients = Clients::None;
            remember(&mut clients, client);
            return Ok(Some(use_of(&key, unix, clients)));
        }
        if table.slots.len() >= self.max_tracked {
            return Err(());
        }
        table.slots.insert(
            key,
            Slot {
                written: now_up,
                pending_at: None,
                clients: Clients::None,
            },
        );
        Ok(Some(use_of(&key, unix, client.into_iter().collect())))
    }

    /// The pending stamps whose window has passed at `now`; forgets quiet credentials.
    pub fn due(&self, now: Instant) -> Vec<Use> {
        let (now_down, now_up) = (self.seconds(now, false), self.seconds(now, true));
        let Ok(mut guard) = self.table.lock() else {
            return Vec::new();
        };
        let table = &mut *guard;
        let mut due = Vec::new();
        for (key, slot) in &mut table.slots {
            if self.window_open(slot, now_down) {
                continue;
            }
            if let Some(at) = slot.pending_at.take() {
                slot.written = now_up;
                let clients = take_clients(&mut table.listed, key, slot.clients);
                slot.clients = Clients::None;
                due.push(use_of(key, u64::from(at.get()), clients));
            }
        }
        table
            .slots
            .retain(|_, slot| slot.pending_at.is_some() || self.window_open(slot, now_down));
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
        let t0 = Instant::now();
        let c = Coalescer::new(Duration::from_secs(60), 100, t0);
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
        let t0 = Instant::now();
        let c = Coalescer::new(Duration::from_secs(60), 100, t0);
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
        let t0 = Instant::now();
        let c = Coalescer::new(Duration::from_secs(60), 100, t0);
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
        let t0 = Instant::now();
        let c = Coalescer::new(Duration::from_secs(60), 1, t0);
        assert!(c.touch("pat_aaaaaa", ip(1), t0, 1000).is_ok());
        assert_eq!(c.touch("pat_bbbbbb", ip(1), t0, 1000), Err(()));
        c.due(t0 + Duration::from_secs(61));
        assert!(matches!(
            c.touch("pat_bbbbbb", ip(1), t0 + Duration::from_secs(61), 1061),
            Ok(Some(_))
        ));
    }

    #[test]
    fn a_slot_is_twenty_eight_bytes_and_a_malformed_prefix_is_refused() {
        assert!(std::mem::size_of::<(Key, Slot)>() <= 28);
        let c = Coalescer::new(Duration::from_secs(60), 100, Instant::now());
        assert_eq!(c.touch("pat_short", ip(1), Instant::now(), 1000), Err(()));
        assert_eq!(
            c.touch("pat_aaaaaa", ip(1), Instant::now(), 1000)
                .map(|u| u.is_some()),
            Ok(true)
        );
    }

    #[test]
    fn a_window_opened_mid_second_lasts_at_least_the_interval() {
        let t0 = Instant::now();
        let c = Coalescer::new(Duration::from_secs(60), 100, t0);
        let opened = t0 + Duration::from_millis(500);
        c.touch("pat_aaaaaa", ip(1), opened, 1000).expect("room");
        c.touch("pat_aaaaaa", ip(1), opened, 1000).expect("room");
        assert!(c.due(opened + Duration::from_millis(59_999)).is_empty());
        assert_eq!(c.due(opened + Duration::from_millis(60_500)).len(), 1);
    }

    #[test]
    fn only_several_or_ipv6_addresses_use_the_side_table_and_it_is_emptied_when_written() {
        let t0 = Instant::now();
        let c = Coalescer::new(Duration::from_secs(60), 100, t0);
        let listed = || c.table.lock().expect("table").listed.len();
        let v6: IpAddr = "2001:db8::1".parse().expect("address");
        c.touch("pat_aaaaaa", ip(1), t0, 1000).expect("room");
        c.touch("pat_aaaaaa", ip(2), t0, 1001).expect("room");
        c.touch("pat_aaaaaa", ip(2), t0, 1002).expect("room");
        c.touch("pat_aaaaaa", None, t0, 1003).expect("room");
        c.touch("pat_bbbbbb", ip(1), t0, 1000).expect("room");
        c.touch("pat_bbbbbb", ip(1), t0, 1001).expect("room");
        assert_eq!(listed(), 0);
        c.touch("pat_aaaaaa", ip(3), t0, 1004).expect("room");
        c.touch("pat_aaaaaa", ip(2), t0, 1004).expect("room");
        assert_eq!(listed(), 1);
        c.touch("pat_cccccc", Some(v6), t0, 1000).expect("room");
        c.touch("pat_cccccc", Some(v6), t0, 1005).expect("room");
        assert_eq!(listed(), 2);
        let mut due = c.due(t0 + Duration::from_secs(60));
        due.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        assert_eq!(
            due,
            vec![
                Use {
                    prefix: "pat_aaaaaa".into(),
                    at: 1004,
                    clients: vec![IpAddr::from([127, 0, 0, 3]), IpAddr::from([127, 0, 0, 2])]
                },
                Use {
                    prefix: "pat_bbbbbb".into(),
                    at: 1001,
                    clients: vec![IpAddr::from([127, 0, 0, 1])]
                },
                Use {
                    prefix: "pat_cccccc".into(),
                    at: 1005,
                    clients: vec![v6]
                }
            ]
        );
        assert_eq!(listed(), 0);
    }
}
