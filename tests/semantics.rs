//! The semantic suite: every test here runs on the embedded backend, on a
//! real redis-server and on a real 3-master Redis Cluster, and asserts the
//! same behaviour on each.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use redcache::{Cache, CacheBuilder};
use redcache_suite::{unique_namespace, RedisCluster, RedisServer};
use tokio::sync::{oneshot, Barrier};

const TTL: Duration = Duration::from_secs(60);

/// Where a fixture's cache lives.
enum Backend {
    Memory,
    /// A redis-server of this test's own.
    Single(RedisServer),
    /// The 3-master cluster this test binary shares (namespaces keep tests apart).
    Cluster(Arc<RedisCluster>),
}

/// A cache on one backend. Tests get their own namespace.
struct Fixture {
    cache: Cache,
    backend: Backend,
    namespace: String,
}

impl Fixture {
    async fn memory() -> Self {
        Self::on(Backend::Memory).await
    }

    async fn redis() -> Self {
        Self::on(Backend::Single(RedisServer::start())).await
    }

    async fn cluster() -> Self {
        let cluster = tokio::task::spawn_blocking(RedisCluster::shared)
            .await
            .unwrap();
        Self::on(Backend::Cluster(cluster)).await
    }

    async fn on(backend: Backend) -> Self {
        let namespace = unique_namespace("sem");
        let cache = Self::builder(&backend, &namespace).build().await.unwrap();
        Fixture {
            cache,
            backend,
            namespace,
        }
    }

    fn builder(backend: &Backend, namespace: &str) -> CacheBuilder {
        // Generous timeouts: a busy CI machine must not turn into a
        // fail-open run (the fail-open tests set their own).
        let builder = Cache::builder()
            .namespace(namespace)
            .op_timeout(Duration::from_secs(2))
            .lock_wait(Duration::from_secs(5));
        match backend {
            Backend::Memory => builder.memory(),
            Backend::Single(server) => builder.redis(server.url()),
            Backend::Cluster(cluster) => builder.redis_cluster(cluster.urls()),
        }
    }

    /// A second handle, as another process would have: on Redis its own
    /// connection and its own in-process state; in memory the same store.
    async fn another_instance(&self) -> Cache {
        match self.backend {
            Backend::Memory => self.cache.clone(),
            _ => Self::builder(&self.backend, &self.namespace)
                .build()
                .await
                .unwrap(),
        }
    }
}

/// A loader that counts its runs and returns `value`.
async fn counted<T>(loads: &AtomicUsize, value: T) -> Result<T, String> {
    loads.fetch_add(1, SeqCst);
    Ok(value)
}

/// `get_or_load` with a counted loader that cannot fail.
async fn get<T>(
    cache: &Cache,
    key: &str,
    ttl: Duration,
    tags: &[&str],
    loads: &AtomicUsize,
    value: T,
) -> T
where
    T: redcache::Cacheable,
{
    match cache
        .get_or_load(key, ttl, tags, || counted(loads, value))
        .await
    {
        Ok(value) => value,
        Err(never) => unreachable!("counted never fails: {never}"),
    }
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Fixture::memory().await).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Fixture::redis().await).await;
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Fixture::cluster().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    a_miss_loads_and_the_next_call_hits,
    errors_are_returned_and_not_cached,
    entries_expire_after_their_ttl,
    stampede_of_200_callers_runs_one_load,
    a_cancelled_leader_hands_the_load_to_a_waiter,
    a_panicking_leader_hands_the_load_to_a_waiter,
    invalidate_tag_reloads_every_key_under_it_and_no_other,
    invalidation_racing_a_slow_loader_never_serves_the_old_value,
    invalidation_from_another_instance_is_seen,
    an_entry_of_another_type_is_a_miss_and_is_overwritten,
    invalidate_key_removes_one_entry,
    untagged_and_tagged_entries_of_one_key_do_not_mix,
    followers_of_a_failing_load_retry_together_not_in_a_queue,
    get_with_caches_plain_values_and_optionally_get_with_only_some,
);

async fn a_miss_loads_and_the_next_call_hits(f: Fixture) {
    let loads = AtomicUsize::new(0);
    let first = f
        .cache
        .get_or_load("k", TTL, &[], || counted(&loads, 7u32))
        .await;
    let second = f
        .cache
        .get_or_load("k", TTL, &[], || counted(&loads, 8u32))
        .await;
    assert_eq!((first, second), (Ok(7), Ok(7)));
    assert_eq!(loads.load(SeqCst), 1);
    let stats = f.cache.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.loads),
        (1, 1, 1),
        "{stats:?}"
    );
}

async fn errors_are_returned_and_not_cached(f: Fixture) {
    let failed: Result<u32, String> = f
        .cache
        .get_or_load("k", TTL, &[], || async { Err("db down".to_string()) })
        .await;
    assert_eq!(failed, Err("db down".to_string()));
    let loads = AtomicUsize::new(0);
    let ok = f
        .cache
        .get_or_load("k", TTL, &[], || counted(&loads, 1u32))
        .await;
    assert_eq!(ok, Ok(1));
    assert_eq!(loads.load(SeqCst), 1, "the error must not have been cached");
}

async fn entries_expire_after_their_ttl(f: Fixture) {
    let loads = AtomicUsize::new(0);
    let short = Duration::from_millis(300);
    get(&f.cache, "k", short, &[], &loads, 1u8).await;
    get(&f.cache, "k", short, &[], &loads, 1u8).await;
    assert_eq!(loads.load(SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    get(&f.cache, "k", short, &[], &loads, 1u8).await;
    assert_eq!(loads.load(SeqCst), 2, "the entry must have expired");
}

async fn stampede_of_200_callers_runs_one_load(f: Fixture) {
    let loads = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(200));
    let callers: Vec<_> = (0..200)
        .map(|_| {
            let (cache, loads, start) = (f.cache.clone(), loads.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                cache
                    .get_or_load("hot", TTL, &["t"], || async {
                        loads.fetch_add(1, SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok::<_, String>("value".to_string())
                    })
                    .await
            })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), Ok("value".to_string()));
    }
    assert_eq!(
        loads.load(SeqCst),
        1,
        "200 concurrent callers must share one load"
    );
}

async fn a_cancelled_leader_hands_the_load_to_a_waiter(f: Fixture) {
    let loads = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = oneshot::channel();
    let leader = {
        let (cache, loads) = (f.cache.clone(), loads.clone());
        tokio::spawn(async move {
            cache
                .get_or_load("k", TTL, &[], || async move {
                    loads.fetch_add(1, SeqCst);
                    let _ = started_tx.send(());
                    std::future::pending::<()>().await;
                    Ok::<u32, String>(0)
                })
                .await
        })
    };
    started_rx.await.unwrap();
    let waiter = {
        let (cache, loads) = (f.cache.clone(), loads.clone());
        tokio::spawn(async move {
            cache
                .get_or_load("k", TTL, &[], || counted(&loads, 2u32))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    leader.abort();
    let value = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter must not hang");
    assert_eq!(value.unwrap(), Ok(2));
    assert_eq!(loads.load(SeqCst), 2);
}

async fn a_panicking_leader_hands_the_load_to_a_waiter(f: Fixture) {
    let (started_tx, started_rx) = oneshot::channel();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let leader = {
        let cache = f.cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("k", TTL, &[], || async move {
                    let _ = started_tx.send(());
                    let _ = go_rx.await;
                    panic!("loader panics on purpose");
                    #[allow(unreachable_code)]
                    Ok::<u32, String>(0)
                })
                .await
        })
    };
    started_rx.await.unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let waiter = {
        let (cache, loads) = (f.cache.clone(), loads.clone());
        tokio::spawn(async move {
            cache
                .get_or_load("k", TTL, &[], || counted(&loads, 3u32))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    go_tx.send(()).unwrap();
    assert!(leader.await.unwrap_err().is_panic());
    let value = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter must not hang");
    assert_eq!(value.unwrap(), Ok(3));
    assert_eq!(loads.load(SeqCst), 1);
}

async fn invalidate_tag_reloads_every_key_under_it_and_no_other(f: Fixture) {
    let loads = AtomicUsize::new(0);
    let fill = |key: &'static str, tag: &'static str| {
        let cache = f.cache.clone();
        let loads = &loads;
        async move {
            cache
                .get_or_load(key, TTL, &[tag, "all"], || counted(loads, key.to_string()))
                .await
                .unwrap()
        }
    };
    for (key, tag) in [("a", "red"), ("b", "red"), ("c", "red"), ("d", "blue")] {
        fill(key, tag).await;
    }
    assert_eq!(loads.load(SeqCst), 4);
    f.cache.invalidate_tag("red").await.unwrap();
    for (key, tag) in [("a", "red"), ("b", "red"), ("c", "red"), ("d", "blue")] {
        assert_eq!(fill(key, tag).await, key);
    }
    assert_eq!(loads.load(SeqCst), 7, "a, b and c reload; d does not");
    f.cache.invalidate_tag("all").await.unwrap();
    fill("d", "blue").await;
    assert_eq!(
        loads.load(SeqCst),
        8,
        "a second tag of d invalidates it too"
    );
    assert_eq!(f.cache.stats().invalidations, 2);
}

async fn invalidation_racing_a_slow_loader_never_serves_the_old_value(f: Fixture) {
    // A: a load that begins, then waits until told to finish.
    let (started_tx, started_rx) = oneshot::channel();
    let (finish_tx, finish_rx) = oneshot::channel::<()>();
    let slow = {
        let cache = f.cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("product", TTL, &["category"], || async move {
                    let _ = started_tx.send(());
                    let _ = finish_rx.await;
                    Ok::<_, String>("old".to_string())
                })
                .await
        })
    };
    started_rx.await.unwrap();
    // The invalidation returns while A is still loading.
    f.cache.invalidate_tag("category").await.unwrap();

    // B starts after the invalidation: it must not get A's value, even
    // though A finishes (and tries to store it) while B is running.
    let other = f.another_instance().await;
    let after = {
        let cache = f.cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("product", TTL, &["category"], || async {
                    Ok::<_, String>("new".to_string())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    finish_tx.send(()).unwrap();
    assert_eq!(
        slow.await.unwrap(),
        Ok("old".to_string()),
        "A returns what it loaded"
    );
    assert_eq!(after.await.unwrap(), Ok("new".to_string()));
    // Later calls, in this instance and another, see only the new value.
    for cache in [&f.cache, &other] {
        let value = cache
            .get_or_load("product", TTL, &["category"], || async {
                Ok::<_, String>("reloaded".to_string())
            })
            .await;
        assert_eq!(value, Ok("new".to_string()));
    }
}

async fn invalidation_from_another_instance_is_seen(f: Fixture) {
    let other = f.another_instance().await;
    let loads = AtomicUsize::new(0);
    get(&f.cache, "k", TTL, &["t"], &loads, 1u8).await;
    other.invalidate_tag("t").await.unwrap();
    get(&f.cache, "k", TTL, &["t"], &loads, 1u8).await;
    assert_eq!(loads.load(SeqCst), 2);
}

async fn an_entry_of_another_type_is_a_miss_and_is_overwritten(f: Fixture) {
    let loads = AtomicUsize::new(0);
    get(&f.cache, "k", TTL, &[], &loads, "text".to_string()).await;
    let number = f
        .cache
        .get_or_load("k", TTL, &[], || counted(&loads, 5u64))
        .await;
    assert_eq!(number, Ok(5));
    let again = f
        .cache
        .get_or_load("k", TTL, &[], || counted(&loads, 6u64))
        .await;
    assert_eq!(again, Ok(5), "the undecodable entry was overwritten");
    assert_eq!(loads.load(SeqCst), 2);
    assert_eq!(f.cache.stats().undecodable, 1);
}

async fn invalidate_key_removes_one_entry(f: Fixture) {
    let loads = AtomicUsize::new(0);
    get(&f.cache, "a", TTL, &[], &loads, 1u8).await;
    get(&f.cache, "b", TTL, &[], &loads, 1u8).await;
    f.cache.invalidate_key("a").await.unwrap();
    get(&f.cache, "a", TTL, &[], &loads, 1u8).await;
    get(&f.cache, "b", TTL, &[], &loads, 1u8).await;
    assert_eq!(loads.load(SeqCst), 3);
}

async fn untagged_and_tagged_entries_of_one_key_do_not_mix(f: Fixture) {
    let loads = AtomicUsize::new(0);
    get(&f.cache, "k", TTL, &["t"], &loads, 1u8).await;
    // The same key asked with other tags is not served the entry made under
    // "t": its validity would not follow the tags the caller relies on.
    get(&f.cache, "k", TTL, &["u"], &loads, 2u8).await;
    assert_eq!(loads.load(SeqCst), 2);
}

/// 32 callers of a load that fails: the followers of the failed leader each
/// run the load once, together. Before, each became the next leader in
/// turn: 32 loads one after another, the last caller waiting 32 load times.
async fn followers_of_a_failing_load_retry_together_not_in_a_queue(f: Fixture) {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let loads = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(32));
    let calls = (0..32).map(|_| {
        let (cache, running, most, loads, barrier) = (
            f.cache.clone(),
            running.clone(),
            most.clone(),
            loads.clone(),
            barrier.clone(),
        );
        tokio::spawn(async move {
            barrier.wait().await;
            let began = std::time::Instant::now();
            let result = cache
                .get_or_load("failing", TTL, &[], || async move {
                    loads.fetch_add(1, SeqCst);
                    let now = running.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    running.fetch_sub(1, SeqCst);
                    Err::<u32, String>("db down".into())
                })
                .await;
            (result, began.elapsed())
        })
    });
    let mut worst = Duration::ZERO;
    for joined in futures::future::join_all(calls).await {
        let (result, waited) = joined.unwrap();
        assert_eq!(result, Err("db down".to_string()));
        worst = worst.max(waited);
    }
    // A figure, not a bound (timing goals live in the benchmarks): with a
    // 50 ms load, about two load times.
    println!("worst caller waited {worst:?} for a load failing after 50 ms");
    assert!(loads.load(SeqCst) <= 32, "at most one load per caller");
    assert!(
        most.load(SeqCst) >= 8,
        "the followers' retries overlap; at most {} ran at once",
        most.load(SeqCst)
    );
}

/// The three shapes of a load, as moka names them: `get_or_load` (a
/// `Result`, `Ok` cached), `get_with` (every value cached) and
/// `optionally_get_with` (`Some` cached, `None` not).
async fn get_with_caches_plain_values_and_optionally_get_with_only_some(f: Fixture) {
    let loads = AtomicUsize::new(0);
    for _ in 0..2 {
        let n: u32 = f
            .cache
            .get_with("plain", TTL, &[], || async {
                loads.fetch_add(1, SeqCst);
                7
            })
            .await;
        assert_eq!(n, 7);
    }
    assert_eq!(loads.load(SeqCst), 1, "a plain value is cached");
    for _ in 0..2 {
        let none: Option<u32> = f
            .cache
            .optionally_get_with("maybe", TTL, &[], || async {
                loads.fetch_add(1, SeqCst);
                None
            })
            .await;
        assert_eq!(none, None);
    }
    assert_eq!(loads.load(SeqCst), 3, "None is not cached");
    for _ in 0..2 {
        let some = f
            .cache
            .optionally_get_with("maybe", TTL, &[], || async {
                loads.fetch_add(1, SeqCst);
                Some(9u32)
            })
            .await;
        assert_eq!(some, Some(9));
    }
    assert_eq!(loads.load(SeqCst), 4, "Some is cached");
}

/// On the embedded backend, entries and tag epochs expire on the cache's
/// clock: a test moves a `ManualClock` instead of sleeping.
#[tokio::test]
async fn embedded_entries_expire_on_the_cache_clock() {
    let clock = redcache::ManualClock::new(Duration::from_secs(1_700_000_000));
    let cache = Cache::builder().clock(clock.clone()).build().await.unwrap();
    let loads = AtomicUsize::new(0);
    get(&cache, "k", TTL, &["t"], &loads, 1u8).await;
    clock.advance(TTL - Duration::from_secs(1));
    get(&cache, "k", TTL, &["t"], &loads, 1u8).await;
    assert_eq!(loads.load(SeqCst), 1, "fresh until its ttl on the clock");
    clock.advance(Duration::from_secs(2));
    get(&cache, "k", TTL, &["t"], &loads, 1u8).await;
    assert_eq!(
        loads.load(SeqCst),
        2,
        "expired once the clock passed its ttl"
    );
    cache.invalidate_tag("t").await.unwrap();
    get(&cache, "k", TTL, &["t"], &loads, 1u8).await;
    assert_eq!(loads.load(SeqCst), 3, "the invalidation is seen");
    get(&cache, "k", TTL, &["t"], &loads, 1u8).await;
    assert_eq!(loads.load(SeqCst), 3);
}
