//! The core every part of a cache goes through to reach its backend:
//! [`Guarded::op`] runs an operation through the circuit breaker, bounded
//! by the operation timeout, with the probe guard. A timeout is checked on a
//! side connection before the breaker counts it, and an outage is reported
//! to the user once. The cache-aside engine (`cache/`) and the rate limiter
//! (`ratelimit/`) both hold an `Arc<Guarded>`; it knows neither.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::backend::Backend;
use crate::breaker::{Breaker, CircuitState, Permit};
use crate::error::{Error, Result};
use crate::stats::{Counters, Event, Stats};

/// A backend behind its breaker and timeout, with the counters of what
/// went through.
pub(crate) struct Guarded {
    pub(crate) backend: Backend,
    breaker: Breaker,
    op_timeout: Duration,
    pub(crate) counters: Arc<Counters>,
    /// An outage of Redis was reported and has not ended yet.
    reported_down: AtomicBool,
    /// A check of the server after a timed-out operation is running.
    checking: AtomicBool,
    /// Entries whose read timed out, not read again until checked.
    slow_keys: Mutex<HashSet<String>>,
    has_slow_keys: AtomicBool,
}

impl Guarded {
    pub(crate) fn new(
        backend: Backend,
        op_timeout: Duration,
        breaker: Breaker,
        counters: Arc<Counters>,
    ) -> Self {
        Guarded {
            backend,
            breaker,
            op_timeout,
            counters,
            reported_down: AtomicBool::new(false),
            checking: AtomicBool::new(false),
            slow_keys: Mutex::new(HashSet::new()),
            has_slow_keys: AtomicBool::new(false),
        }
    }

    /// The counters, and the breaker's state.
    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot(self.breaker.state())
    }

    /// Runs a backend operation through the circuit breaker, bounded by the
    /// operation timeout (Redis only: the embedded backend does no I/O).
    pub(crate) async fn op<T>(self: &Arc<Self>, fut: impl Future<Output = Result<T>>) -> Result<T> {
        self.op_on(None, fut).await
    }

    /// [`op`](Self::op) for an operation that reads the entry `slow_key`:
    /// if it times out, the entry is checked (it may be too large to read
    /// in time) instead of blaming the server.
    pub(crate) async fn op_on<T>(
        self: &Arc<Self>,
        slow_key: Option<&str>,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        if !self.backend.is_remote() {
            return fut.await;
        }
        let breaker = &self.breaker;
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
        let limit = self.op_timeout;
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
    /// a side connection and with a longer bound ([`Guarded::check_limit`]).
    /// For a read, the size of its entry: while that check runs, the key
    /// is not read again (each read of a huge value costs the server a
    /// copy of it), and an entry of at least [`LARGE_ENTRY`] bytes is
    /// removed, so the next call replaces it. Otherwise `PING`, once at a
    /// time. An answer means the server is fine; no answer counts against
    /// the breaker.
    fn check_after_timeout(self: &Arc<Self>, slow_key: Option<&str>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let guarded = Arc::clone(self);
        match slow_key {
            Some(key) => {
                if !self.slow_keys().insert(key.to_owned()) {
                    return;
                }
                self.has_slow_keys.store(true, Ordering::SeqCst);
                let key = key.to_owned();
                runtime.spawn(async move {
                    guarded.check_slow_key(&key).await;
                    let mut slow = guarded.slow_keys();
                    slow.remove(&key);
                    guarded
                        .has_slow_keys
                        .store(!slow.is_empty(), Ordering::SeqCst);
                });
            }
            None => {
                if self.checking.swap(true, Ordering::SeqCst) {
                    return;
                }
                runtime.spawn(async move {
                    guarded.check_server().await;
                    guarded.checking.store(false, Ordering::SeqCst);
                });
            }
        }
    }

    /// How long a check after a timeout waits: longer than one operation,
    /// since nobody waits for it, and a busy server is not a dead one.
    fn check_limit(&self) -> Duration {
        (self.op_timeout * 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    async fn check_slow_key(self: &Arc<Self>, key: &str) {
        let size = self.check(self.backend.size_aside(key)).await;
        if let Some(Some(size)) = size {
            if size >= LARGE_ENTRY {
                self.remove_slow_entry(key, size).await;
            }
        }
    }

    async fn check_server(self: &Arc<Self>) {
        for _ in 0..self.breaker.threshold() {
            let answered = self.check(self.backend.ping_aside()).await.is_some();
            if answered || self.breaker.state() != CircuitState::Closed {
                return;
            }
        }
    }

    /// Runs one check, bounded by [`check_limit`](Self::check_limit), and
    /// records it in the breaker: `None` when the server did not answer,
    /// `Some(None)` when it answered with an error, else its answer.
    async fn check<T>(
        self: &Arc<Self>,
        question: impl Future<Output = Result<T>>,
    ) -> Option<Option<T>> {
        let breaker = &self.breaker;
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
    pub(crate) fn is_slow(&self, key: &str) -> bool {
        self.has_slow_keys.load(Ordering::Relaxed) && self.slow_keys().contains(key)
    }

    fn slow_keys(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.slow_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn remove_slow_entry(self: &Arc<Self>, key: &str, size: u64) {
        let limit = self.op_timeout;
        let unlink = self.backend.unlink_aside(key);
        let removed = tokio::time::timeout(self.check_limit(), unlink).await;
        self.counters.count(Event::Error("read"));
        match removed {
            Ok(Ok(())) => tracing::warn!(target: "redcache", key, size, op_timeout = ?limit,
                "an entry too large to read within op_timeout was removed; the next call stores a new one"),
            _ => tracing::warn!(target: "redcache", key, size,
                "an entry too large to read within op_timeout could not be removed"),
        }
    }

    /// Checks in the background that Redis answers, and reports it once if
    /// not (the global cache, which is built without waiting).
    pub(crate) fn check_reachable(self: &Arc<Self>) {
        if !self.backend.is_remote() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let guarded = Arc::clone(self);
        runtime.spawn(async move {
            let ping = guarded.op(guarded.backend.ping()).await;
            if ping.is_err() {
                guarded.report_unreachable();
            }
        });
    }

    /// Tells once (with the cause, see `report.rs`) that Redis cannot be
    /// reached; told again only after it answered in between.
    pub(crate) fn report_unreachable(self: &Arc<Self>) {
        if self.reported_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let guarded = Arc::clone(self);
        runtime.spawn(async move {
            let backend = &guarded.backend;
            let endpoint = backend.endpoint();
            match backend.diagnose().await {
                Some(cause) => {
                    crate::report::once(
                        &endpoint,
                        &format!("cannot reach Redis at {endpoint}: {cause}. Cached functions run their body, uncached, until it answers; cache.stats().errors counts the failures."),
                    );
                }
                None => guarded.reported_down.store(false, Ordering::SeqCst),
            }
        });
    }

    /// Redis answered: an outage reported before is over.
    fn reachable_again(&self) {
        if self.reported_down.load(Ordering::Relaxed)
            && self.reported_down.swap(false, Ordering::SeqCst)
        {
            let endpoint = self.backend.endpoint();
            crate::report::forget(&endpoint);
            tracing::info!(target: "redcache", %endpoint, "redis answers; caching resumes");
        }
    }

    pub(crate) fn backend_failed(self: &Arc<Self>, op: &'static str, error: &Error) {
        self.counters.count(Event::Error(op));
        if error.is_out_of_memory() {
            // Fail open like any other failure; said loudly once, as the
            // setup is wrong for a cache (see `Cache::health`).
            self.counters.count(Event::OutOfMemory(op));
            let endpoint = self.backend.endpoint();
            let told = crate::report::once(
                &format!("out_of_memory:{endpoint}"),
                &format!("Redis at {endpoint} refuses writes ({op}: {error}): it is out of memory and evicts nothing (maxmemory-policy noeviction). Functions run uncached until it has room; set an eviction policy such as allkeys-lru (README, \"Running in production\")"),
            );
            if !told {
                tracing::debug!(target: "redcache", op, %error, "write refused: Redis is out of memory");
            }
            return;
        }
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
