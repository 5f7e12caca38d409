//! What a rate-limit check reports, allowed or not, and the HTTP header
//! fields of the IETF RateLimit draft (draft-ietf-httpapi-ratelimit-headers,
//! the structured-field form of draft-08 onwards) plus `Retry-After`.

use std::fmt;
use std::time::Duration;

use super::{Policy, Verdict};

/// The figures of a rate-limit check: returned when it is allowed, carried
/// by [`RateLimited`] when it is not.
///
/// With several policies, the figures are those of the policy that binds:
/// the one that refused with the longest wait, or else the one with the
/// least room left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateStatus {
    allowed: bool,
    limit: u64,
    remaining: u64,
    retry_after: Duration,
    reset_after: Duration,
    binding: usize,
    policies: Vec<(u64, Duration)>,
    degraded: bool,
}

impl RateStatus {
    pub(crate) fn from_verdicts(policies: &[Policy], verdicts: &[Verdict]) -> Self {
        let allowed = verdicts.iter().all(|v| v.allowed);
        let binding = if allowed {
            (0..verdicts.len())
                .min_by_key(|&i| (verdicts[i].remaining, u64::MAX - verdicts[i].reset_after_us))
        } else {
            (0..verdicts.len())
                .filter(|&i| !verdicts[i].allowed)
                .max_by_key(|&i| verdicts[i].retry_after_us)
        }
        .unwrap_or(0);
        let verdict = verdicts[binding];
        RateStatus {
            allowed,
            limit: policies[binding].limit(),
            remaining: verdict.remaining,
            retry_after: Duration::from_micros(verdict.retry_after_us),
            reset_after: Duration::from_micros(verdict.reset_after_us),
            binding,
            policies: policies.iter().map(|p| (p.limit(), p.window())).collect(),
            degraded: false,
        }
    }

    /// The status reported when the backend could not be reached: allowed
    /// or not as `on_error` says, with the full quota left (nothing is known).
    pub(crate) fn unknown(policies: &[Policy], allowed: bool) -> Self {
        let first = policies[0];
        RateStatus {
            allowed,
            limit: first.limit(),
            remaining: if allowed { first.limit() } else { 0 },
            retry_after: if allowed {
                Duration::ZERO
            } else {
                Duration::from_secs(1)
            },
            reset_after: Duration::ZERO,
            binding: 0,
            policies: policies.iter().map(|p| (p.limit(), p.window())).collect(),
            degraded: true,
        }
    }

    /// The same status, `elapsed` later (for a remembered denial).
    pub(crate) fn aged(&self, elapsed: Duration) -> Self {
        RateStatus {
            retry_after: self.retry_after.saturating_sub(elapsed),
            reset_after: self.reset_after.saturating_sub(elapsed),
            ..self.clone()
        }
    }

    /// Whether the call was (or, for a peek, would be) allowed.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The binding policy's limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Units of cost left in the binding policy's quota after this check.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// How long to wait before the refused call can succeed (zero when
    /// allowed). Never shorter than needed, assuming no other traffic.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// How long until the binding policy's quota is whole again.
    pub fn reset_after(&self) -> Duration {
        self.reset_after
    }

    /// True when the backend could not be reached and the decision is the
    /// limit's `on_error` choice, not a count.
    pub fn is_degraded(&self) -> bool {
        self.degraded
    }

    /// `RateLimit-Policy`, e.g. `"100-per-1m";q=100;w=60`: every policy.
    pub fn policy_header(&self) -> String {
        self.policies
            .iter()
            .map(|&(limit, window)| {
                format!(
                    "\"{}\";q={limit};w={}",
                    policy_name(limit, window),
                    ceil_secs(window)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `RateLimit`, e.g. `"100-per-1m";r=0;t=42`: the binding policy.
    pub fn ratelimit_header(&self) -> String {
        let (limit, window) = self.policies[self.binding];
        format!(
            "\"{}\";r={};t={}",
            policy_name(limit, window),
            self.remaining,
            ceil_secs(self.reset_after)
        )
    }

    /// `Retry-After` in whole seconds, rounded up so a client that waits
    /// that long is not refused again for lack of time; `None` when allowed.
    pub fn retry_after_header(&self) -> Option<String> {
        (!self.allowed).then(|| ceil_secs(self.retry_after).max(1).to_string())
    }

    /// All header fields to send: `RateLimit-Policy`, `RateLimit`, and
    /// `Retry-After` when refused.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("RateLimit-Policy", self.policy_header()),
            ("RateLimit", self.ratelimit_header()),
        ];
        if let Some(retry) = self.retry_after_header() {
            headers.push(("Retry-After", retry));
        }
        headers
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `100-per-1m`, `10-per-1s`, `5-per-1500ms`, `5-per-500us`.
fn policy_name(limit: u64, window: Duration) -> String {
    if window.subsec_nanos() % 1_000_000 != 0 {
        return format!("{limit}-per-{}us", window.as_micros());
    }
    let ms = window.as_millis();
    let span = match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    };
    format!("{limit}-per-{span}")
}

/// A call refused by a rate limit.
///
/// Functions under `#[rate_limited]` return it through their error type,
/// which needs `From<RateLimited>`:
///
/// ```
/// #[derive(Debug)]
/// enum ApiError {
///     RateLimited(redcache::RateLimited),
/// }
///
/// impl From<redcache::RateLimited> for ApiError {
///     fn from(limited: redcache::RateLimited) -> Self {
///         ApiError::RateLimited(limited)
///     }
/// }
///
/// #[redcache::rate_limited(limit = 1, window = "60s", key = "user:<user_id>")]
/// async fn search(user_id: u64) -> Result<u32, ApiError> {
///     Ok(3)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert!(search(1).await.is_ok());
/// let Err(ApiError::RateLimited(limited)) = search(1).await else { panic!() };
/// assert_eq!(limited.limit(), 1);
/// assert_eq!(limited.retry_after_header().as_deref(), Some("60"));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    status: RateStatus,
}

impl RateLimited {
    pub(crate) fn new(status: RateStatus) -> Self {
        debug_assert!(!status.allowed);
        RateLimited { status }
    }

    /// All the figures of the refused check.
    pub fn status(&self) -> &RateStatus {
        &self.status
    }

    /// The binding policy's limit.
    pub fn limit(&self) -> u64 {
        self.status.limit
    }

    /// Units left in the binding policy's quota (less than the call needed).
    pub fn remaining(&self) -> u64 {
        self.status.remaining
    }

    /// How long to wait before the call can succeed.
    pub fn retry_after(&self) -> Duration {
        self.status.retry_after
    }

    /// How long until the binding policy's quota is whole again.
    pub fn reset_after(&self) -> Duration {
        self.status.reset_after
    }

    /// `Retry-After` in whole seconds, rounded up.
    pub fn retry_after_header(&self) -> Option<String> {
        self.status.retry_after_header()
    }

    /// All header fields for the refusal (see [`RateStatus::headers`]).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        self.status.headers()
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (limit, window) = self.status.policies[self.status.binding];
        write!(
            f,
            "rate limit of {limit} per {window:?} exceeded; retry after {:?}",
            self.status.retry_after
        )
    }
}

impl std::error::Error for RateLimited {}

/// With the `axum` feature: a refusal answers `429 Too Many Requests` with
/// `RateLimit-Policy`, `RateLimit` and `Retry-After`.
#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for RateLimited {
    fn into_response(self) -> axum_core::response::Response {
        // The body says when to retry in whole seconds, as Retry-After does.
        let retry = self.status.retry_after.as_secs_f64().ceil() as u64;
        let (limit, window) = self.status.policies[self.status.binding];
        let body =
            format!("rate limit of {limit} per {window:?} exceeded; retry after {retry} s\n");
        let mut response = axum_core::response::Response::new(axum_core::body::Body::from(body));
        *response.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        for (name, value) in self.headers() {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_named_in_the_largest_whole_unit() {
        let name = |ms: u64| policy_name(5, Duration::from_millis(ms));
        assert_eq!(name(7_200_000), "5-per-2h");
        assert_eq!(name(60_000), "5-per-1m");
        assert_eq!(name(3_000), "5-per-3s");
        assert_eq!(name(1_500), "5-per-1500ms");
        assert_eq!(policy_name(5, Duration::from_micros(500)), "5-per-500us");
        assert_eq!(policy_name(5, Duration::from_micros(2_000)), "5-per-2ms");
        assert_eq!(policy_name(5, Duration::from_micros(1_501)), "5-per-1501us");
    }

    fn verdict(allowed: bool, remaining: u64, retry_s: u64, reset_s: u64) -> Verdict {
        Verdict {
            allowed,
            remaining,
            retry_after_us: retry_s * 1_000_000,
            reset_after_us: reset_s * 1_000_000,
        }
    }

    #[test]
    fn headers_follow_the_draft_and_round_up() {
        let policies = [Policy::new(100, Duration::from_secs(60))];
        let mut v = verdict(false, 0, 41, 59);
        v.retry_after_us += 1; // 41.000001 s must read as 42
        let status = RateStatus::from_verdicts(&policies, &[v]);
        assert_eq!(
            status.headers(),
            [
                ("RateLimit-Policy", "\"100-per-1m\";q=100;w=60".to_string()),
                ("RateLimit", "\"100-per-1m\";r=0;t=59".to_string()),
                ("Retry-After", "42".to_string()),
            ]
        );
    }

    #[test]
    fn the_binding_policy_is_the_longest_refusal_or_the_least_room() {
        let policies = [
            Policy::new(10, Duration::from_secs(1)),
            Policy::new(1000, Duration::from_secs(3600)),
        ];
        let denied = RateStatus::from_verdicts(
            &policies,
            &[verdict(true, 5, 0, 1), verdict(false, 0, 600, 3000)],
        );
        assert_eq!(
            (denied.limit(), denied.retry_after()),
            (1000, Duration::from_secs(600))
        );
        assert_eq!(denied.ratelimit_header(), "\"1000-per-1h\";r=0;t=3000");
        assert_eq!(
            denied.policy_header(),
            "\"10-per-1s\";q=10;w=1, \"1000-per-1h\";q=1000;w=3600"
        );
        let allowed = RateStatus::from_verdicts(
            &policies,
            &[verdict(true, 2, 0, 1), verdict(true, 900, 0, 30)],
        );
        assert_eq!((allowed.limit(), allowed.remaining()), (10, 2));
        assert_eq!(allowed.retry_after_header(), None);
    }
}
