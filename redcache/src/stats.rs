//! Counters of what the cache did, read with [`Cache::stats`](crate::Cache::stats).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::breaker::CircuitState;

/// A snapshot of a cache's counters since it was built.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), redcache::Error> {
/// let cache = redcache::Cache::builder().memory().build().await?;
/// let stats = cache.stats();
/// assert_eq!(stats.hits + stats.misses, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls answered from the cache.
    pub hits: u64,
    /// Calls that found no usable entry (absent, stale or undecodable).
    pub misses: u64,
    /// Entries found but invalidated by a tag since they were loaded.
    pub stale: u64,
    /// Entries that did not decode (another writer, another type, garbage).
    pub undecodable: u64,
    /// Times the function ran to produce a value.
    pub loads: u64,
    /// Calls that shared another call's load in this process.
    pub coalesced: u64,
    /// Times a caller waited for another process holding the load lock.
    pub lock_waits: u64,
    /// Backend operations that failed or timed out (the call still
    /// succeeded: it ran the function).
    pub errors: u64,
    /// Tag invalidations issued.
    pub invalidations: u64,
    /// Rate-limit checks that took from a quota.
    pub rate_allowed: u64,
    /// Rate-limit checks the backend refused, and those refused at once
    /// for a cost above what a policy can ever admit.
    pub rate_denied: u64,
    /// Rate-limit checks refused in-process, from a remembered denial,
    /// without a round trip.
    pub rate_denied_locally: u64,
    /// The circuit breaker's state when the snapshot was taken.
    pub circuit: CircuitState,
}

/// What the engine counts: each bumps a field of [`Stats`] and, with the
/// `metrics` feature, a metric (see `metrics.rs`). Cached-call events carry
/// the call's name (its key template, or the fn's path); rate-limit events
/// the limiter's name.
#[derive(Debug, Clone, Copy)]
// The names are read only by the metrics export.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) enum Event<'a> {
    Hit(&'static str),
    Miss(&'static str),
    Stale(&'static str),
    Undecodable(&'static str),
    Load(&'static str),
    Coalesced(&'static str),
    LockWait(&'static str),
    /// A backend operation (named) failed; the call went on without it.
    Error(&'static str),
    Invalidation,
    RateAllowed(&'a str),
    RateDenied(&'a str),
    RateDeniedLocally(&'a str),
}

pub(crate) struct Counters {
    /// The cache's namespace: a label of every exported metric.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    namespace: std::sync::Arc<str>,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    undecodable: AtomicU64,
    loads: AtomicU64,
    coalesced: AtomicU64,
    lock_waits: AtomicU64,
    errors: AtomicU64,
    invalidations: AtomicU64,
    rate_allowed: AtomicU64,
    rate_denied: AtomicU64,
    rate_denied_locally: AtomicU64,
}

impl Counters {
    pub(crate) fn new(namespace: &str) -> Self {
        let zero = || AtomicU64::new(0);
        Counters {
            namespace: namespace.into(),
            hits: zero(),
            misses: zero(),
            stale: zero(),
            undecodable: zero(),
            loads: zero(),
            coalesced: zero(),
            lock_waits: zero(),
            errors: zero(),
            invalidations: zero(),
            rate_allowed: zero(),
            rate_denied: zero(),
            rate_denied_locally: zero(),
        }
    }

    pub(crate) fn count(&self, event: Event<'_>) {
        let counter = match event {
            Event::Hit(_) => &self.hits,
            Event::Miss(_) => &self.misses,
            Event::Stale(_) => &self.stale,
            Event::Undecodable(_) => &self.undecodable,
            Event::Load(_) => &self.loads,
            Event::Coalesced(_) => &self.coalesced,
            Event::LockWait(_) => &self.lock_waits,
            Event::Error(_) => &self.errors,
            Event::Invalidation => &self.invalidations,
            Event::RateAllowed(_) => &self.rate_allowed,
            Event::RateDenied(_) => &self.rate_denied,
            Event::RateDeniedLocally(_) => &self.rate_denied_locally,
        };
        counter.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::metrics::count(&self.namespace, event);
    }

    /// How long a load of the call `name` took.
    pub(crate) fn load_time(&self, name: &'static str, elapsed: std::time::Duration) {
        #[cfg(feature = "metrics")]
        crate::metrics::load_time(&self.namespace, name, elapsed);
        #[cfg(not(feature = "metrics"))]
        let _ = (name, elapsed);
    }

    pub(crate) fn snapshot(&self, circuit: CircuitState) -> Stats {
        Stats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            stale: self.stale.load(Relaxed),
            undecodable: self.undecodable.load(Relaxed),
            loads: self.loads.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
            lock_waits: self.lock_waits.load(Relaxed),
            errors: self.errors.load(Relaxed),
            invalidations: self.invalidations.load(Relaxed),
            rate_allowed: self.rate_allowed.load(Relaxed),
            rate_denied: self.rate_denied.load(Relaxed),
            rate_denied_locally: self.rate_denied_locally.load(Relaxed),
            circuit,
        }
    }
}
