//! [`RateLimiter`], the rate limits of a [`Cache`] for code that is not one
//! fn call, and [`rate_status`] for the body of a `#[rate_limited]` fn.
//! Above the cache: a limiter checks through its cache's `RateChecks`.

use std::sync::Arc;

use crate::cache::Cache;
use crate::error::Result;
use crate::ratelimit::{validate, Mode, OnError, Policy, RateLimited, RateStatus, Request};

tokio::task_local! {
    /// The status of the check that let the running `#[rate_limited]` body in.
    pub(crate) static CURRENT_STATUS: RateStatus;
}

/// Inside the body of a `#[rate_limited]` fn, the [`RateStatus`] of the
/// check that let this call in: to put the RateLimit header fields on a
/// successful response too. `None` outside such a body (and in tasks it
/// spawns). With stacked attributes, the status of the innermost check.
///
/// ```
/// # #[derive(Debug)] struct ApiError;
/// # impl From<redcache::RateLimited> for ApiError { fn from(_: redcache::RateLimited) -> Self { ApiError } }
/// #[redcache::rate_limited(limit = 100, window = "60s", key = "user:<user>")]
/// async fn search(user: u64) -> Result<Vec<(&'static str, String)>, ApiError> {
///     let status = redcache::rate_status().expect("inside a rate-limited body");
///     Ok(status.headers()) // e.g. RateLimit-Policy and RateLimit for the 200
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let headers = search(7).await.unwrap();
/// assert!(headers.iter().any(|(name, _)| *name == "RateLimit"));
/// # }
/// ```
pub fn rate_status() -> Option<RateStatus> {
    CURRENT_STATUS.try_with(RateStatus::clone).ok()
}

/// A rate limiter for code that is not one fn call: middleware, loops,
/// batch jobs.
///
/// ```
/// use std::time::Duration;
/// use redcache::{Policy, RateLimiter};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = redcache::Cache::builder().build().await?;
/// let limiter = RateLimiter::new(&cache, "search", [Policy::new(2, Duration::from_secs(60))])?;
///
/// assert_eq!(limiter.check("user:42").await?.remaining(), 1);
/// assert_eq!(limiter.check_cost("user:42", 1).await?.remaining(), 0);
/// let denied = limiter.check("user:42").await.unwrap_err();
/// assert!(denied.retry_after() > Duration::from_secs(59));
/// assert!(limiter.peek("user:42").await.is_err(), "peek reports without consuming");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimiter {
    cache: Cache,
    name: String,
    policies: Arc<[Policy]>,
    on_error: OnError,
}

impl RateLimiter {
    /// A limiter named `name` (part of every key it writes, so two limiters
    /// with different names never share counts) enforcing all `policies`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) for no policy, a name with `{` or `}` in it, or a
    /// policy [`Policy::validate`] refuses: a zero limit, window or burst,
    /// a limit or burst above [`Policy::MAX_LIMIT`], a window above
    /// [`Policy::MAX_WINDOW`], a GCRA interval under a nanosecond.
    pub fn new(
        cache: &Cache,
        name: impl Into<String>,
        policies: impl IntoIterator<Item = Policy>,
    ) -> Result<Self> {
        let name = name.into();
        let policies: Arc<[Policy]> = policies.into_iter().collect();
        validate(&name, &policies)?;
        Ok(RateLimiter {
            cache: cache.clone(),
            name,
            policies,
            on_error: OnError::default(),
        })
    }

    /// What to do when the backend cannot be reached (default: allow).
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }

    /// Takes one call from every policy's quota, or none if any is spent.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] when a policy has no room, with when to retry.
    pub async fn check(&self, key: &str) -> Result<RateStatus, RateLimited> {
        self.check_cost(key, 1).await
    }

    /// Takes `cost` units from every policy's quota, or none if any lacks them.
    ///
    /// A cost of 0 is always allowed and takes nothing. A cost no policy
    /// could ever admit (above its limit, or its burst for GCRA) is refused
    /// without asking the backend, with `remaining` 0 and `retry_after` the
    /// window, the same on both backends.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] when a policy lacks the room, with when to retry.
    pub async fn check_cost(&self, key: &str, cost: u64) -> Result<RateStatus, RateLimited> {
        self.cache
            .rates
            .check(self.request(key, cost), Mode::Consume)
            .await
    }

    /// Tells what a check of one call would say now, without taking anything.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] when a check now would be refused.
    pub async fn peek(&self, key: &str) -> Result<RateStatus, RateLimited> {
        self.cache
            .rates
            .check(self.request(key, 1), Mode::Peek)
            .await
    }

    fn request<'a>(&'a self, key: &'a str, cost: u64) -> Request<'a> {
        Request {
            name: &self.name,
            key,
            policies: &self.policies,
            cost,
            on_error: self.on_error,
        }
    }
}
