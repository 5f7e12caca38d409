//! The quick start: a cached "database" call, a hit, an invalidation.
//!
//! ```text
//! cargo run --example quickstart                                   # embedded backend, no server
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example quickstart  # on Redis (or REDCACHE_URL)
//! ```

use std::time::{Duration, Instant};

use redcache::Cache;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    category_id: u64,
}

#[derive(Debug)]
struct DbError;

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the database failed")
    }
}

impl std::error::Error for DbError {}

/// Stands for a slow query.
#[redcache::cached(ttl = 300, key = "product:<id>", tags = ["category:<category_id>"])]
async fn get_product(id: u64, category_id: u64) -> Result<Product, DbError> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(Product {
        id,
        name: format!("desk lamp #{id}"),
        category_id,
    })
}

async fn timed(cache: &Cache, what: &str) -> Result<(), DbError> {
    let loads_before = cache.stats().loads;
    let started = Instant::now();
    let product = get_product(42, 7).await?;
    let elapsed = started.elapsed();
    let outcome = if cache.stats().loads > loads_before {
        "miss"
    } else {
        "hit "
    };
    println!(
        "{outcome}  get_product(42, 7) = {:<14} {:>8.2} ms   ({what})",
        product.name,
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = Cache::builder()
        .url_from_env() // REDCACHE_URL, else REDIS_URL, else the embedded backend
        .namespace("quickstart")
        .build()
        .await?;
    redcache::set_global(cache.clone());
    println!("backend: {cache:?}\n");

    // Start clean, in case an earlier run left the entry in Redis.
    let id = 42;
    redcache::invalidate_key(&redcache::key!("product:<id>")).await?;

    timed(&cache, "first call runs the query").await?;
    timed(&cache, "served from the cache").await?;
    redcache::invalidate_tag("category:7").await?;
    println!("      invalidate_tag(\"category:7\")");
    timed(&cache, "the tag was invalidated").await?;
    timed(&cache, "cached again").await?;

    let stats = cache.stats();
    println!(
        "\nstats: {} hits, {} misses, {} loads, {} invalidations",
        stats.hits, stats.misses, stats.loads, stats.invalidations
    );
    Ok(())
}
