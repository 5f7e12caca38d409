//! One reader process of the near-cache consistency test
//! (tests/near_consistency.rs): reads one tagged key through a cache with
//! a near cache, for a while, and checks every value against the version
//! floor the writer published when its invalidation returned.
//!
//! The writer bumps a version in the "database" (another redis-server),
//! invalidates the tag, and then writes `FLOOR UNIX_NS` to the floor file
//! (atomically, by rename). A value older than the floor read *before* the
//! call is a stale read; how long after the floor's time it was returned
//! is the staleness window of that invalidation in this process.
//!
//! Prints one line: `READS <n> NEAR_HITS <n> STALE <n> WINDOWS <ns,ns,...>`
//! (WINDOWS: per invalidation this process served stale after, the time
//! from its return to the last stale read).
//!
//! Usage: near-worker CACHE_URL DB_URL NAMESPACE FLOOR_FILE RUN_MS
//! (CACHE_URL as `CacheBuilder::url` reads it: a comma-separated list is
//! a cluster)

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redcache::{Cache, NearCache};

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The floor and the time it was published, or (0, 0) before the first.
fn floor(path: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut parts = text
        .split_whitespace()
        .map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cache_url, db_url, namespace, floor_file, run_ms] = args.as_slice() else {
        eprintln!("usage: near-worker CACHE_URL DB_URL NAMESPACE FLOOR_FILE RUN_MS");
        std::process::exit(2);
    };
    let cache = Cache::builder()
        .url(cache_url.as_str())
        .namespace(namespace.as_str())
        .near_cache(NearCache::new().check_interval(Duration::from_millis(200)))
        .build()
        .await
        .expect("cache");
    let db = redis::Client::open(db_url.as_str()).expect("db url");
    let db = db.get_multiplexed_async_connection().await.expect("db");
    let run = Duration::from_millis(run_ms.parse().expect("RUN_MS"));
    let began = Instant::now();
    let (mut reads, mut stale) = (0u64, 0u64);
    // Per floor this process read stale after: the longest time after its
    // publication it still did.
    let mut windows: BTreeMap<u64, u64> = BTreeMap::new();
    while began.elapsed() < run {
        let (floor, published_ns) = floor(floor_file);
        let version: u64 = cache
            .get_or_load("item", Duration::from_secs(60), &["items"], || {
                let mut db = db.clone();
                async move {
                    redis::cmd("GET")
                        .arg("version")
                        .query_async::<Option<u64>>(&mut db)
                        .await
                        .map(Option::unwrap_or_default)
                }
            })
            .await
            .unwrap_or(u64::MAX);
        reads += 1;
        if version < floor {
            stale += 1;
            let window = now_ns().saturating_sub(published_ns);
            let longest = windows.entry(floor).or_default();
            *longest = (*longest).max(window);
        }
        // A service awaits I/O between requests, and leaves the CPU now
        // and then; so does this loop (two cores run four processes).
        if reads % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    let windows: Vec<String> = windows.values().map(u64::to_string).collect();
    println!(
        "READS {reads} NEAR_HITS {} STALE {stale} WINDOWS {}",
        cache.stats().near_hits,
        windows.join(",")
    );
}
