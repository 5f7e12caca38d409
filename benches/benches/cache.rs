//! redcache against the physical limit and its peers, side by side in one
//! process against one redis-server this bench starts on a free port.
//!
//! ```text
//! cargo bench -p redcache-benches            # needs redis-server on PATH
//! ```
//!
//! Compare the ratios more than the absolute figures: machines are noisy,
//! ratios measured in one run hold better.

use std::sync::OnceLock;
use std::time::Duration;

use cached::proc_macro::concurrent_cached;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use redcache::{Algorithm, Cache, Policy, RateLimiter};
use redcache_suite::RedisServer;
use serde::{Deserialize, Serialize};

const TASKS: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u64,
}

fn product(id: u64) -> Product {
    Product {
        id,
        name: format!("desk lamp #{id}"),
        price_cents: 1999,
    }
}

struct Setup {
    _server: RedisServer,
    redis: Cache,
    memory: Cache,
    raw: redis::aio::ConnectionManager,
    raw_key: String,
}

static SETUP: OnceLock<Setup> = OnceLock::new();

/// One runtime for every bench: the connections live on it.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn setup(rt: &'static tokio::runtime::Runtime) -> &'static Setup {
    SETUP.get_or_init(|| {
        let server = RedisServer::start();
        // The cached crate reads its connection string from the environment.
        std::env::set_var("CACHED_REDIS_CONNECTION_STRING", server.url());
        rt.block_on(async {
            let redis = Cache::builder()
                .redis(server.url())
                .namespace("bench")
                .build()
                .await
                .unwrap();
            let memory = Cache::builder()
                .memory()
                .namespace("bench")
                .build()
                .await
                .unwrap();
            let raw =
                redis::aio::ConnectionManager::new(redis::Client::open(server.url()).unwrap())
                    .await
                    .unwrap();
            Setup {
                _server: server,
                redis,
                memory,
                raw,
                raw_key: "bench:v:product:1".into(),
            }
        })
    })
}

#[redcache::cached(ttl = 600, key = "product:<id>", cache = setup_cache())]
async fn redcache_product(id: u64) -> Result<Product, String> {
    Ok(product(id))
}

#[redcache::cached(ttl = 600, key = "tagged:<id>", tags = ["category:7"], cache = setup_cache())]
async fn redcache_tagged(id: u64) -> Result<Product, String> {
    Ok(product(id))
}

#[redcache::cached(ttl = 600, key = "memory:<id>", cache = setup_memory())]
async fn memory_product(id: u64) -> Result<Product, String> {
    Ok(product(id))
}

#[concurrent_cached(
    redis = true,
    ttl_secs = 600,
    cache_prefix_block = r##"{ "bench-cached-crate" }"##,
    map_error = r##"|e| format!("{e:?}")"##
)]
async fn cached_crate_product(id: u64) -> Result<Product, String> {
    Ok(product(id))
}

fn setup_cache() -> &'static Cache {
    &SETUP.get().expect("setup first").redis
}

fn setup_memory() -> &'static Cache {
    &SETUP.get().expect("setup first").memory
}

async fn raw_get(conn: &redis::aio::ConnectionManager, key: &str) -> Vec<u8> {
    let mut conn = conn.clone();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

fn hit_path(c: &mut Criterion) {
    let rt = runtime();
    let s = setup(rt);
    rt.block_on(async {
        redcache_product(1).await.unwrap();
        redcache_tagged(1).await.unwrap();
        memory_product(1).await.unwrap();
        cached_crate_product(1).await.unwrap();
        assert!(
            !raw_get(&s.raw, &s.raw_key).await.is_empty(),
            "the raw GET reads the same bytes redcache stores"
        );
    });
    let moka: moka::future::Cache<u64, Product> = moka::future::Cache::new(1000);
    rt.block_on(moka.insert(1, product(1)));

    for tasks in [1, TASKS] {
        let mut group = c.benchmark_group(format!("hit/{tasks}_tasks"));
        group.throughput(Throughput::Elements(tasks as u64));
        let run = |f: fn() -> futures::future::BoxFuture<'static, ()>| async move {
            futures::future::join_all((0..tasks).map(|_| tokio::spawn(f()))).await;
        };
        group.bench_function("raw_redis_get", |b| {
            b.to_async(rt).iter(|| {
                run(|| {
                    Box::pin(async {
                        raw_get(&SETUP.get().unwrap().raw, &SETUP.get().unwrap().raw_key).await;
                    })
                })
            })
        });
        group.bench_function("redcache", |b| {
            b.to_async(rt).iter(|| {
                run(|| {
                    Box::pin(async {
                        redcache_product(1).await.unwrap();
                    })
                })
            })
        });
        group.bench_function("redcache_tagged", |b| {
            b.to_async(rt).iter(|| {
                run(|| {
                    Box::pin(async {
                        redcache_tagged(1).await.unwrap();
                    })
                })
            })
        });
        group.bench_function("cached_crate", |b| {
            b.to_async(rt).iter(|| {
                run(|| {
                    Box::pin(async {
                        cached_crate_product(1).await.unwrap();
                    })
                })
            })
        });
        group.bench_function("redcache_memory", |b| {
            b.to_async(rt).iter(|| {
                run(|| {
                    Box::pin(async {
                        memory_product(1).await.unwrap();
                    })
                })
            })
        });
        group.finish();
    }
    let mut group = c.benchmark_group("hit/memory_vs_moka");
    group.bench_function("moka_get", |b| {
        b.to_async(rt)
            .iter(|| async { moka.get(&1).await.unwrap() })
    });
    group.bench_function("redcache_memory", |b| {
        b.to_async(rt)
            .iter(|| async { memory_product(1).await.unwrap() })
    });
    group.finish();
}

fn rate_limit(c: &mut Criterion) {
    let rt = runtime();
    let s = setup(rt);
    let mut group = c.benchmark_group("rate_limit/check");
    let script = redis::Script::new(include_str!("../../redcache/src/scripts/rate_limit.lua"));
    for algorithm in [
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
        Algorithm::Gcra,
    ] {
        let limiter = RateLimiter::new(
            &s.redis,
            "bench",
            [Policy::new(u64::MAX / 4, Duration::from_secs(60)).algorithm(algorithm)],
        )
        .unwrap();
        group.bench_function(BenchmarkId::new("redcache", algorithm.name()), |b| {
            b.to_async(rt)
                .iter(|| async { limiter.check("user:1").await.unwrap() })
        });
        // The same script, called directly with redis-rs: the limit for one check.
        let code = [
            Algorithm::SlidingLog,
            Algorithm::SlidingWindow,
            Algorithm::FixedWindow,
            Algorithm::Gcra,
        ]
        .iter()
        .position(|a| *a == algorithm)
        .unwrap()
            + 1;
        let key = format!("bench:raw:{{user:1}}:{}", algorithm.name());
        group.bench_function(BenchmarkId::new("raw_evalsha", algorithm.name()), |b| {
            b.to_async(rt).iter(|| {
                let (script, key, mut conn) = (&script, key.clone(), s.raw.clone());
                async move {
                    let mut call = script.key(key);
                    call.arg("consume")
                        .arg(1)
                        .arg(code)
                        .arg(u64::MAX / 4)
                        .arg(60_000_000u64)
                        .arg(u64::MAX / 4);
                    let _: Vec<i64> = call.invoke_async(&mut conn).await.unwrap();
                }
            })
        });
    }
    group.finish();
}

fn invalidation(c: &mut Criterion) {
    let rt = runtime();
    let s = setup(rt);
    let mut group = c.benchmark_group("invalidate_tag");
    group.sample_size(20);
    for keys in [10u64, 10_000] {
        let tag = format!("many:{keys}");
        rt.block_on(async {
            for id in 0..keys {
                s.redis
                    .get_or_load(
                        &format!("inv:{keys}:{id}"),
                        Duration::from_secs(600),
                        &[tag.as_str()],
                        || async { Ok::<_, String>(id) },
                    )
                    .await
                    .unwrap();
            }
        });
        group.bench_with_input(BenchmarkId::from_parameter(keys), &tag, |b, tag| {
            b.to_async(rt)
                .iter(|| async { s.redis.invalidate_tag(tag).await.unwrap() })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = hit_path, rate_limit, invalidation
}
criterion_main!(benches);
