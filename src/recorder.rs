//! Off-path writes from the request path: last-used stamps (coalesced by last_used.rs) and
//! denied-request audit entries. A request only pushes onto a bounded queue (never waits,
//! never fails because of it); one background task drains the queue and writes in pipelined
//! batches, and flushes pending stamps when their window ends. When the queue is full a
//! record is dropped and counted in `patgate_records_total{result="dropped"}`.

use crate::audit::Entry;
use crate::last_used::{Coalescer, Use};
use crate::metrics::RECORDS;
use crate::store::{AuditStream, Store};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Queue length between the request path and the writer.
const QUEUE: usize = 8192;
/// Most records written in one round trip.
const BATCH: usize = 512;

enum Record {
    Use(Use),
    Denied(Entry),
}

/// The request path's handle; cheap to call on every request.
pub struct Recorder {
    queue: mpsc::Sender<Record>,
    coalescer: Arc<Coalescer>,
    record_denied: bool,
}

impl Recorder {
    /// Starts the writer task on the current Tokio runtime.
    pub fn start(
        store: Store,
        interval: Duration,
        max_tracked: usize,
        max_entries: u64,
        record_denied: bool,
    ) -> Recorder {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let coalescer = Arc::new(Coalescer::new(interval, max_tracked, Instant::now()));
        let writer = Writer {
            store,
            coalescer: Arc::clone(&coalescer),
            max_entries,
        };
        let tick = (interval / 4).clamp(Duration::from_millis(250), Duration::from_secs(15));
        tokio::spawn(writer.run(receiver, tick));
        Recorder {
            queue,
            coalescer,
            record_denied,
        }
    }

    /// A request authenticated with `prefix` from `client`.
    pub fn used(&self, prefix: &str, client: Option<IpAddr>, now: Instant, unix: u64) {
        match self.coalescer.touch(prefix, client, now, unix) {
            Ok(Some(write)) => self.push(Record::Use(write), "last_used"),
            Ok(None) => {}
            Err(()) => RECORDS.with_label_values(&["last_used", "dropped"]).inc(),
        }
    }

    /// A request was denied; `entry` says how (no-op when `audit.denied_requests` is off).
    pub fn denied(&self, entry: Entry) {
        if self.record_denied {
            self.push(Record::Denied(entry), "denied");
        }
    }

    fn push(&self, record: Record, kind: &str) {
        if self.queue.try_send(record).is_err() {
            RECORDS.with_label_values(&[kind, "dropped"]).inc();
        }
    }
}

struct Writer {
    store: Store,
    coalescer: Arc<Coalescer>,
    max_entries: u64,
}

impl Writer {
    async fn run(self, mut receiver: mpsc::Receiver<Record>, tick: Duration) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut batch = Vec::new();
            tokio::select! {
                received = receiver.recv_many(&mut batch, BATCH) => {
                    if received == 0 {
                        return;
                    }
                }
                _ = ticker.tick() => {
                    batch.extend(self.coalescer.due(Instant::now()).into_iter().map(Record::Use));
                }
            }
            self.write(batch).await;
        }
    }

    async fn write(&self, batch: Vec<Record>) {
        let mut uses = Vec::new();
        let mut denied = Vec::new();
        for record in batch {
            match record {
                Record::Use(u) => uses.push((
                    u.prefix,
                    u.at,
                    u.clients.iter().map(IpAddr::to_string).collect(),
                )),
                Record::Denied(entry) => denied.push(entry.fields()),
            }
        }
        let outcome = self.store.record_uses(&uses).await;
        count("last_used", uses.len(), outcome.is_ok());
        if let Err(e) = outcome {
            log::warn!("{} last-used stamps not written: {e}", uses.len());
        }
        let outcome = self
            .store
            .append_audit(AuditStream::Denied, &denied, self.max_entries)
            .await;
        count("denied", denied.len(), outcome.is_ok());
        if let Err(e) = outcome {
            log::warn!(
                "{} denied-request audit entries not written: {e}",
                denied.len()
            );
        }
    }
}

fn count(kind: &str, n: usize, ok: bool) {
    if n > 0 {
        let result = if ok { "written" } else { "failed" };
        RECORDS.with_label_values(&[kind, result]).inc_by(n as u64);
    }
}
