//! [`RateLimitLayer`]: a tower layer (for axum) that limits requests per
//! key, the key taken from the request by an axum extractor. What
//! tower-governor does in one process, shared by every process on the
//! cache's Redis.

use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum_core::extract::{FromRequestParts, Request};
use axum_core::response::{IntoResponse, Response};

use crate::key::Key;
use crate::limiter::RateLimiter;
use crate::ratelimit::RateStatus;

/// Limits the requests of a router (or a route) per key, with a
/// [`RateLimiter`]: the key is what the extractor `K` takes from the
/// request (an API key, a user id, the client address), rendered with
/// `Display` and escaped as any key argument.
///
/// - Allowed: the request goes on, and its response gets the
///   `RateLimit-Policy` and `RateLimit` header fields.
/// - Refused: `429 Too Many Requests` with those fields and `Retry-After`
///   (see [`RateLimited`](crate::RateLimited)'s response); the handler
///   does not run.
/// - The extractor rejects the request (no API key, say): its rejection is
///   the response, and nothing is counted.
///
/// A backend outage follows the limiter's [`OnError`](crate::OnError).
///
/// ```
/// use std::time::Duration;
/// use axum_core::extract::FromRequestParts;
/// use http::{request::Parts, StatusCode};
/// use redcache::{Policy, RateLimitLayer, RateLimiter};
///
/// /// The caller's API key, from the `x-api-key` header.
/// struct ApiKey(String);
///
/// impl std::fmt::Display for ApiKey {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str(&self.0)
///     }
/// }
///
/// impl<S: Sync> FromRequestParts<S> for ApiKey {
///     type Rejection = StatusCode;
///     async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
///         let key = parts.headers.get("x-api-key").ok_or(StatusCode::UNAUTHORIZED)?;
///         Ok(ApiKey(key.to_str().map_err(|_| StatusCode::BAD_REQUEST)?.to_owned()))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), redcache::Error> {
/// let cache = redcache::Cache::builder().build().await?;
/// let limiter = RateLimiter::new(&cache, "api", [Policy::new(100, Duration::from_secs(60))])?;
/// let layer = RateLimitLayer::<ApiKey>::new(limiter);
/// // Router::new().route("/search", get(search)).layer(layer)
/// # let _ = layer;
/// # Ok(()) }
/// ```
pub struct RateLimitLayer<K, S = ()> {
    limiter: RateLimiter,
    state: S,
    key: PhantomData<fn() -> K>,
}

impl<K> RateLimitLayer<K> {
    /// A layer keyed by the extractor `K` (one that needs no state).
    pub fn new(limiter: RateLimiter) -> Self {
        Self::with_state(limiter, ())
    }
}

impl<K, S> RateLimitLayer<K, S> {
    /// A layer keyed by the extractor `K`, which reads `state` (your app's
    /// state, as `FromRequestParts<S>` takes it).
    pub fn with_state(limiter: RateLimiter, state: S) -> Self {
        RateLimitLayer {
            limiter,
            state,
            key: PhantomData,
        }
    }
}

impl<K, S: Clone> Clone for RateLimitLayer<K, S> {
    fn clone(&self) -> Self {
        Self::with_state(self.limiter.clone(), self.state.clone())
    }
}

impl<K, S: Clone, Inner> tower_layer::Layer<Inner> for RateLimitLayer<K, S> {
    type Service = RateLimit<Inner, K, S>;

    fn layer(&self, inner: Inner) -> Self::Service {
        RateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of a [`RateLimitLayer`].
pub struct RateLimit<Inner, K, S = ()> {
    inner: Inner,
    layer: RateLimitLayer<K, S>,
}

impl<Inner: Clone, K, S: Clone> Clone for RateLimit<Inner, K, S> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<Inner, K, S> tower_service::Service<Request> for RateLimit<Inner, K, S>
where
    Inner: tower_service::Service<Request, Response = Response> + Clone + Send + 'static,
    Inner::Future: Send,
    K: FromRequestParts<S> + Display + 'static,
    S: Clone + Send + Sync + 'static,
{
    type Response = Response;
    type Error = Inner::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Inner::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The clone that was polled ready serves this request (tower's rule
        // for services that move into a future).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let key = match K::from_request_parts(&mut parts, &layer.state).await {
                Ok(key) => Key::new().arg(&key).finish(),
                Err(rejection) => return Ok(rejection.into_response()),
            };
            let status = match layer.limiter.check(&key).await {
                Ok(status) => status,
                Err(refused) => return Ok(refused.into_response()),
            };
            let mut response = inner.call(Request::from_parts(parts, body)).await?;
            add_headers(&mut response, &status);
            Ok(response)
        })
    }
}

/// `RateLimit-Policy` and `RateLimit` on an allowed response (it has no
/// `Retry-After`).
fn add_headers(response: &mut Response, status: &RateStatus) {
    let headers = response.headers_mut();
    for (name, value) in status.headers() {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}
