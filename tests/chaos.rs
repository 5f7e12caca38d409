//! Chaos under load: 64 tasks call a cached function while Redis (a single
//! server, or a master of a cluster with replicas) dies and comes back.
//! Callers see no error and no wrong value; the figures are printed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redcache::{Cache, CircuitState};
use redcache_suite::{unique_namespace, RedisCluster, RedisServer};

const TASKS: usize = 64;

/// The "database": every product has the current version.
struct World {
    cache: Cache,
    version: AtomicU64,
    /// A call that starts after this is set must see at least this version.
    floor: AtomicU64,
    stop: AtomicBool,
    worst_call_us: AtomicU64,
    calls: AtomicU64,
}

impl World {
    fn new(cache: Cache) -> Arc<Self> {
        Arc::new(World {
            cache,
            version: AtomicU64::new(1),
            floor: AtomicU64::new(1),
            stop: AtomicBool::new(false),
            worst_call_us: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        })
    }

    /// Starts the 64 callers.
    fn load(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        (0..TASKS)
            .map(|task| {
                let world = self.clone();
                tokio::spawn(async move {
                    let mut i = task as u64;
                    while !world.stop.load(SeqCst) {
                        i = (i * 31 + 7) % 200;
                        let floor = world.floor.load(SeqCst);
                        let started = Instant::now();
                        let value = world
                            .cache
                            .get_or_load(
                                &format!("product:{i}"),
                                Duration::from_secs(60),
                                &["catalog"],
                                || async {
                                    // The query the cache saves.
                                    tokio::time::sleep(Duration::from_millis(1)).await;
                                    Ok::<_, std::convert::Infallible>((
                                        i,
                                        world.version.load(SeqCst),
                                    ))
                                },
                            )
                            .await;
                        let elapsed = started.elapsed().as_micros() as u64;
                        world.worst_call_us.fetch_max(elapsed, SeqCst);
                        world.calls.fetch_add(1, SeqCst);
                        let Ok((id, version)) = value;
                        assert_eq!(id, i, "a call returned another key's value");
                        assert!(
                            version >= floor,
                            "a stale value (version {version}) after an invalidation to {floor}"
                        );
                        // A caller does other work between calls.
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect()
    }

    /// Changes the data and invalidates; returns whether Redis took it.
    async fn update(&self) -> bool {
        let next = self.version.fetch_add(1, SeqCst) + 1;
        let delivered = self.cache.invalidate_tag("catalog").await.is_ok();
        self.floor.store(next, SeqCst);
        delivered
    }

    /// Polls until the cache answers from Redis again (hits grow and the
    /// circuit is closed); returns how long that took.
    async fn until_recovered(&self, limit: Duration) -> Duration {
        let began = Instant::now();
        let mut hits = self.cache.stats().hits;
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let stats = self.cache.stats();
            if stats.hits > hits && stats.circuit == CircuitState::Closed {
                return began.elapsed();
            }
            hits = stats.hits;
            assert!(
                began.elapsed() < limit,
                "caching did not resume within {limit:?}: {stats:?}"
            );
        }
    }

    async fn finish(&self, tasks: Vec<tokio::task::JoinHandle<()>>) {
        self.stop.store(true, SeqCst);
        for task in tasks {
            task.await.expect("a caller saw an error or a wrong value");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_and_restarting_redis_under_load() {
    let mut server = RedisServer::start();
    let op_timeout = Duration::from_millis(50);
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(unique_namespace("chaos"))
        .op_timeout(op_timeout)
        .build()
        .await
        .unwrap();
    let world = World::new(cache);
    let tasks = world.load();
    tokio::time::sleep(Duration::from_millis(500)).await;

    server.stop();
    let worst_before = world.worst_call_us.swap(0, SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !world.update().await,
        "an invalidation with Redis down must report its failure"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let worst_during = world.worst_call_us.swap(0, SeqCst);

    server.restart();
    let recovery = world.until_recovered(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    world.finish(tasks).await;

    let stats = world.cache.stats();
    assert_eq!(
        stats.invalidations, 1,
        "the invalidation issued during the outage was delivered afterwards: {stats:?}"
    );
    // Added latency stays bounded while Redis is down (calls run the
    // function); the bound here only guards against hangs.
    assert!(
        worst_during < 1_000_000,
        "a call took {worst_during} µs while Redis was down"
    );
    println!(
        "single node: {} calls, 0 errors; worst call {worst_before} µs before, {worst_during} µs during the outage \
         (op timeout {op_timeout:?}); caching resumed {recovery:?} after restart; {stats:?}",
        world.calls.load(SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_cluster_master_under_load() {
    let mut cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1))
        .await
        .unwrap();
    let cache = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace(unique_namespace("chaos"))
        .op_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let world = World::new(cache);
    let tasks = world.load();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Kill a master; its replica takes over after the node timeout (1 s).
    let victim = cluster
        .nodes()
        .iter()
        .position(|n| n.command("ROLE").contains("master"))
        .expect("a master");
    let killed_at = Instant::now();
    cluster.nodes_mut()[victim].stop();
    let masters = |cluster: &RedisCluster| {
        cluster
            .nodes()
            .iter()
            .filter(|n| n.is_running() && n.command("ROLE").contains("master"))
            .count()
    };
    while masters(&cluster) < 3 {
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "no replica was promoted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failover = killed_at.elapsed();
    tokio::task::block_in_place(|| cluster.wait_until_ok(Duration::from_secs(20)));
    // Whether caching resumes while the dead master is still down.
    let resumed_while_down = world.until_recovered(Duration::from_secs(10)).await;

    // Bring the dead master back: it rejoins as a replica of the promoted one.
    cluster.nodes_mut()[victim].restart();
    let back = Instant::now();
    tokio::task::block_in_place(|| cluster.wait_until_ok(Duration::from_secs(20)));
    let recovery = world.until_recovered(Duration::from_secs(20)).await + back.elapsed();
    // The caller of a failed invalidation knows and retries.
    let mut delivered = world.update().await;
    let retrying = Instant::now();
    while !delivered {
        assert!(
            retrying.elapsed() < Duration::from_secs(10),
            "invalidations do not reach the promoted replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        delivered = world.cache.invalidate_tag("catalog").await.is_ok();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    world.finish(tasks).await;
    let stats = world.cache.stats();
    println!(
        "cluster: {} calls, 0 errors; worst call {} µs; replica promoted {failover:?} after the kill; \
         caching resumed {resumed_while_down:?} after the promotion (old master still down); \
         caching resumed {recovery:?} after it came back; {stats:?}",
        world.calls.load(SeqCst),
        world.worst_call_us.load(SeqCst)
    );
}
