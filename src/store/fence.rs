//! Confirmed mode (`redis.freshness: confirmed`): tracked mode's zero-round-trip warm path
//! with strict mode's guarantee, by making each *write* wait instead of each request.
//!
//! The protocol, a lease-and-acknowledge scheme in the manner of Chubby's cache invalidation:
//!
//! - **Instances hold leases.** Every confirmed gateway renews its lease every heartbeat
//!   (`redis.heartbeat_ms`): [`RENEW`] sets its entry in the sorted set `{fence}:instances`
//!   to Redis's clock plus [`LEASE_HEARTBEATS`] heartbeats. The gateway serves from its record
//!   cache only while its own monotonic clock says the lease holds; it counts from *before*
//!   it sent the renewal and gives up a quarter early, so it stops before Redis counts it
//!   gone (as long as Redis's clock is not stepped forward by more than that quarter).
//! - **Writers raise a fence.** After its write, every writer ([`confirm`]: the CLI, the
//!   management API, and the product writing Redis as the README documents) increments
//!   `{fence}:generation` and waits until each instance with a lease has acknowledged that
//!   generation in `{fence}:acks`, or has lost its lease. Only then is the write reported
//!   done.
//! - **Instances acknowledge only what they have applied.** Each gateway reads the generation
//!   over its *tracked* connection, so Redis pushes an invalidation of that key to it when a
//!   writer raises a fence, behind the invalidations of the writes before it, on the same
//!   connection. The push wakes the gateway ([`keep_lease`]), which reads the generation again
//!   over that connection: its reply arrives after every push sent before it, all applied by
//!   then (redis-rs hands pushes to live.rs in order, on the connection's task). Only then is
//!   the generation written to `{fence}:acks`.
//!
//! Why a request that starts after a confirmed write cannot see the old state: the writer
//! returned either on this instance's acknowledgement (sent after the write's invalidation was
//! applied here), or because the instance's lease had run out in Redis's clock, and the
//! instance stopped serving from its cache before that. A renewal granted after the write is
//! followed, before the grant, by a read over the tracked connection that proves the write's
//! invalidation applied: each round renews first, then reads.
//!
//! Costs: a write waits about three round trips of the slowest live gateway (no gateway, no
//! wait); a gateway that died holds writes up to its lease ([`LEASE_HEARTBEATS`] heartbeats, 2
//! s by default), and [`confirm`] gives up after a lease and a second more
//! ([`StoreError::Unconfirmed`]: the write is in Redis, its confirmation is not). The three
//! keys share a hash tag so one script reaches them on a cluster too (writers raise fences on
//! every topology; only gateways on a cluster cannot be confirmed ones, conf.rs).

use super::connection::Connection;
use super::live::{LiveCache, HEARTBEAT_DEADLINE};
use super::{Keys, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Weak;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How many heartbeats a lease lasts.
pub const LEASE_HEARTBEATS: u32 = 4;

/// Renews an instance's lease (`KEYS[1]`, the instances) until Redis's clock plus `ARGV[2]`
/// ms, and records `ARGV[3]`, when above 0, as the generation it has applied (`KEYS[2]`).
const RENEW: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[1])
if tonumber(ARGV[3]) > 0 then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
return 1
";

/// The fence generation (`KEYS[1]`). A script, not a `GET`: redis-rs's own reply cache on
/// the tracked connection could answer a `GET` without asking Redis, and the point of this
/// read is the round trip. Redis tracks the key for the connection all the same.
const READ_GENERATION: &str = r"
return tonumber(redis.call('GET', KEYS[1]) or '0')
";

/// Raises a fence (`ARGV[1]` 0: increments `KEYS[1]`) or checks one (`ARGV[1]`, its
/// generation); forgets instances whose lease ran out (`KEYS[2]`, their acks in `KEYS[3]`)
/// and returns the generation and how many live instances have not acknowledged it.
const CONFIRM: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local generation = tonumber(ARGV[1])
if generation == 0 then generation = redis.call('INCR', KEYS[1]) end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ms)) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
local pending = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if tonumber(redis.call('HGET', KEYS[3], id) or '0') < generation then pending = pending + 1 end
end
return {generation, pending}
";

/// One gateway's side of the protocol: its id, its lease and the wake-up a raised fence
/// sends. Shared by the record cache (which serves only under the lease, and wakes the
/// task when the generation key is invalidated) and [`keep_lease`].
pub struct InstanceFence {
    /// This gateway in `{fence}:instances`: host, process and a random tag.
    id: String,
    /// `{fence}:generation`, as Redis names it in invalidation pushes.
    generation_key: String,
    /// Woken by the invalidation of `generation_key`: a writer raised a fence.
    raised: Notify,
    /// Counts from here; nanoseconds after it in `until`.
    origin: Instant,
    /// Until when (nanoseconds after `origin`) the lease holds; 0 before the first grant.
    until: AtomicU64,
}

impl InstanceFence {
    /// The fence of a new gateway instance with keys laid out by `keys`; it holds no lease
    /// until [`keep_lease`] has renewed one.
    pub fn new(keys: &Keys) -> InstanceFence {
        InstanceFence {
            id: instance_id(),
            generation_key: keys.fence_generation(),
            raised: Notify::new(),
            origin: Instant::now(),
            until: AtomicU64::new(0),
        }
    }

    /// This instance's id in `{fence}:instances`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `key` (from an invalidation push) is the fence generation.
    pub fn is_generation_key(&self, key: &str) -> bool {
        key == self.generation_key
    }

    /// A writer raised a fence: run a round now.
    pub fn wake(&self) {
        self.raised.notify_one();
    }

    /// Whether the lease holds at `now`: the cache may serve.
    pub fn holds_lease(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        elapsed < u128::from(self.until.load(Ordering::Acquire))
    }

    /// Holds the lease until `until` (tests of the record cache).
    #[cfg(test)]
    pub fn grant_for_test(&self, until: Instant) {
        self.grant(until);
    }

    /// The wake-up a raised fence sends (tests of the record cache).
    #[cfg(test)]
    pub fn woken_for_test(&self) -> &Notify {
        &self.raised
    }

    /// Holds the lease until `until`.
    fn grant(&self, until: Instant) {
        let nanos = until.saturating_duration_since(self.origin).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX).max(1);
        self.until.store(nanos, Ordering::Release);
    }
}

/// `host:pid:tag`, readable in `{fence}:instances` and unique per process.
fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() { "host".into() } else { host };
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// How long a lease granted at `sent` is served from: a quarter short of what Redis records.
fn served_until(sent: Instant, lease: Duration) -> Instant {
    sent + lease - lease / 4
}

/// The gateway's lease task (confirmed mode's heartbeat; replaces tracked mode's `PING`):
/// every `period`, and at once when a writer raises a fence, renews the lease over `plain`
/// (with the last generation proven applied), then reads the generation over `tracked`;
/// both answered within the deadline grant the lease and resume the cache, anything else
/// suspends it. A round that proved a newer generation is followed at once by another, whose
/// renewal acknowledges it. Returns when the cache is dropped (its store is gone).
pub async fn keep_lease(
    live: Weak<LiveCache>,
    mut tracked: Connection,
    mut plain: Connection,
    keys: Keys,
    period: Duration,
    timeout: Duration,
) {
    let Some(fence) = live.upgrade().and_then(|live| live.fence()) else {
        return;
    };
    let deadline = timeout.max(HEARTBEAT_DEADLINE);
    let lease = period * LEASE_HEARTBEATS;
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    let (renew, read) = (
        redis::Script::new(RENEW),
        redis::Script::new(READ_GENERATION),
    );
    let (instances, acks, generation) = (
        keys.fence_instances(),
        keys.fence_acks(),
        keys.fence_generation(),
    );
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut proven, mut acknowledged) = (0u64, 0u64);
    // A round that proved a generation not yet acknowledged is followed at once by another
    // (a writer waits for it); any other waits for the next tick or fence, so a Redis that
    // fails is not retried in a loop.
    let mut again = false;
    loop {
        if !again {
            tokio::select! {
                _ = ticker.tick() => {}
                () = fence.raised.notified() => {}
            }
        }
        let sent = Instant::now();
        let mut renewal = renew.key(&instances);
        renewal.key(&acks).arg(fence.id()).arg(lease_ms).arg(proven);
        let renewed = tokio::time::timeout(deadline, renewal.invoke_async::<()>(&mut plain)).await;
        let current = if matches!(renewed, Ok(Ok(()))) {
            acknowledged = proven;
            let reading = read.key(&generation);
            match tokio::time::timeout(deadline, reading.invoke_async::<u64>(&mut tracked)).await {
                Ok(Ok(current)) => Some(current),
                _ => {
                    tracked.suspect();
                    None
                }
            }
        } else {
            plain.suspect();
            None
        };
        let Some(live) = live.upgrade() else {
            return;
        };
        match current {
            Some(current) => {
                proven = proven.max(current);
                fence.grant(served_until(sent, lease));
                live.resume();
                again = proven > acknowledged;
            }
            None => {
                live.suspend("the lease could not be renewed");
                again = false;
            }
        }
    }
}

/// A writer's fence (see the module docs): raises one, then waits until every instance with
/// a lease has acknowledged it or lost its lease. Returns at once when no confirmed gateway
/// runs. Each script call has `timeout`.
///
/// # Errors
/// [`StoreError`] when Redis fails or does not answer; [`StoreError::Unconfirmed`] when live
/// instances have not acknowledged within a lease of `heartbeat` and a second more.
pub async fn confirm(
    mut conn: Connection,
    keys: &Keys,
    timeout: Duration,
    heartbeat: Duration,
) -> Result<(), StoreError> {
    let script = redis::Script::new(CONFIRM);
    let started = Instant::now();
    let give_up = heartbeat * LEASE_HEARTBEATS + Duration::from_secs(1);
    let (generation_key, instances, acks) = (
        keys.fence_generation(),
        keys.fence_instances(),
        keys.fence_acks(),
    );
    let mut generation = 0u64;
    let mut pause = Duration::from_micros(200);
    loop {
        let mut check = script.key(&generation_key);
        check.key(&instances).key(&acks).arg(generation);
        let (raised, pending): (u64, u64) =
            match tokio::time::timeout(timeout, check.invoke_async(&mut conn)).await {
                Ok(outcome) => outcome?,
                Err(_) => return Err(StoreError::Timeout(timeout)),
            };
        generation = raised;
        if pending == 0 {
            return Ok(());
        }
        if started.elapsed() >= give_up {
            return Err(StoreError::Unconfirmed {
                pending,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_lease_is_held_before_a_grant_nor_after_it_ends() {
        let fence = InstanceFence::new(&Keys::new("patgate:"));
        let now = Instant::now();
        assert!(!fence.holds_lease(now));
        fence.grant(now + Duration::from_secs(1));
        assert!(fence.holds_lease(now));
        assert!(fence.holds_lease(now + Duration::from_millis(999)));
        assert!(!fence.holds_lease(now + Duration::from_secs(1)));
    }

    #[test]
    fn a_lease_is_served_a_quarter_short_of_what_redis_records() {
        let sent = Instant::now();
        let until = served_until(sent, Duration::from_secs(2));
        assert_eq!(until - sent, Duration::from_millis(1500));
    }

    #[test]
    fn the_generation_key_is_recognised_exactly() {
        let keys = Keys::new("app:");
        let fence = InstanceFence::new(&keys);
        assert!(fence.is_generation_key(&keys.fence_generation()));
        assert!(!fence.is_generation_key("app:cred:pat_Ab3dE9"));
        assert!(!fence.is_generation_key(&keys.fence_acks()));
    }

    #[test]
    fn the_readme_publishes_the_writers_script_as_it_runs() {
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(CONFIRM.trim_start()),
            "README.md, \"Confirmed mode\", must quote CONFIRM verbatim for products that write Redis"
        );
    }

    #[test]
    fn instance_ids_are_unique_per_instance() {
        let keys = Keys::new("patgate:");
        let (a, b) = (InstanceFence::new(&keys), InstanceFence::new(&keys));
        assert_ne!(a.id(), b.id());
        assert!(a.id().contains(&format!(":{}:", std::process::id())));
    }
}
