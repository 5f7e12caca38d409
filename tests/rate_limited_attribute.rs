//! `#[rate_limited]` as users write it, alone and stacked with `#[cached]`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use redcache::{cached, rate_limited, Cache, RateLimited};
use redcache_suite::unique_namespace;

#[derive(Debug)]
enum ApiError {
    Limited(RateLimited),
    NotFound,
}

impl From<RateLimited> for ApiError {
    fn from(limited: RateLimited) -> Self {
        ApiError::Limited(limited)
    }
}

struct Api {
    cache: Cache,
    runs: AtomicUsize,
}

impl Api {
    async fn new() -> Self {
        let cache = Cache::builder()
            .namespace(unique_namespace("rla"))
            .build()
            .await
            .unwrap();
        Api {
            cache,
            runs: AtomicUsize::new(0),
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(SeqCst)
    }

    /// Reads the status of its own check, as a handler does to put the
    /// RateLimit header fields on a 200.
    #[rate_limited(limit = 3, window = "60s", key = "status:<user_id>", cache = self.cache)]
    async fn remaining(&self, user_id: u64) -> Result<u64, ApiError> {
        Ok(redcache::rate_status()
            .expect("inside the body")
            .remaining())
    }

    #[rate_limited(limit = 3, window = "60s", key = "user:<user_id>", cache = self.cache)]
    async fn search(&self, user_id: u64, query: &str) -> Result<String, ApiError> {
        self.runs.fetch_add(1, SeqCst);
        if query.is_empty() {
            return Err(ApiError::NotFound);
        }
        Ok(format!("{user_id}:{query}"))
    }

    #[rate_limited(limit = 10, window = "1m", key = "user:<user_id>", cost = items.len(), cache = self.cache)]
    async fn upload(&self, user_id: u64, items: Vec<u8>) -> Result<usize, ApiError> {
        Ok(items.len())
    }

    #[rate_limited(limit = 2, window = "1s", key = "user:<user_id>", cache = self.cache)]
    #[rate_limited(limit = 3, window = "1h", algorithm = "sliding_window")]
    async fn two_policies(&self, user_id: u64) -> Result<(), ApiError> {
        self.runs.fetch_add(1, SeqCst);
        Ok(())
    }

    /// The cache answers first: only misses take from the quota.
    #[cached(ttl = 60, key = "report:<id>", cache = self.cache)]
    #[rate_limited(limit = 2, window = "60s", cache = self.cache)]
    async fn report_cached_then_limited(&self, id: u64) -> Result<String, ApiError> {
        self.runs.fetch_add(1, SeqCst);
        Ok(format!("report {id}"))
    }

    /// The limit is checked first: every call, hit or miss, takes from it.
    #[rate_limited(limit = 2, window = "60s", cache = self.cache)]
    #[cached(ttl = 60, key = "report2:<id>", cache = self.cache)]
    async fn report_limited_then_cached(&self, id: u64) -> Result<String, ApiError> {
        self.runs.fetch_add(1, SeqCst);
        Ok(format!("report {id}"))
    }
}

#[tokio::test]
async fn over_the_limit_the_body_does_not_run_and_the_refusal_is_returned() {
    let api = Api::new().await;
    for _ in 0..3 {
        assert_eq!(api.search(7, "lamp").await.unwrap(), "7:lamp");
    }
    let Err(ApiError::Limited(limited)) = api.search(7, "lamp").await else {
        panic!("the 4th call must be refused")
    };
    assert_eq!(api.runs(), 3, "the refused call's body did not run");
    assert_eq!(limited.limit(), 3);
    assert_eq!(limited.remaining(), 0);
    assert!(
        limited.retry_after() > Duration::from_secs(59)
            && limited.retry_after() <= Duration::from_secs(60)
    );
    assert_eq!(limited.retry_after_header().as_deref(), Some("60"));
    // Each key has its own quota; errors of the body count as calls too.
    assert!(matches!(api.search(8, "").await, Err(ApiError::NotFound)));
    assert_eq!(api.search(8, "x").await.unwrap(), "8:x");
}

#[tokio::test]
async fn cost_is_an_expression_over_the_arguments() {
    let api = Api::new().await;
    assert_eq!(api.upload(1, vec![0; 6]).await.unwrap(), 6);
    assert!(matches!(
        api.upload(1, vec![0; 5]).await,
        Err(ApiError::Limited(_))
    ));
    assert_eq!(api.upload(1, vec![0; 4]).await.unwrap(), 4);
}

#[tokio::test]
async fn stacked_policies_are_all_or_nothing() {
    let api = Api::new().await;
    let mut admitted = 0;
    for _ in 0..6 {
        admitted += usize::from(api.two_policies(1).await.is_ok());
    }
    assert_eq!(admitted, 2, "the per-second policy binds");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        api.two_policies(1).await.is_ok(),
        "the hourly policy counted 2, not 6"
    );
    let Err(ApiError::Limited(limited)) = api.two_policies(1).await else {
        panic!()
    };
    assert_eq!(limited.limit(), 3, "now the hourly policy binds");
}

#[tokio::test]
async fn cached_on_top_limits_only_misses() {
    let api = Api::new().await;
    for _ in 0..10 {
        assert_eq!(api.report_cached_then_limited(1).await.unwrap(), "report 1");
    }
    assert_eq!(api.runs(), 1);
    assert!(
        api.report_cached_then_limited(2).await.is_ok(),
        "second miss"
    );
    assert!(
        matches!(
            api.report_cached_then_limited(3).await,
            Err(ApiError::Limited(_))
        ),
        "third miss"
    );
    assert!(
        api.report_cached_then_limited(1).await.is_ok(),
        "hits are never limited"
    );
}

#[tokio::test]
async fn rate_limited_on_top_limits_every_call() {
    let api = Api::new().await;
    assert!(api.report_limited_then_cached(1).await.is_ok());
    assert!(api.report_limited_then_cached(1).await.is_ok());
    assert!(
        matches!(
            api.report_limited_then_cached(1).await,
            Err(ApiError::Limited(_))
        ),
        "a hit is limited too"
    );
    assert_eq!(api.runs(), 1, "the second call was a hit");
}

#[tokio::test]
async fn an_allowed_call_reads_its_own_rate_status() {
    let api = Api::new().await;
    assert_eq!(api.remaining(1).await.unwrap(), 2);
    assert_eq!(api.remaining(1).await.unwrap(), 1);
    assert_eq!(api.remaining(1).await.unwrap(), 0);
    assert!(api.remaining(1).await.is_err());
    assert!(redcache::rate_status().is_none(), "none outside a body");
}
