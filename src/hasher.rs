//! Secret hashing: bcrypt for PATs on a dedicated, bounded thread pool, SHA-256 for API keys.
//!
//! bcrypt is deliberately slow (about 59 ms at cost 10 on this project's 2-core machine), so it
//! never runs on a proxy event-loop thread or on Tokio's blocking pool: [`BcryptPool`] owns
//! `pool_threads` named OS threads fed by a queue of `pool_queue` jobs. The caller awaits a
//! oneshot reply; a full queue answers [`PoolError::Overloaded`] at once, without waiting.
//! The pool owns threads, so it is started lazily, after Pingora has daemonized.

use crate::metrics;
use sha2::{Digest, Sha256};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

/// Why a bcrypt verification could not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every thread is busy and the queue is full.
    #[error("bcrypt pool queue is full")]
    Overloaded,
    /// The pool's threads are gone (only at shutdown).
    #[error("bcrypt pool has stopped")]
    Stopped,
}

struct Job {
    /// prefix + secret; dropped (and its buffer zeroed) as soon as it is checked.
    candidate: Vec<u8>,
    hash: String,
    reply: oneshot::Sender<bool>,
}

/// The dedicated bcrypt verification pool.
pub struct BcryptPool {
    jobs: SyncSender<Job>,
}

impl BcryptPool {
    /// Starts `threads` named threads sharing a queue of `queue` waiting jobs.
    ///
    /// # Errors
    /// The OS refused to create a thread.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<BcryptPool> {
        BcryptPool::start_niced(threads, queue, 0)
    }

    /// As [`BcryptPool::start`], with each thread's nice value raised to `nice` (0..=19), so
    /// that the proxy's event loops get the CPU first when both want it (Linux; elsewhere, or
    /// if the kernel refuses, the threads keep the default priority and a warning is logged).
    ///
    /// # Errors
    /// The OS refused to create a thread.
    pub fn start_niced(threads: usize, queue: usize, nice: i32) -> std::io::Result<BcryptPool> {
        let (jobs, receiver) = sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("patgate-bcrypt-{i}"))
                .spawn(move || {
                    if nice > 0 {
                        lower_this_threads_priority(nice);
                    }
                    work(&receiver)
                })?;
        }
        Ok(BcryptPool { jobs })
    }

    /// Checks `candidate` against a bcrypt `hash` on a pool thread. A malformed hash is a
    /// mismatch, never a panic.
    ///
    /// # Errors
    /// [`PoolError::Overloaded`] at once when the queue is full.
    pub async fn verify(&self, candidate: &[u8], hash: &str) -> Result<bool, PoolError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            candidate: candidate.to_vec(),
            hash: hash.to_string(),
            reply,
        };
        // Counted before sending, so the worker's decrement can never come first.
        metrics::BCRYPT_QUEUE.inc();
        let sent = self.jobs.try_send(job);
        if sent.is_err() {
            metrics::BCRYPT_QUEUE.dec();
        }
        match sent {
            Ok(()) => answer.await.map_err(|_| PoolError::Stopped),
            Err(TrySendError::Full(_)) => Err(PoolError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(PoolError::Stopped),
        }
    }
}

/// Sets the calling thread's nice value (Linux keeps one per thread).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lower_this_threads_priority(nice: i32) {
    // SAFETY: gettid and setpriority take plain integers, touch no memory of ours, and only
    // change the scheduling weight of the calling thread.
    let outcome = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice)
    };
    if outcome != 0 {
        log::warn!(
            "bcrypt pool thread keeps its priority: setpriority({nice}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority(nice: i32) {
    log::warn!("verify.pool_nice {nice} is only applied on Linux");
}

fn work(receiver: &Mutex<Receiver<Job>>) {
    loop {
        // Hold the lock only to take one job, never while hashing.
        let job = match receiver.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(mut job) = job else { return };
        metrics::BCRYPT_BUSY.inc();
        let started = std::time::Instant::now();
        let matched = bcrypt::verify(&job.candidate, &job.hash).unwrap_or(false);
        metrics::BCRYPT_SECONDS.observe(started.elapsed().as_secs_f64());
        metrics::BCRYPT_BUSY.dec();
        metrics::BCRYPT_QUEUE.dec();
        job.candidate.fill(0);
        // The requester may have gone away (client disconnected): nothing to do then.
        let _ = job.reply.send(matched);
    }
}

/// bcrypt hash of `input` at `cost`, for storing a new PAT.
///
/// # Errors
/// bcrypt refused the cost (outside 4..=31).
pub fn bcrypt_hash(input: &[u8], cost: u32) -> Result<String, bcrypt::BcryptError> {
    bcrypt::hash(input, cost)
}

/// Lowercase hex SHA-256 of `input`: how API key secrets are stored.
pub fn sha256_hex(input: &[u8]) -> String {
    let digest = Sha256::digest(input);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[(byte >> 4) as usize]));
        hex.push(char::from(b"0123456789abcdef"[(byte & 15) as usize]));
    }
    hex
}

/// Whether `input` hashes to the stored hex SHA-256, compared in constant time.
pub fn sha256_matches(input: &[u8], stored_hex: &str) -> bool {
    let computed = sha256_hex(input);
    computed.as_bytes().ct_eq(stored_hex.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn niced_pool_threads_run_at_the_lower_priority() {
        let _pool = BcryptPool::start_niced(1, 1, 7).expect("pool");
        // Nice values of this process's bcrypt threads, from procfs (other tests' pools may
        // be running too, at nice 0, so look for ours among them).
        let nice_values = || -> Vec<i32> {
            std::fs::read_dir("/proc/self/task")
                .map(|tasks| {
                    tasks
                        .flatten()
                        .filter_map(|task| {
                            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
                            if !comm.starts_with("patgate-bcrypt") {
                                return None;
                            }
                            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
                            // stat field 19 is the nice value: the 17th after "comm)" ends.
                            let after = stat.rsplit_once(')')?.1;
                            after.split_whitespace().nth(16)?.parse().ok()
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !nice_values().contains(&7) {
            assert!(
                std::time::Instant::now() < deadline,
                "no bcrypt thread at nice 7: {:?}",
                nice_values()
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn sha256_matches_only_the_same_input() {
        let stored = sha256_hex(b"key_abcdefsecret");
        assert_eq!(stored.len(), 64);
        assert!(sha256_matches(b"key_abcdefsecret", &stored));
        assert!(!sha256_matches(b"key_abcdefsecreT", &stored));
        assert!(!sha256_matches(b"key_abcdefsecret", "short"));
    }

    #[test]
    fn sha256_of_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn pool_verifies_right_and_wrong_secrets() {
        let pool = BcryptPool::start(1, 4).expect("pool");
        let hash = bcrypt_hash(b"pat_secret", 4).expect("hash");
        assert_eq!(pool.verify(b"pat_secret", &hash).await, Ok(true));
        assert_eq!(pool.verify(b"pat_other", &hash).await, Ok(false));
        assert_eq!(
            pool.verify(b"pat_secret", "not a bcrypt hash").await,
            Ok(false)
        );
    }

    #[tokio::test]
    async fn a_full_queue_answers_overloaded_at_once() {
        let pool = BcryptPool::start(1, 1).expect("pool");
        // Cost 12 takes ~0.25 s optimised: long enough to keep the one thread busy.
        let slow = bcrypt_hash(b"x", 12).expect("hash");
        let (a, b, c, d) = tokio::join!(
            pool.verify(b"x", &slow),
            pool.verify(b"x", &slow),
            pool.verify(b"x", &slow),
            pool.verify(b"x", &slow)
        );
        let results = [a, b, c, d];
        let overloaded = results
            .iter()
            .filter(|r| **r == Err(PoolError::Overloaded))
            .count();
        let verified = results.iter().filter(|r| **r == Ok(true)).count();
        assert!(overloaded >= 2, "{results:?}");
        assert_eq!(overloaded + verified, 4, "{results:?}");
    }
}
