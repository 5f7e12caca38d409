//! Rate limiting, the model: policies, the four algorithms (in Rust for
//! the embedded backend, beside the Lua script for Redis), the state of the
//! embedded backend, and the status a check returns. It knows no backend
//! and no cache: the backends use it, and `rate_checks` (the check with its
//! denial memory), `limiter` and `layer` build on it.

mod algorithm;
pub(crate) mod memory;
mod status;

use std::time::Duration;

pub(crate) use algorithm::Verdict;
pub use status::{RateLimited, RateStatus};

use crate::error::{Error, Result};

/// How a policy counts calls. See the README for each one's accuracy and
/// memory, measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Algorithm {
    /// Exact: never more than `limit` calls in any window of length
    /// `window`. Stores one entry per admitted call of the last window,
    /// whatever its cost (calls in one microsecond share one). The default,
    /// because it is what "100 per minute" means.
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
    /// `window / limit` (rounded down to the nanosecond). The same
    /// decisions as governor's quotas. O(1) memory.
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
    /// The largest `limit` or `burst`: 2^53. The Lua script counts in IEEE
    /// doubles, which hold every whole number up to 2^53 exactly.
    pub const MAX_LIMIT: u64 = 1 << 53;

    /// The longest window: 100 years (of 365.25 days). Times are
    /// microseconds since the Unix epoch in the script, and `now + window`
    /// stays below 2^53 µs, so exact, until the year 2155.
    pub const MAX_WINDOW: Duration = Duration::from_secs(36_525 * 86_400);

    /// `limit` calls per `window`, with the default algorithm (sliding log).
    ///
    /// The window is counted in whole microseconds (nanoseconds for GCRA's
    /// interval). [`RateLimiter::new`] refuses a policy outside the bounds
    /// [`Policy::MAX_LIMIT`] and [`Policy::MAX_WINDOW`].
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

    /// The window in whole microseconds, at least 1 (a valid policy's
    /// window is at least 1 µs and at most [`Policy::MAX_WINDOW`]).
    pub(crate) fn window_micros(&self) -> u64 {
        u64::try_from(self.window.as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// GCRA's emission interval in nanoseconds: the window divided by the
    /// limit, rounded down, as governor's quotas; at least 1.
    pub(crate) fn interval_nanos(&self) -> u128 {
        (self.window.as_nanos() / u128::from(self.limit.max(1))).max(1)
    }

    /// The largest cost one call can ever be admitted with: the limit, or
    /// for [`Algorithm::Gcra`] the burst. A costlier call is refused.
    pub fn max_cost(&self) -> u64 {
        match self.algorithm {
            Algorithm::Gcra => self.effective_burst(),
            _ => self.limit,
        }
    }

    /// Checks that every figure of the policy is within what both backends
    /// compute exactly.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] saying which figure is out of bounds.
    pub fn validate(&self) -> Result<()> {
        if self.limit == 0 {
            return Err(Error::Config("a rate limit must allow at least one call"));
        }
        if self.limit > Self::MAX_LIMIT {
            return Err(Error::Config(
                "a rate limit must be at most 2^53 calls per window (Policy::MAX_LIMIT), the largest count the Lua script holds exactly",
            ));
        }
        if self.window.as_micros() == 0 {
            return Err(Error::Config(
                "a rate limit window must be at least a microsecond",
            ));
        }
        if self.window > Self::MAX_WINDOW {
            return Err(Error::Config(
                "a rate limit window must be at most 100 years (Policy::MAX_WINDOW), so that times stay exact in the Lua script",
            ));
        }
        match self.burst {
            Some(0) => return Err(Error::Config("a burst must be at least one call")),
            Some(burst) if burst > Self::MAX_LIMIT => {
                return Err(Error::Config(
                    "a burst must be at most 2^53 calls (Policy::MAX_LIMIT)",
                ))
            }
            _ => {}
        }
        if self.algorithm == Algorithm::Gcra {
            if self.window.as_nanos() < u128::from(self.limit) {
                return Err(Error::Config(
                    "a GCRA policy needs an interval (window / limit) of at least a nanosecond: lower the limit or lengthen the window",
                ));
            }
            let tolerance = self.interval_nanos() * u128::from(self.effective_burst());
            if tolerance > Self::MAX_WINDOW.as_nanos() {
                return Err(Error::Config(
                    "a GCRA burst must be earned back within 100 years: burst × window / limit must be at most Policy::MAX_WINDOW",
                ));
            }
        }
        Ok(())
    }

    /// Appends what names this policy in a state key: the algorithm and
    /// figures are part of it, so changing a policy never reads state
    /// written under another. The window is in milliseconds when it is a
    /// whole number of them (the keys redcache always wrote), else in
    /// nanoseconds with an `ns` suffix: two windows never share a key.
    fn push_state_suffix(&self, out: &mut String) {
        let mut digits = itoa::Buffer::new();
        out.push(':');
        out.push_str(self.algorithm.name());
        out.push(':');
        out.push_str(digits.format(self.limit));
        out.push(':');
        if self.window.subsec_nanos() % 1_000_000 == 0 {
            out.push_str(digits.format(self.window.as_millis()));
        } else {
            out.push_str(digits.format(self.window.as_nanos()));
            out.push_str("ns");
        }
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

    /// The refusal of a cost that some policy can never admit (more than
    /// its limit, or its burst for GCRA), decided without the backend: the
    /// script and the embedded backend only ever see costs they can count
    /// exactly. `None` when every policy could admit the cost.
    pub(crate) fn beyond_capacity(&self) -> Option<Vec<Verdict>> {
        if self.policies.iter().all(|p| self.cost <= p.max_cost()) {
            return None;
        }
        Some(
            self.policies
                .iter()
                .map(|p| {
                    let fits = self.cost <= p.max_cost();
                    Verdict {
                        allowed: fits,
                        remaining: 0,
                        retry_after_us: if fits { 0 } else { p.window_micros() },
                        reset_after_us: 0,
                    }
                })
                .collect(),
        )
    }

    /// The arguments of `scripts/rate_limit.lua` after mode and cost: per
    /// policy, the algorithm's number and then its own arguments (see the
    /// script's header). GCRA's products (cost × interval, burst × interval,
    /// in nanoseconds) are computed here, exactly, and passed as
    /// (microseconds, nanoseconds) pairs that the script only adds and
    /// compares.
    pub(crate) fn script_args(&self) -> Vec<u64> {
        let mut args = Vec::with_capacity(6 * self.policies.len());
        for p in self.policies.iter() {
            args.push(u64::from(p.algorithm.script_code()));
            match p.algorithm {
                Algorithm::Gcra => {
                    let interval = p.interval_nanos();
                    let increment = interval * u128::from(self.cost);
                    let tolerance = interval * u128::from(p.effective_burst());
                    for nanos in [increment, tolerance] {
                        args.push(saturate(nanos / 1000));
                        args.push((nanos % 1000) as u64);
                    }
                    args.push(saturate(interval));
                }
                _ => args.extend([p.limit, p.window_micros()]),
            }
        }
        args
    }
}

fn saturate(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
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
    fn windows_below_or_between_milliseconds_name_keys_of_their_own() {
        let windows = [
            Duration::from_micros(500),
            Duration::from_micros(900),
            Duration::from_micros(1_500),
            Duration::from_micros(1_700),
            Duration::from_millis(1),
            Duration::from_millis(2),
            Duration::from_nanos(2_000_001),
        ];
        let keys: Vec<String> = windows
            .iter()
            .map(|&window| {
                let policies = [Policy::new(5, window).algorithm(Algorithm::FixedWindow)];
                let request = Request {
                    name: "f",
                    key: "k",
                    policies: &policies,
                    cost: 1,
                    on_error: OnError::Allow,
                };
                request.state_keys("ns:rl:").remove(0)
            })
            .collect();
        let distinct: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:?}");
        assert_eq!(keys[0], "ns:rl:f:{k}:fixed_window:5:500000ns");
        assert_eq!(
            keys[4], "ns:rl:f:{k}:fixed_window:5:1",
            "whole ms keep their keys"
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

    fn refusal(policy: Policy) -> &'static str {
        match policy.validate() {
            Err(Error::Config(message)) => message,
            other => panic!("{policy:?}: {other:?}"),
        }
    }

    #[test]
    fn figures_beyond_exact_arithmetic_are_refused_with_a_reason() {
        let second = Duration::from_secs(1);
        let max = Policy::MAX_LIMIT;
        for algorithm in [Algorithm::SlidingLog, Algorithm::FixedWindow] {
            assert!(Policy::new(max, second)
                .algorithm(algorithm)
                .validate()
                .is_ok());
            for limit in [max + 1, u64::MAX] {
                let p = Policy::new(limit, second).algorithm(algorithm);
                assert!(refusal(p).contains("at most 2^53"), "{p:?}");
            }
            for window in [
                Policy::MAX_WINDOW + Duration::from_micros(1),
                Duration::from_micros(u64::MAX),
                Duration::from_micros(u64::MAX) + Duration::from_micros(1),
                Duration::MAX,
            ] {
                let p = Policy::new(10, window).algorithm(algorithm);
                assert!(refusal(p).contains("at most 100 years"), "{p:?}");
            }
            assert!(Policy::new(1, Policy::MAX_WINDOW).validate().is_ok());
            let sub_micro = Policy::new(1, Duration::from_nanos(999)).algorithm(algorithm);
            assert!(refusal(sub_micro).contains("at least a microsecond"));
        }
        let gcra = Policy::new(10, second).algorithm(Algorithm::Gcra);
        assert!(refusal(gcra.burst(max + 1)).contains("burst must be at most 2^53"));
        assert!(refusal(gcra.burst(u64::MAX)).contains("burst must be at most 2^53"));
        assert!(
            gcra.burst(max).validate().is_err(),
            "2^53 × 100 ms is over 100 years"
        );
        let fine = Policy::new(1_000_000_000, second).algorithm(Algorithm::Gcra);
        assert!(fine.validate().is_ok(), "an interval of exactly 1 ns");
        let finer = Policy::new(1_000_000_001, second).algorithm(Algorithm::Gcra);
        assert!(refusal(finer).contains("at least a nanosecond"));
        let slow = Policy::new(1, Policy::MAX_WINDOW).algorithm(Algorithm::Gcra);
        assert!(slow.validate().is_ok());
        assert!(refusal(slow.burst(2)).contains("earned back within 100 years"));
    }

    #[test]
    fn a_cost_beyond_a_policys_capacity_is_refused_without_the_backend() {
        let policies = [
            Policy::new(10, Duration::from_secs(1)),
            Policy::new(100, Duration::from_secs(60))
                .algorithm(Algorithm::Gcra)
                .burst(5),
        ];
        let request = |cost| Request {
            name: "n",
            key: "k",
            policies: &policies,
            cost,
            on_error: OnError::Allow,
        };
        assert_eq!(request(0).beyond_capacity(), None);
        assert_eq!(request(5).beyond_capacity(), None);
        let verdicts = request(6).beyond_capacity().expect("over the GCRA burst");
        assert!(verdicts[0].allowed && !verdicts[1].allowed);
        assert_eq!(
            verdicts[1].retry_after_us, 60_000_000,
            "the window, as before"
        );
        let verdicts = request(u64::MAX).beyond_capacity().expect("over both");
        assert!(verdicts.iter().all(|v| !v.allowed && v.remaining == 0));
    }

    #[test]
    fn gcra_script_arguments_are_exact_microsecond_nanosecond_pairs() {
        let policies = [
            Policy::new(3, Duration::from_secs(1)).algorithm(Algorithm::Gcra),
            Policy::new(7, Duration::from_secs(2)),
        ];
        let request = Request {
            name: "n",
            key: "k",
            policies: &policies,
            cost: 2,
            on_error: OnError::Allow,
        };
        // interval 333 333 333 ns: cost × interval 666 666 666 ns, burst ×
        // interval 999 999 999 ns.
        assert_eq!(
            request.script_args(),
            [4, 666_666, 666, 999_999, 999, 333_333_333, 1, 7, 2_000_000]
        );
    }
}
