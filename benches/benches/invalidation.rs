//! Tag invalidation with 10, 10 000 and 1 000 000 entries under the tag: one
//! `INCR` of the tag's epoch, whatever the number of entries.
//!
//! The entries are real: one is cached through redcache, its stored bytes
//! copied under the other keys (an entry does not name its own key), and a
//! sample checked to be a hit before and a miss after an invalidation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{criterion_group, BenchmarkId, Criterion};
use redcache_benches::{bench, criterion, runtime, Bench};

const TTL: Duration = Duration::from_secs(1800);

/// Caches `keys` entries under `tag` and returns the name of their keys.
async fn fill(b: &Bench, tag: &str, keys: u64) -> impl Fn(u64) -> String {
    let prefix = format!("inv:{keys}:");
    let name = move |i: u64| format!("{prefix}{i}");
    b.redis
        .get_or_load(&name(0), TTL, &[tag], || async { Ok::<_, String>(0u64) })
        .await
        .unwrap();
    let bytes = b
        .raw_get(&b.entry_key(&name(0)))
        .await
        .expect("the first entry is stored");
    let mut conn = b.raw.clone();
    for chunk in (1..keys).collect::<Vec<_>>().chunks(10_000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            pipe.cmd("SET")
                .arg(b.entry_key(&name(i)))
                .arg(&bytes)
                .arg("PX")
                .arg(TTL.as_millis() as u64)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.unwrap();
    }
    name
}

/// Whether a call of `key` under `tag` is served from the cache.
async fn is_hit(b: &Bench, key: &str, tag: &str) -> bool {
    let loads = AtomicU64::new(0);
    b.redis
        .get_or_load(key, TTL, &[tag], || async {
            loads.fetch_add(1, Ordering::Relaxed);
            Ok::<_, String>(0u64)
        })
        .await
        .unwrap();
    loads.load(Ordering::Relaxed) == 0
}

fn invalidation(c: &mut Criterion) {
    let rt = runtime();
    let b = bench();
    let mut group = c.benchmark_group("invalidate_tag");
    for keys in [10u64, 10_000, 1_000_000] {
        let tag = format!("many:{keys}");
        rt.block_on(async {
            let name = fill(b, &tag, keys).await;
            let sample = name(keys - 1);
            assert!(
                is_hit(b, &sample, &tag).await,
                "{sample} is cached under {tag}"
            );
            b.redis.invalidate_tag(&tag).await.unwrap();
            let fresh = name(keys / 2);
            assert!(!is_hit(b, &fresh, &tag).await, "{fresh} is invalidated");
        });
        group.bench_with_input(BenchmarkId::from_parameter(keys), &tag, |bencher, tag| {
            bencher
                .to_async(rt)
                .iter(|| async { b.redis.invalidate_tag(tag).await.unwrap() })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = invalidation
}
redcache_benches::bench_main!(benches);
