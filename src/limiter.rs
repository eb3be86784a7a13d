//! Failed-attempt limits (SPEC §4 `rate_limited`): failures are counted per client address
//! and per credential prefix in fixed windows; past a limit, requests from that client or for
//! that prefix answer 429 with `Retry-After` *before* any Redis or bcrypt work.
//!
//! Per gateway instance and in memory: cheap on the hot path, and a brute force against one
//! instance is stopped by that instance. The table is bounded (`max_tracked`); when it is full
//! of live windows, new keys are not tracked (the limiter degrades, authentication does not).
//! Callers pass the clock in, so tests need no sleeps.
//!
//! Every authenticated request asks; almost always nothing is blocked. So the limiter keeps
//! the end of the latest window that reached its limit in an atomic, and a request that comes
//! after it is answered without the table's lock or a hash lookup.

use crate::token::PREFIX_LEN;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Client(IpAddr),
    /// A well-formed prefix, inline (checked on every request: no allocation).
    Prefix([u8; PREFIX_LEN]),
}

impl Key {
    fn prefix(prefix: &str) -> Option<Key> {
        prefix.as_bytes().try_into().ok().map(Key::Prefix)
    }

    /// The client's key: an IPv4 address as is (also when IPv4-mapped), an IPv6 address by
    /// its /64, the block one subscriber or host usually gets, so hopping between the
    /// addresses of one's own /64 does not reset the count.
    fn client(ip: IpAddr) -> Key {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from(
                    u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
                )),
            },
            v4 => v4,
        };
        Key::Client(ip)
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Limits from the conf's `limits:` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Window length.
    pub window: Duration,
    /// Failures one client address may cause per window.
    pub failures_per_client: u32,
    /// Failures one credential prefix may collect per window.
    pub failures_per_prefix: u32,
    /// Most keys tracked at once.
    pub max_tracked: usize,
    /// Largest request header section accepted (names + values), in bytes.
    pub max_header_bytes: usize,
}

/// The failure counters.
pub struct FailureLimiter {
    limits: Limits,
    windows: Mutex<HashMap<Key, Window>>,
    /// Where [`Self::blocked_until`] counts from.
    epoch: Instant,
    /// Nanoseconds after `epoch` when the last window that reached its limit ends (0: none
    /// ever did). Every window over its limit ends by then, so later no key is limited.
    blocked_until: AtomicU64,
}

impl FailureLimiter {
    /// An empty limiter.
    pub fn new(limits: Limits) -> FailureLimiter {
        FailureLimiter {
            limits,
            windows: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            blocked_until: AtomicU64::new(0),
        }
    }

    /// `at` in nanoseconds after the epoch (saturating: 0 before it, `u64::MAX` in 584 years).
    fn since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Seconds to wait if `client` or `prefix` is over its limit at `now`, else `None`.
    pub fn retry_after(
        &self,
        client: Option<IpAddr>,
        prefix: Option<&str>,
        now: Instant,
    ) -> Option<u64> {
        if self.since_epoch(now) >= self.blocked_until.load(Ordering::Acquire) {
            return None;
        }
        let windows = self.windows.lock().ok()?;
        let over = |key: Key, limit: u32| {
            let window = windows.get(&key)?;
            let ends = window.started + self.limits.window;
            (window.failures >= limit && now < ends)
                .then(|| ends.duration_since(now).as_secs().max(1))
        };
        let by_client =
            client.and_then(|ip| over(Key::client(ip), self.limits.failures_per_client));
        let by_prefix = prefix.and_then(|p| over(Key::prefix(p)?, self.limits.failures_per_prefix));
        by_client.max(by_prefix)
    }

    /// Counts one failed attempt from `client` against `prefix`.
    pub fn record_failure(&self, client: Option<IpAddr>, prefix: Option<&str>, now: Instant) {
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        for key in [client.map(Key::client), prefix.and_then(Key::prefix)]
            .into_iter()
            .flatten()
        {
            self.bump(&mut windows, key, now);
        }
    }

    fn bump(&self, windows: &mut HashMap<Key, Window>, key: Key, now: Instant) {
        if !windows.contains_key(&key) && windows.len() >= self.limits.max_tracked {
            let window = self.limits.window;
            windows.retain(|_, w| now < w.started + window);
            if windows.len() >= self.limits.max_tracked {
                return;
            }
        }
        let entry = windows.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= entry.started + self.limits.window {
            *entry = Window {
                started: now,
                failures: 0,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
        let limit = match key {
            Key::Client(_) => self.limits.failures_per_client,
            Key::Prefix(_) => self.limits.failures_per_prefix,
        };
        if entry.failures >= limit {
            let ends = self.since_epoch(entry.started + self.limits.window);
            self.blocked_until.fetch_max(ends, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_tracked: usize) -> FailureLimiter {
        FailureLimiter::new(Limits {
            window: Duration::from_secs(60),
            failures_per_client: 3,
            failures_per_prefix: 2,
            max_tracked,
            max_header_bytes: 32_768,
        })
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        let limiter = limiter(100);
        let t0 = Instant::now();
        for last in 1..=3u16 {
            let hop: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 7, 0, 0, 0, last).into();
            limiter.record_failure(Some(hop), None, t0);
        }
        let same_64: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 7, 0xa, 0xb, 0xc, 0xd).into();
        let next_64: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 8, 0, 0, 0, 1).into();
        assert!(limiter.retry_after(Some(same_64), None, t0).is_some());
        assert_eq!(limiter.retry_after(Some(next_64), None, t0), None);
        let mapped: IpAddr = Ipv6Addr::from(0xffff_0a00_0001_u128).into();
        for _ in 0..3 {
            limiter.record_failure(Some(mapped), None, t0);
        }
        assert!(
            limiter.retry_after(ip(1), None, t0).is_some(),
            "::ffff:10.0.0.1 is 10.0.0.1"
        );
    }

    #[test]
    fn a_client_is_limited_after_its_failures_until_the_window_ends() {
        let limiter = limiter(100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.retry_after(ip(1), None, t0), None);
            limiter.record_failure(ip(1), None, t0);
        }
        assert_eq!(
            limiter.retry_after(ip(1), None, t0 + Duration::from_secs(20)),
            Some(40)
        );
        assert_eq!(
            limiter.retry_after(ip(2), None, t0),
            None,
            "other clients are not affected"
        );
        assert_eq!(
            limiter.retry_after(ip(1), None, t0 + Duration::from_secs(60)),
            None
        );
    }

    #[test]
    fn a_prefix_is_limited_whatever_the_client() {
        let limiter = limiter(100);
        let t0 = Instant::now();
        limiter.record_failure(ip(1), Some("pat_abcdef"), t0);
        limiter.record_failure(ip(2), Some("pat_abcdef"), t0);
        assert_eq!(limiter.retry_after(ip(3), Some("pat_abcdef"), t0), Some(60));
        assert_eq!(limiter.retry_after(ip(3), Some("pat_zzzzzz"), t0), None);
    }

    #[test]
    fn failures_under_every_limit_leave_the_fast_answer_on() {
        let limiter = limiter(100);
        let t0 = Instant::now();
        limiter.record_failure(ip(1), Some("pat_abcdef"), t0);
        limiter.record_failure(ip(2), None, t0);
        assert_eq!(limiter.blocked_until.load(Ordering::Acquire), 0);
        assert_eq!(limiter.retry_after(ip(1), Some("pat_abcdef"), t0), None);
        // The prefix's second failure reaches its limit: until its window ends, asking
        // takes the table again, and the window's end frees everyone at once.
        limiter.record_failure(ip(3), Some("pat_abcdef"), t0 + Duration::from_secs(5));
        assert_eq!(limiter.retry_after(ip(4), Some("pat_abcdef"), t0), Some(60));
        assert_eq!(limiter.retry_after(ip(4), Some("pat_zzzzzz"), t0), None);
        let end = t0 + Duration::from_secs(60);
        assert_eq!(
            limiter.blocked_until.load(Ordering::Acquire),
            limiter.since_epoch(end)
        );
        assert_eq!(limiter.retry_after(ip(4), Some("pat_abcdef"), end), None);
    }

    #[test]
    fn a_new_window_starts_the_count_again() {
        let limiter = limiter(100);
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.record_failure(ip(1), None, t0);
        }
        let later = t0 + Duration::from_secs(61);
        limiter.record_failure(ip(1), None, later);
        assert_eq!(limiter.retry_after(ip(1), None, later), None);
    }

    #[test]
    fn the_table_is_bounded_and_expired_windows_make_room() {
        let limiter = limiter(2);
        let t0 = Instant::now();
        limiter.record_failure(ip(1), None, t0);
        limiter.record_failure(ip(2), None, t0);
        limiter.record_failure(ip(3), None, t0);
        assert_eq!(limiter.windows.lock().expect("lock").len(), 2);
        let later = t0 + Duration::from_secs(61);
        limiter.record_failure(ip(3), None, later);
        assert!(limiter
            .windows
            .lock()
            .expect("lock")
            .contains_key(&Key::Client(IpAddr::from([10, 0, 0, 3]))));
    }
}
