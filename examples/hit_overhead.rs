//! The cost redcache adds to a cache hit on Redis, measured without a
//! benchmark harness in between: one task alternates batches of raw
//! redis-rs GETs of the stored bytes and `#[cached]` hits of the same key,
//! so machine noise hits both alike.
//!
//! ```text
//! cargo run --release --example hit_overhead   # needs redis-server on PATH
//! ```

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use redcache::Cache;
use redcache_suite::RedisServer;

static CACHE: OnceLock<Cache> = OnceLock::new();

#[redcache::cached(ttl = 600, key = "p:<id>", cache = CACHE.get().expect("set in main"))]
async fn hit(id: u64) -> Result<String, String> {
    Ok(format!("value {id}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .namespace("probe")
        .build()
        .await?;
    CACHE.set(cache).map_err(|_| "set twice")?;
    hit(1).await?;
    let mut conn = redis::aio::ConnectionManager::new(redis::Client::open(server.url())?).await?;
    let (mut raw, mut ours) = (Duration::ZERO, Duration::ZERO);
    const BATCH: u32 = 500;
    const ROUNDS: u32 = 20;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..BATCH {
            let _: Vec<u8> = redis::cmd("GET")
                .arg("probe:v:p:1")
                .query_async(&mut conn)
                .await?;
        }
        raw += started.elapsed();
        let started = Instant::now();
        for _ in 0..BATCH {
            hit(1).await?;
        }
        ours += started.elapsed();
    }
    let (raw, ours) = (raw / (BATCH * ROUNDS), ours / (BATCH * ROUNDS));
    println!(
        "raw GET {raw:?}/op, #[cached] hit {ours:?}/op: {:.3}x the raw throughput",
        raw.as_secs_f64() / ours.as_secs_f64()
    );
    Ok(())
}
