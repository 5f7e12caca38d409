//! Redis Cluster: a real 3-master cluster the harness builds with
//! `redis-cli --cluster create`. The semantic suite runs on it too (see
//! `semantics.rs`, module `cluster`); here are the cluster-specific checks.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use redcache::{Algorithm, Cache, Policy, RateLimiter};
use redcache_suite::{key_slot, unique_namespace, RedisCluster};

async fn cluster_cache(cluster: &RedisCluster, namespace: &str) -> Cache {
    Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace(namespace)
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap()
}

async fn shared_cluster() -> Arc<RedisCluster> {
    tokio::task::spawn_blocking(RedisCluster::shared)
        .await
        .unwrap()
}

/// Every key under `namespace` on every node, found with SCAN.
fn keys_under(cluster: &RedisCluster, namespace: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for node in cluster.nodes() {
        let reply = node.command(&format!("SCAN 0 MATCH {namespace}:* COUNT 10000"));
        keys.extend(
            reply
                .lines()
                .filter(|l| l.starts_with(namespace))
                .map(str::to_string),
        );
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_of_every_script_call_hash_to_one_slot() {
    let cluster = shared_cluster().await;
    let ns = unique_namespace("slots");
    let cache = cluster_cache(&cluster, &ns).await;
    let policies = [
        Policy::new(10, Duration::from_secs(60)),
        Policy::new(100, Duration::from_secs(3600)).algorithm(Algorithm::SlidingWindow),
        Policy::new(5, Duration::from_secs(10)).algorithm(Algorithm::Gcra),
        Policy::new(50, Duration::from_secs(600)).algorithm(Algorithm::FixedWindow),
    ];
    let limiter = RateLimiter::new(&cache, "api", policies).unwrap();
    for user in 0..20 {
        let status = limiter.check(&format!("user:{user}")).await.unwrap();
        assert!(
            !status.is_degraded(),
            "a multi-key script failed on the cluster (CROSSSLOT?)"
        );
    }
    // Cached entries under several tags spread over the nodes.
    for id in 0..20 {
        let tags = [format!("category:{}", id % 7), format!("brand:{}", id % 5)];
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        cache
            .get_or_load(
                &format!("product:{id}"),
                Duration::from_secs(60),
                &tags,
                || async { Ok::<_, String>(id) },
            )
            .await
            .unwrap();
    }
    cache.invalidate_tag("category:3").await.unwrap();
    assert_eq!(
        cache.stats().errors,
        0,
        "no operation failed on the cluster: {:?}",
        cache.stats()
    );

    let keys = keys_under(&cluster, &ns);
    let rate_keys: Vec<&String> = keys.iter().filter(|k| k.contains(":rl:")).collect();
    assert_eq!(rate_keys.len(), 80, "4 policies x 20 users: {rate_keys:?}");
    for user in 0..20 {
        let tag = format!("{{user:{user}}}");
        let slots: Vec<u16> = rate_keys
            .iter()
            .filter(|k| k.contains(&tag))
            .map(|k| key_slot(k))
            .collect();
        assert_eq!(slots.len(), 4);
        assert!(
            slots.iter().all(|&s| s == slots[0]),
            "the keys of one check span slots: {slots:?}"
        );
    }
    // Our slot function agrees with the server's.
    for key in keys.iter().take(10) {
        let reply = cluster.nodes()[0].command(&format!("CLUSTER KEYSLOT {key}"));
        assert_eq!(
            reply.trim().trim_start_matches(':'),
            key_slot(key).to_string(),
            "{key}"
        );
    }
    let nodes_used = cluster
        .nodes()
        .iter()
        .filter(|n| n.command("DBSIZE") != ":0\r\n")
        .count();
    assert!(nodes_used >= 2, "the keys should spread over the masters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_on_the_cluster_never_exceed_the_limit() {
    let cluster = shared_cluster().await;
    let cache = cluster_cache(&cluster, &unique_namespace("rlc")).await;
    for algorithm in [
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
        Algorithm::Gcra,
    ] {
        let limiter = Arc::new(
            RateLimiter::new(
                &cache,
                "hot",
                [Policy::new(40, Duration::from_secs(600)).algorithm(algorithm)],
            )
            .unwrap(),
        );
        let admitted = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (limiter, admitted) = (limiter.clone(), admitted.clone());
                tokio::spawn(async move {
                    for _ in 0..5 {
                        if limiter.check("k").await.is_ok() {
                            admitted.fetch_add(1, SeqCst);
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(admitted.load(SeqCst), 40, "{algorithm:?}");
    }
    let two = RateLimiter::new(
        &cache,
        "multi",
        [
            Policy::new(2, Duration::from_secs(600)),
            Policy::new(3, Duration::from_secs(3600)),
        ],
    )
    .unwrap();
    let mut admitted = 0;
    for _ in 0..10 {
        admitted += usize::from(two.check("u").await.is_ok());
    }
    assert_eq!(admitted, 2);
    let hourly =
        RateLimiter::new(&cache, "multi", [Policy::new(3, Duration::from_secs(3600))]).unwrap();
    assert_eq!(
        hourly.check("u").await.unwrap().remaining(),
        0,
        "refused calls took nothing from the hourly policy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_from_a_comma_separated_url_list_uses_the_cluster() {
    let cluster = shared_cluster().await;
    let ns = unique_namespace("env");
    let cache = Cache::builder()
        .url(&cluster.urls().join(","))
        .namespace(&ns)
        .build()
        .await
        .unwrap();
    let value = cache
        .get_or_load("k", Duration::from_secs(60), &["t"], || async {
            Ok::<_, String>(1)
        })
        .await;
    assert_eq!(value, Ok(1));
    assert_eq!(
        keys_under(&cluster, &ns).len(),
        2,
        "the entry and its tag epoch"
    );
}
