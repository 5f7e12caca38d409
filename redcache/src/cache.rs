//! [`Cache`], the handle users hold, and the cache-aside engine behind
//! every cached call.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::memory::{AtDeadline, Expiring};
use crate::backend::{Backend, Read, Unlock, Write, INVALIDATED_EPOCH_TTL};
use crate::breaker::{Breaker, Permit};
use crate::builder::CacheBuilder;
use crate::clock::Clock;
use crate::entry::{self, Decoded, Epoch};
use crate::error::{Error, Result};
use crate::flight::{Flights, Joined, Leader, Outcome};
use crate::ratelimit::Denial;
use crate::stats::{Counters, Event, Stats};

/// How concurrent misses of one key are coordinated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Stampede {
    /// Every caller that misses runs the function.
    Off,
    /// Callers in one process share one load.
    Local,
    /// As `Local`, and across processes a Redis lock lets one process load
    /// while the others wait for its value (the default; on the embedded
    /// backend this is `Local`).
    #[default]
    Distributed,
}

/// One cached call: its key, TTL, tags and stampede policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    /// The key template (or the fn's path): a name with few values.
    pub(crate) name: &'static str,
    pub(crate) key: &'a str,
    pub(crate) ttl: Duration,
    pub(crate) tags: &'a [String],
    pub(crate) stampede: Stampede,
    /// Why this call cannot be cached at all (it then runs its function,
    /// and the reason is reported once).
    pub(crate) uncacheable: Option<&'static str>,
}

/// A cache: a cheap, cloneable handle on a backend (Redis or embedded).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = redcache::Cache::builder().memory().namespace("shop").build().await?;
///
/// let price: Result<u32, std::io::Error> = cache
///     .get_or_load("price:42", Duration::from_secs(60), &["category:7"], || async { Ok(1999) })
///     .await;
/// assert_eq!(price?, 1999);
///
/// cache.invalidate_tag("category:7").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) backend: Backend,
    value_prefix: String,
    tag_prefix: String,
    lock_prefix: String,
    pub(crate) rate_prefix: String,
    op_timeout: Duration,
    lock_ttl: Duration,
    lock_wait: Duration,
    max_entry_size: usize,
    flights: Flights,
    pub(crate) counters: Counters,
    pub(crate) clock: Arc<dyn Clock>,
    /// Tag invalidations that could not reach Redis, retried before cached
    /// calls; a tag in here bypasses the cache.
    pending: Mutex<HashSet<String>>,
    has_pending: AtomicBool,
    /// An outage of Redis was reported and has not ended yet.
    reported_down: AtomicBool,
    /// A check of the server after a timed-out operation is running.
    checking: AtomicBool,
    /// Entries whose read timed out, not read again until checked.
    slow_keys: Mutex<HashSet<String>>,
    has_slow_keys: AtomicBool,
    /// Rate-limit denials remembered until they expire, so a caller over
    /// its limit does not cost a round trip per call.
    pub(crate) denials: moka::sync::Cache<String, Expiring<Denial>>,
    pub(crate) breaker: Breaker,
}

/// The settings of a cache, as the builder collected them.
pub(crate) struct Settings {
    pub(crate) op_timeout: Duration,
    pub(crate) lock_ttl: Duration,
    pub(crate) lock_wait: Duration,
    pub(crate) max_entries: u64,
    pub(crate) max_entry_size: usize,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cool_down: Duration,
}

impl Inner {
    pub(crate) fn new(backend: Backend, namespace: &str, settings: &Settings) -> Self {
        Inner {
            backend,
            // Entries, tag epochs and locks live under distinct prefixes, so
            // no rendered key can ever name a key of another kind.
            value_prefix: format!("{namespace}:v:"),
            tag_prefix: format!("{namespace}:tag:"),
            lock_prefix: format!("{namespace}:lock:"),
            rate_prefix: format!("{namespace}:rl:"),
            op_timeout: settings.op_timeout,
            lock_ttl: settings.lock_ttl,
            lock_wait: settings.lock_wait,
            max_entry_size: settings.max_entry_size,
            flights: Flights::default(),
            counters: Counters::new(namespace),
            clock: Arc::clone(&settings.clock),
            breaker: Breaker::new(settings.breaker_threshold, settings.breaker_cool_down),
            pending: Mutex::new(HashSet::new()),
            has_pending: AtomicBool::new(false),
            reported_down: AtomicBool::new(false),
            checking: AtomicBool::new(false),
            slow_keys: Mutex::new(HashSet::new()),
            has_slow_keys: AtomicBool::new(false),
            denials: moka::sync::Cache::builder()
                .max_capacity(settings.max_entries)
                .expire_after(AtDeadline)
                .build(),
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.backend.name())
            .field("prefix", &self.inner.value_prefix)
            .finish_non_exhaustive()
    }
}

impl AsRef<Cache> for Cache {
    fn as_ref(&self) -> &Cache {
        self
    }
}

/// Where a call stands after its read, in this process's flight of its key.
enum Joining<'a, T> {
    Hit(T),
    /// Load (as the flight's leader, or alone) with these epochs.
    Lead(Option<Vec<Epoch>>, Option<Leader<'a>>),
    /// The leader's load failed: load once, alone.
    Retry(Option<Vec<Epoch>>),
}

/// What a lead ended with.
enum Led<T, E, Fut> {
    Done(Result<T, E>),
    /// The tag epochs moved on before the load began: the load, unused.
    Superseded(Fut),
}

impl<T, E, Fut> Led<T, E, Fut> {
    /// For leads that take no lock (so are never superseded).
    async fn into_result(self) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        match self {
            Led::Done(result) => result,
            Led::Superseded(load) => load.await,
        }
    }
}

/// What waiting on another process's load lock ended with.
enum Locking<T> {
    /// A tag was invalidated since the call read its epochs.
    Superseded,
    /// This caller holds the lock and loads.
    Held(LoadLock),
    /// The other process stored the value meanwhile (decoded, and encoded
    /// for this process's followers).
    Found(T, Vec<u8>),
    /// Load without the lock (waited too long, or Redis failed).
    Unlocked,
}

impl Cache {
    /// A builder, set to the embedded backend until told otherwise.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// Builds a cache from the environment: `REDCACHE_URL`, else `REDIS_URL`
    /// (a Redis URL, or `memory`), else the embedded backend.
    ///
    /// # Errors
    ///
    /// As [`CacheBuilder::build`], for an unparsable URL.
    pub async fn from_env() -> Result<Cache> {
        CacheBuilder::from_env().build().await
    }

    /// Returns the cached value of `key`, or runs `load`, caches an `Ok`
    /// value for `ttl` under `tags` and returns it. An `Err` is returned and
    /// not cached. This is what `#[cached]` calls.
    ///
    /// The key is taken as it is (use [`key!`](crate::key) to render one
    /// with escaped arguments). Backend failures never reach the caller:
    /// `load` runs instead.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = redcache::Cache::builder().build().await?;
    /// let id = 42;
    /// let name = cache
    ///     .get_or_load(&redcache::key!("user:<id>"), Duration::from_secs(300), &[], || async {
    ///         Ok::<_, std::io::Error>(format!("user {id}"))
    ///     })
    ///     .await?;
    /// assert_eq!(name, "user 42");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Only the errors of `load`.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        tags: &[&str],
        load: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let call = Call {
            name: "get_or_load",
            key,
            ttl,
            tags: &tags,
            stampede: Stampede::default(),
            uncacheable: None,
        };
        self.load_through(call, |_| true, load()).await
    }

    /// Invalidates every entry cached under `tag`, in one atomic increment
    /// whatever the number of entries.
    ///
    /// Once this returns, no call returns a value whose load began before
    /// it, from any process sharing the backend, even if that load finishes
    /// afterwards.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] or [`Error::Timeout`] if the invalidation could not
    /// be recorded: the caller must know, since a lost invalidation would
    /// leave stale values.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<()> {
        let tag_key = prefixed(&self.inner.tag_prefix, tag);
        match self.op(self.inner.backend.bump_epoch(&tag_key)).await {
            Ok(epoch) => {
                self.inner.counters.count(Event::Invalidation);
                tracing::debug!(target: "redcache", tag, epoch, "tag invalidated");
                Ok(())
            }
            Err(error) => {
                // Not lost: retried before the next cached call, and until
                // it succeeds this process serves nothing cached under it.
                tracing::warn!(target: "redcache", tag, %error,
                    "invalidation could not reach redis; it will be retried, and the tag bypasses the cache until then");
                self.pending().insert(tag_key);
                self.inner.has_pending.store(true, Ordering::SeqCst);
                Err(error)
            }
        }
    }

    /// Retries the invalidations that could not reach Redis; returns the
    /// tag keys still pending. A tag leaves the set only once its bump is
    /// delivered, so a concurrent call never sees it gone before then.
    async fn retry_pending_invalidations(&self) -> HashSet<String> {
        let pending = self.pending().clone();
        for tag_key in pending {
            if self
                .op(self.inner.backend.bump_epoch(&tag_key))
                .await
                .is_ok()
            {
                self.inner.counters.count(Event::Invalidation);
                tracing::info!(target: "redcache", tag_key, "pending invalidation delivered");
                self.pending().remove(&tag_key);
            }
        }
        let pending = self.pending();
        self.inner
            .has_pending
            .store(!pending.is_empty(), Ordering::SeqCst);
        pending.clone()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes the entry of one key, as a template renders it (see
    /// [`key!`](crate::key)).
    ///
    /// Unlike [`invalidate_tag`](Self::invalidate_tag), a load of this key
    /// that is already running may still store its result afterwards; use a
    /// tag where that race matters.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] or [`Error::Timeout`] if Redis could not be reached.
    pub async fn invalidate_key(&self, key: &str) -> Result<()> {
        let key = prefixed(&self.inner.value_prefix, key);
        self.op(self.inner.backend.delete(&key)).await
    }

    /// The counters of this cache (shared by its clones), and the state of
    /// its circuit breaker.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot(self.inner.breaker.state())
    }

    /// Runs a backend operation through the circuit breaker, bounded by the
    /// operation timeout (Redis only: the embedded backend does no I/O).
    pub(crate) async fn op<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        self.op_on(None, fut).await
    }

    /// [`op`](Self::op) for an operation that reads the entry `slow_key`:
    /// if it times out, the entry is checked (it may be too large to read
    /// in time) instead of blaming the server.
    pub(crate) async fn op_on<T>(
        &self,
        slow_key: Option<&str>,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        if self.inner.backend.distributed().is_none() {
            return fut.await;
        }
        let breaker = &self.inner.breaker;
        let permit = breaker.permit();
        if permit == Permit::Skip {
            return Err(Error::CircuitOpen);
        }
        // A probe dropped before it ends (its caller was cancelled) must not
        // leave the breaker waiting for it forever.
        let mut probe = ProbeGuard {
            breaker,
            armed: permit == Permit::Probe,
        };
        let limit = self.inner.op_timeout;
        let result = tokio::time::timeout(limit, fut)
            .await
            .unwrap_or(Err(Error::Timeout(limit)));
        probe.armed = false;
        match &result {
            // One slow answer says nothing yet about the server (one value
            // may be too large to read in time): a check in the background
            // decides what the breaker counts.
            Err(Error::Timeout(_)) if permit == Permit::Go => self.check_after_timeout(slow_key),
            Err(error) if error.is_unreachable() => breaker.record(&permit, false),
            _ => {
                breaker.record(&permit, true);
                self.reachable_again();
            }
        }
        result
    }

    /// After an operation timed out: asks the server something small, on
    /// a side connection and with a longer bound ([`Cache::check_limit`]).
    /// For a read, the size of its entry: while that check runs, the key
    /// is not read again (each read of a huge value costs the server a
    /// copy of it), and an entry of at least [`LARGE_ENTRY`] bytes is
    /// removed, so the next call replaces it. Otherwise `PING`, once at a
    /// time. An answer means the server is fine; no answer counts against
    /// the breaker.
    fn check_after_timeout(&self, slow_key: Option<&str>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cache = self.clone();
        match slow_key {
            Some(key) => {
                if !self.slow_keys().insert(key.to_owned()) {
                    return;
                }
                self.inner.has_slow_keys.store(true, Ordering::SeqCst);
                let key = key.to_owned();
                runtime.spawn(async move {
                    cache.check_slow_key(&key).await;
                    let mut slow = cache.slow_keys();
                    slow.remove(&key);
                    cache
                        .inner
                        .has_slow_keys
                        .store(!slow.is_empty(), Ordering::SeqCst);
                });
            }
            None => {
                if self.inner.checking.swap(true, Ordering::SeqCst) {
                    return;
                }
                runtime.spawn(async move {
                    cache.check_server().await;
                    cache.inner.checking.store(false, Ordering::SeqCst);
                });
            }
        }
    }

    /// How long a check after a timeout waits: longer than one operation,
    /// since nobody waits for it, and a busy server is not a dead one.
    fn check_limit(&self) -> Duration {
        (self.inner.op_timeout * 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    async fn check_slow_key(&self, key: &str) {
        let size = self.check(self.inner.backend.size_aside(key)).await;
        if let Some(Some(size)) = size {
            if size >= LARGE_ENTRY {
                self.remove_slow_entry(key, size).await;
            }
        }
    }

    async fn check_server(&self) {
        for _ in 0..self.inner.breaker.threshold() {
            let answered = self.check(self.inner.backend.ping_aside()).await.is_some();
            if answered || self.inner.breaker.state() != crate::breaker::CircuitState::Closed {
                return;
            }
        }
    }

    /// Runs one check, bounded by [`check_limit`](Self::check_limit), and
    /// records it in the breaker: `None` when the server did not answer,
    /// `Some(None)` when it answered with an error, else its answer.
    async fn check<T>(&self, question: impl Future<Output = Result<T>>) -> Option<Option<T>> {
        let breaker = &self.inner.breaker;
        match tokio::time::timeout(self.check_limit(), question).await {
            Ok(Ok(answer)) => {
                breaker.record(&Permit::Go, true);
                self.reachable_again();
                Some(Some(answer))
            }
            Ok(Err(error)) if !error.is_unreachable() => {
                breaker.record(&Permit::Go, true);
                Some(None)
            }
            _ => {
                breaker.record(&Permit::Go, false);
                self.report_unreachable();
                None
            }
        }
    }

    /// Whether `key` (prefixed) is being checked after a read of it timed out.
    fn is_slow(&self, key: &str) -> bool {
        self.inner.has_slow_keys.load(Ordering::Relaxed) && self.slow_keys().contains(key)
    }

    fn slow_keys(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner
            .slow_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn remove_slow_entry(&self, key: &str, size: u64) {
        let limit = self.inner.op_timeout;
        let unlink = self.inner.backend.unlink_aside(key);
        let removed = tokio::time::timeout(self.check_limit(), unlink).await;
        self.inner.counters.count(Event::Error("read"));
        match removed {
            Ok(Ok(())) => tracing::warn!(target: "redcache", key, size, op_timeout = ?limit,
                "an entry too large to read within op_timeout was removed; the next call stores a new one"),
            _ => tracing::warn!(target: "redcache", key, size,
                "an entry too large to read within op_timeout could not be removed"),
        }
    }

    /// Checks in the background that Redis answers, and reports it once if
    /// not (the global cache, which is built without waiting).
    pub(crate) fn check_reachable(&self) {
        if self.inner.backend.distributed().is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cache = self.clone();
        runtime.spawn(async move {
            let ping = cache.op(cache.inner.backend.ping()).await;
            if ping.is_err() {
                cache.report_unreachable();
            }
        });
    }

    /// Tells once (with the cause, see `report.rs`) that Redis cannot be
    /// reached; told again only after it answered in between.
    pub(crate) fn report_unreachable(&self) {
        if self.inner.reported_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cache = self.clone();
        runtime.spawn(async move {
            let backend = &cache.inner.backend;
            let endpoint = backend.endpoint();
            match backend.diagnose().await {
                Some(cause) => {
                    crate::report::once(
                        &endpoint,
                        &format!("cannot reach Redis at {endpoint}: {cause}. Cached functions run their body, uncached, until it answers; cache.stats().errors counts the failures."),
                    );
                }
                None => cache.inner.reported_down.store(false, Ordering::SeqCst),
            }
        });
    }

    /// Redis answered: an outage reported before is over.
    fn reachable_again(&self) {
        if self.inner.reported_down.load(Ordering::Relaxed)
            && self.inner.reported_down.swap(false, Ordering::SeqCst)
        {
            let endpoint = self.inner.backend.endpoint();
            crate::report::forget(&endpoint);
            tracing::info!(target: "redcache", %endpoint, "redis answers; caching resumes");
        }
    }

    fn backend_failed(&self, op: &'static str, error: &Error) {
        self.inner.counters.count(Event::Error(op));
        if matches!(error, Error::CircuitOpen) {
            // Expected while the circuit is open: one event when it opened.
            tracing::trace!(target: "redcache", op, "circuit open; skipping redis");
        } else {
            tracing::warn!(target: "redcache", op, %error, "cache backend failed; running the function");
            if error.is_unreachable() && !matches!(error, Error::Timeout(_)) {
                self.report_unreachable();
            }
        }
    }

    /// The engine: cache-aside with single flight, the cross-process lock
    /// and tag epochs. `keep` says whether a loaded value is stored.
    ///
    /// Each call is a `redcache.cached` span (info level) with the call's
    /// `name` (key template), its rendered `key`, once known its `outcome`
    /// (`hit`, `miss` or `stale`) and, when the function ran, `load_time`.
    pub(crate) async fn load_through<T, E, Fut>(
        &self,
        call: Call<'_>,
        keep: fn(&T) -> bool,
        load: Fut,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        Fut: Future<Output = Result<T, E>>,
    {
        use tracing::Instrument;
        let span = tracing::info_span!(target: "redcache", "redcache.cached",
            name = call.name, key = call.key,
            outcome = tracing::field::Empty, load_time = tracing::field::Empty);
        self.load_through_in_span(call, keep, load)
            .instrument(span)
            .await
    }

    async fn load_through_in_span<T, E, Fut>(
        &self,
        call: Call<'_>,
        keep: fn(&T) -> bool,
        load: Fut,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        Fut: Future<Output = Result<T, E>>,
    {
        let counters = &self.inner.counters;
        if let Some(reason) = call.uncacheable {
            crate::report::once(call.name, &format!("{}: {reason}", call.name));
            counters.count(Event::Miss(call.name));
            return load.await;
        }
        let key = prefixed(&self.inner.value_prefix, call.key);
        if self.is_slow(&key) {
            // Its last read timed out and a check is deciding why: reading
            // it again would only cost the server another copy of it.
            counters.count(Event::Miss(call.name));
            return load.await;
        }
        let tag_keys: Vec<String> = call
            .tags
            .iter()
            .map(|tag| prefixed(&self.inner.tag_prefix, tag))
            .collect();

        // An invalidation of one of these tags that has not reached Redis
        // yet: retry it; while it is still pending, bypass the cache.
        if self.inner.has_pending.load(Ordering::SeqCst) {
            let pending = Box::pin(self.retry_pending_invalidations()).await;
            if tag_keys.iter().any(|tag| pending.contains(tag)) {
                counters.count(Event::Miss(call.name));
                let led = Box::pin(self.lead(call, &key, &tag_keys, None, None, keep, load)).await;
                return led.into_result().await;
            }
        }

        let mut load = load;
        loop {
            // Read, and either return a fresh value, wait for the load of
            // this process's leader, or become the leader.
            let (epochs, leader, call) = match self.read_or_join(call, &key, &tag_keys).await {
                Joining::Hit(value) => return Ok(value),
                Joining::Lead(epochs, leader) => (epochs, leader, call),
                // The leader's load failed: one retry of its own, at once,
                // rather than a queue of followers each leading in turn.
                Joining::Retry(epochs) => (
                    epochs,
                    None,
                    Call {
                        stampede: Stampede::Off,
                        ..call
                    },
                ),
            };
            // Boxed: the miss path is a large future, and a hit should not
            // carry (and move) it.
            match Box::pin(self.lead(call, &key, &tag_keys, epochs, leader, keep, load)).await {
                Led::Done(result) => return result,
                // A tag moved on while this call waited for the lock: its
                // load could not be stored. Read again, with the new epochs.
                Led::Superseded(unused) => load = unused,
            }
        }
    }

    /// The read of a call, then its place in this process's flight of the
    /// key: a hit, the leader, or a follower whose leader failed.
    async fn read_or_join<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
        key: &str,
        tag_keys: &[String],
    ) -> Joining<'_, T> {
        let counters = &self.inner.counters;
        loop {
            let mut outcome = "miss";
            let read = self.inner.backend.read(key, tag_keys);
            let epochs = match self.op_on(Some(key), read).await {
                Ok(Read { value, epochs }) => {
                    if let Some(bytes) = value {
                        match entry::decode::<T>(&bytes, call.name, call.tags, &epochs) {
                            Decoded::Fresh(value) => {
                                counters.count(Event::Hit(call.name));
                                tracing::Span::current().record("outcome", "hit");
                                tracing::trace!(target: "redcache", key = call.key, "hit");
                                return Joining::Hit(value);
                            }
                            Decoded::Stale => {
                                counters.count(Event::Stale(call.name));
                                outcome = "stale";
                                tracing::debug!(target: "redcache", key = call.key, "stale");
                            }
                            Decoded::Invalid => {
                                counters.count(Event::Undecodable(call.name));
                                tracing::warn!(target: "redcache", key = call.key,
                                    "entry does not decode as this type; treating it as a miss");
                            }
                            Decoded::Foreign => {
                                counters.count(Event::Undecodable(call.name));
                                tracing::warn!(target: "redcache", key = call.key, template = call.name,
                                    "the entry was written by another key template that renders the same key; treating it as a miss (give the two templates distinct literal prefixes)");
                            }
                        }
                    }
                    Some(epochs)
                }
                Err(error) => {
                    self.backend_failed("read", &error);
                    None
                }
            };
            counters.count(Event::Miss(call.name));
            tracing::Span::current().record("outcome", outcome);
            tracing::debug!(target: "redcache", key = call.key, "miss");
            if call.stampede == Stampede::Off {
                return Joining::Lead(epochs, None);
            }
            match self
                .inner
                .flights
                .join((key.to_owned(), call.name, epochs.clone()))
            {
                Joined::Leader(leader) => return Joining::Lead(epochs, Some(leader)),
                Joined::Follower(follower) => {
                    counters.count(Event::Coalesced(call.name));
                    match follower.wait().await {
                        Outcome::Value(bytes) => {
                            if let Some(value) = entry::decode_value::<T>(&bytes, call.name) {
                                return Joining::Hit(value);
                            }
                        }
                        Outcome::Failed => return Joining::Retry(epochs),
                        // Cancelled or panicked: start over (one follower
                        // leads the next attempt).
                        Outcome::Retry | Outcome::Pending => {}
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // the engine's state, spelled out for the reader
    async fn lead<T, E, Fut>(
        &self,
        call: Call<'_>,
        key: &str,
        tag_keys: &[String],
        epochs: Option<Vec<Epoch>>,
        leader: Option<Leader<'_>>,
        keep: fn(&T) -> bool,
        load: Fut,
    ) -> Led<T, E, Fut>
    where
        T: Serialize + DeserializeOwned,
        Fut: Future<Output = Result<T, E>>,
    {
        let lock = match (call.stampede, &epochs) {
            (Stampede::Distributed, Some(epochs)) => {
                self.lock_or_wait(call, key, tag_keys, epochs).await
            }
            _ => Locking::Unlocked,
        };
        let mut held = match lock {
            Locking::Found(value, bytes) => {
                if let Some(leader) = leader {
                    leader.finish(Outcome::Value(Arc::from(bytes)));
                }
                return Led::Done(Ok(value));
            }
            // Dropping the leader sends this process's followers back to
            // read as well.
            Locking::Superseded => return Led::Superseded(load),
            Locking::Held(lock) => Some(lock),
            Locking::Unlocked => None,
        };
        let mut leader = leader;

        let started = Instant::now();
        self.inner.counters.count(Event::Load(call.name));
        let result = load.await;
        let elapsed = started.elapsed();
        self.inner.counters.load_time(call.name, elapsed);
        tracing::Span::current().record("load_time", tracing::field::debug(elapsed));
        tracing::debug!(target: "redcache", key = call.key, ?elapsed, ok = result.is_ok(), "load");

        if let Ok(value) = &result {
            let zeros;
            let recorded = match &epochs {
                Some(epochs) => epochs.as_slice(),
                None => {
                    zeros = vec![0; call.tags.len()];
                    &zeros
                }
            };
            match entry::encode(value, call.name, call.tags, recorded) {
                Ok(bytes) => {
                    // A load that outlived the guaranteed life of an
                    // invalidated epoch could match an epoch key recreated at
                    // 0, so its value is returned but not stored.
                    let in_time = started.elapsed() < INVALIDATED_EPOCH_TTL / 2;
                    let fits = bytes.len() <= self.inner.max_entry_size;
                    if !fits {
                        self.inner.counters.count(Event::Error("too_large"));
                        tracing::warn!(target: "redcache", key = call.key, size = bytes.len(),
                            max = self.inner.max_entry_size, "value larger than max_entry_size; returned, not cached");
                    }
                    if keep(value) && epochs.is_some() && in_time && fits {
                        self.store(call, key, tag_keys, recorded, &bytes, held.as_mut())
                            .await;
                    }
                    if let Some(leader) = leader.take() {
                        leader.finish(Outcome::Value(Arc::from(bytes)));
                    }
                }
                Err(error) => {
                    self.inner.counters.count(Event::Error("encode"));
                    tracing::warn!(target: "redcache", key = call.key, %error,
                        "value does not encode; not cached");
                }
            }
        }
        // An error, or a value that does not encode: nothing to share.
        if let Some(leader) = leader {
            leader.finish(Outcome::Failed);
        }
        if let Some(lock) = held {
            lock.release().await;
        }
        Led::Done(result)
    }

    /// Stores an entry, and releases `lock` with it where the backend can
    /// (one round trip on a single node); otherwise `lead` releases it.
    async fn store(
        &self,
        call: Call<'_>,
        key: &str,
        tag_keys: &[String],
        epochs: &[Epoch],
        bytes: &[u8],
        lock: Option<&mut LoadLock>,
    ) {
        let write = Write {
            key,
            bytes,
            ttl: call.ttl,
            tag_keys,
            epochs,
            unlock: lock.as_ref().map(|lock| Unlock {
                key: &lock.key,
                token: &lock.token,
            }),
        };
        match self.op(self.inner.backend.write(write)).await {
            Ok(written) => {
                if let (true, Some(lock)) = (written.unlocked, lock) {
                    lock.released = true;
                }
                if !written.stored {
                    self.inner.counters.count(Event::Stale(call.name));
                    tracing::debug!(target: "redcache", key = call.key,
                        "a tag was invalidated during the load; value returned, not stored");
                }
            }
            Err(error) => self.backend_failed("write", &error),
        }
    }

    /// Takes the cross-process load lock of `call`, or waits (bounded) for
    /// the process holding it to store the value. `epochs` are the tag
    /// epochs this call read: once they moved on, its load could not be
    /// stored, and it reads again instead of loading.
    async fn lock_or_wait<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
        key: &str,
        tag_keys: &[String],
        epochs: &[Epoch],
    ) -> Locking<T> {
        let Some(redis) = self.inner.backend.distributed() else {
            return Locking::Unlocked;
        };
        let lock_key = prefixed(&self.inner.lock_prefix, call.key);
        let token = format!("{:032x}", rand::random::<u128>());
        let deadline = Instant::now() + self.inner.lock_wait;
        let mut backoff = Duration::from_millis(5);
        let mut waited = false;
        loop {
            match self
                .op(redis.try_lock(&lock_key, &token, self.inner.lock_ttl))
                .await
            {
                Ok(true) => {
                    let lock = LoadLock {
                        cache: self.clone(),
                        key: lock_key,
                        token,
                        released: false,
                    };
                    if !waited {
                        return Locking::Held(lock);
                    }
                    // The holder this call waited for has just let go, most
                    // likely after storing: look before loading again.
                    return match self.look_again(call, key, tag_keys, epochs).await {
                        Some(found) => {
                            lock.release().await;
                            found
                        }
                        None => Locking::Held(lock),
                    };
                }
                Ok(false) => {}
                Err(error) => {
                    self.backend_failed("lock", &error);
                    return Locking::Unlocked;
                }
            }
            if !waited {
                waited = true;
                self.inner.counters.count(Event::LockWait(call.name));
                tracing::debug!(target: "redcache", key = call.key, "lock wait");
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(target: "redcache", key = call.key, waited = ?self.inner.lock_wait,
                    "another process holds the load lock too long; loading without it");
                return Locking::Unlocked;
            }
            tokio::time::sleep(backoff.min(deadline - now)).await;
            backoff = (backoff * 2).min(Duration::from_millis(100));
            if let Some(found) = self.look_again(call, key, tag_keys, epochs).await {
                return found;
            }
        }
    }

    /// A read while waiting on the load lock: `Found` for a fresh entry,
    /// `Superseded` once a tag's epoch differs from what the call read,
    /// `Unlocked` if Redis failed; `None` to keep waiting.
    async fn look_again<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
        key: &str,
        tag_keys: &[String],
        epochs: &[Epoch],
    ) -> Option<Locking<T>> {
        match self.op(self.inner.backend.read(key, tag_keys)).await {
            Ok(Read { value, epochs: now }) => {
                if now != epochs {
                    tracing::debug!(target: "redcache", key = call.key,
                        "a tag was invalidated while waiting for the load lock; reading again");
                    return Some(Locking::Superseded);
                }
                let bytes = value?;
                match entry::decode::<T>(&bytes, call.name, call.tags, &now) {
                    Decoded::Fresh(value) => Some(Locking::Found(value, bytes)),
                    _ => None,
                }
            }
            Err(error) => {
                self.backend_failed("read", &error);
                Some(Locking::Unlocked)
            }
        }
    }
}

/// Gives up the probe of a half-open circuit whose operation was dropped.
struct ProbeGuard<'a> {
    breaker: &'a Breaker,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.breaker.abandon_probe();
        }
    }
}

/// An entry at least this large whose read timed out while the server
/// answered is removed: it is what made the read slow.
const LARGE_ENTRY: u64 = 64 * 1024;

/// `prefix` + `name`, without the formatting machinery of `format!` (this
/// runs on every cached call).
fn prefixed(prefix: &str, name: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + name.len());
    key.push_str(prefix);
    key.push_str(name);
    key
}

/// The cross-process load lock, held while this process loads. It is
/// released once the value is stored; if the load is cancelled or panics,
/// dropping the guard releases it in the background, so other processes do
/// not wait for its TTL.
struct LoadLock {
    cache: Cache,
    key: String,
    token: String,
    released: bool,
}

impl LoadLock {
    /// Releases the lock, unless the write already did.
    async fn release(mut self) {
        if !self.released {
            self.released = true;
            self.cache.unlock(&self.key, &self.token).await;
        }
    }
}

impl Drop for LoadLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (cache, key, token) = (
                self.cache.clone(),
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.token),
            );
            runtime.spawn(async move { cache.unlock(&key, &token).await });
        }
    }
}

impl Cache {
    /// Releases a load lock if `token` still holds it (compare-and-delete).
    async fn unlock(&self, lock_key: &str, token: &str) {
        if let Some(redis) = self.inner.backend.distributed() {
            if let Err(error) = self.op(redis.unlock(lock_key, token)).await {
                self.backend_failed("unlock", &error);
            }
        }
    }
}
