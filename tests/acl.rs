//! ACL users: the username and password in the URL are used on every
//! connection, on a single node and on a cluster.

use std::time::Duration;

use redcache::Cache;
use redcache_suite::{unique_namespace, RedisCluster, RedisServer};

const USER: &str = "ACL SETUSER app on >s3cret ~* &* +@all";

fn with_credentials(url: &str) -> String {
    url.replacen("redis://", "redis://app:s3cret@", 1)
}

#[tokio::test]
async fn a_single_node_with_an_acl_user() {
    let server = RedisServer::start();
    assert_eq!(server.command(USER), "+OK\r\n");
    let cache = Cache::builder()
        .redis(with_credentials(&server.url()))
        .namespace(unique_namespace("acl"))
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let value = cache
        .get_or_load("k", Duration::from_secs(60), &["t"], || async {
            Ok::<_, String>(1)
        })
        .await;
    assert_eq!(value, Ok(1));
    cache.invalidate_tag("t").await.unwrap();
    assert_eq!(cache.stats().errors, 0);
    assert!(
        server.command("CLIENT LIST").contains("user=app"),
        "the cache connected as `app`"
    );

    let wrong = Cache::builder()
        .redis(server.url().replacen("redis://", "redis://app:wrong@", 1))
        .namespace(unique_namespace("acl"))
        .op_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let value = wrong
        .get_or_load("k", Duration::from_secs(60), &[], || async {
            Ok::<_, String>(2)
        })
        .await;
    assert_eq!(value, Ok(2), "bad credentials fail open too");
    assert!(wrong.stats().errors > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_an_acl_user() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0))
        .await
        .unwrap();
    for node in cluster.nodes() {
        assert_eq!(node.command(USER), "+OK\r\n");
    }
    let urls: Vec<String> = cluster.urls().iter().map(|u| with_credentials(u)).collect();
    let cache = Cache::builder()
        .redis_cluster(urls)
        .namespace(unique_namespace("acl"))
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    for id in 0..20 {
        let value = cache
            .get_or_load(
                &format!("k{id}"),
                Duration::from_secs(60),
                &["t"],
                || async { Ok::<_, String>(id) },
            )
            .await;
        assert_eq!(value, Ok(id));
    }
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
    let as_app = cluster
        .nodes()
        .iter()
        .filter(|n| n.command("CLIENT LIST").contains("user=app"))
        .count();
    assert_eq!(as_app, 3, "every master was reached as `app`");
}
