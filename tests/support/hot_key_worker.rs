//! One process of the cross-process early-refresh test: reads one hot key
//! (ttl 1 s, a 50 ms load, `early_refresh` and `stale`) from a common start
//! time for a while, then prints what it saw:
//! `CALLS <n> MISSES <calls that found no usable entry> LOADS <loads run here>`.
//!
//! Usage: hot-key-worker REDIS_URL NAMESPACE START_AT_UNIX_MS RUN_MS

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redcache::Cache;

static LOADS: AtomicU64 = AtomicU64::new(0);

#[redcache::cached(ttl = 1, key = "hot", early_refresh = true, stale = "1s", cache = cache, ignore = [cache])]
async fn hot(cache: &Cache) -> u64 {
    LOADS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    42
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, namespace, start_at, run_ms] = args.as_slice() else {
        eprintln!("usage: hot-key-worker REDIS_URL NAMESPACE START_AT_UNIX_MS RUN_MS");
        std::process::exit(2);
    };
    let cache = Cache::builder()
        .redis(url.as_str())
        .namespace(namespace.as_str())
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("cache");
    let start_at: u128 = start_at.parse().expect("START_AT_UNIX_MS");
    let run = Duration::from_millis(run_ms.parse().expect("RUN_MS"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    tokio::time::sleep(Duration::from_millis(start_at.saturating_sub(now) as u64)).await;
    let began = Instant::now();
    let mut calls = 0u64;
    while began.elapsed() < run {
        assert_eq!(hot(&cache).await, 42, "a wrong value");
        calls += 1;
        // Leave the two cores to the other processes now and then.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Let a refresh this process started finish and be counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = cache.stats();
    println!(
        "CALLS {calls} MISSES {} LOADS {}",
        stats.misses,
        LOADS.load(SeqCst)
    );
}
