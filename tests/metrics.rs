//! The `metrics` feature: every counter of `Stats` reaches the installed
//! recorder under its documented name and labels, and load times reach the
//! histogram. Needs `--features metrics` (the README's test command has it).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use redcache::{Cache, Policy, RateLimiter};

/// Every counter and histogram seen so far, by name and labels. The
/// debugging recorder's snapshots drain what they read, so each read adds
/// the latest snapshot to these totals.
type Totals = HashMap<(String, Vec<(String, String)>), u64>;

fn totals() -> std::sync::MutexGuard<'static, Totals> {
    static RECORDER: OnceLock<(Snapshotter, Mutex<Totals>)> = OnceLock::new();
    let (snapshotter, totals) = RECORDER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this test binary");
        (snapshotter, Mutex::new(HashMap::new()))
    });
    let mut totals = totals.lock().unwrap();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let name = key.key().name().to_string();
        let labels = key
            .key()
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        let n = match value {
            DebugValue::Counter(n) => n,
            DebugValue::Histogram(values) => values.len() as u64,
            DebugValue::Gauge(_) => continue,
        };
        *totals.entry((name, labels)).or_default() += n;
    }
    totals
}

/// The total of the counter (or the number of values of the histogram)
/// `name` over the series whose labels include all of `labels`.
fn total(name: &str, labels: &[(&str, &str)]) -> u64 {
    totals()
        .iter()
        .filter(|((n, series), _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| series.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|(_, n)| n)
        .sum()
}

static CACHE: OnceLock<Cache> = OnceLock::new();

#[redcache::cached(ttl = 60, key = "product:<id>", tags = ["category:7"], cache = CACHE.get().unwrap())]
async fn product(id: u64) -> Result<String, std::io::Error> {
    Ok(format!("product {id}"))
}

#[tokio::test]
async fn cached_calls_invalidations_and_rate_limits_are_exported() {
    // Install the recorder before the cache counts anything.
    drop(totals());
    let cache = Cache::builder()
        .memory()
        .namespace("metrics-test")
        .build()
        .await
        .unwrap();
    CACHE.set(cache.clone()).unwrap();
    let call = [("namespace", "metrics-test"), ("name", "product:<id>")];
    let outcome = |o| [call[0], call[1], ("outcome", o)];

    product(1).await.unwrap(); // miss, load
    product(1).await.unwrap(); // hit, which fills the near cache (L1)
    product(1).await.unwrap(); // hit from L1
    assert_eq!(total("redcache_calls_total", &outcome("miss")), 1);
    assert_eq!(total("redcache_calls_total", &outcome("hit")), 1);
    assert_eq!(total("redcache_calls_total", &outcome("hit_l1")), 1);
    assert_eq!(total("redcache_loads_total", &call), 1);
    assert_eq!(total("redcache_load_duration_seconds", &call), 1);

    cache.invalidate_tag("category:7").await.unwrap();
    assert_eq!(
        total(
            "redcache_invalidations_total",
            &[("namespace", "metrics-test")]
        ),
        1
    );
    product(1).await.unwrap(); // stale, miss, load
    assert_eq!(total("redcache_stale_total", &call), 1);
    assert_eq!(total("redcache_calls_total", &outcome("miss")), 2);
    assert_eq!(total("redcache_loads_total", &call), 2);

    let limiter =
        RateLimiter::new(&cache, "search", [Policy::new(1, Duration::from_secs(60))]).unwrap();
    limiter.check("user:1").await.unwrap();
    limiter.check("user:1").await.unwrap_err(); // refused by the backend
    limiter.check("user:1").await.unwrap_err(); // refused from the remembered denial
    let result = |r| {
        [
            ("namespace", "metrics-test"),
            ("limiter", "search"),
            ("result", r),
        ]
    };
    assert_eq!(
        total("redcache_rate_limit_checks_total", &result("allowed")),
        1
    );
    assert_eq!(
        total("redcache_rate_limit_checks_total", &result("denied")),
        1
    );
    assert_eq!(
        total(
            "redcache_rate_limit_checks_total",
            &result("denied_locally")
        ),
        1
    );

    // The exported counters agree with `stats()` (whose hits count the
    // near cache's too).
    let stats = cache.stats();
    assert_eq!(
        (
            stats.hits,
            stats.near_hits,
            stats.misses,
            stats.loads,
            stats.stale
        ),
        (2, 1, 2, 2, 1)
    );
}

#[tokio::test]
async fn backend_failures_are_counted_by_operation() {
    // Install the recorder before the cache counts anything.
    drop(totals());
    // Nothing listens on this port: every read fails (and the call loads).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = Cache::builder()
        .redis(format!("redis://127.0.0.1:{port}"))
        .namespace("metrics-down")
        .build()
        .await
        .unwrap();
    let value: Result<u32, std::io::Error> = cache
        .get_or_load("k", Duration::from_secs(60), &[], || async { Ok(7) })
        .await;
    assert_eq!(value.unwrap(), 7);
    assert!(
        total(
            "redcache_backend_errors_total",
            &[("namespace", "metrics-down"), ("op", "read")]
        ) >= 1
    );
    assert_eq!(
        total(
            "redcache_calls_total",
            &[
                ("namespace", "metrics-down"),
                ("name", "get_or_load"),
                ("outcome", "miss")
            ]
        ),
        1
    );
}
