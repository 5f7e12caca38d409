//! The check behind `#[rate_limited]` and [`RateLimiter`](crate::RateLimiter):
//! the in-process memory of denials, one round trip to the backend, and
//! the `on_error` decision when the backend cannot answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::memory::{AtDeadline, Expiring};
use crate::clock::Clock;
use crate::guarded::Guarded;
use crate::ratelimit::{Mode, OnError, RateLimited, RateStatus, Request};
use crate::stats::Event;

/// A denial remembered until the backend would deny calls of at least
/// `cost` anyway (by the server's own figure of `retry_after`).
#[derive(Clone)]
pub(crate) struct Denial {
    at_us: u64,
    cost: u64,
    status: RateStatus,
}

/// The rate limits of one cache: its state keys' prefix, the backend
/// (through the guarded core it shares with the cache-aside engine), and
/// the in-process memory of denials, so a caller over its limit does not
/// cost a round trip per call.
pub(crate) struct RateChecks {
    guarded: Arc<Guarded>,
    prefix: String,
    denials: moka::sync::Cache<String, Expiring<Denial>>,
    clock: Arc<dyn Clock>,
}

impl RateChecks {
    pub(crate) fn new(
        guarded: Arc<Guarded>,
        prefix: String,
        max_denials: u64,
        clock: Arc<dyn Clock>,
    ) -> Self {
        RateChecks {
            guarded,
            prefix,
            denials: moka::sync::Cache::builder()
                .max_capacity(max_denials)
                .expire_after(AtDeadline)
                .build(),
            clock,
        }
    }

    /// Checks (and in [`Mode::Consume`] takes from) the quotas of `request`.
    pub(crate) async fn check(
        &self,
        request: Request<'_>,
        mode: Mode,
    ) -> Result<RateStatus, RateLimited> {
        let counters = &self.guarded.counters;
        if let Some(verdicts) = request.beyond_capacity() {
            // More than a policy can ever admit: no backend would say
            // otherwise, and neither sees a cost it cannot count.
            let status = RateStatus::from_verdicts(request.policies, &verdicts);
            if mode == Mode::Consume {
                counters.count(Event::RateDenied(request.name));
            }
            tracing::debug!(target: "redcache", limiter = request.name, key = request.key,
                cost = request.cost, "rate limited: the cost exceeds what a policy can ever admit");
            return Err(RateLimited::new(status));
        }
        let keys = request.state_keys(&self.prefix);
        let memo_key = keys.join("\n");
        let now = self.clock.now_micros();
        if mode == Mode::Consume {
            if let Some(denied) = self.remembered_denial(&memo_key, request.cost, now) {
                counters.count(Event::RateDeniedLocally(request.name));
                return Err(denied);
            }
        }
        let backend = &self.guarded.backend;
        let verdicts = match self
            .guarded
            .op(backend.rate_limit(&keys, &request, mode, now))
            .await
        {
            Ok(verdicts) => verdicts,
            Err(error) => {
                counters.count(Event::Error("rate_limit"));
                let allow = request.on_error == OnError::Allow;
                tracing::warn!(target: "redcache", limiter = request.name, key = request.key, %error,
                    decision = if allow { "allow" } else { "deny" },
                    "rate limit backend unavailable; on_error decides");
                let status = RateStatus::unknown(request.policies, allow);
                return if allow {
                    Ok(status)
                } else {
                    Err(RateLimited::new(status))
                };
            }
        };
        let status = RateStatus::from_verdicts(request.policies, &verdicts);
        if status.is_allowed() {
            if mode == Mode::Consume {
                counters.count(Event::RateAllowed(request.name));
            }
            return Ok(status);
        }
        if mode == Mode::Consume {
            counters.count(Event::RateDenied(request.name));
            tracing::debug!(target: "redcache", limiter = request.name, key = request.key,
                retry_after = ?status.retry_after(), "rate limited");
            self.remember_denial(memo_key, request.cost, now, &status);
        }
        Err(RateLimited::new(status))
    }

    fn remembered_denial(&self, memo_key: &str, cost: u64, now: u64) -> Option<RateLimited> {
        let denial = self.denials.get(memo_key)?.value;
        let elapsed = Duration::from_micros(now.saturating_sub(denial.at_us));
        // A call needing more than the denied one cannot succeed sooner; one
        // needing less might, so it asks the backend.
        (cost >= denial.cost && elapsed < denial.status.retry_after())
            .then(|| RateLimited::new(denial.status.aged(elapsed)))
    }

    fn remember_denial(&self, memo_key: String, cost: u64, now: u64, status: &RateStatus) {
        if status.retry_after().is_zero() {
            return;
        }
        let denial = Denial {
            at_us: now,
            cost,
            status: status.clone(),
        };
        let entry = Expiring {
            value: denial,
            deadline: Instant::now() + status.retry_after(),
        };
        self.denials.insert(memo_key, entry);
    }
}
