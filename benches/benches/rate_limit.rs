//! Rate limits: one check per algorithm against a raw `EVALSHA` of the same
//! script with the same arguments (the limit for a check that Redis decides),
//! at 1 and 64 tasks; and the local deny path (a caller already over its
//! limit, answered from the in-process memory of denials) against governor.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use redcache::{Algorithm, Policy, RateLimiter};
use redcache_benches::contenders::{rate_limit_script, raw_rate_limit_check};
use redcache_benches::{bench, calls, criterion, in_tasks, runtime};

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::SlidingLog,
    Algorithm::SlidingWindow,
    Algorithm::FixedWindow,
    Algorithm::Gcra,
];

/// Never reached, so every check runs the whole script and is allowed; a
/// one-second window keeps the sliding log's set small. (GCRA needs at
/// most one call per nanosecond of the window.)
const LIMIT: u64 = 1_000_000_000;
const WINDOW: Duration = Duration::from_secs(1);

fn checks(c: &mut Criterion) {
    let rt = runtime();
    let b = bench();
    let script = Arc::new(rate_limit_script());
    let mut group = c.benchmark_group("rate_limit");
    for algorithm in ALGORITHMS {
        let policy = Policy::new(LIMIT, WINDOW).algorithm(algorithm);
        let limiter = Arc::new(RateLimiter::new(&b.redis, "bench", [policy]).unwrap());
        for tasks in [1, 64] {
            group.throughput(Throughput::Elements(calls(tasks)));
            let name = algorithm.name();
            let redcache = Arc::clone(&limiter);
            group.bench_function(
                BenchmarkId::new(format!("redcache/{name}"), tasks),
                |bencher| {
                    bencher.to_async(rt).iter(|| {
                        let limiter = Arc::clone(&redcache);
                        in_tasks(tasks, move || {
                            let limiter = Arc::clone(&limiter);
                            async move {
                                limiter.check("user:1").await.unwrap();
                            }
                        })
                    })
                },
            );
            let key = format!("bench:raw:{{user:1}}:{name}");
            let raw = Arc::clone(&script);
            group.bench_function(
                BenchmarkId::new(format!("raw_evalsha/{name}"), tasks),
                |bencher| {
                    bencher.to_async(rt).iter(|| {
                        let (script, key) = (Arc::clone(&raw), key.clone());
                        in_tasks(tasks, move || {
                            let (script, key) = (Arc::clone(&script), key.clone());
                            async move { raw_rate_limit_check(&script, &key, policy).await }
                        })
                    })
                },
            );
        }
    }
    group.finish();
}

fn local_deny(c: &mut Criterion) {
    let rt = runtime();
    let b = bench();
    let limiter =
        RateLimiter::new(&b.redis, "deny", [Policy::new(1, Duration::from_secs(600))]).unwrap();
    let governor = governor::DefaultKeyedRateLimiter::<String>::keyed(governor::Quota::per_hour(
        NonZeroU32::new(1).unwrap(),
    ));
    let key = "user:over".to_string();
    rt.block_on(async {
        limiter.check(&key).await.unwrap();
        assert!(limiter.check(&key).await.is_err(), "over the limit");
    });
    governor.check_key(&key).unwrap();
    let round_trips = b.redis.stats().rate_denied;

    let mut group = c.benchmark_group("rate_limit_deny");
    group.bench_function("governor", |bencher| {
        bencher
            .to_async(rt)
            .iter(|| async { governor.check_key(&key).unwrap_err() })
    });
    group.bench_function("redcache_local", |bencher| {
        bencher
            .to_async(rt)
            .iter(|| async { limiter.check(&key).await.unwrap_err() })
    });
    group.finish();
    assert_eq!(
        b.redis.stats().rate_denied,
        round_trips,
        "every denial above was answered locally"
    );
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = checks, local_deny
}
redcache_benches::bench_main!(benches);
