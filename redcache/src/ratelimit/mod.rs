//! Rate limiting: four algorithms, one round trip per check, the server's
//! clock, several policies checked and consumed all-or-nothing.

mod algorithm;
mod engine;
pub(crate) mod memory;
mod status;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use algorithm::Verdict;
pub(crate) use engine::Denial;
pub use status::{RateLimited, RateStatus};

use crate::cache::Cache;
use crate::error::{Error, Result};

/// How a policy counts calls. See the README for each one's accuracy and
/// memory, measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Algorithm {
    /// Exact: never more than `limit` calls in any window of length
    /// `window`. Stores one entry per admitted call of the last window. The
    /// default, because it is what "100 per minute" means.
    #[default]
    SlidingLog,
    /// Two fixed windows, the previous one weighted by its overlap with the
    /// sliding window: O(1) memory, exact for evenly spread traffic, and
    /// never more than `2 × limit` in a window for adversarial bursts.
    SlidingWindow,
    /// Counts per window aligned on the epoch: O(1) memory, but up to
    /// `2 × limit` across a window boundary.
    FixedWindow,
    /// Generic cell rate algorithm: `burst` calls at once, then one every
    /// `window / limit`. O(1) memory.
    Gcra,
}

impl Algorithm {
    /// The name used in attributes and keys: `sliding_log`, `sliding_window`,
    /// `fixed_window` or `gcra`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::SlidingLog => "sliding_log",
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::Gcra => "gcra",
        }
    }

    /// The number `scripts/rate_limit.lua` knows the algorithm by.
    fn script_code(self) -> u8 {
        match self {
            Algorithm::SlidingLog => 1,
            Algorithm::SlidingWindow => 2,
            Algorithm::FixedWindow => 3,
            Algorithm::Gcra => 4,
        }
    }
}

/// One rate limit: `limit` calls per `window`, counted by an [`Algorithm`].
///
/// ```
/// use std::time::Duration;
/// use redcache::{Algorithm, Policy};
///
/// let per_second = Policy::new(10, Duration::from_secs(1));
/// let hourly = Policy::new(1_000, Duration::from_secs(3600)).algorithm(Algorithm::SlidingWindow);
/// let smooth = Policy::new(100, Duration::from_secs(60)).algorithm(Algorithm::Gcra).burst(10);
/// # let _ = (per_second, hourly, smooth);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    limit: u64,
    window: Duration,
    algorithm: Algorithm,
    burst: Option<u64>,
}

impl Policy {
    /// `limit` calls per `window`, with the default algorithm (sliding log).
    pub const fn new(limit: u64, window: Duration) -> Self {
        Policy {
            limit,
            window,
            algorithm: Algorithm::SlidingLog,
            burst: None,
        }
    }

    /// Counts with `algorithm`.
    pub const fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// For [`Algorithm::Gcra`]: how many calls may come at once (default:
    /// `limit`, as governor's quotas do).
    pub const fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The number of calls (units of cost) allowed per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The algorithm.
    pub fn counted_by(&self) -> Algorithm {
        self.algorithm
    }

    pub(crate) fn effective_burst(&self) -> u64 {
        self.burst.unwrap_or(self.limit)
    }

    pub(crate) fn window_micros(&self) -> u64 {
        self.window.as_micros() as u64
    }

    fn validate(&self) -> Result<()> {
        if self.limit == 0 {
            return Err(Error::Config("a rate limit must allow at least one call"));
        }
        if self.window.as_micros() == 0 {
            return Err(Error::Config(
                "a rate limit window must be at least a microsecond",
            ));
        }
        if self.burst == Some(0) {
            return Err(Error::Config("a burst must be at least one call"));
        }
        Ok(())
    }

    /// Appends what names this policy in a state key: the algorithm and
    /// figures are part of it, so changing a policy never reads state
    /// written under another.
    fn push_state_suffix(&self, out: &mut String) {
        let mut digits = itoa::Buffer::new();
        out.push(':');
        out.push_str(self.algorithm.name());
        out.push(':');
        out.push_str(digits.format(self.limit));
        out.push(':');
        out.push_str(digits.format(self.window.as_millis()));
    }
}

/// What a limit does when its backend cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnError {
    /// Let the call through (the default): an outage of Redis does not take
    /// the service down.
    #[default]
    Allow,
    /// Refuse the call: for limits that protect something costlier than an
    /// outage.
    Deny,
}

/// Whether a check takes from the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Consume,
    Peek,
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
    /// [`Error::Config`] for no policy, a zero limit, window or burst, or a
    /// name with `{` or `}` in it.
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
    /// # Errors
    ///
    /// [`RateLimited`] when a policy lacks the room, with when to retry.
    pub async fn check_cost(&self, key: &str, cost: u64) -> Result<RateStatus, RateLimited> {
        self.cache
            .rate_limit(self.request(key, cost), Mode::Consume)
            .await
    }

    /// Tells what a check of one call would say now, without taking anything.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] when a check now would be refused.
    pub async fn peek(&self, key: &str) -> Result<RateStatus, RateLimited> {
        self.cache
            .rate_limit(self.request(key, 1), Mode::Peek)
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

pub(crate) fn validate(name: &str, policies: &[Policy]) -> Result<()> {
    if policies.is_empty() {
        return Err(Error::Config("a rate limiter needs at least one policy"));
    }
    if name.is_empty() || name.contains(['{', '}']) {
        return Err(Error::Config(
            "a rate limiter name must be non-empty, without `{` or `}`",
        ));
    }
    policies.iter().try_for_each(Policy::validate)
}

/// One check: which limiter, which key, which policies, at what cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub(crate) name: &'a str,
    pub(crate) key: &'a str,
    pub(crate) policies: &'a [Policy],
    pub(crate) cost: u64,
    pub(crate) on_error: OnError,
}

impl Request<'_> {
    /// The state key of each policy. All share the hash tag `{key}`, so one
    /// script can touch them all on Redis Cluster.
    ///
    /// Built without `format!`: this runs on every check.
    pub(crate) fn state_keys(&self, prefix: &str) -> Vec<String> {
        let mut tagged =
            String::with_capacity(prefix.len() + self.name.len() + self.key.len() + 48);
        tagged.push_str(prefix);
        tagged.push_str(self.name);
        tagged.push_str(":{");
        push_hash_tag_content(&mut tagged, self.key);
        tagged.push('}');
        self.policies
            .iter()
            .map(|p| {
                let mut key = String::with_capacity(tagged.len() + 48);
                key.push_str(&tagged);
                p.push_state_suffix(&mut key);
                key
            })
            .collect()
    }

    /// The arguments of `scripts/rate_limit.lua` after mode and cost.
    pub(crate) fn script_args(&self) -> Vec<u64> {
        self.policies
            .iter()
            .flat_map(|p| {
                [
                    u64::from(p.algorithm.script_code()),
                    p.limit,
                    p.window_micros(),
                    p.effective_burst(),
                ]
            })
            .collect()
    }
}

/// Appends the key as the content of a hash tag: `%`, `{` and `}` percent-encoded
/// (injective), and the empty key as a lone `%`, which no encoding yields
/// (an empty tag `{}` would not be a hash tag at all).
fn push_hash_tag_content(out: &mut String, key: &str) {
    if key.is_empty() {
        out.push('%');
        return;
    }
    for c in key.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_keys_share_one_hash_tag_and_name_the_policy() {
        let policies = [
            Policy::new(10, Duration::from_secs(1)),
            Policy::new(1000, Duration::from_secs(3600)).algorithm(Algorithm::Gcra),
        ];
        let request = Request {
            name: "api::search",
            key: "user:{42}",
            policies: &policies,
            cost: 1,
            on_error: OnError::Allow,
        };
        assert_eq!(
            request.state_keys("ns:rl:"),
            [
                "ns:rl:api::search:{user:%7B42%7D}:sliding_log:10:1000",
                "ns:rl:api::search:{user:%7B42%7D}:gcra:1000:3600000",
            ]
        );
    }

    #[test]
    fn hash_tag_content_is_injective_and_never_empty() {
        let content = |key: &str| {
            let mut out = String::new();
            push_hash_tag_content(&mut out, key);
            out
        };
        assert_eq!(content(""), "%");
        assert_eq!(content("%7B"), "%257B");
        assert_eq!(content("{"), "%7B");
    }

    #[test]
    fn invalid_policies_are_refused() {
        let ok = Policy::new(1, Duration::from_secs(1));
        assert!(validate("n", &[ok]).is_ok());
        assert!(validate("n", &[]).is_err());
        assert!(validate("a{b", &[ok]).is_err());
        assert!(validate("n", &[Policy::new(0, Duration::from_secs(1))]).is_err());
        assert!(validate("n", &[Policy::new(1, Duration::ZERO)]).is_err());
        assert!(validate("n", &[ok.algorithm(Algorithm::Gcra).burst(0)]).is_err());
    }
}
