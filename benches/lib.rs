//! What the benches in `benches/` share: one tokio runtime, one
//! `redis-server` started on a free loopback port, the caches under test and
//! a raw redis-rs connection to the same server (the physical limit).
//!
//! ```text
//! cargo bench -p redcache-benches        # needs redis-server on PATH
//! python3 benches/report.py              # README table + benches/hit_throughput.png
//! ```
//!
//! Each bench binary compares its contenders side by side in one process
//! against one server, so their ratios hold even on a noisy machine.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use criterion::Criterion;
use redcache::Cache;
use redcache_suite::RedisServer;
use serde::{Deserialize, Serialize};

/// The concurrency levels of the hit-path benches (tasks in flight).
pub const CONCURRENCY: [usize; 4] = [1, 4, 16, 64];

/// The value the cached functions return: a small product record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub price_cents: u64,
}

pub fn product(id: u64) -> Product {
    Product {
        id,
        name: format!("desk lamp #{id}"),
        price_cents: 1999,
    }
}

/// The cached functions compared, shared by `hit` and `paired`.
pub mod contenders {
    use cached::proc_macro::concurrent_cached;

    use super::{bench, product, Product};

    #[redcache::cached(ttl = 600, key = "product:<id>", cache = &bench().redis)]
    pub async fn redcache_product(id: u64) -> Result<Product, String> {
        Ok(product(id))
    }

    /// The same fn, its entries in MessagePack.
    #[redcache::cached(ttl = 600, key = "msgpack:<id>", codec = "msgpack", cache = &bench().redis)]
    pub async fn redcache_product_msgpack(id: u64) -> Result<Product, String> {
        Ok(product(id))
    }

    /// A value of `size` bytes of text, in JSON entries and in MessagePack
    /// ones (the large-value hit).
    #[redcache::cached(ttl = 600, key = "payload:<size>", cache = &bench().redis)]
    pub async fn payload_json(size: usize) -> Result<String, String> {
        Ok("x".repeat(size))
    }

    #[redcache::cached(ttl = 600, key = "payload-msgpack:<size>", codec = "msgpack", cache = &bench().redis)]
    pub async fn payload_msgpack(size: usize) -> Result<String, String> {
        Ok("x".repeat(size))
    }

    /// The size of the large value: 1 MB, within the default 1 MiB
    /// `max_value_size` with its entry's header.
    pub const LARGE: usize = 1_000_000;

    #[redcache::cached(ttl = 600, key = "tagged:<id>", tags = ["category:7"], cache = &bench().redis)]
    pub async fn redcache_tagged(id: u64) -> Result<Product, String> {
        Ok(product(id))
    }

    /// The same fn on a cache with a near cache (L1) in front of Redis.
    #[redcache::cached(ttl = 600, key = "product:<id>", cache = &bench().near)]
    pub async fn near_product(id: u64) -> Result<Product, String> {
        Ok(product(id))
    }

    #[redcache::cached(ttl = 600, key = "tagged:<id>", tags = ["category:7"], cache = &bench().near)]
    pub async fn near_tagged(id: u64) -> Result<Product, String> {
        Ok(product(id))
    }

    #[redcache::cached(ttl = 600, key = "memory:<id>", cache = &bench().memory)]
    pub async fn memory_product(id: u64) -> Result<Product, String> {
        Ok(product(id))
    }

    #[concurrent_cached(
        redis = true,
        ttl_secs = 600,
        cache_prefix_block = r##"{ "bench-cached-crate" }"##,
        map_error = r##"|e| format!("{e:?}")"##
    )]
    pub async fn cached_crate_product(id: u64) -> Result<Product, String> {
        Ok(product(id))
    }

    /// Redis keys of the entry `product:1` and of the tagged entry and its
    /// tag's epoch (what a raw `GET` / `MGET` reads).
    pub const PRODUCT_ENTRY: &str = "bench:v:product:1";
    pub const PRODUCT_MSGPACK_ENTRY: &str = "bench:v:msgpack:1";
    /// `product(1)` as bare MessagePack (maps), no entry around it: what
    /// [`raw_get_and_decode_msgpack`] reads.
    pub const PRODUCT_MSGPACK_RAW: &str = "bench:raw:msgpack:1";
    /// The [`LARGE`] string as bare MessagePack.
    pub const LARGE_MSGPACK_RAW: &str = "bench:raw:payload-msgpack";
    pub const TAGGED_KEYS: [&str; 2] = ["bench:v:tagged:1", "bench:tag:category:7"];

    /// A stored entry as redcache writes it (see `redcache/src/entry.rs`):
    /// what a raw read must decode to be a cache hit at all.
    #[derive(serde::Deserialize)]
    pub struct Entry {
        pub v: u8,
        pub at: u64,
        pub tags: Vec<(String, u64)>,
        pub value: Product,
    }

    /// A raw `GET` of `product:1` and a `serde_json` decode of its entry:
    /// the limit for any cache whose values are JSON.
    pub async fn raw_get_and_decode() -> Product {
        let bytes = bench().raw_get(PRODUCT_ENTRY).await.expect("stored");
        let entry: Entry = serde_json::from_slice(&bytes).expect("an entry");
        assert_eq!(entry.v, 3);
        entry.value
    }

    /// A raw `GET` of bare MessagePack and its decode: the least any cache
    /// of MessagePack values over Redis does for a hit.
    pub async fn raw_get_and_decode_msgpack() -> Product {
        let bytes = bench().raw_get(PRODUCT_MSGPACK_RAW).await.expect("stored");
        rmp_serde::from_slice(&bytes).expect("MessagePack")
    }

    /// The same for the [`LARGE`] string.
    pub async fn raw_get_and_decode_large_msgpack() -> String {
        let bytes = bench().raw_get(LARGE_MSGPACK_RAW).await.expect("stored");
        rmp_serde::from_slice(&bytes).expect("MessagePack")
    }

    /// The rate-limit script, as redcache runs it.
    pub fn rate_limit_script() -> redis::Script {
        redis::Script::new(include_str!("../redcache/src/scripts/rate_limit.lua"))
    }

    /// One check of `policy` on `key`, through a raw `EVALSHA` with the
    /// arguments redcache passes for it. Panics unless allowed.
    pub async fn raw_rate_limit_check(script: &redis::Script, key: &str, policy: redcache::Policy) {
        let mut invocation = script.key(key);
        for arg in redcache::__private::rate_limit_script_args(&[policy], 1, false) {
            invocation.arg(arg);
        }
        let mut conn = bench().raw.clone();
        let reply: Vec<i64> = invocation.invoke_async(&mut conn).await.unwrap();
        assert_eq!(reply.get(1), Some(&1), "allowed");
    }

    /// Caches every contender's value, and checks the raw reads find them.
    pub async fn warm() {
        redcache_product(1).await.unwrap();
        redcache_product_msgpack(1).await.unwrap();
        assert_eq!(payload_json(LARGE).await.unwrap().len(), LARGE);
        assert_eq!(payload_msgpack(LARGE).await.unwrap().len(), LARGE);
        redcache_tagged(1).await.unwrap();
        memory_product(1).await.unwrap();
        cached_crate_product(1).await.unwrap();
        // Until a read fills L1: the first fill after the entry was stored
        // may be dropped by that store's own invalidation.
        for _ in 0..1000 {
            let hits = bench().near.stats().near_hits;
            near_product(1).await.unwrap();
            near_tagged(1).await.unwrap();
            if bench().near.stats().near_hits >= hits + 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        assert_eq!(bench().near.stats().near, redcache::NearStatus::Tracking);
        let mut conn = bench().raw.clone();
        for (key, bare) in [
            (PRODUCT_MSGPACK_RAW, rmp_serde::to_vec_named(&product(1))),
            (
                LARGE_MSGPACK_RAW,
                rmp_serde::to_vec_named(&"x".repeat(LARGE)),
            ),
        ] {
            let () = redis::cmd("SET")
                .arg(key)
                .arg(bare.expect("encodes"))
                .arg("EX")
                .arg(3600)
                .query_async(&mut conn)
                .await
                .expect("SET the bare MessagePack");
        }
        for key in [
            PRODUCT_ENTRY.to_string(),
            PRODUCT_MSGPACK_ENTRY.to_string(),
            PRODUCT_MSGPACK_RAW.to_string(),
            LARGE_MSGPACK_RAW.to_string(),
            bench().entry_key(&format!("payload:{LARGE}")),
            bench().entry_key(&format!("payload-msgpack:{LARGE}")),
        ] {
            assert!(
                bench().raw_get(&key).await.is_some(),
                "the raw GET must read the bytes redcache stored under {key}"
            );
        }
    }
}

/// The server and the clients every contender uses.
pub struct Bench {
    /// Taken out and stopped by [`StopServerOnExit`]: statics are never
    /// dropped, and a server left behind would skew the next bench.
    server: Mutex<Option<RedisServer>>,
    url: String,
    /// redcache on the bench's redis-server, namespace `bench`.
    pub redis: Cache,
    /// redcache on the same server with a near cache, namespace `benchnear`.
    pub near: Cache,
    /// redcache's embedded backend.
    pub memory: Cache,
    /// A plain redis-rs connection (the same kind redcache uses).
    pub raw: redis::aio::ConnectionManager,
}

impl Bench {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The Redis key under which redcache stores the entry of `key`.
    pub fn entry_key(&self, key: &str) -> String {
        format!("bench:v:{key}")
    }

    /// A raw `GET` of `key`, on the raw connection.
    pub async fn raw_get(&self, key: &str) -> Option<Vec<u8>> {
        let mut conn = self.raw.clone();
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("raw GET")
    }

    /// A raw `MGET` of `keys`, on the raw connection.
    pub async fn raw_mget(&self, keys: &[&str]) -> Vec<Option<Vec<u8>>> {
        let mut conn = self.raw.clone();
        redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .expect("raw MGET")
    }
}

/// One multi-threaded runtime (2 workers) for every bench: the connections
/// live on it.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

static BENCH: OnceLock<Bench> = OnceLock::new();

/// Starts the server and connects the clients, once per process.
pub fn bench() -> &'static Bench {
    BENCH.get_or_init(|| {
        let server = RedisServer::start();
        // The cached crate reads its connection string from the environment.
        std::env::set_var("CACHED_REDIS_CONNECTION_STRING", server.url());
        runtime().block_on(async {
            let redis = Cache::builder()
                .redis(server.url())
                .namespace("bench")
                // The invalidation bench fills a million keys; a generous
                // timeout keeps a slow moment from turning a hit into a load.
                .op_timeout(Duration::from_millis(500))
                .build()
                .await
                .expect("redis cache");
            let near = Cache::builder()
                .redis(server.url())
                .namespace("benchnear")
                .near_cache(redcache::NearCache::new())
                .build()
                .await
                .expect("near cache");
            for _ in 0..500 {
                if near.stats().near == redcache::NearStatus::Tracking {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let memory = Cache::builder()
                .memory()
                .namespace("bench")
                .build()
                .await
                .expect("memory cache");
            let raw = redis::aio::ConnectionManager::new(
                redis::Client::open(server.url()).expect("redis url"),
            )
            .await
            .expect("raw connection");
            Bench {
                url: server.url(),
                server: Mutex::new(Some(server)),
                redis,
                near,
                memory,
                raw,
            }
        })
    })
}

/// Calls of each task per iteration when several run at once, so that
/// spawning them weighs little against the calls measured.
pub const CALLS_PER_TASK: usize = 8;

/// The calls one iteration of a concurrency level makes.
pub fn calls(tasks: usize) -> u64 {
    if tasks == 1 {
        1
    } else {
        (tasks * CALLS_PER_TASK) as u64
    }
}

/// One iteration at `tasks` concurrency: a single call inline for one task;
/// otherwise `tasks` spawned tasks making [`CALLS_PER_TASK`] calls each.
pub async fn in_tasks<F, Fut>(tasks: usize, call: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    if tasks == 1 {
        return call().await;
    }
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                for _ in 0..CALLS_PER_TASK {
                    call().await;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("bench task");
    }
}

/// Writes `contents` to `<criterion home>/<name>`: the figures criterion
/// has no place for, next to its own, for `report.py`.
pub fn write_result(name: &str, contents: &str) {
    let path = criterion_home().join(name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("criterion directory");
    }
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Stops the bench's redis-server when dropped: hold one in `main`, so the
/// server ends with the bench even when a bench panics.
pub struct StopServerOnExit;

impl Drop for StopServerOnExit {
    fn drop(&mut self) {
        if let Some(bench) = BENCH.get() {
            let server = bench
                .server
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            drop(server);
        }
    }
}

/// `criterion_main!`, holding a [`StopServerOnExit`] while the groups run.
#[macro_export]
macro_rules! bench_main {
    ($($group:path),+ $(,)?) => {
        fn main() {
            let _stop = $crate::StopServerOnExit;
            $($group();)+
            ::criterion::Criterion::default()
                .configure_from_args()
                .final_summary();
        }
    };
}

/// The criterion settings of every bench: short, since each group compares
/// its contenders in one run.
pub fn criterion() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

/// Where criterion writes its results (and where the benches add the
/// figures criterion has no place for, such as loads per stampede).
pub fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}
