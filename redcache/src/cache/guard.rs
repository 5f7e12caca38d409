//! Every backend operation goes through [`Cache::op`]: the circuit
//! breaker, the operation timeout and the probe guard. A timeout is checked
//! on a side connection before the breaker counts it, and an outage is
//! reported to the user once.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::Duration;

use super::Cache;
use crate::breaker::{Breaker, Permit};
use crate::error::{Error, Result};
use crate::stats::Event;

impl Cache {
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
        if !self.inner.backend.is_remote() {
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
    pub(super) fn is_slow(&self, key: &str) -> bool {
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
        if !self.inner.backend.is_remote() {
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

    pub(super) fn backend_failed(&self, op: &'static str, error: &Error) {
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
