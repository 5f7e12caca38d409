//! `#[cached]` and `#[rate_limited]` on the methods of an `#[async_trait]`
//! impl (a trait object needs it: `Arc<dyn Repo>`), keyed like any method.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use async_trait::async_trait;
use redcache::{cached, rate_limited, Cache, RateLimited};
use redcache_suite::{unique_namespace, RedisServer};

#[derive(Debug, PartialEq)]
enum RepoError {
    Missing,
    Limited,
}

impl From<RateLimited> for RepoError {
    fn from(_: RateLimited) -> Self {
        RepoError::Limited
    }
}

#[async_trait]
trait Repo: Send + Sync {
    async fn name(&self, id: u64) -> Result<String, RepoError>;
    async fn shelf(&self, shelf: &str, page: Option<u32>) -> Vec<String>;
    async fn ping(&self) -> Result<(), RepoError>;
}

struct Db {
    cache: Cache,
    tenant: String,
    loads: AtomicUsize,
}

#[async_trait]
impl Repo for Db {
    #[cached(ttl = 60, key = "name:<self.tenant>:<id>", tags = ["tenant:<self.tenant>"], cache = self.cache)]
    async fn name(&self, id: u64) -> Result<String, RepoError> {
        self.loads.fetch_add(1, SeqCst);
        if id == 0 {
            return Err(RepoError::Missing);
        }
        Ok(format!("{} {id}", self.tenant))
    }

    #[cached(ttl = 60, cache = self.cache)]
    async fn shelf(&self, shelf: &str, page: Option<u32>) -> Vec<String> {
        self.loads.fetch_add(1, SeqCst);
        vec![format!("{shelf} {page:?}")]
    }

    #[rate_limited(limit = 2, window = "1h", key = "ping:<self.tenant>", cache = self.cache)]
    async fn ping(&self) -> Result<(), RepoError> {
        Ok(())
    }
}

async fn async_trait_methods_cache_and_limit(cache: Cache) {
    let a_db = Arc::new(Db {
        cache: cache.clone(),
        tenant: "a".into(),
        loads: AtomicUsize::new(0),
    });
    let a: Arc<dyn Repo> = a_db.clone();
    let b = Db {
        cache: cache.clone(),
        tenant: "b".into(),
        loads: AtomicUsize::new(0),
    };
    for _ in 0..2 {
        assert_eq!(a.name(1).await.unwrap(), "a 1");
        assert_eq!(b.name(1).await.unwrap(), "b 1");
        assert_eq!(a.name(0).await, Err(RepoError::Missing));
        assert_eq!(b.shelf("x", None).await, ["x None"]);
        assert_eq!(b.shelf("x", Some(1)).await, ["x Some(1)"]);
    }
    // a: name(1) once, name(0) twice (errors are not cached); b: name(1),
    // and the two shelves once each.
    assert_eq!(b.loads.load(SeqCst), 3);
    assert_eq!(a_db.loads.load(SeqCst), 3);
    cache.invalidate_tag("tenant:b").await.unwrap();
    assert_eq!(b.name(1).await.unwrap(), "b 1");
    assert_eq!(b.loads.load(SeqCst), 4);

    assert_eq!(a.ping().await, Ok(()));
    assert_eq!(a.ping().await, Ok(()));
    assert_eq!(a.ping().await, Err(RepoError::Limited));
    assert_eq!(b.ping().await, Ok(()));
}

#[tokio::test]
async fn async_trait_methods_cache_and_limit_in_memory() {
    async_trait_methods_cache_and_limit(Cache::builder().build().await.unwrap()).await;
}

#[tokio::test]
async fn async_trait_methods_cache_and_limit_on_redis() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(unique_namespace("async-trait"))
        .build()
        .await
        .unwrap();
    async_trait_methods_cache_and_limit(cache).await;
}
