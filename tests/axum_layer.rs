//! `RateLimitLayer` on a real axum server: keyed by an extractor, limits
//! shared by two servers on one Redis, headers on 200s and 429s, and an
//! extractor's rejection answered without counting.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::{request::Parts, StatusCode};
use axum::routing::get;
use axum::Router;
use redcache::{Cache, Policy, RateLimitLayer, RateLimiter};
use redcache_suite::{unique_namespace, RedisServer};

/// The caller's API key, from `x-api-key`.
struct ApiKey(String);

impl std::fmt::Display for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<S: Sync> FromRequestParts<S> for ApiKey {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
        let key = parts
            .headers
            .get("x-api-key")
            .ok_or(StatusCode::UNAUTHORIZED)?;
        Ok(ApiKey(
            key.to_str()
                .map_err(|_| StatusCode::BAD_REQUEST)?
                .to_owned(),
        ))
    }
}

/// A server limiting `/search` to 2 calls per hour per API key; returns
/// its address and how many times the handler ran.
async fn serve(cache: &Cache) -> (String, Arc<AtomicUsize>) {
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let limiter =
        RateLimiter::new(cache, "search", [Policy::new(2, Duration::from_secs(3600))]).unwrap();
    let app = Router::new()
        .route(
            "/search",
            get(move || async move {
                counter.fetch_add(1, SeqCst);
                "results"
            }),
        )
        .layer(RateLimitLayer::<ApiKey>::new(limiter));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/search", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, handled)
}

struct Answer {
    status: u16,
    ratelimit: Option<String>,
    retry_after: Option<String>,
    body: String,
}

async fn call(url: &str, api_key: Option<&str>) -> Answer {
    let (url, api_key) = (url.to_string(), api_key.map(str::to_string));
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut request = agent.get(&url);
        if let Some(key) = api_key {
            request = request.header("x-api-key", key);
        }
        let mut response = request.call().expect("the server answers");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let (ratelimit, retry_after) = (header("ratelimit"), header("retry-after"));
        Answer {
            status: response.status().as_u16(),
            ratelimit,
            retry_after,
            body: response.body_mut().read_to_string().unwrap(),
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn requests_are_limited_per_extracted_key_across_two_servers() {
    let redis = RedisServer::start();
    let namespace = unique_namespace("layer");
    let connect = || {
        Cache::builder()
            .redis(redis.url())
            .namespace(namespace.clone())
            .build()
    };
    let (one, two) = (connect().await.unwrap(), connect().await.unwrap());
    let ((url_one, handled_one), (url_two, handled_two)) = (serve(&one).await, serve(&two).await);

    // No API key: the extractor's rejection, nothing counted.
    let anonymous = call(&url_one, None).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.ratelimit, None);

    // Key "a": two calls, one on each server, share one quota.
    let first = call(&url_one, Some("a")).await;
    assert_eq!((first.status, first.body.as_str()), (200, "results"));
    assert!(first.ratelimit.unwrap().contains(";r=1;"));
    let second = call(&url_two, Some("a")).await;
    assert_eq!(second.status, 200);
    assert!(second.ratelimit.unwrap().contains(";r=0;"));
    assert_eq!(
        second.retry_after, None,
        "an allowed answer has no Retry-After"
    );

    let refused = call(&url_one, Some("a")).await;
    assert_eq!(refused.status, 429);
    assert!(refused.ratelimit.unwrap().contains(";r=0;"));
    let retry: u64 = refused.retry_after.unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&retry), "Retry-After {retry}");
    assert!(refused.body.contains("retry after"), "{}", refused.body);

    // Another key has its own quota, also one holding a separator.
    assert_eq!(call(&url_two, Some("b")).await.status, 200);
    assert_eq!(call(&url_two, Some("a:")).await.status, 200);

    // The handler ran for the four allowed calls only.
    assert_eq!(handled_one.load(SeqCst) + handled_two.load(SeqCst), 4);
}
