//! The miss path: a miss that loads and writes, one call at a time; and a
//! stampede of 200 concurrent callers on one cold key, where redcache runs
//! one load and the `cached` crate one per caller.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cached::proc_macro::concurrent_cached;
use criterion::{criterion_group, BenchmarkId, Criterion};
use redcache_benches::{bench, criterion, product, runtime, write_result, Product};

/// Keys never used before, so that every call misses.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn fresh_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// How long the stampede's loader takes: a database query, say.
const LOAD_TIME: Duration = Duration::from_millis(5);
const CALLERS: usize = 200;

static REDCACHE_LOADS: AtomicU64 = AtomicU64::new(0);
static CACHED_CRATE_LOADS: AtomicU64 = AtomicU64::new(0);

#[redcache::cached(ttl = 60, key = "miss:<id>", cache = &bench().redis)]
async fn redcache_miss(id: u64) -> Result<Product, String> {
    Ok(product(id))
}

#[concurrent_cached(
    redis = true,
    ttl_secs = 60,
    cache_prefix_block = r##"{ "bench-cached-crate-miss" }"##,
    map_error = r##"|e| format!("{e:?}")"##
)]
async fn cached_crate_miss(id: u64) -> Result<Product, String> {
    Ok(product(id))
}

#[redcache::cached(ttl = 60, key = "stampede:<id>", cache = &bench().redis)]
async fn redcache_slow(id: u64) -> Result<Product, String> {
    REDCACHE_LOADS.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(LOAD_TIME).await;
    Ok(product(id))
}

#[concurrent_cached(
    redis = true,
    ttl_secs = 60,
    cache_prefix_block = r##"{ "bench-cached-crate-stampede" }"##,
    map_error = r##"|e| format!("{e:?}")"##
)]
async fn cached_crate_slow(id: u64) -> Result<Product, String> {
    CACHED_CRATE_LOADS.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(LOAD_TIME).await;
    Ok(product(id))
}

fn miss(c: &mut Criterion) {
    let rt = runtime();
    let b = bench();
    let mut group = c.benchmark_group("miss");
    let loads = b.redis.stats().loads;
    let mut calls = 0;
    group.bench_function("redcache", |bencher| {
        bencher.to_async(rt).iter(|| {
            calls += 1;
            async { redcache_miss(fresh_id()).await.unwrap() }
        })
    });
    assert_eq!(
        b.redis.stats().loads - loads,
        calls,
        "every measured call must be a miss that loads"
    );
    group.bench_function("cached_crate", |bencher| {
        bencher
            .to_async(rt)
            .iter(|| async { cached_crate_miss(fresh_id()).await.unwrap() })
    });
    group.finish();
}

/// 200 callers of one cold key at once; reports wall time per stampede and
/// writes the loads per stampede to `<criterion home>/stampede/loads.json`.
fn stampede(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("stampede");
    group.sample_size(10);
    let mut loads = Vec::new();
    for (name, counter, call) in [
        ("redcache", &REDCACHE_LOADS, redcache_call as fn(u64) -> _),
        ("cached_crate", &CACHED_CRATE_LOADS, cached_crate_call),
    ] {
        let stampedes = AtomicU64::new(0);
        counter.store(0, Ordering::Relaxed);
        group.bench_function(BenchmarkId::new(name, CALLERS), |bencher| {
            bencher.to_async(rt).iter(|| {
                stampedes.fetch_add(1, Ordering::Relaxed);
                let id = fresh_id();
                async move {
                    let callers: Vec<_> = (0..CALLERS).map(|_| tokio::spawn(call(id))).collect();
                    for caller in callers {
                        caller.await.expect("caller");
                    }
                }
            })
        });
        let per_stampede =
            counter.load(Ordering::Relaxed) as f64 / stampedes.load(Ordering::Relaxed) as f64;
        println!("stampede/{name}: {per_stampede:.2} loads per {CALLERS} concurrent callers");
        loads.push(format!("\"{name}\": {per_stampede:.2}"));
    }
    group.finish();
    write_result(
        "stampede/loads.json",
        &format!("{{ \"callers\": {CALLERS}, {} }}\n", loads.join(", ")),
    );
}

fn redcache_call(id: u64) -> futures::future::BoxFuture<'static, ()> {
    Box::pin(async move {
        redcache_slow(id).await.unwrap();
    })
}

fn cached_crate_call(id: u64) -> futures::future::BoxFuture<'static, ()> {
    Box::pin(async move {
        cached_crate_slow(id).await.unwrap();
    })
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = miss, stampede
}
redcache_benches::bench_main!(benches);
