//! The background writer shared by the database ledgers: a bounded queue, batches,
//! a spool file when the database is down or the queue is full, and replay.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use super::spool::Spool;
use super::UsageRecord;
use crate::BoxError;

/// Records written per database round trip, at most.
const BATCH: usize = 512;
/// How long the writer gathers records into one batch (off the request path).
const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// How often a ledger with spooled records tries to replay them.
const REPLAY_EVERY: Duration = Duration::from_secs(2);

/// What a ledger has done with its records since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LedgerStats {
    /// Records written to the database (replays included).
    pub written: u64,
    /// Records spooled to the local file (database down or queue full).
    pub spooled: u64,
    /// Spooled records later written to the database.
    pub replayed: u64,
    /// Spool lines that could not be read back (a torn write after a crash).
    pub unreadable: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    written: AtomicU64,
    spooled: AtomicU64,
    replayed: AtomicU64,
    unreadable: AtomicU64,
}

/// A database that stores batches; inserting a record twice must be a no-op (records
/// carry unique ids), so replays are idempotent.
pub(super) trait Store: Send + Sync + 'static {
    /// Writes `batch` in one transaction. The batch is moved in (a store may write it
    /// on another thread) and handed back with the result, to be spooled on failure.
    fn insert(&self, batch: Vec<UsageRecord>) -> Pin<Box<dyn Future<Output = Inserted> + Send>>;
}

/// A batch handed back by [`Store::insert`], and how its write went.
pub(super) type Inserted = (Vec<UsageRecord>, Result<(), BoxError>);

/// What waits for the writer task.
#[derive(Default)]
struct Queued {
    records: Vec<UsageRecord>,
    /// Flushes asked for after `records` were queued: answered once those are written.
    flushes: Vec<oneshot::Sender<()>>,
    /// Every [`Writer`] is gone: the task writes what is left and stops.
    closed: bool,
    /// The task is gone (its runtime stopped): a flush has nothing to wait for.
    stopped: bool,
}

/// The queue between `record` and the writer task: records are pushed into one vector
/// under a lock held for the push (never across an await). A channel took a box, a
/// slot, a permit and a wake-up per record, more than any other step of metering.
struct Queue {
    queued: Mutex<Queued>,
    /// Wakes the task: the first record into an empty queue, a flush, or closing.
    wake: Notify,
    capacity: usize,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Shared by the [`Writer`] clones; the last one dropped closes the queue.
struct Senders(Arc<Queue>);

impl Drop for Senders {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.wake.notify_one();
    }
}

/// Held by the writer task; when the task ends, waiting flushes are let go.
struct Running(Arc<Queue>);

impl Drop for Running {
    fn drop(&mut self) {
        let mut queued = self.0.lock();
        queued.stopped = true;
        queued.flushes.clear();
    }
}

/// The queue end held by the ledger (cheap to clone).
#[derive(Clone)]
pub(super) struct Writer {
    queue: Arc<Senders>,
    spool: Arc<Spool>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("capacity", &self.queue.0.capacity)
            .field("spool", &self.spool)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the writer task on the current tokio runtime.
    pub(super) fn spawn<S: Store>(store: S, spool_path: PathBuf, queue: usize) -> Writer {
        let queue = Arc::new(Queue {
            queued: Mutex::default(),
            wake: Notify::new(),
            capacity: queue.max(1),
        });
        let spool = Arc::new(Spool::new(spool_path));
        let counters = Arc::new(Counters::default());
        tokio::spawn(run(store, queue.clone(), spool.clone(), counters.clone()));
        Writer {
            queue: Arc::new(Senders(queue)),
            spool,
            counters,
        }
    }

    /// Queues a record; when the queue is full (or the writer task is gone) the record
    /// is spooled right here instead of dropped.
    pub(super) fn record(&self, record: UsageRecord) {
        let queue = &self.queue.0;
        let mut queued = queue.lock();
        if queued.records.len() >= queue.capacity || queued.stopped {
            drop(queued);
            spool_records(&self.spool, &self.counters, std::slice::from_ref(&record));
            return;
        }
        let first = queued.records.is_empty();
        queued.records.push(record);
        drop(queued);
        // A queue with records in it already has the task's attention.
        if first {
            queue.wake.notify_one();
        }
    }

    /// Waits until every record queued before this call is written or spooled.
    pub(super) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        {
            let mut queued = self.queue.0.lock();
            if queued.stopped {
                return;
            }
            queued.flushes.push(done);
        }
        self.queue.0.wake.notify_one();
        let _ = wait.await;
    }

    pub(super) fn stats(&self) -> LedgerStats {
        let c = &self.counters;
        LedgerStats {
            written: c.written.load(Ordering::Relaxed),
            spooled: c.spooled.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
            unreadable: c.unreadable.load(Ordering::Relaxed),
        }
    }
}

fn spool_records(spool: &Spool, counters: &Counters, records: &[UsageRecord]) {
    match spool.append(records) {
        Ok(()) => {
            counters
                .spooled
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            tracing::warn!(records = records.len(), path = %spool.path().display(), "usage records spooled to disk");
        }
        // Nowhere left to put them: say so as loudly as possible, with the records.
        Err(err) => tracing::error!(
            error = %err,
            path = %spool.path().display(),
            records = ?records,
            "usage records could not be written to the database nor spooled"
        ),
    }
}

async fn run<S: Store>(store: S, queue: Arc<Queue>, spool: Arc<Spool>, counters: Arc<Counters>) {
    let _running = Running(queue.clone());
    // The allocation the batches are gathered in, handed back by each insert.
    let mut spare: Vec<UsageRecord> = Vec::with_capacity(BATCH);
    let mut replay_tick = tokio::time::interval(REPLAY_EVERY);
    replay_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = queue.wake.notified() => {}
            _ = replay_tick.tick() => {
                replay(&store, &spool, &counters).await;
                continue;
            }
        }
        // Gather a batch for a short window: one transaction for many records instead of
        // one per record (a commit costs far more than a row). Sleeping through the
        // window, rather than waiting on the queue, means senders do not wake this task
        // for every record. A flush or a closed queue skips the wait.
        // Under load a full batch is already queued: no wait, so the window never caps
        // the write rate.
        let gather = {
            let queued = queue.lock();
            queued.flushes.is_empty() && !queued.closed && queued.records.len() < BATCH
        };
        if gather {
            tokio::time::sleep(BATCH_WINDOW).await;
        }
        // Batches until the queue is empty; the flushes are answered with the last one,
        // when every record queued before them is written.
        loop {
            let (batch, flushes, emptied, closed) = {
                let mut queued = queue.lock();
                let batch = if queued.records.len() > BATCH {
                    let rest = queued.records.split_off(BATCH);
                    std::mem::replace(&mut queued.records, rest)
                } else {
                    std::mem::replace(&mut queued.records, std::mem::take(&mut spare))
                };
                let emptied = queued.records.is_empty();
                let flushes = if emptied {
                    std::mem::take(&mut queued.flushes)
                } else {
                    Vec::new()
                };
                (batch, flushes, emptied, queued.closed)
            };
            if batch.is_empty() {
                spare = batch;
            } else {
                let (mut written, result) = store.insert(batch).await;
                match result {
                    Ok(()) => {
                        counters
                            .written
                            .fetch_add(written.len() as u64, Ordering::Relaxed);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, records = written.len(), "ledger database write failed; spooling");
                        spool_records(&spool, &counters, &written);
                    }
                }
                // The same allocation for the next batch.
                written.clear();
                spare = written;
            }
            if !flushes.is_empty() {
                replay(&store, &spool, &counters).await;
                for done in flushes {
                    let _ = done.send(());
                }
            }
            if emptied {
                // Closed, no `Writer` can queue anything more.
                if closed {
                    return;
                }
                break;
            }
        }
    }
}

/// Writes spooled records back until the spool is empty; on failure they stay spooled
/// for the next try.
async fn replay<S: Store>(store: &S, spool: &Spool, counters: &Counters) {
    // An unfinished earlier replay first, then what was spooled meanwhile.
    while spool.has_records() {
        if !replay_once(store, spool, counters).await {
            return;
        }
    }
}

async fn replay_once<S: Store>(store: &S, spool: &Spool, counters: &Counters) -> bool {
    let (records, unreadable) = match spool.take() {
        Ok(Some(taken)) => taken,
        Ok(None) => return false,
        Err(err) => {
            tracing::warn!(error = %err, "could not read the usage spool; will retry");
            return false;
        }
    };
    for chunk in records.chunks(BATCH) {
        if let (_, Err(err)) = store.insert(chunk.to_vec()).await {
            tracing::info!(error = %err, "ledger database still unavailable; spooled records wait");
            return false;
        }
    }
    if let Err(err) = spool.commit() {
        tracing::warn!(error = %err, "could not remove the replayed spool file");
        return false;
    }
    counters
        .written
        .fetch_add(records.len() as u64, Ordering::Relaxed);
    counters
        .replayed
        .fetch_add(records.len() as u64, Ordering::Relaxed);
    if unreadable > 0 {
        counters
            .unreadable
            .fetch_add(unreadable as u64, Ordering::Relaxed);
        tracing::error!(
            lines = unreadable,
            "unreadable lines in the usage spool were skipped"
        );
    }
    tracing::info!(records = records.len(), "spooled usage records replayed");
    true
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::metering::Money;
    use crate::outcome::End;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    /// A store that can be switched off, like a database going down.
    #[derive(Clone, Default)]
    struct Flaky {
        down: Arc<AtomicBool>,
        rows: Arc<Mutex<std::collections::BTreeMap<String, UsageRecord>>>,
    }

    impl Store for Flaky {
        fn insert(
            &self,
            batch: Vec<UsageRecord>,
        ) -> Pin<Box<dyn Future<Output = Inserted> + Send>> {
            let store = self.clone();
            Box::pin(async move {
                if store.down.load(Ordering::SeqCst) {
                    return (batch, Err("database is down".into()));
                }
                let mut rows = store.rows.lock().unwrap();
                for r in &batch {
                    rows.entry(r.id.clone()).or_insert_with(|| r.clone()); // idempotent
                }
                drop(rows);
                (batch, Ok(()))
            })
        }
    }

    pub(crate) fn record(id: usize) -> UsageRecord {
        UsageRecord {
            id: format!("req-{id}"),
            time_ms: 0,
            key_id: None,
            team: None,
            requested_model: "m".into(),
            provider: None,
            model: "m".into(),
            attempts: 1,
            prompt_tokens: 1,
            completion_tokens: 1,
            cached_tokens: 0,
            cache_write_tokens: 0,
            cost: Money::from_nanos(3),
            priced: true,
            latency_us: 1,
            ttfb_us: None,
            status: 200,
            end: End::Complete,
            cache_hit: false,
            exact: true,
        }
    }

    fn spool_path(name: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("tollgate-{name}-{}.spool", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[tokio::test]
    async fn database_down_then_back_loses_nothing_and_writes_each_record_once() {
        let store = Flaky::default();
        let writer = Writer::spawn(store.clone(), spool_path("flaky"), 64);
        for i in 0..100 {
            writer.record(record(i));
        }
        writer.flush().await;
        store.down.store(true, Ordering::SeqCst);
        for i in 100..250 {
            writer.record(record(i));
        }
        writer.flush().await;
        assert!(writer.stats().spooled >= 150, "{:?}", writer.stats());
        assert_eq!(store.rows.lock().unwrap().len(), 100);
        store.down.store(false, Ordering::SeqCst);
        writer.flush().await; // replays
        let stats = writer.stats();
        assert_eq!(store.rows.lock().unwrap().len(), 250, "{stats:?}");
        assert_eq!(stats.replayed, stats.spooled);
        assert_eq!(stats.written, 250);
    }

    #[tokio::test]
    async fn a_full_queue_spools_instead_of_dropping() {
        let store = Flaky::default();
        // A queue of one on a runtime that cannot run the writer in between.
        let writer = Writer::spawn(store.clone(), spool_path("full"), 1);
        for i in 0..20 {
            writer.record(record(i));
        }
        assert!(writer.stats().spooled >= 18, "{:?}", writer.stats());
        writer.flush().await;
        assert_eq!(store.rows.lock().unwrap().len(), 20);
    }

    /// A backlog of several batches: a flush waits for the last one.
    #[tokio::test]
    async fn a_flush_waits_for_every_batch_of_a_backlog() {
        let store = Flaky::default();
        let writer = Writer::spawn(store.clone(), spool_path("backlog"), 4096);
        for i in 0..(3 * BATCH + 7) {
            writer.record(record(i));
        }
        writer.flush().await;
        assert_eq!(store.rows.lock().unwrap().len(), 3 * BATCH + 7);
        assert_eq!(writer.stats().written, (3 * BATCH + 7) as u64);
    }

    /// The last `Writer` dropped: what it queued is still written.
    #[tokio::test]
    async fn records_queued_before_the_last_writer_drops_are_written() {
        let store = Flaky::default();
        let writer = Writer::spawn(store.clone(), spool_path("closed"), 64);
        for i in 0..10 {
            writer.record(record(i));
        }
        drop(writer);
        tokio::time::timeout(Duration::from_secs(20), async {
            while store.rows.lock().unwrap().len() < 10 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the writer task writes what was queued");
    }

    #[tokio::test]
    async fn torn_spool_lines_are_counted_not_fatal() {
        let path = spool_path("torn");
        std::fs::write(
            &path,
            format!(
                "{}\n{{\"id\": \"tor",
                serde_json::to_string(&record(1)).unwrap()
            ),
        )
        .unwrap();
        let store = Flaky::default();
        let writer = Writer::spawn(store.clone(), path, 8);
        writer.flush().await;
        assert_eq!(store.rows.lock().unwrap().len(), 1);
        assert_eq!(writer.stats().unreadable, 1);
    }
}
