//! The near cache on a real Redis Cluster: one tracking connection per
//! primary, so a write on any shard reaches L1; and a slot given to
//! another node (which Redis 7.0 announces to no tracking client) or a
//! failover flushes L1, found by the tracker's poll of the slot map.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use redcache::{Cache, NearCache, NearStatus};
use redcache_suite::{eventually, key_slot, unique_namespace, RedisCluster, RedisServer};

const TTL: Duration = Duration::from_secs(60);

async fn near_cache(cluster: &RedisCluster, ns: &str) -> Cache {
    let cache = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace(ns)
        .op_timeout(Duration::from_secs(2))
        .near_cache(NearCache::new().check_interval(Duration::from_millis(200)))
        .build()
        .await
        .unwrap();
    eventually(
        "tracking on every primary",
        Duration::from_secs(10),
        || async { cache.stats().near == NearStatus::Tracking },
    )
    .await;
    cache
}

async fn read(cache: &Cache, key: &str, loads: &AtomicU32, value: u64) -> u64 {
    cache
        .get_with(key, TTL, &["t"], || async {
            loads.fetch_add(1, SeqCst);
            value
        })
        .await
}

/// Reads `key` until it is an L1 hit; returns the value L1 holds.
async fn warm(cache: &Cache, key: &str, loads: &AtomicU32) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let hits = cache.stats().near_hits;
        let got = read(cache, key, loads, 1).await;
        if cache.stats().near_hits > hits {
            return got;
        }
        assert!(Instant::now() < deadline, "`{key}` never reached L1");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The node that serves `key` (the others answer MOVED).
fn owner<'a>(cluster: &'a RedisCluster, key: &str) -> &'a RedisServer {
    cluster
        .nodes()
        .iter()
        .filter(|n| n.is_running())
        .find(|n| !n.command(&format!("EXISTS {key}")).starts_with("-MOVED"))
        .expect("a node owns the key")
}

fn node_id(node: &RedisServer) -> String {
    let reply = node.command("CLUSTER MYID");
    reply.lines().nth(1).expect("CLUSTER MYID").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_every_shard_reach_l1_and_a_moved_slot_flushes_it() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0))
        .await
        .unwrap();
    let ns = unique_namespace("near-cluster");
    let a = near_cache(&cluster, &ns).await;
    let b = near_cache(&cluster, &ns).await;
    let loads = AtomicU32::new(0);

    // Keys on every shard: another process's puts reach a's L1.
    let keys: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
    let shards: std::collections::HashSet<u16> = keys
        .iter()
        .map(|k| owner(&cluster, &format!("{ns}:v:{k}")).port())
        .collect();
    assert_eq!(shards.len(), 3, "the keys cover every shard");
    for key in &keys {
        assert_eq!(warm(&a, key, &loads).await, 1);
    }
    for key in &keys {
        b.put(key, &2u64, TTL, &["t"]).await.unwrap();
    }
    for key in &keys {
        eventually(
            &format!("a seeing b's put of {key}"),
            Duration::from_secs(1),
            || async { read(&a, key, &loads, 0).await == 2 },
        )
        .await;
    }

    // The slot of k0 is given to another node without moving its key:
    // Redis announces nothing, the slot map poll flushes L1.
    let key = "k0";
    assert_eq!(warm(&a, key, &loads).await, 2);
    let entry = format!("{ns}:v:{key}");
    let from = owner(&cluster, &entry);
    let to = cluster
        .nodes()
        .iter()
        .find(|n| n.port() != from.port())
        .unwrap();
    let slot = key_slot(&entry);
    // The new owner takes the slot with a newer epoch; the old one learns
    // it by gossip and drops its keys of the slot (silently, on 7.0).
    let reply = to.command(&format!("CLUSTER SETSLOT {slot} NODE {}", node_id(to)));
    assert!(reply.starts_with("+OK"), "SETSLOT: {reply}");
    assert!(to.command("CLUSTER BUMPEPOCH").starts_with('+'));
    let flushes = a.stats().near_flushes;
    eventually(
        "the new owner answering",
        Duration::from_secs(5),
        || async { !to.command(&format!("EXISTS {entry}")).starts_with("-MOVED") },
    )
    .await;
    // Until the old owner hears of it, it still serves (and may refill L1
    // with) the old value: the handover is not done before that. Seen in
    // CI under load; README, "Near cache", says what this costs.
    eventually(
        "the old owner redirecting",
        Duration::from_secs(5),
        || async {
            from.command(&format!("EXISTS {entry}"))
                .starts_with("-MOVED")
        },
    )
    .await;
    eventually(
        "a reading the key from its new owner",
        Duration::from_secs(2),
        || async { read(&a, key, &loads, 3).await == 3 },
    )
    .await;
    assert!(a.stats().near_flushes > flushes, "the slot move flushed L1");
    eventually("tracking again", Duration::from_secs(10), || async {
        a.stats().near == NearStatus::Tracking
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_flushes_l1_and_tracking_moves_to_the_new_primary() {
    let mut cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1))
        .await
        .unwrap();
    let ns = unique_namespace("near-failover");
    let a = near_cache(&cluster, &ns).await;
    let b = near_cache(&cluster, &ns).await;
    let loads = AtomicU32::new(0);
    let key = "k";
    assert_eq!(warm(&a, key, &loads).await, 1);

    // Kill the key's primary: its replica takes over.
    let entry = format!("{ns}:v:{key}");
    let port = owner(&cluster, &entry).port();
    let flushes = a.stats().near_flushes;
    let dead = cluster
        .nodes_mut()
        .iter_mut()
        .find(|n| n.port() == port)
        .unwrap();
    dead.stop();
    eventually("the flush", Duration::from_secs(5), || async {
        a.stats().near_flushes > flushes
    })
    .await;
    tokio::task::block_in_place(|| cluster.wait_until_ok(Duration::from_secs(30)));
    eventually(
        "tracking on the new primaries",
        Duration::from_secs(15),
        || async { a.stats().near == NearStatus::Tracking },
    )
    .await;
    // The new primary's writes reach a's L1.
    assert_eq!(warm(&a, key, &loads).await, 1);
    eventually(
        "b writing to the new primary",
        Duration::from_secs(10),
        || async { b.put(key, &5u64, TTL, &["t"]).await.is_ok() },
    )
    .await;
    eventually(
        "a seeing b's put on the new primary",
        Duration::from_secs(1),
        || async { read(&a, key, &loads, 0).await == 5 },
    )
    .await;
}
