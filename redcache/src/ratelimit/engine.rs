//! The check behind `#[rate_limited]` and [`RateLimiter`](super::RateLimiter):
//! the in-process memory of denials, one round trip to the backend, and
//! the `on_error` decision when the backend cannot answer.

use std::time::{Duration, Instant};

use super::{Mode, OnError, RateLimited, RateStatus, Request};
use crate::backend::memory::Expiring;
use crate::cache::Cache;
use crate::stats::Event;

/// A denial remembered until the backend would deny calls of at least
/// `cost` anyway (by the server's own figure of `retry_after`).
#[derive(Clone)]
pub(crate) struct Denial {
    at_us: u64,
    cost: u64,
    status: RateStatus,
}

impl Cache {
    pub(crate) async fn rate_limit(
        &self,
        request: Request<'_>,
        mode: Mode,
    ) -> Result<RateStatus, RateLimited> {
        let inner = &self.inner;
        if let Some(verdicts) = request.beyond_capacity() {
            // More than a policy can ever admit: no backend would say
            // otherwise, and neither sees a cost it cannot count.
            let status = RateStatus::from_verdicts(request.policies, &verdicts);
            if mode == Mode::Consume {
                inner.counters.count(Event::RateDenied(request.name));
            }
            tracing::debug!(target: "redcache", limiter = request.name, key = request.key,
                cost = request.cost, "rate limited: the cost exceeds what a policy can ever admit");
            return Err(RateLimited::new(status));
        }
        let keys = request.state_keys(&inner.rate_prefix);
        let memo_key = keys.join("\n");
        let now = inner.clock.now_micros();
        if mode == Mode::Consume {
            if let Some(denied) = self.remembered_denial(&memo_key, request.cost, now) {
                inner.counters.count(Event::RateDeniedLocally(request.name));
                return Err(denied);
            }
        }
        let verdicts = match self
            .op(inner.backend.rate_limit(&keys, &request, mode, now))
            .await
        {
            Ok(verdicts) => verdicts,
            Err(error) => {
                inner.counters.count(Event::Error("rate_limit"));
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
                inner.counters.count(Event::RateAllowed(request.name));
            }
            return Ok(status);
        }
        if mode == Mode::Consume {
            inner.counters.count(Event::RateDenied(request.name));
            tracing::debug!(target: "redcache", limiter = request.name, key = request.key,
                retry_after = ?status.retry_after(), "rate limited");
            self.remember_denial(memo_key, request.cost, now, &status);
        }
        Err(RateLimited::new(status))
    }

    fn remembered_denial(&self, memo_key: &str, cost: u64, now: u64) -> Option<RateLimited> {
        let denial = self.inner.denials.get(memo_key)?.value;
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
        self.inner.denials.insert(memo_key, entry);
    }
}
