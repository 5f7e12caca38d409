//! The near cache (L1) on a real redis-server: hits that cost no round
//! trip, and every way an entry must leave L1: a change of its key or tag
//! by anyone (another cache, `redis-cli`), a killed tracking connection, a
//! frozen server, FLUSHALL, a restart, and on a server that refuses
//! `CLIENT TRACKING`, the pub/sub fallback.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use redcache::{Cache, NearCache, NearStatus};
use redcache_suite::{eventually, unique_namespace, RedisServer};

const TTL: Duration = Duration::from_secs(60);

fn near() -> NearCache {
    NearCache::new().check_interval(Duration::from_millis(200))
}

async fn cache_with(url: &str, ns: &str, near: NearCache) -> Cache {
    Cache::builder()
        .redis(url)
        .namespace(ns)
        .near_cache(near)
        .build()
        .await
        .unwrap()
}

async fn live(cache: &Cache, status: NearStatus) {
    eventually(
        &format!("near cache {status:?}"),
        Duration::from_secs(10),
        || async { cache.stats().near == status },
    )
    .await;
}

/// A cached read of `key` whose loads are counted and answer `value`.
async fn read(cache: &Cache, key: &str, tags: &[&str], loads: &AtomicU32, value: u64) -> u64 {
    cache
        .get_with(key, TTL, tags, || async {
            loads.fetch_add(1, SeqCst);
            value
        })
        .await
}

/// Reads `key` until a read is an L1 hit (the first fill after this
/// process's own write may be dropped by that write's own invalidation,
/// which arrives after it), and returns the value L1 holds.
async fn warm(cache: &Cache, key: &str, tags: &[&str], loads: &AtomicU32, value: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let hits = cache.stats().near_hits;
        let got = read(cache, key, tags, loads, value).await;
        if cache.stats().near_hits > hits {
            return got;
        }
        assert!(Instant::now() < deadline, "`{key}` never reached L1");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn get_calls(server: &RedisServer) -> u64 {
    let stats = server.command("INFO commandstats");
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_is_answered_from_l1_without_a_round_trip() {
    let server = RedisServer::start();
    let ns = unique_namespace("near");
    let cache = cache_with(&server.url(), &ns, near()).await;
    live(&cache, NearStatus::Tracking).await;
    let loads = AtomicU32::new(0);
    assert_eq!(read(&cache, "k", &["t"], &loads, 1).await, 1);
    // Later reads come from Redis until one fills L1; then from L1.
    assert_eq!(warm(&cache, "k", &["t"], &loads, 2).await, 1);
    let gets = get_calls(&server);
    let before = cache.stats();
    for _ in 0..100 {
        assert_eq!(read(&cache, "k", &["t"], &loads, 3).await, 1);
    }
    assert_eq!(get_calls(&server), gets, "L1 hits sent no GET");
    let stats = cache.stats();
    assert_eq!(stats.near_hits - before.near_hits, 100);
    assert_eq!(stats.hits - before.hits, 100, "L1 hits are hits");
    assert_eq!(loads.load(SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_by_anyone_drops_the_entry_everywhere() {
    let server = RedisServer::start();
    let ns = unique_namespace("near");
    let a = cache_with(&server.url(), &ns, near()).await;
    let b = cache_with(&server.url(), &ns, near()).await;
    live(&a, NearStatus::Tracking).await;
    live(&b, NearStatus::Tracking).await;
    let loads = AtomicU32::new(0);
    assert_eq!(warm(&a, "k", &["t"], &loads, 1).await, 1);

    // Another process writes the key: `a` sees the new value soon.
    b.put("k", &2u64, TTL, &["t"]).await.unwrap();
    assert_eq!(
        read(&b, "k", &["t"], &loads, 0).await,
        2,
        "the writer at once"
    );
    eventually("a seeing b's put", Duration::from_secs(1), || async {
        read(&a, "k", &["t"], &loads, 0).await == 2
    })
    .await;

    // Another process invalidates the tag.
    assert_eq!(warm(&a, "k", &["t"], &loads, 0).await, 2);
    b.invalidate_tag("t").await.unwrap();
    eventually(
        "a dropping the tag's entry",
        Duration::from_secs(1),
        || async { read(&a, "k", &["t"], &loads, 3).await == 3 },
    )
    .await;

    // redis-cli deletes the key, then bumps the tag's epoch.
    assert_eq!(warm(&a, "k", &["t"], &loads, 0).await, 3);
    assert_eq!(server.command(&format!("DEL {ns}:v:k")), ":1\r\n");
    eventually(
        "a dropping a key redis-cli deleted",
        Duration::from_secs(1),
        || async { read(&a, "k", &["t"], &loads, 4).await == 4 },
    )
    .await;
    assert_eq!(warm(&a, "k", &["t"], &loads, 0).await, 4);
    server.command(&format!("INCR {ns}:tag:t"));
    eventually(
        "a dropping an entry of a tag redis-cli bumped",
        Duration::from_secs(1),
        || async { read(&a, "k", &["t"], &loads, 5).await == 5 },
    )
    .await;
    assert!(a.stats().near_invalidations > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_that_changes_a_key_never_serves_the_old_value() {
    let server = RedisServer::start();
    let ns = unique_namespace("near");
    let cache = cache_with(&server.url(), &ns, near()).await;
    live(&cache, NearStatus::Tracking).await;
    let loads = AtomicU32::new(0);
    for round in 0..20u64 {
        // Each change finds the old value in L1, and reads right after it
        // (no wait) never get it.
        warm(&cache, "k", &["t"], &loads, round).await;
        cache.put("k", &(1000 + round), TTL, &["t"]).await.unwrap();
        assert_eq!(read(&cache, "k", &["t"], &loads, 0).await, 1000 + round);
        assert_eq!(warm(&cache, "k", &["t"], &loads, 0).await, 1000 + round);
        cache.invalidate_tag("t").await.unwrap();
        assert_eq!(
            read(&cache, "k", &["t"], &loads, 2000 + round).await,
            2000 + round
        );
        assert_eq!(warm(&cache, "k", &["t"], &loads, 0).await, 2000 + round);
        cache.invalidate_key("k").await.unwrap();
        assert_eq!(
            read(&cache, "k", &["t"], &loads, 3000 + round).await,
            3000 + round
        );
        cache.invalidate_key("k").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_calls_never_meet_in_l1() {
    let server = RedisServer::start();
    let ns = unique_namespace("near");
    let cache = cache_with(&server.url(), &ns, near()).await;
    live(&cache, NearStatus::Tracking).await;
    let loads = AtomicU32::new(0);
    for _ in 0..2 {
        assert_eq!(read(&cache, "k", &["a"], &loads, 1).await, 1);
    }
    // The same key with other tags, or as another type: its own value.
    assert_eq!(read(&cache, "k", &["b"], &loads, 2).await, 2);
    let text: String = cache
        .get_with("k", TTL, &["b"], || async { "text".to_string() })
        .await;
    assert_eq!(text, "text");
    assert_eq!(read(&cache, "k2", &["a"], &loads, 3).await, 3);
}

/// The connection id of the cache's tracking connection, from CLIENT LIST.
fn tracking_client(server: &RedisServer) -> Option<String> {
    let list = server.command("CLIENT LIST");
    list.lines().find_map(|line| {
        let flags = line.split(' ').find_map(|f| f.strip_prefix("flags="))?;
        (flags.contains('t') && flags.contains('B'))
            .then(|| line.split(' ').find_map(|f| f.strip_prefix("id=")))
            .flatten()
            .map(str::to_string)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tracking_connection_flushes_and_bypasses_l1_until_it_is_back() {
    let server = RedisServer::start();
    let ns = unique_namespace("near");
    let cache = cache_with(&server.url(), &ns, near()).await;
    live(&cache, NearStatus::Tracking).await;
    let loads = AtomicU32::new(0);
    warm(&cache, "k", &[], &loads, 1).await;
    let flushes = cache.stats().near_flushes;

    let id = tracking_client(&server).expect("a tracking connection in CLIENT LIST");
    server.command(&format!("CLIENT KILL ID {id}"));
    eventually("the flush", Duration::from_secs(2), || async {
        cache.stats().near_flushes > flushes
    })
    .await;
    // Changed while nothing tracks it: never served from L1.
    server.command(&format!("DEL {ns}:v:k"));
    assert_eq!(read(&cache, "k", &[], &loads, 2).await, 2);

    live(&cache, NearStatus::Tracking).await;
    assert!(tracking_client(&server).is_some_and(|new| new != id));
    assert_eq!(
        warm(&cache, "k", &[], &loads, 3).await,
        2,
        "L1 serves again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_a_restart_and_a_frozen_server_each_empty_l1() {
    let mut server = RedisServer::start();
    let ns = unique_namespace("near");
    let cache = cache_with(&server.url(), &ns, near()).await;
    live(&cache, NearStatus::Tracking).await;
    let loads = AtomicU32::new(0);

    warm(&cache, "k", &[], &loads, 1).await;
    server.command("FLUSHALL");
    eventually("L1 flushed by FLUSHALL", Duration::from_secs(1), || async {
        read(&cache, "k", &[], &loads, 2).await == 2
    })
    .await;

    warm(&cache, "k", &[], &loads, 2).await;
    server.restart();
    server.command(&format!("SET {ns}:v:k garbage"));
    eventually(
        "L1 flushed by the restart",
        Duration::from_secs(3),
        || async { read(&cache, "k", &[], &loads, 3).await == 3 },
    )
    .await;
    live(&cache, NearStatus::Tracking).await;

    warm(&cache, "k", &[], &loads, 3).await;
    server.freeze();
    eventually(
        "L1 bypassed while the server does not answer",
        Duration::from_secs(3),
        || async { cache.stats().near == NearStatus::Bypassed },
    )
    .await;
    server.thaw();
    live(&cache, NearStatus::Tracking).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_client_tracking_l1_falls_back_to_pub_sub_and_a_short_lifetime() {
    let server = RedisServer::start_with(
        &["--rename-command", "CLIENT", ""],
        redcache_suite::free_port,
    );
    let ns = unique_namespace("near");
    let fallback = near().fallback_lifetime(Duration::from_millis(500));
    let a = cache_with(&server.url(), &ns, fallback.clone()).await;
    let b = cache_with(&server.url(), &ns, fallback).await;
    live(&a, NearStatus::PubSub).await;
    live(&b, NearStatus::PubSub).await;
    let loads = AtomicU32::new(0);

    assert_eq!(
        warm(&a, "k", &[], &loads, 1).await,
        1,
        "L1 serves on the fallback"
    );

    b.put("k", &2u64, TTL, &[]).await.unwrap();
    eventually(
        "a seeing b's put through the channel",
        Duration::from_secs(1),
        || async { read(&a, "k", &[], &loads, 0).await == 2 },
    )
    .await;
    assert_eq!(warm(&a, "k", &[], &loads, 0).await, 2);
    b.invalidate_key("k").await.unwrap();
    eventually(
        "a seeing b's invalidation",
        Duration::from_secs(1),
        || async { read(&a, "k", &[], &loads, 3).await == 3 },
    )
    .await;

    // redis-cli's changes are not announced: the short lifetime ends them.
    assert_eq!(warm(&a, "k", &[], &loads, 3).await, 3);
    server.command(&format!("DEL {ns}:v:k"));
    let deleted = Instant::now();
    eventually(
        "the fallback lifetime ending",
        Duration::from_secs(2),
        || async { read(&a, "k", &[], &loads, 4).await == 4 },
    )
    .await;
    assert!(deleted.elapsed() <= Duration::from_millis(1500));
}

/// A cache built on one runtime and used on another (a global cache built
/// in the first test's runtime): when the first shuts down, the tracking
/// task dies with it, and L1 must not go on serving without invalidations.
#[test]
fn a_cache_whose_tracking_runtime_ended_bypasses_l1() {
    let server = RedisServer::start();
    let ns = unique_namespace("near");
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cache = first.block_on(async {
        let cache = cache_with(&server.url(), &ns, near()).await;
        live(&cache, NearStatus::Tracking).await;
        cache
    });
    drop(first);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        assert_eq!(cache.stats().near, NearStatus::Unsupported);
        let loads = AtomicU32::new(0);
        read(&cache, "k", &[], &loads, 1).await;
        read(&cache, "k", &[], &loads, 1).await;
        assert_eq!(
            cache.stats().near_hits,
            0,
            "no L1 without its invalidations"
        );
        server.command(&format!("DEL {ns}:v:k"));
        assert_eq!(
            read(&cache, "k", &[], &loads, 2).await,
            2,
            "the change is seen at once"
        );
    });
}
