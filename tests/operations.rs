//! What operators need, on real servers: `Cache::clear` deletes this
//! cache's entries with SCAN + UNLINK (never KEYS or FLUSH*, nothing
//! outside the namespace, every cluster primary), `Cache::health` reads
//! the memory setup and warns where it is wrong for a cache, and writes
//! refused with OOM fail open (counted, never a caller error).

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Duration;

use redcache::Cache;
use redcache_suite::{redis_cache, unique_namespace, RedisCluster, RedisServer};

const TTL: Duration = Duration::from_secs(600);

/// Caches `key` (loading `value`); returns how many loads ran.
async fn fill(cache: &Cache, keys: impl Iterator<Item = String>) {
    for key in keys {
        cache.put(&key, &1u64, TTL, &["t"]).await.unwrap();
    }
}

/// How many of `keys` are still cached (a load runs for each that is not).
async fn still_cached(cache: &Cache, keys: impl Iterator<Item = String>) -> u64 {
    let loads = AtomicU64::new(0);
    let mut cached = 0;
    for key in keys {
        let value = cache
            .get_or_load(&key, TTL, &["t"], || async {
                loads.fetch_add(1, SeqCst);
                Ok::<_, String>(2u64)
            })
            .await
            .unwrap();
        if value == 1 {
            cached += 1;
        }
    }
    cached
}

fn products() -> impl Iterator<Item = String> {
    (0..300).map(|i| format!("product:{i}"))
}

fn users() -> impl Iterator<Item = String> {
    (0..50).map(|i| format!("user:{i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_deletes_this_caches_entries_and_nothing_else() {
    let server = RedisServer::start();
    let ns = unique_namespace("clear");
    let cache = redis_cache(server.url(), &ns).await;
    // Another namespace that starts like this one, and foreign keys.
    let neighbour = redis_cache(server.url(), &format!("{ns}x")).await;
    fill(&cache, products().chain(users())).await;
    fill(&neighbour, products()).await;
    server.command(&format!("SET {ns}:vfoo 1"));
    server.command("SET foreign:product:1 1");
    server.command(&format!("SET {ns}:v:product:*x 1"));
    cache.invalidate_tag("t").await.unwrap();
    fill(&cache, products().chain(users())).await;
    let dbsize = |s: &RedisServer| {
        s.command("DBSIZE")
            .trim()
            .trim_start_matches(':')
            .parse::<u64>()
            .unwrap()
    };
    let before = dbsize(&server);

    // A prefix: only the products (and the odd key that renders like one).
    let progress = Mutex::new(Vec::new());
    let done = cache
        .clearing()
        .prefix("product:")
        .batch(64)
        .on_progress(|p| progress.lock().unwrap().push(*p))
        .run()
        .await
        .unwrap();
    assert_eq!(done.deleted, 301, "{done:?}");
    assert_eq!((done.nodes, done.nodes_done), (1, 1));
    assert!(
        progress.lock().unwrap().len() > 1,
        "progress is reported per batch"
    );
    assert_eq!(still_cached(&cache, users()).await, 50);
    assert_eq!(dbsize(&server), before - 301);
    // A glob character in the prefix matches only itself.
    fill(&cache, ["ab".to_string(), "a*".to_string()].into_iter()).await;
    assert_eq!(
        cache.clearing().prefix("a*").run().await.unwrap().deleted,
        1
    );
    assert_eq!(
        still_cached(&cache, ["ab".to_string()].into_iter()).await,
        1
    );

    // Everything of the cache: its entries only.
    let done = cache.clear().await.unwrap();
    assert_eq!(done.deleted, 51, "{done:?}");
    assert_eq!(
        still_cached(&neighbour, products()).await,
        300,
        "the neighbour keeps its entries"
    );
    for foreign in [format!("{ns}:vfoo"), "foreign:product:1".to_string()] {
        assert_eq!(
            server.command(&format!("EXISTS {foreign}")),
            ":1\r\n",
            "{foreign}"
        );
    }
    assert_eq!(
        server.command(&format!("EXISTS {ns}:tag:t")),
        ":1\r\n",
        "tag epochs stay"
    );
    let stats = server.command("INFO commandstats");
    for banned in ["cmdstat_keys:", "cmdstat_flushdb:", "cmdstat_flushall:"] {
        assert!(!stats.contains(banned), "{banned} in {stats}");
    }
    assert!(stats.contains("cmdstat_scan:") && stats.contains("cmdstat_unlink:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_on_memory_and_with_a_near_cache() {
    let cache = Cache::builder().memory().build().await.unwrap();
    fill(&cache, products().chain(users())).await;
    assert_eq!(
        cache
            .clearing()
            .prefix("user:")
            .run()
            .await
            .unwrap()
            .deleted,
        50
    );
    assert_eq!(still_cached(&cache, products()).await, 300);
    assert_eq!(cache.clear().await.unwrap().deleted, 300);
    assert_eq!(
        still_cached(&cache, products()).await,
        0,
        "L1 was emptied too"
    );

    let server = RedisServer::start();
    let ns = unique_namespace("clear");
    let near = Cache::builder()
        .redis(server.url())
        .namespace(ns.as_str())
        .near_cache(redcache::NearCache::new())
        .build()
        .await
        .unwrap();
    fill(&near, products()).await;
    assert_eq!(still_cached(&near, products()).await, 300);
    near.clear().await.unwrap();
    assert_eq!(
        still_cached(&near, products()).await,
        0,
        "no L1 copy outlives the clear"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_reaches_every_cluster_primary() {
    let cluster = RedisCluster::shared();
    let ns = unique_namespace("clear");
    let cluster_cache = |ns: String| {
        let urls = cluster.urls();
        async move {
            Cache::builder()
                .redis_cluster(urls)
                .namespace(ns)
                .op_timeout(Duration::from_secs(1))
                .build()
                .await
                .unwrap()
        }
    };
    let cache = cluster_cache(ns.clone()).await;
    let neighbour = cluster_cache(format!("{ns}x")).await;
    fill(&cache, products()).await;
    fill(&neighbour, products()).await;
    let done = cache.clearing().batch(50).run().await.unwrap();
    assert_eq!(done.deleted, 300, "{done:?}");
    assert!(done.nodes >= 3, "every primary: {done:?}");
    assert_eq!(still_cached(&cache, products()).await, 0);
    assert_eq!(still_cached(&neighbour, products()).await, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reads_the_memory_setup_and_says_what_is_wrong() {
    let none = RedisServer::start();
    let cache = redis_cache(none.url(), &unique_namespace("health")).await;
    let health = cache.health().await.unwrap();
    assert_eq!(health.nodes.len(), 1);
    assert_eq!(health.nodes[0].maxmemory, 0);
    assert!(health.nodes[0].used_memory > 0);
    assert!(health.warnings[0].contains("no maxmemory"), "{health:?}");

    let full = RedisServer::start_with(
        &["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"],
        redcache_suite::free_port,
    );
    let health = redis_cache(full.url(), "h").await.health().await.unwrap();
    assert_eq!(health.nodes[0].maxmemory, 64 << 20);
    assert_eq!(health.nodes[0].maxmemory_policy, "noeviction");
    assert!(health.warnings[0].contains("noeviction"), "{health:?}");

    let good = RedisServer::start_with(
        &["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"],
        redcache_suite::free_port,
    );
    let health = redis_cache(good.url(), "h").await.health().await.unwrap();
    assert!(health.warnings.is_empty(), "{health:?}");

    let cluster = RedisCluster::shared();
    let cache = Cache::builder()
        .redis_cluster(cluster.urls())
        .build()
        .await
        .unwrap();
    assert!(cache.health().await.unwrap().nodes.len() >= 3);
    let memory = Cache::builder().memory().build().await.unwrap();
    assert_eq!(memory.health().await.unwrap(), redcache::Health::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_refused_for_memory_fail_open_and_are_counted() {
    // A maxmemory below what the server already uses: every write is
    // refused with OOM.
    let server = RedisServer::start_with(
        &["--maxmemory", "1", "--maxmemory-policy", "noeviction"],
        redcache_suite::free_port,
    );
    let cache = redis_cache(server.url(), &unique_namespace("oom")).await;
    for _ in 0..3 {
        let value = cache
            .get_or_load("k", TTL, &[], || async { Ok::<_, String>(5u64) })
            .await;
        assert_eq!(value, Ok(5), "the caller gets its value");
    }
    let stats = cache.stats();
    assert!(stats.out_of_memory >= 3, "{stats:?}");
    assert!(stats.errors >= stats.out_of_memory, "{stats:?}");
    assert_eq!(stats.loads, 3, "nothing was stored: {stats:?}");
    assert_eq!(
        stats.circuit,
        redcache::CircuitState::Closed,
        "OOM is no outage"
    );
}

/// A tag's epoch key evicted (here: deleted, as eviction would) after an
/// invalidation never revives an entry stored before it; and an epoch
/// key written as 0 by an older redcache is started at the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_tag_epoch_never_revives_a_stale_entry() {
    let server = RedisServer::start();
    let ns = unique_namespace("evict");
    let cache = redis_cache(server.url(), &ns).await;
    let load = |value: u64| {
        let cache = cache.clone();
        async move {
            cache
                .get_or_load("k", TTL, &["t"], || async move { Ok::<_, String>(value) })
                .await
                .unwrap()
        }
    };
    assert_eq!(load(1).await, 1);
    assert_eq!(load(9).await, 1, "cached");
    cache.invalidate_tag("t").await.unwrap();
    server.command(&format!("DEL {ns}:tag:t"));
    assert_eq!(
        load(2).await,
        2,
        "the invalidated entry is not served after its epoch key went"
    );
    assert_eq!(load(9).await, 2, "and the new one is cached");
    // Evicted with no invalidation before: a miss, never a wrong value.
    server.command(&format!("DEL {ns}:tag:t"));
    assert_eq!(load(3).await, 3);

    // A legacy epoch of 0 is started at the clock on first read.
    server.command(&format!("SET {ns}:tag:old 0 PX 600000"));
    cache
        .get_or_load("j", TTL, &["old"], || async { Ok::<_, String>(1u64) })
        .await
        .unwrap();
    let epoch = server.command(&format!("GET {ns}:tag:old"));
    let epoch: u64 = epoch.lines().nth(1).unwrap().parse().unwrap();
    assert!(
        epoch > 1_700_000_000_000_000,
        "started at the server's clock: {epoch}"
    );
    let pttl = server.command(&format!("PTTL {ns}:tag:old"));
    assert!(!pttl.starts_with(":-"), "it keeps a TTL: {pttl}");
}

/// A value above `max_value_size` is returned to every caller, never
/// cached, and counted; a value at the limit is cached. On both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_above_max_value_size_is_returned_not_cached_and_counted() {
    let server = RedisServer::start();
    let redis = Cache::builder()
        .redis(server.url())
        .namespace(unique_namespace("size").as_str())
        .max_value_size(2_000)
        .build()
        .await
        .unwrap();
    let memory = Cache::builder()
        .memory()
        .max_value_size(2_000)
        .build()
        .await
        .unwrap();
    assert_eq!(redcache::DEFAULT_MAX_VALUE_SIZE, 1 << 20);
    for cache in [redis, memory] {
        let loads = AtomicU64::new(0);
        let load = |key: &'static str, len: usize| {
            let (cache, loads) = (cache.clone(), &loads);
            async move {
                cache
                    .get_or_load(key, TTL, &[], || async move {
                        loads.fetch_add(1, SeqCst);
                        Ok::<_, String>("x".repeat(len))
                    })
                    .await
                    .unwrap()
            }
        };
        for _ in 0..3 {
            assert_eq!(load("big", 5_000).await.len(), 5_000, "the caller gets it");
        }
        assert_eq!(loads.load(SeqCst), 3, "never cached");
        assert_eq!(cache.stats().too_large, 3);
        load("small", 1_000).await;
        load("small", 1_000).await;
        assert_eq!(loads.load(SeqCst), 4, "a value under the limit is cached");
        // A put above the limit is refused, and the old value is not served.
        cache.put("p", &"old".to_string(), TTL, &[]).await.unwrap();
        let refused = cache.put("p", &"y".repeat(5_000), TTL, &[]).await;
        assert!(
            matches!(refused, Err(redcache::Error::Unstorable(_))),
            "{refused:?}"
        );
        let after = cache
            .get_or_load("p", TTL, &[], || async {
                Ok::<_, String>("new".to_string())
            })
            .await
            .unwrap();
        assert_eq!(after, "new");
    }
}
