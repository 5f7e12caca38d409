//! How an entry lives around its `ttl`: early refresh (XFetch), stale
//! serving while one refresh runs in the background, fail-safe when the
//! load fails, TTL jitter, and the background refresh itself.
//!
//! The rule that holds throughout: *expired* values may be served stale;
//! *invalidated* ones (a tag's epoch moved, `invalidate_key`'s tombstone)
//! never are, by fail-safe neither: they do not decode as `Expired`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{prefixed, Cache, Call, Stampede};
use crate::entry::{Epoch, Times};

/// How long a fail-safe value is served as fresh before the load is tried
/// again: a down database is asked once per period, not on every call
/// (FusionCache's `FailSafeThrottleDuration`, with its default).
pub(crate) const FAIL_SAFE_THROTTLE: Duration = Duration::from_secs(30);

/// How long an entry stays in the backend after its expiry at least: a
/// load that began from the expired entry stores only if the key still
/// holds it, so the entry must outlive such a load (or the load's value is
/// not stored, and the next call loads again).
pub(crate) const EXPIRED_MARGIN: Duration = Duration::from_secs(5);

/// The lifecycle options of a call (all off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Lifecycle {
    /// After the expiry, serve the expired value for this long while one
    /// background refresh runs (stale-while-revalidate).
    pub(crate) stale: Duration,
    /// When the load fails, serve a value expired no longer than this ago.
    pub(crate) fail_safe: Duration,
    /// XFetch's β: refresh before the expiry, with a probability that
    /// rises as it nears (and with the load's duration).
    pub(crate) early_refresh: Option<f64>,
    /// Each entry's `ttl` is spread by up to this fraction, up or down.
    pub(crate) jitter: f64,
    /// A load that takes longer fails with `LoadTimeout`.
    pub(crate) hard_timeout: Option<Duration>,
    /// With an expired value at hand, a load that takes longer is answered
    /// with that value and finishes in the background.
    pub(crate) soft_timeout: Option<Duration>,
}

impl Lifecycle {
    /// How long the backend keeps an entry past its logical expiry: for
    /// `stale` and `fail_safe`, and at least [`EXPIRED_MARGIN`].
    pub(crate) fn keep_after_expiry(&self) -> Duration {
        self.stale.max(self.fail_safe).max(EXPIRED_MARGIN)
    }

    /// The logical ttl of one entry: `ttl`, spread by the jitter.
    pub(crate) fn jittered(&self, ttl: Duration) -> Duration {
        if self.jitter <= 0.0 {
            return ttl;
        }
        let spread = (rand::random::<f64>() * 2.0 - 1.0) * self.jitter;
        // Never below a millisecond: a key always expires, but not at once.
        Duration::try_from_secs_f64(ttl.as_secs_f64() * (1.0 + spread))
            .unwrap_or(ttl)
            .max(Duration::from_millis(1))
    }

    /// Whether an expired value (expired `expired_for` ago) is served
    /// stale while a refresh runs.
    pub(crate) fn serves_stale(&self, expired_for: Duration) -> bool {
        !self.stale.is_zero() && expired_for <= self.stale
    }

    /// Whether a value loaded at `at_ms` may stand in for a failed load at
    /// `now_ms`: no older than its `ttl` and `fail_safe` together.
    pub(crate) fn fail_safe_allows(&self, times: Times, ttl: Duration, now_ms: u64) -> bool {
        !self.fail_safe.is_zero() && now_ms <= self.fail_safe_until(times, ttl)
    }

    /// The fail-safe deadline of a value loaded at `at_ms`, in ms.
    pub(crate) fn fail_safe_until(&self, times: Times, ttl: Duration) -> u64 {
        times
            .at_ms
            .saturating_add(millis(ttl.saturating_add(self.fail_safe)))
    }
}

/// XFetch (Vattani, Chierichetti, Lowenstein, VLDB 2015): refresh now when
/// `now - delta * beta * ln(u) >= expiry`, for `u` uniform in (0, 1]. The
/// probability is `exp(-(expiry - now) / (delta * beta))`: negligible while
/// the expiry is many load-times away, certain at the expiry.
pub(crate) fn xfetch(now_ms: u64, times: Times, beta: f64, u: f64) -> bool {
    let delta = times.load_ms.max(1) as f64;
    let ahead = -delta * beta * u.max(f64::MIN_POSITIVE).ln();
    now_ms as f64 + ahead >= times.expires_ms as f64
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A call's key and tags, owned, for a refresh that outlives the call.
pub(crate) struct OwnedCall {
    name: &'static str,
    key: String,
    ttl: Duration,
    tags: Vec<String>,
    stampede: Stampede,
    lifecycle: Lifecycle,
    codec: Option<crate::codec::Codec>,
}

impl OwnedCall {
    fn new(call: Call<'_>) -> Self {
        OwnedCall {
            name: call.name,
            key: call.key.to_owned(),
            ttl: call.ttl,
            tags: call.tags.to_vec(),
            stampede: call.stampede,
            lifecycle: call.lifecycle,
            codec: call.codec,
        }
    }

    fn call(&self) -> Call<'_> {
        Call {
            name: self.name,
            key: &self.key,
            ttl: self.ttl,
            tags: &self.tags,
            stampede: self.stampede,
            uncacheable: None,
            lifecycle: self.lifecycle,
            codec: self.codec,
        }
    }
}

/// What a refresh starts from: the epochs and head its read saw.
pub(crate) struct Seen {
    pub(crate) epochs: Vec<Epoch>,
    pub(crate) head: Vec<u8>,
}

/// What the engine can move into a task, given only where the load can
/// outlive the call (`Send + 'static`).
pub(crate) struct Spawn<T, E, Fut> {
    /// A background refresh: the load of a call whose reader was answered
    /// with the current (or stale) value.
    pub(crate) refresh: SpawnRefresh<T, Fut>,
    /// A load whose caller waits for its result for a while (a soft
    /// timeout); `None` when this process already loads the key.
    pub(crate) load: SpawnLoad<T, E, Fut>,
}

type SpawnRefresh<T, Fut> = fn(&Cache, Call<'_>, Seen, fn(&T) -> bool, Fut);

type SpawnLoad<T, E, Fut> =
    fn(&Cache, Call<'_>, Seen, fn(&T) -> bool, Fut) -> Option<oneshot::Receiver<Result<T, E>>>;

impl<T, E, Fut> Clone for Spawn<T, E, Fut> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, E, Fut> Copy for Spawn<T, E, Fut> {}

/// The [`Spawn::refresh`] of loads that can outlive their call.
pub(crate) fn spawn_refresh<T, E, Fut>(
    cache: &Cache,
    call: Call<'_>,
    seen: Seen,
    keep: fn(&T) -> bool,
    load: Fut,
) where
    T: super::Cacheable,
    E: Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    spawn_background(cache, call, "refresh", move |cache, call| async move {
        cache.refresh(call.call(), seen, keep, load).await
    });
}

/// The [`Spawn::load`] of loads that can outlive their call: the load runs
/// in a task (one per key in this process) and sends its result.
pub(crate) fn spawn_load<T, E, Fut>(
    cache: &Cache,
    call: Call<'_>,
    seen: Seen,
    keep: fn(&T) -> bool,
    load: Fut,
) -> Option<oneshot::Receiver<Result<T, E>>>
where
    T: super::Cacheable,
    E: Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    let (sender, receiver) = oneshot::channel();
    let started = spawn_background(cache, call, "load", move |cache, call| async move {
        let result = cache
            .load_in_background(call.call(), seen, keep, load)
            .await;
        let succeeded = matches!(&result, Ok(value) if keep(value));
        // The caller may have stopped waiting: the value is stored anyway.
        let _ = sender.send(result);
        succeeded
    });
    started.then_some(receiver)
}

/// Runs `work` in a task, unless this process already loads the key in the
/// background (or its last background load failed within the throttle
/// period): one per key; across processes the load lock decides. `work`
/// says whether it succeeded. False when nothing was started.
fn spawn_background<W, Fut>(cache: &Cache, call: Call<'_>, task: &'static str, work: W) -> bool
where
    W: FnOnce(Cache, OwnedCall) -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let value_key = prefixed(&cache.inner.value_prefix, call.key);
    if !cache.inner.refreshing.start(&value_key, cache.now_ms()) {
        return false;
    }
    let cache = cache.clone();
    let owned = OwnedCall::new(call);
    tokio::spawn(async move {
        let span = tracing::debug_span!(target: "redcache", "redcache.background",
            task, name = owned.name, key = owned.key);
        let mut done = Refreshing {
            cache: &cache,
            key: &value_key,
            succeeded: false,
        };
        let work = work(cache.clone(), owned);
        done.succeeded = tracing::Instrument::instrument(work, span).await;
    });
    true
}

/// The keys this process loads in the background, and those whose last
/// background load failed (and when, in ms on the cache's clock): a failing
/// source is asked again only after [`FAIL_SAFE_THROTTLE`], while the
/// expired value answers (`stale`, `timeout`).
#[derive(Default)]
pub(crate) struct RefreshSet(Mutex<HashMap<String, Option<u64>>>);

impl RefreshSet {
    /// True when `key` was not being loaded, nor failed within the
    /// throttle period, and now is being loaded.
    fn start(&self, key: &str, now_ms: u64) -> bool {
        let mut keys = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match keys.get(key) {
            Some(None) => false,
            Some(Some(failed_at))
                if now_ms.saturating_sub(*failed_at) < millis(FAIL_SAFE_THROTTLE) =>
            {
                false
            }
            _ => {
                keys.insert(key.to_owned(), None);
                true
            }
        }
    }
}

/// Ends a background load, also when its task panics or is aborted (both
/// count as failures).
struct Refreshing<'a> {
    cache: &'a Cache,
    key: &'a str,
    succeeded: bool,
}

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        let mut keys = self
            .cache
            .inner
            .refreshing
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.succeeded {
            keys.remove(self.key);
        } else {
            keys.insert(self.key.to_owned(), Some(self.cache.now_ms()));
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    fn times(expires_ms: u64, load_ms: u64) -> Times {
        Times {
            at_ms: 0,
            expires_ms,
            load_ms,
        }
    }

    /// The share of refreshes XFetch triggers at each distance from the
    /// expiry matches `exp(-gap / (delta * beta))`, on a seeded generator.
    #[test]
    fn xfetch_refreshes_with_the_papers_probability() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (expiry, delta, beta) = (10_000u64, 50u64, 1.0f64);
        for gap in [0u64, 10, 25, 50, 100, 200, 400] {
            let trials = 200_000;
            let hits = (0..trials)
                .filter(|_| {
                    let u: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
                    xfetch(expiry - gap, times(expiry, delta), beta, u)
                })
                .count();
            let measured = hits as f64 / trials as f64;
            let expected = (-(gap as f64) / (delta as f64 * beta)).exp();
            assert!(
                (measured - expected).abs() < 0.005,
                "gap {gap} ms: measured {measured:.4}, expected {expected:.4}"
            );
        }
        // A larger beta refreshes earlier.
        let early = |beta| xfetch(expiry - 100, times(expiry, delta), beta, 0.5);
        assert!(!early(1.0) && early(4.0));
    }

    #[test]
    fn jitter_spreads_within_its_fraction_and_never_reaches_zero() {
        let lifecycle = Lifecycle {
            jitter: 0.1,
            ..Lifecycle::default()
        };
        let ttl = Duration::from_secs(100);
        let spread: Vec<Duration> = (0..1000).map(|_| lifecycle.jittered(ttl)).collect();
        assert!(spread
            .iter()
            .all(|d| *d >= Duration::from_secs(90) && *d <= Duration::from_secs(110)));
        assert!(spread.iter().any(|d| *d < Duration::from_secs(95)));
        assert!(spread.iter().any(|d| *d > Duration::from_secs(105)));
        assert_eq!(Lifecycle::default().jittered(ttl), ttl);
        let wide = Lifecycle {
            jitter: 1.0,
            ..Lifecycle::default()
        };
        assert!(
            (0..1000).all(|_| wide.jittered(Duration::from_millis(5)) >= Duration::from_millis(1))
        );
    }
}
