//! One hot key under load: 64 tasks read it for 10 s (ttl 1 s, a 50 ms
//! load), with plain cache-aside, with `early_refresh`, and with `stale`,
//! beside a key that never expires (the plain hit). Prints the call
//! latencies (p50, p99, max), the loads, and the worst call of each 500 ms
//! of the run.
//!
//! ```text
//! cargo run --release --example hot_key   # needs redis-server on PATH
//! cargo run --release --example hot_key -- 5   # seconds per mode
//! ```

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use redcache::Cache;
use redcache_suite::RedisServer;

static CACHE: OnceLock<Cache> = OnceLock::new();
static LOADS: AtomicU64 = AtomicU64::new(0);

fn cache() -> &'static Cache {
    CACHE.get().expect("set in main")
}

async fn load() -> u64 {
    LOADS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    42
}

#[redcache::cached(ttl = 600, key = "hit", cache = cache())]
async fn plain_hit() -> u64 {
    load().await
}

#[redcache::cached(ttl = 1, key = "aside", cache = cache())]
async fn cache_aside() -> u64 {
    load().await
}

#[redcache::cached(ttl = 1, key = "early", early_refresh = true, cache = cache())]
async fn early_refresh() -> u64 {
    load().await
}

#[redcache::cached(ttl = 1, key = "stale", stale = "1s", cache = cache())]
async fn stale() -> u64 {
    load().await
}

#[derive(Clone, Copy)]
enum Mode {
    Hit,
    Aside,
    Early,
    Stale,
}

impl Mode {
    async fn call(self) -> u64 {
        match self {
            Mode::Hit => plain_hit().await,
            Mode::Aside => cache_aside().await,
            Mode::Early => early_refresh().await,
            Mode::Stale => stale().await,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Hit => "plain hit (ttl 600 s)",
            Mode::Aside => "cache-aside",
            Mode::Early => "early_refresh = true",
            Mode::Stale => "stale = \"1s\"",
        }
    }
}

/// Every call's (start since the run began, latency), in µs.
async fn run(mode: Mode, secs: u64) -> (Vec<(u64, u64)>, u64) {
    mode.call().await; // the first load, outside the figures
    LOADS.store(0, SeqCst);
    let began = Instant::now();
    let until = began + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            tokio::spawn(async move {
                let mut calls = Vec::new();
                while Instant::now() < until {
                    let start = Instant::now();
                    assert_eq!(mode.call().await, 42);
                    let at = start.duration_since(began).as_micros() as u64;
                    calls.push((at, start.elapsed().as_micros() as u64));
                }
                calls
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a task"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    (all, LOADS.load(SeqCst))
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: u64 = std::env::args().nth(1).map_or(Ok(10), |s| s.parse())?;
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .namespace("hot")
        .build()
        .await?;
    CACHE.set(cache).map_err(|_| "set twice")?;
    println!("64 tasks, one key, ttl 1 s, a 50 ms load, {secs} s per mode; latencies in µs\n");
    println!("| mode | calls | p50 | p99 | max | loads |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut timelines = Vec::new();
    for mode in [Mode::Hit, Mode::Aside, Mode::Early, Mode::Stale] {
        let (calls, loads) = run(mode, secs).await;
        let mut latencies: Vec<u64> = calls.iter().map(|(_, l)| *l).collect();
        latencies.sort_unstable();
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            mode.name(),
            latencies.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or(0),
            loads
        );
        let buckets = (secs * 2) as usize;
        let mut worst = vec![0u64; buckets];
        for (at, latency) in &calls {
            let bucket = ((at / 500_000) as usize).min(buckets - 1);
            worst[bucket] = worst[bucket].max(*latency);
        }
        timelines.push((mode, worst));
    }
    println!("\nThe worst call of each 500 ms (ms), over the run:\n");
    for (mode, worst) in &timelines {
        let cells: Vec<String> = worst
            .iter()
            .map(|us| format!("{:>3}", (*us + 500) / 1_000))
            .collect();
        println!("{:<22} {}", mode.name(), cells.join(" "));
    }
    Ok(())
}
