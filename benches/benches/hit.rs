//! The hit path: a `#[cached]` hit on Redis against a raw redis-rs `GET` of
//! the same bytes (the physical limit) and the `cached` crate's
//! `#[concurrent_cached(redis = true)]`, at 1 to 64 tasks; a tagged hit
//! against a raw `MGET` of the entry and the tag's epoch; and
//! the embedded backend against a bare moka `get`.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use redcache_benches::contenders::{
    cached_crate_product, memory_product, redcache_product, redcache_tagged, warm, PRODUCT_ENTRY,
    TAGGED_KEYS,
};
use redcache_benches::{bench, calls, criterion, in_tasks, product, runtime, Product, CONCURRENCY};

fn hit(c: &mut Criterion) {
    let rt = runtime();
    let b = bench();
    rt.block_on(warm());
    let loads_before = b.redis.stats().loads;

    let mut group = c.benchmark_group("hit");
    for tasks in CONCURRENCY {
        group.throughput(Throughput::Elements(calls(tasks)));
        group.bench_function(BenchmarkId::new("raw_get", tasks), |bencher| {
            bencher.to_async(rt).iter(|| {
                in_tasks(tasks, || async {
                    bench().raw_get(PRODUCT_ENTRY).await;
                })
            })
        });
        // A tagged hit reads the entry and its tag's epoch: one MGET is the
        // least a Redis-backed tagged hit can cost.
        group.bench_function(BenchmarkId::new("raw_mget", tasks), |bencher| {
            bencher.to_async(rt).iter(|| {
                in_tasks(tasks, || async {
                    bench().raw_mget(&TAGGED_KEYS).await;
                })
            })
        });
        group.bench_function(BenchmarkId::new("redcache", tasks), |bencher| {
            bencher.to_async(rt).iter(|| {
                in_tasks(tasks, || async {
                    redcache_product(1).await.unwrap();
                })
            })
        });
        group.bench_function(BenchmarkId::new("redcache_tagged", tasks), |bencher| {
            bencher.to_async(rt).iter(|| {
                in_tasks(tasks, || async {
                    redcache_tagged(1).await.unwrap();
                })
            })
        });
        group.bench_function(BenchmarkId::new("cached_crate", tasks), |bencher| {
            bencher.to_async(rt).iter(|| {
                in_tasks(tasks, || async {
                    cached_crate_product(1).await.unwrap();
                })
            })
        });
        group.bench_function(BenchmarkId::new("redcache_memory", tasks), |bencher| {
            bencher.to_async(rt).iter(|| {
                in_tasks(tasks, || async {
                    memory_product(1).await.unwrap();
                })
            })
        });
    }
    group.finish();
    // Every call above was a hit: a load would mean the bench measured misses.
    assert_eq!(
        b.redis.stats().loads,
        loads_before,
        "a redcache call missed"
    );

    let moka: moka::sync::Cache<u64, Product> = moka::sync::Cache::new(1000);
    moka.insert(1, product(1));
    let mut group = c.benchmark_group("memory_hit");
    group.bench_function("moka_get", |bencher| {
        bencher
            .to_async(rt)
            .iter(|| async { moka.get(&1).unwrap() })
    });
    group.bench_function("redcache_memory", |bencher| {
        bencher
            .to_async(rt)
            .iter(|| async { memory_product(1).await.unwrap() })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = hit
}
redcache_benches::bench_main!(benches);
