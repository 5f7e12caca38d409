//! The counters of [`Stats`](crate::Stats), exported through the
//! [`metrics`](https://docs.rs/metrics) facade (feature `metrics`), for
//! whichever recorder the application installs (Prometheus, StatsD, ...).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `redcache_calls_total` | counter | `namespace`, `name`, `outcome` = `hit` \| `hit_l1` \| `miss` \| `stale` \| `fail_safe` |
//! | `redcache_stale_total` | counter | `namespace`, `name` |
//! | `redcache_undecodable_total` | counter | `namespace`, `name` |
//! | `redcache_loads_total` | counter | `namespace`, `name` |
//! | `redcache_load_duration_seconds` | histogram | `namespace`, `name` |
//! | `redcache_coalesced_total` | counter | `namespace`, `name` |
//! | `redcache_lock_waits_total` | counter | `namespace`, `name` |
//! | `redcache_backend_errors_total` | counter | `namespace`, `op` = `read` \| `write` \| `lock` \| `unlock` \| `rate_limit` \| `encode` \| `too_large` |
//! | `redcache_invalidations_total` | counter | `namespace` |
//! | `redcache_near_invalidations_total` | counter | `namespace` |
//! | `redcache_near_flushes_total` | counter | `namespace` |
//! | `redcache_rate_limit_checks_total` | counter | `namespace`, `limiter`, `result` = `allowed` \| `denied` \| `denied_locally` |
//!
//! `name` is the key template of a `#[cached]` fn as written
//! (`"product:<id>"`), or its path when it has no `key`; never the rendered
//! key, so the number of series stays that of the cached fns. The metrics
//! are looked up at each event, so a recorder installed after the cache was
//! built still receives them.

use std::sync::{Arc, Once};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_histogram, histogram, Unit};

use super::Event;

pub(crate) fn count(namespace: &Arc<str>, event: Event<'_>) {
    describe();
    let ns = Arc::clone(namespace);
    match event {
        Event::Hit(name) => {
            counter!("redcache_calls_total", "namespace" => ns, "name" => name, "outcome" => "hit")
                .increment(1)
        }
        Event::NearHit(name) => {
            counter!("redcache_calls_total", "namespace" => ns, "name" => name, "outcome" => "hit_l1")
                .increment(1)
        }
        Event::NearInvalidation => {
            counter!("redcache_near_invalidations_total", "namespace" => ns).increment(1)
        }
        Event::NearFlush => counter!("redcache_near_flushes_total", "namespace" => ns).increment(1),
        Event::Miss(name) => {
            counter!("redcache_calls_total", "namespace" => ns, "name" => name, "outcome" => "miss")
                .increment(1)
        }
        Event::Stale(name) => {
            counter!("redcache_stale_total", "namespace" => ns, "name" => name).increment(1)
        }
        Event::Undecodable(name) => {
            counter!("redcache_undecodable_total", "namespace" => ns, "name" => name).increment(1)
        }
        Event::Load(name) => {
            counter!("redcache_loads_total", "namespace" => ns, "name" => name).increment(1)
        }
        Event::ServedStale(name) => {
            counter!("redcache_calls_total", "namespace" => ns, "name" => name, "outcome" => "stale")
                .increment(1)
        }
        Event::FailSafe(name) => {
            counter!("redcache_calls_total", "namespace" => ns, "name" => name, "outcome" => "fail_safe")
                .increment(1)
        }
        Event::Refresh(name) => {
            counter!("redcache_refreshes_total", "namespace" => ns, "name" => name).increment(1)
        }
        Event::Coalesced(name) => {
            counter!("redcache_coalesced_total", "namespace" => ns, "name" => name).increment(1)
        }
        Event::LockWait(name) => {
            counter!("redcache_lock_waits_total", "namespace" => ns, "name" => name).increment(1)
        }
        Event::Error(op) => {
            counter!("redcache_backend_errors_total", "namespace" => ns, "op" => op).increment(1)
        }
        Event::OutOfMemory(op) => {
            counter!("redcache_backend_out_of_memory_total", "namespace" => ns, "op" => op)
                .increment(1)
        }
        Event::TooLarge(name) => {
            counter!("redcache_too_large_total", "namespace" => ns, "name" => name).increment(1)
        }
        Event::Invalidation => {
            counter!("redcache_invalidations_total", "namespace" => ns).increment(1)
        }
        Event::RateAllowed(limiter) => rate(ns, limiter, "allowed"),
        Event::RateDenied(limiter) => rate(ns, limiter, "denied"),
        Event::RateDeniedLocally(limiter) => rate(ns, limiter, "denied_locally"),
    }
}

fn rate(namespace: Arc<str>, limiter: &str, result: &'static str) {
    counter!("redcache_rate_limit_checks_total",
        "namespace" => namespace, "limiter" => limiter.to_string(), "result" => result)
    .increment(1);
}

pub(crate) fn load_time(namespace: &Arc<str>, name: &'static str, elapsed: Duration) {
    describe();
    histogram!("redcache_load_duration_seconds", "namespace" => Arc::clone(namespace), "name" => name)
        .record(elapsed.as_secs_f64());
}

/// Describes the metrics to the recorder, once per process.
fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        describe_counter!(
            "redcache_calls_total",
            Unit::Count,
            "Cached calls, by outcome: hit (served from the cache) or miss."
        );
        describe_counter!(
            "redcache_stale_total",
            Unit::Count,
            "Entries found invalidated by a tag."
        );
        describe_counter!(
            "redcache_undecodable_total",
            Unit::Count,
            "Entries that did not decode as the fn's type (treated as misses)."
        );
        describe_counter!(
            "redcache_loads_total",
            Unit::Count,
            "Times a cached fn ran to produce its value."
        );
        describe_histogram!(
            "redcache_load_duration_seconds",
            Unit::Seconds,
            "How long a cached fn ran when it missed."
        );
        describe_counter!(
            "redcache_coalesced_total",
            Unit::Count,
            "Calls that shared another call's load in this process."
        );
        describe_counter!(
            "redcache_lock_waits_total",
            Unit::Count,
            "Calls that waited for another process's load lock."
        );
        describe_counter!(
            "redcache_backend_errors_total",
            Unit::Count,
            "Backend operations that failed or timed out (the call ran its fn)."
        );
        describe_counter!(
            "redcache_invalidations_total",
            Unit::Count,
            "Tag invalidations delivered."
        );
        describe_counter!(
            "redcache_rate_limit_checks_total",
            Unit::Count,
            "Rate-limit checks, by result."
        );
    });
}
