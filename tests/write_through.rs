//! Write-through (`Cache::put`) and `invalidate_key`, with the ordering
//! guarantee: a load that began before a put or an invalidation of its key
//! never overwrites it, in any process, on every backend.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use redcache::Cache;
use redcache_suite::{unique_namespace, RedisCluster, RedisServer};
use tokio::sync::{oneshot, Notify};

const TTL: Duration = Duration::from_secs(300);

/// Starts a load of "k" on `reader` that returns "old" only when `release`
/// is notified, and waits until the load has begun.
async fn slow_load_of_old(
    reader: &Cache,
    tags: &'static [&'static str],
    release: Arc<Notify>,
) -> tokio::task::JoinHandle<Result<String, String>> {
    let (began, began_rx) = oneshot::channel();
    let reader = reader.clone();
    let handle = tokio::spawn(async move {
        reader
            .get_or_load("k", TTL, tags, || async move {
                let _ = began.send(());
                release.notified().await;
                Ok::<_, String>("old".to_string())
            })
            .await
    });
    began_rx.await.expect("the load began");
    handle
}

/// Reads "k", counting loads (each loads "fresh").
async fn read(cache: &Cache, tags: &[&str], loads: &AtomicUsize) -> String {
    cache
        .get_or_load("k", TTL, tags, || async {
            loads.fetch_add(1, SeqCst);
            Ok::<_, String>("fresh".to_string())
        })
        .await
        .unwrap()
}

/// `reader` loads slowly; `writer` (the same process, or another cache on
/// the same Redis) puts "new" meanwhile. The slow load answers its own
/// caller with "old" but does not store it: every later read is "new".
async fn a_load_that_began_before_a_put_never_overwrites_it(reader: Cache, writer: Cache) {
    for tags in [&[][..], &["t"][..]] {
        let release = Arc::new(Notify::new());
        let slow = slow_load_of_old(&reader, tags, release.clone()).await;
        writer
            .put("k", &"new".to_string(), TTL, tags)
            .await
            .unwrap();
        release.notify_one();
        assert_eq!(slow.await.unwrap(), Ok("old".to_string()));
        let loads = AtomicUsize::new(0);
        for cache in [&reader, &writer] {
            assert_eq!(read(cache, tags, &loads).await, "new", "tags {tags:?}");
        }
        assert_eq!(loads.load(SeqCst), 0, "the put's value is a hit");
        reader.invalidate_key("k").await.unwrap();
    }
}

/// The same with `invalidate_key`: the slow load's value is not stored, so
/// the next read loads again.
async fn a_load_that_began_before_invalidate_key_never_stores(reader: Cache, writer: Cache) {
    // A value in place first: the load below begins from it... and from
    // nothing, the other case.
    for present in [true, false] {
        if present {
            writer
                .put("k", &"before".to_string(), TTL, &[])
                .await
                .unwrap();
            writer.invalidate_key("k").await.unwrap();
        }
        let release = Arc::new(Notify::new());
        let slow = slow_load_of_old(&reader, &[], release.clone()).await;
        writer.invalidate_key("k").await.unwrap();
        release.notify_one();
        assert_eq!(slow.await.unwrap(), Ok("old".to_string()));
        let loads = AtomicUsize::new(0);
        assert_eq!(read(&reader, &[], &loads).await, "fresh");
        assert_eq!(read(&writer, &[], &loads).await, "fresh");
        assert_eq!(
            loads.load(SeqCst),
            1,
            "one load after the invalidation, then hits"
        );
        writer.invalidate_key("k").await.unwrap();
    }
}

/// A put replaces an entry of any age, and a call with another value type
/// or template never reads it (two different calls never meet).
async fn a_put_is_read_by_its_own_template_only(cache: Cache) {
    cache.put("p", &41u64, TTL, &[]).await.unwrap();
    cache.put("p", &42u64, TTL, &[]).await.unwrap();
    let n: u64 = cache.get_with("p", TTL, &[], || async { 0 }).await;
    assert_eq!(n, 42);
    let text: String = cache
        .get_with("p", TTL, &[], || async { "loaded".to_string() })
        .await;
    assert_eq!(text, "loaded", "a String call does not read the u64 put");
}

async fn on_memory() -> Cache {
    Cache::builder().build().await.unwrap()
}

async fn on_redis(url: String, namespace: &str) -> Cache {
    Cache::builder()
        .redis(url)
        .namespace(namespace)
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap()
}

/// A cache for a test that stops its server: short timeouts, and a breaker
/// that does not stay open (so the retry after the restart is prompt).
async fn outage_ready(url: String, namespace: &str) -> Cache {
    Cache::builder()
        .redis(url)
        .namespace(namespace)
        .op_timeout(Duration::from_millis(200))
        .circuit_breaker(1000, Duration::from_millis(10))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn put_and_invalidate_key_win_over_older_loads_in_memory() {
    let cache = on_memory().await;
    a_load_that_began_before_a_put_never_overwrites_it(cache.clone(), cache.clone()).await;
    a_load_that_began_before_invalidate_key_never_stores(cache.clone(), cache.clone()).await;
    a_put_is_read_by_its_own_template_only(cache).await;
}

#[tokio::test]
async fn put_and_invalidate_key_win_over_older_loads_across_processes_on_redis() {
    let server = RedisServer::start();
    let ns = unique_namespace("put");
    let (a, b) = (
        on_redis(server.url(), &ns).await,
        on_redis(server.url(), &ns).await,
    );
    a_load_that_began_before_a_put_never_overwrites_it(a.clone(), b.clone()).await;
    a_load_that_began_before_invalidate_key_never_stores(a.clone(), b).await;
    a_put_is_read_by_its_own_template_only(a).await;
    // Every key written has an expiry, tombstones included.
    for key in ["k", "p"] {
        let ttl = server.command(&format!("PTTL {ns}:v:{key}"));
        let ms: i64 = ttl.trim_start_matches(':').trim().parse().unwrap();
        assert!(ms > 0, "{key}: PTTL {ttl}");
    }
}

#[tokio::test]
async fn put_and_invalidate_key_win_over_older_loads_on_a_cluster() {
    let cluster = RedisCluster::shared();
    let ns = unique_namespace("put-cluster");
    let connect = || {
        Cache::builder()
            .redis_cluster(cluster.urls())
            .namespace(ns.as_str())
            .op_timeout(Duration::from_secs(2))
            .build()
    };
    let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
    a_load_that_began_before_a_put_never_overwrites_it(a.clone(), b.clone()).await;
    a_load_that_began_before_invalidate_key_never_stores(a, b).await;
}

/// A put that cannot reach Redis is an error, and the key is invalidated
/// once Redis is back: the old value is not served for its remaining TTL.
#[tokio::test]
async fn a_put_that_fails_is_told_and_invalidates_the_key_later() {
    let mut server = RedisServer::start();
    let ns = unique_namespace("put-down");
    let cache = outage_ready(server.url(), &ns).await;
    let other = on_redis(server.url(), &ns).await;
    let loads = AtomicUsize::new(0);
    assert_eq!(read(&cache, &[], &loads).await, "fresh");
    server.stop();
    assert!(cache.put("k", &"new".to_string(), TTL, &[]).await.is_err());
    // This process does not read the key from the cache meanwhile.
    let value: String = cache
        .get_or_load("k", TTL, &[], || async {
            Ok::<_, String>("db".to_string())
        })
        .await
        .unwrap();
    assert_eq!(value, "db");
    server.restart();
    // The next cached call delivers the pending invalidation first.
    let value: String = cache
        .get_or_load("other", TTL, &[], || async {
            Ok::<_, String>("x".to_string())
        })
        .await
        .unwrap();
    assert_eq!(value, "x");
    // Another process no longer reads the old entry.
    let value: String = other
        .get_or_load("k", TTL, &[], || async {
            Ok::<_, String>("reloaded".to_string())
        })
        .await
        .unwrap();
    assert_eq!(value, "reloaded");
}

/// The attributes: a `#[cached]` reader and its writers.
mod shop {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use redcache::{cache_put, cached, invalidates, Cache};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Product {
        pub id: u64,
        pub category: u64,
        pub name: String,
    }

    #[derive(Debug, PartialEq)]
    pub enum DbError {
        Refused,
        Cache(String),
    }

    impl From<redcache::Error> for DbError {
        fn from(error: redcache::Error) -> Self {
            DbError::Cache(error.to_string())
        }
    }

    /// An error type that cannot hold a cache failure.
    #[derive(Debug, PartialEq)]
    pub struct PlainError;

    pub struct Shop {
        pub cache: Cache,
        pub loads: AtomicUsize,
    }

    impl Shop {
        #[cached(ttl = 300, key = "product:<id>", tags = ["category:<category>"], cache = self.cache)]
        pub async fn product(&self, id: u64, category: u64) -> Result<Product, DbError> {
            self.loads.fetch_add(1, SeqCst);
            Ok(Product {
                id,
                category,
                name: "from the db".into(),
            })
        }

        #[cache_put(ttl = 300, key = "product:<product.id>", tags = ["category:<product.category>"], cache = self.cache)]
        pub async fn save(&self, product: Product, fail: bool) -> Result<Product, DbError> {
            if fail {
                return Err(DbError::Refused);
            }
            Ok(product)
        }

        /// Stacked: the new value stored, and the category's lists invalidated.
        #[cache_put(ttl = 300, key = "product:<product.id>", tag = "category:<product.category>", cache = self.cache)]
        #[invalidates(tag = "lists:<product.category>", cache = self.cache)]
        pub async fn rename(&self, product: Product) -> Result<Product, PlainError> {
            Ok(product)
        }

        #[cached(ttl = 300, key = "list:<category>", tag = "lists:<category>", cache = self.cache)]
        pub async fn list(&self, category: u64) -> Vec<u64> {
            self.loads.fetch_add(1, SeqCst);
            vec![category]
        }

        #[invalidates(keys = ["product:<id>"], tags = ["lists:<category>"], cache = self.cache)]
        pub async fn delete(&self, id: u64, category: u64, fail: bool) -> Result<(), DbError> {
            let _ = (id, category);
            if fail {
                Err(DbError::Refused)
            } else {
                Ok(())
            }
        }

        #[invalidates(key = "product:<id>", cache = self.cache)]
        pub async fn delete_quietly(&self, id: u64) -> Result<(), PlainError> {
            let _ = id;
            Ok(())
        }

        /// `None` (not found) writes nothing.
        #[cache_put(ttl = 300, key = "product:<id>", tag = "category:<category>", cache = self.cache)]
        pub async fn find_and_touch(&self, id: u64, category: u64) -> Option<Product> {
            (id != 404).then(|| Product {
                id,
                category,
                name: "touched".into(),
            })
        }
    }

    pub fn product(id: u64, name: &str) -> Product {
        Product {
            id,
            category: 7,
            name: name.into(),
        }
    }
}

use shop::{product, DbError, PlainError, Shop};

async fn the_attributes_write_through_and_invalidate(cache: Cache) {
    let shop = Shop {
        cache,
        loads: AtomicUsize::new(0),
    };
    let loads = || shop.loads.load(SeqCst);
    assert_eq!(shop.product(1, 7).await.unwrap().name, "from the db");
    assert_eq!(shop.product(2, 7).await.unwrap().name, "from the db");
    assert_eq!(loads(), 2);

    // A put is read by the #[cached] fn, for its key only.
    shop.save(product(1, "lamp"), false).await.unwrap();
    assert_eq!(shop.product(1, 7).await.unwrap().name, "lamp");
    assert_eq!(shop.product(2, 7).await.unwrap().name, "from the db");
    assert_eq!(loads(), 2, "both hits");

    // A failed body stores nothing.
    assert_eq!(
        shop.save(product(1, "broken"), true).await,
        Err(DbError::Refused)
    );
    assert_eq!(shop.product(1, 7).await.unwrap().name, "lamp");

    // `None` stores nothing; `Some` stores.
    assert_eq!(shop.find_and_touch(404, 7).await, None);
    assert_eq!(shop.find_and_touch(2, 7).await.unwrap().name, "touched");
    assert_eq!(shop.product(2, 7).await.unwrap().name, "touched");
    assert_eq!(loads(), 2);

    // Stacked: stored and the lists invalidated.
    assert_eq!(shop.list(7).await, [7]);
    assert_eq!(shop.list(7).await, [7]);
    assert_eq!(loads(), 3);
    shop.rename(product(1, "desk lamp")).await.unwrap();
    assert_eq!(shop.product(1, 7).await.unwrap().name, "desk lamp");
    assert_eq!(shop.list(7).await, [7]);
    assert_eq!(loads(), 4, "the list was reloaded, the product was not");

    // A failed delete invalidates nothing; a delete invalidates its key and tag.
    assert_eq!(shop.delete(1, 7, true).await, Err(DbError::Refused));
    assert_eq!(shop.product(1, 7).await.unwrap().name, "desk lamp");
    shop.delete(1, 7, false).await.unwrap();
    assert_eq!(shop.product(1, 7).await.unwrap().name, "from the db");
    assert_eq!(
        shop.product(2, 7).await.unwrap().name,
        "touched",
        "another key stays"
    );
    assert_eq!(shop.list(7).await, [7]);
    assert_eq!(loads(), 6);
    assert_eq!(shop.delete_quietly(2).await, Ok(()));
    assert_eq!(shop.product(2, 7).await.unwrap().name, "from the db");
}

#[tokio::test]
async fn the_attributes_write_through_and_invalidate_in_memory() {
    the_attributes_write_through_and_invalidate(on_memory().await).await;
}

#[tokio::test]
async fn the_attributes_write_through_and_invalidate_on_redis() {
    let server = RedisServer::start();
    let ns = unique_namespace("attr-put");
    the_attributes_write_through_and_invalidate(on_redis(server.url(), &ns).await).await;
}

/// With Redis down after the write: an error type that can hold the cache's
/// failure gets it; another returns its `Ok` (the failure is in tracing and
/// stats). Either way the invalidation is delivered once Redis is back.
#[tokio::test]
async fn a_failure_after_the_write_is_the_fns_error_where_its_type_allows() {
    let mut server = RedisServer::start();
    let ns = unique_namespace("attr-down");
    let cache = outage_ready(server.url(), &ns).await;
    let shop = Shop {
        cache: cache.clone(),
        loads: AtomicUsize::new(0),
    };
    assert_eq!(shop.product(1, 7).await.unwrap().name, "from the db");
    server.stop();
    let told = shop.save(product(1, "lamp"), false).await;
    assert!(matches!(told, Err(DbError::Cache(_))), "{told:?}");
    assert!(matches!(
        shop.delete(1, 7, false).await,
        Err(DbError::Cache(_))
    ));
    assert_eq!(shop.delete_quietly(1).await, Ok::<(), PlainError>(()));
    assert!(cache.stats().errors > 0);
    server.restart();
    let other = on_redis(server.url(), &ns).await;
    // The first cached call of `cache` delivers what is pending ...
    let _: String = cache
        .get_with("unrelated", TTL, &[], || async { "x".to_string() })
        .await;
    // ... so another process does not read the entry of before the write.
    let reader = Shop {
        cache: other,
        loads: AtomicUsize::new(0),
    };
    assert_eq!(reader.product(1, 7).await.unwrap().name, "from the db");
    assert_eq!(reader.loads.load(SeqCst), 1, "reloaded, not the old entry");
}

/// A load that began before an `invalidate_key` does not store even once
/// the key has emptied again (a newer entry expired): an empty key is not
/// what the load began from.
#[tokio::test]
async fn an_older_load_does_not_store_into_a_key_that_emptied_since() {
    let clock = redcache::ManualClock::new(Duration::from_secs(1_000_000));
    let cache = Cache::builder().clock(clock.clone()).build().await.unwrap();
    let short = Duration::from_secs(1);
    cache
        .get_with("k", short, &[], || async { "first".to_string() })
        .await;
    clock.advance(Duration::from_secs(2)); // "first" expired, still kept
    let release = Arc::new(Notify::new());
    let (began, began_rx) = oneshot::channel();
    let slow = {
        let (cache, release) = (cache.clone(), release.clone());
        tokio::spawn(async move {
            cache
                .get_with("k", TTL, &[], || async move {
                    let _ = began.send(());
                    release.notified().await;
                    "old".to_string()
                })
                .await
        })
    };
    began_rx.await.unwrap();
    cache.invalidate_key("k").await.unwrap();
    let newer: String = cache
        .get_with("k", short, &[], || async { "newer".to_string() })
        .await;
    assert_eq!(newer, "newer");
    clock.advance(Duration::from_secs(60)); // "newer" expired and is gone
    release.notify_one();
    assert_eq!(slow.await.unwrap(), "old");
    let loads = AtomicUsize::new(0);
    assert_eq!(
        read(&cache, &[], &loads).await,
        "fresh",
        "not the older load's value"
    );
}
