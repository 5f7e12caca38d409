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
    /// Rate-limit checks the backend refused.
    pub rate_denied: u64,
    /// Rate-limit checks refused in-process, from a remembered denial,
    /// without a round trip.
    pub rate_denied_locally: u64,
    /// The circuit breaker's state when the snapshot was taken.
    pub circuit: CircuitState,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) undecodable: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) lock_waits: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) rate_allowed: AtomicU64,
    pub(crate) rate_denied: AtomicU64,
    pub(crate) rate_denied_locally: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
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
            circuit: CircuitState::Closed,
        }
    }
}
