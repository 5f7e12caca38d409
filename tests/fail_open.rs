//! Redis going away makes cached calls slower, never wrong: they run the
//! function. Invalidations report the failure instead of being lost.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use redcache::{Cache, CircuitState, Error};
use redcache_suite::{unique_namespace, RedisServer};

const TTL: Duration = Duration::from_secs(60);

async fn counted(loads: &AtomicUsize, value: u32) -> Result<u32, String> {
    loads.fetch_add(1, SeqCst);
    Ok(value)
}

/// Calls until one is answered from the cache, for at most `limit`.
async fn until_cached(cache: &Cache, key: &str, limit: Duration) -> Duration {
    let began = Instant::now();
    let loads = AtomicUsize::new(0);
    loop {
        let before = loads.load(SeqCst);
        cache
            .get_or_load(key, TTL, &[], || counted(&loads, 1))
            .await
            .unwrap();
        if loads.load(SeqCst) == before {
            return began.elapsed();
        }
        assert!(
            began.elapsed() < limit,
            "caching did not resume within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_redis_mid_test_runs_the_function_and_caching_resumes_after() {
    let mut server = RedisServer::start();
    let op_timeout = Duration::from_millis(100);
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(unique_namespace("down"))
        .op_timeout(op_timeout)
        .build()
        .await
        .unwrap();
    let loads = AtomicUsize::new(0);
    assert_eq!(
        cache
            .get_or_load("k", TTL, &["t"], || counted(&loads, 1))
            .await,
        Ok(1)
    );
    assert_eq!(
        cache
            .get_or_load("k", TTL, &["t"], || counted(&loads, 2))
            .await,
        Ok(1)
    );
    assert_eq!(loads.load(SeqCst), 1);

    server.stop();
    for i in 0..20 {
        let value = cache
            .get_or_load("k", TTL, &["t"], || counted(&loads, 100 + i))
            .await;
        assert_eq!(
            value,
            Ok(100 + i),
            "with Redis down every call runs the function"
        );
    }
    assert_eq!(loads.load(SeqCst), 21);
    let stats = cache.stats();
    assert!(stats.errors >= 20, "{stats:?}");
    assert_eq!(
        stats.circuit,
        CircuitState::Open,
        "20 failures in a row open the circuit"
    );

    // An invalidation that cannot reach Redis is reported, not lost.
    match cache.invalidate_tag("t").await {
        Err(Error::Redis(_) | Error::Timeout(_) | Error::CircuitOpen) => {}
        other => panic!("invalidate_tag with Redis down must fail, got {other:?}"),
    }

    server.restart();
    let recovered = until_cached(&cache, "after", Duration::from_secs(10)).await;
    println!("caching resumed {recovered:?} after redis-server restarted");
    assert_eq!(cache.stats().circuit, CircuitState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_built_while_redis_is_down_runs_functions_then_connects() {
    let mut server = RedisServer::start();
    server.stop();
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(unique_namespace("late"))
        .op_timeout(Duration::from_millis(100))
        .connect_timeout(Duration::from_millis(200))
        .build()
        .await
        .expect("building must not fail because Redis is down");
    let loads = AtomicUsize::new(0);
    assert_eq!(
        cache
            .get_or_load("k", TTL, &[], || counted(&loads, 1))
            .await,
        Ok(1)
    );
    assert_eq!(
        cache
            .get_or_load("k", TTL, &[], || counted(&loads, 2))
            .await,
        Ok(2)
    );
    server.restart();
    until_cached(&cache, "k", Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_does_not_hang_a_cached_call() {
    // A server that accepts connections and never answers: SIGSTOP'd.
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(unique_namespace("frozen"))
        .op_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    cache
        .get_or_load("warm", TTL, &[], || async { Ok::<_, String>(0u8) })
        .await
        .unwrap();
    server.freeze();
    let loads = AtomicUsize::new(0);
    let value = tokio::time::timeout(
        Duration::from_secs(5),
        cache.get_or_load("k", TTL, &["t"], || counted(&loads, 9)),
    )
    .await
    .expect("a frozen Redis must not hang a cached call");
    server.thaw();
    assert_eq!(value, Ok(9));
    assert!(matches!(cache.stats().errors, 1..), "{:?}", cache.stats());
}

/// One entry too large to read within `op_timeout` (100 MB, written by
/// someone else) made every read of its key time out, was never replaced,
/// and opened the circuit for every key after five calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_too_large_to_read_in_time_is_replaced_and_opens_no_circuit() {
    let server = RedisServer::start();
    let ns = unique_namespace("big");
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(&ns)
        .op_timeout(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let loads = AtomicUsize::new(0);
    let other = AtomicUsize::new(0);
    cache
        .get_or_load("other", TTL, &[], || counted(&other, 1))
        .await
        .unwrap();
    // 100 MB of zero bytes under the entry key of "big".
    assert_eq!(
        server.command(&format!("SETRANGE {ns}:v:big 104857599 x")),
        ":104857600\r\n"
    );
    // Until a call is a hit: the entry was replaced. Old code never got
    // there (every read timed out, and the circuit opened for all keys).
    let began = Instant::now();
    let mut calls = 0;
    loop {
        let before = loads.load(SeqCst);
        let value = cache
            .get_or_load("big", TTL, &[], || counted(&loads, 7))
            .await;
        assert_eq!(value, Ok(7), "every call gets the right value");
        calls += 1;
        if loads.load(SeqCst) == before {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "the 100 MB entry was never replaced ({calls} calls)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("replaced after {calls} calls, {:?}", began.elapsed());
    let size = server.command(&format!("STRLEN {ns}:v:big"));
    assert!(size.len() < 8, "the 100 MB entry is gone: STRLEN {size}");
    assert_eq!(
        cache.stats().circuit,
        CircuitState::Closed,
        "one slow key is not an outage"
    );
    cache
        .get_or_load("other", TTL, &[], || counted(&other, 2))
        .await
        .unwrap();
    assert_eq!(other.load(SeqCst), 1, "other keys stayed cached");
}
