//! Payload size: hits of 100 B, 10 KB and 1 MB values through redcache's
//! codec (JSON envelope) against a raw `GET` of the same stored bytes.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use redcache_benches::{bench, criterion, runtime};

#[redcache::cached(ttl = 600, key = "payload:<size>", cache = &bench().redis)]
async fn payload(size: usize) -> Result<String, String> {
    Ok("x".repeat(size))
}

fn payloads(c: &mut Criterion) {
    let rt = runtime();
    let b = bench();
    let mut group = c.benchmark_group("payload");
    for size in [100usize, 10 * 1024, 1024 * 1024] {
        let entry = b.entry_key(&format!("payload:{size}"));
        rt.block_on(async {
            assert_eq!(payload(size).await.unwrap().len(), size);
            assert!(b.raw_get(&entry).await.is_some(), "{entry} is stored");
        });
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("raw_get", size),
            &entry,
            |bencher, entry| bencher.to_async(rt).iter(|| b.raw_get(entry)),
        );
        group.bench_with_input(
            BenchmarkId::new("redcache", size),
            &size,
            |bencher, &size| {
                bencher
                    .to_async(rt)
                    .iter(|| async move { payload(size).await.unwrap() })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = payloads
}
redcache_benches::bench_main!(benches);
