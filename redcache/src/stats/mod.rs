//! Counters of what the cache did, read with [`Cache::stats`](crate::Cache::stats).

#[cfg(feature = "metrics")]
mod metrics;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::breaker::CircuitState;
use crate::near::NearStatus;

/// Each counter is written once, here: it becomes a field of [`Stats`], an
/// atomic of `Counters`, and a line of `Counters::snapshot`. (An `Event`
/// names which counter it bumps, and `metrics.rs` how it is exported.)
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $field:ident,)*) => {
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
            $($(#[doc = $doc])* pub $field: u64,)*
            /// The circuit breaker's state when the snapshot was taken.
            pub circuit: CircuitState,
            /// Where the near cache stood when the snapshot was taken.
            pub near: NearStatus,
        }

        pub(crate) struct Counters {
            /// The cache's namespace: a label of every exported metric.
            #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
            namespace: std::sync::Arc<str>,
            $($field: AtomicU64,)*
        }

        impl Counters {
            pub(crate) fn new(namespace: &str) -> Self {
                Counters {
                    namespace: namespace.into(),
                    $($field: AtomicU64::new(0),)*
                }
            }

            pub(crate) fn snapshot(&self, circuit: CircuitState) -> Stats {
                Stats {
                    $($field: self.$field.load(Relaxed),)*
                    circuit,
                    near: NearStatus::Off,
                }
            }
        }
    };
}

counters! {
    /// Calls answered from the cache (the near cache's hits included).
    hits,
    /// Of the `hits`, those answered from the near cache (L1), without a
    /// round trip.
    near_hits,
    /// Invalidations of near-cache entries received from Redis (or the
    /// pub/sub fallback).
    near_invalidations,
    /// Times the near cache was emptied at once: its invalidations stopped
    /// (a disconnect, a failed check, a failover or slot move) or the
    /// server was flushed.
    near_flushes,
    /// Calls that found no usable entry (absent, stale or undecodable).
    misses,
    /// Entries found but invalidated by a tag since they were loaded, or
    /// stored under other tags than the call's.
    stale,
    /// Entries that did not decode (another writer, another type, garbage).
    undecodable,
    /// Times the function ran to produce a value.
    loads,
    /// Calls answered with an expired value while a refresh ran
    /// (`stale`).
    served_stale,
    /// Calls answered with an expired value because the load failed
    /// (`fail_safe`).
    fail_safe,
    /// Background refreshes started, early (`early_refresh`) or of an
    /// expired value (`stale`).
    refreshes,
    /// Calls that shared another call's load in this process.
    coalesced,
    /// Times a caller waited for another process holding the load lock.
    lock_waits,
    /// Backend operations that failed or timed out (the call still
    /// succeeded: it ran the function).
    errors,
    /// Values not cached because they were larger than `max_value_size`
    /// (returned to their callers all the same).
    too_large,
    /// Writes Redis refused because it is out of memory (`OOM`: a
    /// `maxmemory` with `noeviction`); also counted in `errors`.
    out_of_memory,
    /// Tag invalidations issued.
    invalidations,
    /// Rate-limit checks that took from a quota.
    rate_allowed,
    /// Rate-limit checks the backend refused, and those refused at once
    /// for a cost above what a policy can ever admit.
    rate_denied,
    /// Rate-limit checks refused in-process, from a remembered denial,
    /// without a round trip.
    rate_denied_locally,
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
    /// A hit of the near cache (also counted as a hit).
    NearHit(&'static str),
    NearInvalidation,
    NearFlush,
    Miss(&'static str),
    Stale(&'static str),
    Undecodable(&'static str),
    Load(&'static str),
    ServedStale(&'static str),
    FailSafe(&'static str),
    Refresh(&'static str),
    Coalesced(&'static str),
    LockWait(&'static str),
    /// A backend operation (named) failed; the call went on without it.
    Error(&'static str),
    OutOfMemory(&'static str),
    TooLarge(&'static str),
    Invalidation,
    RateAllowed(&'a str),
    RateDenied(&'a str),
    RateDeniedLocally(&'a str),
}

impl Counters {
    pub(crate) fn count(&self, event: Event<'_>) {
        let counter = match event {
            Event::Hit(_) => &self.hits,
            Event::NearHit(_) => {
                self.hits.fetch_add(1, Relaxed);
                &self.near_hits
            }
            Event::NearInvalidation => &self.near_invalidations,
            Event::NearFlush => &self.near_flushes,
            Event::Miss(_) => &self.misses,
            Event::Stale(_) => &self.stale,
            Event::Undecodable(_) => &self.undecodable,
            Event::Load(_) => &self.loads,
            Event::ServedStale(_) => &self.served_stale,
            Event::FailSafe(_) => &self.fail_safe,
            Event::Refresh(_) => &self.refreshes,
            Event::Coalesced(_) => &self.coalesced,
            Event::LockWait(_) => &self.lock_waits,
            Event::Error(_) => &self.errors,
            Event::OutOfMemory(_) => &self.out_of_memory,
            Event::TooLarge(_) => &self.too_large,
            Event::Invalidation => &self.invalidations,
            Event::RateAllowed(_) => &self.rate_allowed,
            Event::RateDenied(_) => &self.rate_denied,
            Event::RateDeniedLocally(_) => &self.rate_denied_locally,
        };
        counter.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::count(&self.namespace, event);
    }

    /// How long a load of the call `name` took.
    pub(crate) fn load_time(&self, name: &'static str, elapsed: std::time::Duration) {
        #[cfg(feature = "metrics")]
        metrics::load_time(&self.namespace, name, elapsed);
        #[cfg(not(feature = "metrics"))]
        let _ = (name, elapsed);
    }
}
