//! Where a cache hit's instructions go, for callgrind: one task makes
//! 2 100 raw redis-rs GETs of a stored MessagePack entry and 2 100
//! `#[cached(codec = "msgpack")]` hits of it, in two functions that
//! callgrind can count apart (the connection's driver task, the same for
//! both, is left out).
//!
//! ```text
//! cargo build --release --example hit_profile   # needs redis-server on PATH
//! valgrind --tool=callgrind --toggle-collect='*hit_loop*' --toggle-collect='*raw_loop*' \
//!     target/release/examples/hit_profile
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | grep -E 'hit_loop|raw_loop'
//! ```

use std::sync::OnceLock;

use redcache::Cache;
use redcache_suite::RedisServer;

static CACHE: OnceLock<Cache> = OnceLock::new();

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u64,
}

#[redcache::cached(ttl = 600, key = "p:<id>", codec = "msgpack", cache = CACHE.get().expect("set in main"))]
async fn hit(id: u64) -> Result<Product, String> {
    Ok(Product {
        id,
        name: format!("desk lamp #{id}"),
        price_cents: 1999,
    })
}

#[inline(never)]
async fn hit_loop(n: u32) {
    for _ in 0..n {
        std::hint::black_box(hit(1).await.expect("a hit"));
    }
}

#[inline(never)]
async fn raw_loop(conn: &mut redis::aio::ConnectionManager, n: u32) {
    for _ in 0..n {
        let bytes: Vec<u8> = redis::cmd("GET")
            .arg("probe:v:p:1")
            .query_async(conn)
            .await
            .expect("a raw GET");
        std::hint::black_box(bytes);
    }
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
    // Warm both paths, then the measured calls.
    raw_loop(&mut conn, 100).await;
    hit_loop(100).await;
    raw_loop(&mut conn, 2000).await;
    hit_loop(2000).await;
    Ok(())
}
