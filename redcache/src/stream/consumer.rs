//! A consumer-group worker: reads a stream with `XREADGROUP`, runs a
//! handler per entry (bounded concurrency), acks only after the handler
//! succeeds, retries failures with backoff, reclaims what dead consumers
//! left pending (`XAUTOCLAIM`), moves entries that keep failing to the
//! dead-letter stream, and shuts down gracefully.
//!
//! At least once: an entry leaves the group's pending list only by an ack
//! after its handler returned `Ok`, or by its move to the dead-letter
//! stream (one script: it is acked and dead in the same step). A consumer
//! that dies with entries in hand leaves them pending; another consumer
//! (or this one, restarted under the same name) takes them after
//! `claim_idle`.

use std::collections::HashSet;
use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use super::ops::{Id, RawEntry, ReadFrom};
use super::{decode, EntryId, EventStream};
use crate::backend::connection::Connection;
use crate::backend::Backend;
use crate::error::{Error, Result};

/// How idle an entry handed back at shutdown is made: longer than any
/// sensible `claim_idle`, so another consumer takes it at its next claim,
/// and far below the server's clock (`XCLAIM ... IDLE` beyond the epoch
/// would read as 0).
const HANDED_BACK_IDLE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Where a group that does not exist yet starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartFrom {
    /// Every entry still in the stream (`XGROUP CREATE ... 0`): what was
    /// emitted before the first consumer started is handled too.
    #[default]
    Beginning,
    /// Only entries emitted after the group is made (`$`).
    New,
}

/// An entry handed to a consumer's handler.
#[derive(Debug)]
#[non_exhaustive]
pub struct Delivery<T> {
    /// The entry's id in the stream.
    pub id: EntryId,
    /// The value emitted.
    pub value: T,
    /// How often the group delivered this entry, this time included: more
    /// than 1 after a failure or a crash (handlers must be idempotent).
    pub deliveries: u64,
}

/// What a consumer did, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerStats {
    /// Entries whose handler returned `Ok` (and which were then acked).
    pub handled: u64,
    /// Handler runs that returned `Err` or panicked.
    pub failed: u64,
    /// Entries run again after a failure, by this consumer.
    pub retried: u64,
    /// Entries taken over from consumers that left them idle.
    pub reclaimed: u64,
    /// Entries moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Entries that did not decode as `T` (dead-lettered at once).
    pub undecodable: u64,
    /// Pending entries trimmed from the stream before anyone handled them
    /// (`max_len` too small for the backlog).
    pub trimmed: u64,
    /// Reads, acks or claims that failed (Redis down): retried.
    pub errors: u64,
}

#[derive(Default)]
struct Counts {
    handled: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    reclaimed: AtomicU64,
    dead_lettered: AtomicU64,
    undecodable: AtomicU64,
    trimmed: AtomicU64,
    errors: AtomicU64,
}

impl Counts {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ConsumerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConsumerStats {
            handled: get(&self.handled),
            failed: get(&self.failed),
            retried: get(&self.retried),
            reclaimed: get(&self.reclaimed),
            dead_lettered: get(&self.dead_lettered),
            undecodable: get(&self.undecodable),
            trimmed: get(&self.trimmed),
            errors: get(&self.errors),
        }
    }
}

/// The settings of a consumer, from [`EventStream::consumer`].
#[must_use = "a consumer does nothing until `start`"]
pub struct ConsumerBuilder<T> {
    stream: EventStream<T>,
    group: String,
    name: Option<String>,
    concurrency: usize,
    batch: usize,
    block: Duration,
    claim_idle: Duration,
    max_deliveries: u64,
    retry_backoff: Duration,
    drain_timeout: Duration,
    start: StartFrom,
}

impl<T> ConsumerBuilder<T> {
    pub(super) fn new(stream: EventStream<T>, group: &str) -> Self {
        ConsumerBuilder {
            stream,
            group: group.to_string(),
            name: None,
            concurrency: 8,
            batch: 32,
            block: Duration::from_secs(2),
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
            retry_backoff: Duration::from_millis(500),
            drain_timeout: Duration::from_secs(30),
            start: StartFrom::Beginning,
        }
    }

    /// The consumer's name in the group (default: unique per process and
    /// consumer, `<pid>-<random>`). A consumer restarted under its old name
    /// first handles what it left pending.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Handlers running at once (default 8).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Entries read per `XREADGROUP` at most (default 32).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// How long a read waits for new entries (`BLOCK`, default 2 s). A
    /// shutdown waits for the read in progress, so this bounds it too.
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// An entry pending this long with another consumer is taken over
    /// (default 30 s). Entries in hand are kept fresh while their handler
    /// runs, so a slow handler is not taken over; a dead consumer's are.
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.claim_idle = idle;
        self
    }

    /// An entry delivered this many times without success goes to the
    /// dead-letter stream (default 5).
    pub fn max_deliveries(mut self, n: u64) -> Self {
        self.max_deliveries = n;
        self
    }

    /// The pause before the first retry of a failed entry (default
    /// 500 ms); it doubles with every delivery, up to `claim_idle / 2`.
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// How long [`Consumer::shutdown`] lets handlers in progress finish
    /// (default 30 s); entries still in hand then are handed back.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Where a new group starts (default [`StartFrom::Beginning`]).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    fn check(&self) -> Result<()> {
        self.stream.check()?;
        let bad = if self.group.is_empty() {
            "a consumer group needs a name"
        } else if self.concurrency == 0 || self.batch == 0 {
            "a consumer's concurrency and batch must be at least 1"
        } else if self.max_deliveries == 0 {
            "max_deliveries must be at least 1"
        } else if self.claim_idle < Duration::from_millis(10) {
            "claim_idle must be at least 10 ms"
        } else if self.block < Duration::from_millis(1) {
            "block must be at least 1 ms"
        } else {
            return Ok(());
        };
        Err(Error::Config(bad))
    }
}

impl<T: DeserializeOwned + Send + 'static> ConsumerBuilder<T> {
    /// Creates the group if it does not exist (a group that exists is no
    /// error), and starts the worker on the current tokio runtime. The
    /// handler gets each entry; `Ok` acks it, `Err` (or a panic) has it
    /// retried after a backoff, and dead-lettered after `max_deliveries`.
    ///
    /// Fails if the options are invalid, or the group cannot be created
    /// (Redis unreachable, or the key holds something else).
    pub async fn start<F, Fut, E>(self, handler: F) -> Result<Consumer>
    where
        F: Fn(Delivery<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        self.check()?;
        let stream = &self.stream;
        let guarded = &stream.cache.inner.guarded;
        let from_start = self.start == StartFrom::Beginning;
        guarded
            .op(stream
                .ops()
                .create_group(&stream.key, &self.group, from_start, stream.retention))
            .await?;
        let reader = match &guarded.backend {
            Backend::Redis(redis) => Some(
                redis
                    .nodes
                    .dedicated(redis.connect_timeout, self.block + READ_MARGIN)?,
            ),
            Backend::Memory(_) => None,
        };
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{:08x}", std::process::id(), rand::random::<u32>()));
        let (stop, stopped) = watch::channel(false);
        let counts = Arc::new(Counts::default());
        let (acks, ack_queue) = mpsc::unbounded_channel();
        let worker = Arc::new(Worker {
            stream: self.stream.clone(),
            group: self.group.clone(),
            name: name.clone(),
            max_deliveries: self.max_deliveries,
            retry_backoff: self.retry_backoff,
            claim_idle: self.claim_idle,
            counts: Arc::clone(&counts),
            in_hand: Mutex::new(HashSet::new()),
            acks,
            stopped: stopped.clone(),
            handler: Box::new(move |delivery| {
                Box::pin(handler(delivery).map(|r| r.map_err(|e| e.to_string())))
            }),
        });
        let acker = tokio::spawn(ack_loop(
            self.stream.clone(),
            self.group.clone(),
            Arc::clone(&counts),
            ack_queue,
        ));
        let run = Run {
            worker,
            reader,
            concurrency: self.concurrency,
            batch: self.batch,
            block: self.block,
            drain_timeout: self.drain_timeout,
            stopped,
        };
        let task = tokio::spawn(async move {
            run.run().await;
            // The worker's queue closes with the last handler: the acker
            // sends what is left, then ends.
            let _ = acker.await;
        });
        tracing::info!(target: "redcache", stream = &*self.stream.name, group = %self.group, consumer = %name, "stream consumer started");
        Ok(Consumer {
            name,
            counts,
            stop,
            task: Some(task),
        })
    }
}

/// A running consumer. [`shutdown`](Consumer::shutdown) stops it
/// gracefully; dropping it starts the same shutdown in the background.
#[must_use = "dropping a Consumer shuts it down"]
pub struct Consumer {
    name: String,
    counts: Arc<Counts>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Consumer {
    /// The consumer's name in its group.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it did so far.
    pub fn stats(&self) -> ConsumerStats {
        self.counts.snapshot()
    }

    /// Stops reading, lets the handlers in progress finish (up to the
    /// drain timeout), acks what succeeded, and hands back what is still
    /// in hand so that other consumers take it at once. Returns the final
    /// counts.
    pub async fn shutdown(mut self) -> ConsumerStats {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.counts.snapshot()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// How much longer than its `BLOCK` a read may take before the reader's
/// connection is taken for dead.
const READ_MARGIN: Duration = Duration::from_secs(5);

type Handler<T> = Box<
    dyn Fn(
            Delivery<T>,
        )
            -> std::pin::Pin<Box<dyn Future<Output = std::result::Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// What handler tasks share.
struct Worker<T> {
    stream: EventStream<T>,
    group: String,
    name: String,
    max_deliveries: u64,
    retry_backoff: Duration,
    claim_idle: Duration,
    counts: Arc<Counts>,
    /// Entries this consumer holds (handling, or waiting to retry): kept
    /// fresh so that no one takes them over.
    in_hand: Mutex<HashSet<Id>>,
    acks: mpsc::UnboundedSender<Id>,
    stopped: watch::Receiver<bool>,
    handler: Handler<T>,
}

/// The reading side: one task.
struct Run<T> {
    worker: Arc<Worker<T>>,
    reader: Option<Connection>,
    concurrency: usize,
    batch: usize,
    block: Duration,
    drain_timeout: Duration,
    stopped: watch::Receiver<bool>,
}

impl<T: DeserializeOwned + Send + 'static> Run<T> {
    async fn run(mut self) {
        let worker = Arc::clone(&self.worker);
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        // This consumer's own pending entries first (a restart under the
        // same name), then new ones.
        let mut backlog = Some(Id::ZERO);
        let claim_every = (worker.claim_idle / 3).max(Duration::from_millis(5));
        let mut next_claim = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(50);
        while !*self.stopped.borrow() {
            while tasks.try_join_next().is_some() {}
            if tokio::time::Instant::now() >= next_claim {
                worker.keep_fresh().await;
                for entry in worker.reclaim().await {
                    self.dispatch(&permits, &mut tasks, entry).await;
                }
                next_claim = tokio::time::Instant::now() + claim_every;
            }
            // Room for at least one entry before reading.
            let Ok(room) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let count = (1 + permits.available_permits()).min(self.batch);
            drop(room);
            let (from, block) = match backlog {
                Some(after) => (ReadFrom::Own(after), None),
                None => {
                    let until_claim =
                        next_claim.saturating_duration_since(tokio::time::Instant::now());
                    (
                        ReadFrom::New,
                        Some(self.block.min(until_claim).max(Duration::from_millis(1))),
                    )
                }
            };
            match self.read(&from, count, block).await {
                Ok(Some(entries)) => {
                    backoff = Duration::from_millis(50);
                    if backlog.is_some() {
                        backlog = entries.last().map(|e| e.id);
                    }
                    for entry in entries {
                        self.dispatch(&permits, &mut tasks, entry).await;
                    }
                }
                Ok(None) => {
                    // The stream expired or was deleted, with the group.
                    tracing::warn!(target: "redcache", stream = &*worker.stream.name, group = %worker.group, "stream consumer: the group is gone (the stream expired or was deleted); making it again");
                    let stream = &worker.stream;
                    let made = stream
                        .ops()
                        .create_group(&stream.key, &worker.group, true, stream.retention)
                        .await;
                    if made.is_err() {
                        Counts::add(&worker.counts.errors, 1);
                        self.pause(&mut backoff).await;
                    }
                }
                Err(error) => {
                    Counts::add(&worker.counts.errors, 1);
                    tracing::warn!(target: "redcache", stream = &*worker.stream.name, group = %worker.group, %error, "stream consumer: read failed; retrying");
                    self.pause(&mut backoff).await;
                }
            }
        }
        self.drain(tasks).await;
    }

    async fn pause(&mut self, backoff: &mut Duration) {
        tokio::select! {
            () = tokio::time::sleep(*backoff) => {}
            _ = self.stopped.changed() => {}
        }
        *backoff = (*backoff * 2).min(Duration::from_secs(2));
    }

    /// One group read. A blocking read runs on the consumer's own
    /// connection, bounded by `BLOCK` and a margin; one that outlives it
    /// costs the connection (made anew).
    async fn read(
        &mut self,
        from: &ReadFrom,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Option<Vec<RawEntry>>> {
        let worker = &self.worker;
        let stream = &worker.stream;
        let ops = stream.ops();
        let limit = block.unwrap_or_default() + READ_MARGIN;
        let read = ops.read_group(
            self.reader.as_ref(),
            &stream.key,
            &worker.group,
            &worker.name,
            from,
            count,
            block,
        );
        match tokio::time::timeout(limit, read).await {
            Ok(result) => result,
            Err(_) => {
                if let Backend::Redis(redis) = &stream.cache.inner.guarded.backend {
                    self.reader = redis
                        .nodes
                        .dedicated(redis.connect_timeout, self.block + READ_MARGIN)
                        .ok();
                }
                Err(Error::Timeout(limit))
            }
        }
    }

    async fn dispatch(&self, permits: &Arc<Semaphore>, tasks: &mut JoinSet<()>, entry: RawEntry) {
        let Ok(permit) = Arc::clone(permits).acquire_owned().await else {
            return;
        };
        let worker = Arc::clone(&self.worker);
        worker.hold(entry.id);
        tasks.spawn(async move {
            let id = entry.id;
            worker.handle(entry).await;
            worker.release(id);
            drop(permit);
        });
    }

    /// Waits for the handlers in hand (up to the drain timeout); entries
    /// still in hand then are handed back, idle for [`HANDED_BACK_IDLE`],
    /// so that the next claim of any consumer of the group takes them,
    /// whatever its own `claim_idle`.
    async fn drain(self, mut tasks: JoinSet<()>) {
        let worker = self.worker;
        let drained = tokio::time::timeout(self.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        let left: Vec<Id> = worker.in_hand().iter().copied().collect();
        if !left.is_empty() {
            let stream = &worker.stream;
            let handed = stream
                .ops()
                .touch(
                    &stream.key,
                    &worker.group,
                    &worker.name,
                    &left,
                    worker.claim_idle.max(HANDED_BACK_IDLE),
                )
                .await;
            tracing::info!(target: "redcache", stream = &*stream.name, group = %worker.group, entries = left.len(), ok = handed.is_ok(), "stream consumer: entries still in hand at shutdown handed back");
        }
        tracing::info!(target: "redcache", stream = &*worker.stream.name, group = %worker.group, consumer = %worker.name, "stream consumer stopped");
    }
}

impl<T: DeserializeOwned + Send + 'static> Worker<T> {
    fn in_hand(&self) -> std::sync::MutexGuard<'_, HashSet<Id>> {
        self.in_hand.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hold(&self, id: Id) {
        self.in_hand().insert(id);
    }

    fn release(&self, id: Id) {
        self.in_hand().remove(&id);
    }

    /// Marks the entries in hand as just delivered, so that no other
    /// consumer takes them over while their handlers run.
    async fn keep_fresh(&self) {
        let ids: Vec<Id> = self.in_hand().iter().copied().collect();
        let stream = &self.stream;
        let touched = stream
            .ops()
            .touch(&stream.key, &self.group, &self.name, &ids, Duration::ZERO)
            .await;
        if touched.is_err() {
            Counts::add(&self.counts.errors, 1);
        }
    }

    /// Takes over the group's entries idle for `claim_idle` (their
    /// consumer died, or handed them back), following `XAUTOCLAIM`'s cursor.
    async fn reclaim(&self) -> Vec<RawEntry> {
        let stream = &self.stream;
        let mut cursor = Id::ZERO;
        let mut found = Vec::new();
        loop {
            let claimed = stream
                .ops()
                .auto_claim(
                    &stream.key,
                    &self.group,
                    &self.name,
                    self.claim_idle,
                    cursor,
                    100,
                )
                .await;
            let claimed = match claimed {
                Ok(Some(claimed)) => claimed,
                Ok(None) => break,
                Err(error) => {
                    Counts::add(&self.counts.errors, 1);
                    tracing::debug!(target: "redcache", stream = &*stream.name, %error, "stream consumer: reclaim failed");
                    break;
                }
            };
            if !claimed.deleted.is_empty() {
                Counts::add(&self.counts.trimmed, claimed.deleted.len() as u64);
                tracing::warn!(target: "redcache", stream = &*stream.name, group = %self.group, entries = claimed.deleted.len(), "stream consumer: pending entries were trimmed from the stream before they were handled; raise max_len");
            }
            // Our own entries in hand are never idle that long, unless the
            // process stalled: they are not run twice at once here.
            let in_hand = self.in_hand().clone();
            let taken: Vec<RawEntry> = claimed
                .entries
                .into_iter()
                .filter(|e| !in_hand.contains(&e.id))
                .collect();
            Counts::add(&self.counts.reclaimed, taken.len() as u64);
            found.extend(taken);
            if claimed.next == Id::ZERO || found.len() >= 1_000 {
                break;
            }
            cursor = claimed.next;
        }
        found
    }

    /// Runs the handler on `entry` until it succeeds, is given up, or the
    /// consumer stops (the entry then stays pending, for a later claim).
    async fn handle(&self, mut entry: RawEntry) {
        let stream = &self.stream;
        loop {
            if entry.fields.is_empty() {
                // Pending, but trimmed from the stream: nothing to run.
                Counts::add(&self.counts.trimmed, 1);
                let _ = self.acks.send(entry.id);
                return;
            }
            let value = match decode::<T>(&entry) {
                Ok(value) => value,
                Err(why) => {
                    Counts::add(&self.counts.undecodable, 1);
                    tracing::warn!(target: "redcache", stream = &*stream.name, id = %entry.id, error = %why, "stream entry does not decode; dead-lettered");
                    self.dead_letter(&entry, &format!("does not decode: {why}"))
                        .await;
                    return;
                }
            };
            if entry.deliveries > self.max_deliveries {
                // Taken over after a consumer died in its handler, again
                // and again: not run once more.
                let why = format!(
                    "delivered {} times; a consumer died handling it each time",
                    entry.deliveries - 1
                );
                self.dead_letter(&entry, &why).await;
                return;
            }
            let delivery = Delivery {
                id: EntryId(entry.id),
                value,
                deliveries: entry.deliveries,
            };
            let outcome = AssertUnwindSafe((self.handler)(delivery))
                .catch_unwind()
                .await;
            let error = match outcome {
                Ok(Ok(())) => {
                    Counts::add(&self.counts.handled, 1);
                    let _ = self.acks.send(entry.id);
                    return;
                }
                Ok(Err(error)) => error,
                Err(_) => "the handler panicked".to_string(),
            };
            Counts::add(&self.counts.failed, 1);
            if entry.deliveries >= self.max_deliveries {
                self.dead_letter(&entry, &error).await;
                return;
            }
            tracing::debug!(target: "redcache", stream = &*stream.name, id = %entry.id, deliveries = entry.deliveries, %error, "stream handler failed; retrying");
            let shift = u32::try_from(entry.deliveries.saturating_sub(1))
                .unwrap_or(u32::MAX)
                .min(16);
            let pause = (self.retry_backoff * 2u32.pow(shift)).min(self.claim_idle / 2);
            let mut stopped = self.stopped.clone();
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                // Left pending: another consumer takes it after claim_idle.
                _ = stopped.wait_for(|stop| *stop) => return,
            }
            match stream
                .ops()
                .claim_again(&stream.key, &self.group, &self.name, entry.id)
                .await
            {
                Ok(Some(again)) => {
                    Counts::add(&self.counts.retried, 1);
                    entry = again;
                }
                // Acked or taken by another consumer meanwhile.
                Ok(None) => return,
                Err(error) => {
                    // Left pending: reclaimed after claim_idle.
                    Counts::add(&self.counts.errors, 1);
                    tracing::warn!(target: "redcache", stream = &*stream.name, id = %entry.id, %error, "stream consumer: could not claim a failed entry for its retry");
                    return;
                }
            }
        }
    }

    async fn dead_letter(&self, entry: &RawEntry, error: &str) {
        let stream = &self.stream;
        let payload = entry.field("d").unwrap_or_default();
        let mut backoff = Duration::from_millis(50);
        for _ in 0..5 {
            let moved = stream
                .ops()
                .dead_letter(
                    &stream.key,
                    &stream.dead_key,
                    &self.group,
                    entry.id,
                    payload,
                    error,
                    entry.deliveries,
                    stream.max_len,
                    stream.retention,
                )
                .await;
            match moved {
                Ok(Some(_)) => {
                    Counts::add(&self.counts.dead_lettered, 1);
                    tracing::warn!(target: "redcache", stream = &*stream.name, group = %self.group, id = %entry.id, deliveries = entry.deliveries, error, "stream entry dead-lettered");
                    return;
                }
                Ok(None) => return,
                Err(_) => {
                    Counts::add(&self.counts.errors, 1);
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
        // Still pending: a later claim tries again.
    }
}

/// Acks in batches: every id the handlers finished, as one `XACK` per
/// batch. A failed ack is retried; one that cannot be sent leaves its
/// entry pending, to be delivered again (at least once). Ends when the
/// worker (which holds the queue's sender) is gone and the queue is empty.
async fn ack_loop<T>(
    stream: EventStream<T>,
    group: String,
    counts: Arc<Counts>,
    mut queue: mpsc::UnboundedReceiver<Id>,
) {
    let mut batch = Vec::with_capacity(256);
    while queue.recv_many(&mut batch, 256).await > 0 {
        let mut backoff = Duration::from_millis(20);
        for attempt in 0..6 {
            match stream.ops().ack(&stream.key, &group, &batch).await {
                Ok(_) => break,
                Err(error) => {
                    Counts::add(&counts.errors, 1);
                    if attempt == 5 {
                        tracing::warn!(target: "redcache", stream = &*stream.name, entries = batch.len(), %error, "stream consumer: acks failed; those entries will be delivered again");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
        batch.clear();
    }
}
