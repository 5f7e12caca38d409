//! Entry lifecycle on both backends, driven by a `ManualClock` (no sleeping
//! to expire anything): stale-while-revalidate, early refresh (XFetch),
//! fail-safe with its throttle and limit, hard timeouts, jitter; and the
//! rule that an invalidated value is never served stale.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use redcache::{cached, Cache, LoadTimeout, ManualClock};
use redcache_suite::{unique_namespace, RedisCluster, RedisServer};

/// The data source behind the cached fns: counts loads, can fail, hang or
/// panic, and returns a new value each load.
#[derive(Default)]
struct Source {
    loads: AtomicUsize,
    version: AtomicU64,
    fail: AtomicBool,
    hang: AtomicBool,
    panic: AtomicBool,
    /// Each load takes half a second (of real time).
    slow: AtomicBool,
    /// Each load waits for `gate` to be notified.
    gated: AtomicBool,
    gate: tokio::sync::Notify,
}

impl Source {
    async fn load(&self) -> Result<u64, SourceError> {
        self.loads.fetch_add(1, SeqCst);
        if self.slow.load(SeqCst) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if self.gated.load(SeqCst) {
            self.gate.notified().await;
        }
        if self.hang.load(SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.panic.load(SeqCst) {
            panic!("the source panicked");
        }
        if self.fail.load(SeqCst) {
            return Err(SourceError::Down);
        }
        Ok(self.version.fetch_add(1, SeqCst) + 1)
    }

    fn loads(&self) -> usize {
        self.loads.load(SeqCst)
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum SourceError {
    Down,
    TimedOut,
}

impl From<LoadTimeout> for SourceError {
    fn from(_: LoadTimeout) -> Self {
        SourceError::TimedOut
    }
}

#[cached(ttl = 10, stale = "60s", key = "stale:<id>", tag = "t:<id>", cache = cache, ignore = [cache, source])]
async fn with_stale(cache: Cache, source: Arc<Source>, id: u64) -> Result<u64, SourceError> {
    source.load().await
}

#[cached(ttl = 10, early_refresh = 1000000.0, key = "early:<id>", cache = cache, ignore = [cache, source])]
async fn with_early_refresh(
    cache: Cache,
    source: Arc<Source>,
    id: u64,
) -> Result<u64, SourceError> {
    source.load().await
}

#[cached(ttl = 10, key = "plain:<id>", cache = cache, ignore = [cache, source])]
async fn plain(cache: Cache, source: Arc<Source>, id: u64) -> Result<u64, SourceError> {
    source.load().await
}

#[cached(ttl = 10, fail_safe = "1h", hard_timeout = "200ms", key = "safe:<id>", tag = "t:<id>", cache = cache, ignore = [cache, source])]
async fn with_fail_safe(cache: Cache, source: Arc<Source>, id: u64) -> Result<u64, SourceError> {
    source.load().await
}

#[cached(ttl = 10, timeout = "100ms", fail_safe = "1h", key = "soft:<id>", cache = cache, ignore = [cache, source])]
async fn with_soft_timeout(cache: Cache, source: Arc<Source>, id: u64) -> Result<u64, SourceError> {
    source.load().await
}

#[redcache::cache_put(ttl = 10, fail_safe = "1h", key = "safe:<id>", tag = "t:<id>", cache = cache)]
async fn save(cache: Cache, id: u64, value: u64) -> Result<u64, SourceError> {
    let _ = id;
    Ok(value)
}

const START: Duration = Duration::from_secs(1_000_000);

struct Setup {
    cache: Cache,
    clock: ManualClock,
}

async fn in_memory() -> Setup {
    let clock = ManualClock::new(START);
    let cache = Cache::builder().clock(clock.clone()).build().await.unwrap();
    Setup { cache, clock }
}

async fn on_redis(url: String) -> Setup {
    let clock = ManualClock::new(START);
    let cache = Cache::builder()
        .redis(url)
        .namespace(unique_namespace("life"))
        .op_timeout(Duration::from_secs(2))
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    Setup { cache, clock }
}

/// Calls `f` until it answers `want` (a background refresh landing), for
/// at most five seconds of real time.
async fn eventually<F, Fut>(mut f: F, want: u64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, SourceError>>,
{
    for _ in 0..500 {
        if f().await == Ok(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the refresh to {want} never landed");
}

/// After the ttl, within `stale`: the expired value at once, one refresh
/// in the background, then its value. Past `stale`: a plain miss.
async fn stale_while_revalidate(setup: Setup) {
    let Setup { cache, clock } = setup;
    let source = Arc::new(Source::default());
    let call = || with_stale(cache.clone(), source.clone(), 1);
    assert_eq!(call().await, Ok(1));
    clock.advance(Duration::from_secs(11));
    assert_eq!(call().await, Ok(1), "the expired value, at once");
    eventually(call, 2).await;
    assert_eq!(source.loads(), 2, "one refresh");
    assert!(cache.stats().served_stale >= 1);
    assert!(cache.stats().refreshes >= 1);

    // Past ttl + stale: the caller waits for the load.
    clock.advance(Duration::from_secs(100));
    assert_eq!(call().await, Ok(3));
    assert_eq!(source.loads(), 3);
}

/// An invalidated value is never served stale: after `invalidate_tag`,
/// the expired entry reads as a miss and the caller gets a new load.
async fn an_invalidated_value_is_never_served_stale(setup: Setup) {
    let Setup { cache, clock } = setup;
    let source = Arc::new(Source::default());
    let call = || with_stale(cache.clone(), source.clone(), 2);
    assert_eq!(call().await, Ok(1));
    clock.advance(Duration::from_secs(11));
    cache.invalidate_tag("t:2").await.unwrap();
    assert_eq!(call().await, Ok(2), "a new load, not the invalidated value");
    cache.invalidate_key("stale:2").await.unwrap();
    clock.advance(Duration::from_secs(11));
    assert_eq!(call().await, Ok(3));
}

/// Just before the expiry, XFetch (with a large β) refreshes in the
/// background; the caller is answered from the cache at once. The same
/// fn without `early_refresh` does not.
async fn early_refresh_refreshes_before_the_expiry(setup: Setup) {
    let Setup { cache, clock } = setup;
    let source = Arc::new(Source::default());
    let early = || with_early_refresh(cache.clone(), source.clone(), 1);
    let plain_source = Arc::new(Source::default());
    let late = || plain(cache.clone(), plain_source.clone(), 1);
    assert_eq!(early().await, Ok(1));
    assert_eq!(late().await, Ok(1));
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(early().await, Ok(1), "answered at once");
    assert_eq!(late().await, Ok(1));
    // The refreshed value lands (a β this large refreshes on nearly every
    // hit, so more refreshes may follow: at least one happened).
    let mut refreshed = false;
    for _ in 0..500 {
        if early().await.unwrap() >= 2 {
            refreshed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refreshed, "the early refresh never landed");
    assert_eq!(plain_source.loads(), 1, "no refresh without early_refresh");
    clock.advance(Duration::from_millis(2));
    assert_eq!(
        late().await,
        Ok(2),
        "plain cache-aside waits for the load at the expiry"
    );
}

/// The load fails: the value that expired stands in, the source is asked
/// at most once per throttle period (30 s), and after `fail_safe` the
/// error surfaces. A hard timeout and a panic are failures too.
async fn fail_safe_serves_the_expired_value_within_its_limit(setup: Setup) {
    let Setup { cache, clock } = setup;
    let source = Arc::new(Source::default());
    let call = || with_fail_safe(cache.clone(), source.clone(), 1);
    assert_eq!(call().await, Ok(1));
    source.fail.store(true, SeqCst);
    clock.advance(Duration::from_secs(11));
    assert_eq!(call().await, Ok(1), "fail-safe");
    assert_eq!(source.loads(), 2);
    for _ in 0..5 {
        assert_eq!(call().await, Ok(1));
    }
    assert_eq!(
        source.loads(),
        2,
        "throttled: the source is not asked again"
    );
    assert!(cache.stats().fail_safe >= 1);

    clock.advance(Duration::from_secs(31));
    assert_eq!(call().await, Ok(1));
    assert_eq!(source.loads(), 3, "asked again after the throttle period");

    // A hang (hard timeout) and a panic are failures like an `Err`.
    source.fail.store(false, SeqCst);
    source.hang.store(true, SeqCst);
    clock.advance(Duration::from_secs(31));
    assert_eq!(call().await, Ok(1), "a hard timeout, answered by fail-safe");
    source.hang.store(false, SeqCst);
    source.panic.store(true, SeqCst);
    clock.advance(Duration::from_secs(31));
    assert_eq!(call().await, Ok(1), "a panic, answered by fail-safe");

    // Past ttl + fail_safe: the error surfaces.
    source.panic.store(false, SeqCst);
    source.fail.store(true, SeqCst);
    clock.advance(Duration::from_secs(3_600));
    assert_eq!(call().await, Err(SourceError::Down));

    // Without a value to stand in, a hard timeout is the fn's error.
    source.fail.store(false, SeqCst);
    source.hang.store(true, SeqCst);
    let fresh = with_fail_safe(cache.clone(), source.clone(), 9).await;
    assert_eq!(fresh, Err(SourceError::TimedOut));
}

/// Fail-safe never answers with an invalidated value.
async fn fail_safe_never_serves_an_invalidated_value(setup: Setup) {
    let Setup { cache, clock } = setup;
    let source = Arc::new(Source::default());
    let call = || with_fail_safe(cache.clone(), source.clone(), 3);
    assert_eq!(call().await, Ok(1));
    source.fail.store(true, SeqCst);
    cache.invalidate_tag("t:3").await.unwrap();
    clock.advance(Duration::from_secs(11));
    assert_eq!(call().await, Err(SourceError::Down));
}

/// A load slower than `timeout` with an expired value at hand: the call is
/// answered with that value and the load finishes (and is stored) in the
/// background. A load within the timeout answers with its own value; with
/// no expired value the caller waits, however slow the load.
async fn a_soft_timeout_answers_with_the_expired_value(setup: Setup) {
    let Setup { cache, clock } = setup;
    let source = Arc::new(Source::default());
    let call = || with_soft_timeout(cache.clone(), source.clone(), 1);
    assert_eq!(call().await, Ok(1));
    clock.advance(Duration::from_secs(11));
    source.slow.store(true, SeqCst);
    assert_eq!(
        call().await,
        Ok(1),
        "the expired value, after the soft timeout"
    );
    eventually(call, 2).await;
    assert_eq!(
        source.loads(),
        2,
        "the slow load went on, and was the only one"
    );

    source.slow.store(false, SeqCst);
    clock.advance(Duration::from_secs(11));
    assert_eq!(
        call().await,
        Ok(3),
        "a load within the timeout answers itself"
    );

    source.slow.store(true, SeqCst);
    let cold = with_soft_timeout(cache.clone(), source.clone(), 2).await;
    assert_eq!(
        cold,
        Ok(4),
        "no expired value: the caller waits for the load"
    );
}

/// A put with the reader's `fail_safe` is kept for it past its expiry: when
/// the reader's load then fails, the put value stands in.
async fn a_put_entry_is_kept_for_the_readers_fail_safe(setup: Setup) {
    let Setup { cache, clock } = setup;
    let source = Arc::new(Source::default());
    assert_eq!(save(cache.clone(), 4, 40).await, Ok(40));
    assert_eq!(
        with_fail_safe(cache.clone(), source.clone(), 4).await,
        Ok(40)
    );
    assert_eq!(source.loads(), 0, "the put is a hit");
    source.fail.store(true, SeqCst);
    clock.advance(Duration::from_secs(11));
    assert_eq!(
        with_fail_safe(cache.clone(), source.clone(), 4).await,
        Ok(40),
        "the put value, expired, stands in for the failed load"
    );
    assert_eq!(source.loads(), 1);
}

/// A failing source behind `stale`: the refresh that failed is not tried
/// again for 30 s (the expired value answers meanwhile), then once.
async fn a_failed_refresh_is_retried_once_per_throttle_period(setup: Setup) {
    let Setup { cache, clock } = setup;
    let source = Arc::new(Source::default());
    let call = || with_stale(cache.clone(), source.clone(), 5);
    assert_eq!(call().await, Ok(1));
    source.fail.store(true, SeqCst);
    clock.advance(Duration::from_secs(11));
    assert_eq!(call().await, Ok(1), "served stale");
    // Wait for the refresh to fail.
    for _ in 0..500 {
        if source.loads() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..20 {
        assert_eq!(call().await, Ok(1));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(source.loads(), 2, "no retry within the throttle period");
    clock.advance(Duration::from_secs(31));
    assert_eq!(call().await, Ok(1));
    for _ in 0..500 {
        if source.loads() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(source.loads(), 3, "one retry after it");
}

/// An invalidation that lands while the failing load runs: the value that
/// was read before it is not served by fail-safe.
async fn fail_safe_does_not_serve_a_value_invalidated_during_the_load(setup: Setup) {
    let Setup { cache, clock } = setup;
    let source = Arc::new(Source::default());
    assert_eq!(
        with_fail_safe(cache.clone(), source.clone(), 6).await,
        Ok(1)
    );
    source.fail.store(true, SeqCst);
    source.gated.store(true, SeqCst);
    clock.advance(Duration::from_secs(11));
    let call = tokio::spawn(with_fail_safe(cache.clone(), source.clone(), 6));
    for _ in 0..500 {
        if source.loads() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(source.loads(), 2, "the load began");
    cache.invalidate_tag("t:6").await.unwrap();
    source.gate.notify_one();
    assert_eq!(call.await.unwrap(), Err(SourceError::Down));
}

/// A soft timeout does not answer with a value invalidated while the call
/// waited: the call waits for its load instead.
async fn a_soft_timeout_does_not_serve_a_value_invalidated_meanwhile(setup: Setup) {
    let Setup { cache, clock } = setup;
    let source = Arc::new(Source::default());
    assert_eq!(
        with_soft_timeout(cache.clone(), source.clone(), 7).await,
        Ok(1)
    );
    clock.advance(Duration::from_secs(11));
    source.gated.store(true, SeqCst);
    let call = tokio::spawn(with_soft_timeout(cache.clone(), source.clone(), 7));
    for _ in 0..500 {
        if source.loads() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cache.invalidate_key("soft:7").await.unwrap();
    // Past the soft timeout, then the load ends.
    tokio::time::sleep(Duration::from_millis(300)).await;
    source.gated.store(false, SeqCst);
    source.gate.notify_one();
    assert_eq!(
        call.await.unwrap(),
        Ok(2),
        "the new value, not the invalidated one"
    );
}

/// What a generic fn makes of the source's answer.
trait FromSource: redcache::Cacheable {
    fn from_source(answer: Result<u64, SourceError>) -> Self;
}

impl FromSource for Result<u64, SourceError> {
    fn from_source(answer: Result<u64, SourceError>) -> Self {
        answer
    }
}

/// `with_stale` and `with_fail_safe` at once, with a return type that is
/// a type parameter: a `Result` only where it is called.
#[cached(ttl = 10, stale = "60s", fail_safe = "1h", key = "generic:<id>", cache = cache, ignore = [cache, source])]
async fn generic_lifecycle<R: FromSource>(cache: Cache, source: Arc<Source>, id: u64) -> R {
    R::from_source(source.load().await)
}

/// A generic return that is a `Result`, through the background paths:
/// a refresh that fails stores nothing and the value it was to replace is
/// served on; past `stale`, a failed load is answered by fail-safe; the
/// `Err` surfaces only where a concrete `Result`'s would.
async fn a_generic_result_refreshed_in_the_background_never_caches_its_err(setup: Setup) {
    let Setup { cache, clock } = setup;
    let source = Arc::new(Source::default());
    let call = || generic_lifecycle::<Result<u64, SourceError>>(cache.clone(), source.clone(), 1);
    assert_eq!(call().await, Ok(1));
    source.fail.store(true, SeqCst);
    clock.advance(Duration::from_secs(11));
    assert_eq!(call().await, Ok(1), "the expired value, at once");
    // The background refresh fails; whatever runs next, no Err is served.
    for _ in 0..20 {
        assert_eq!(call().await, Ok(1), "a failed refresh was stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(source.loads() >= 2, "a refresh ran");

    // Past ttl + stale, the load fails: fail-safe answers.
    clock.advance(Duration::from_secs(100));
    assert_eq!(call().await, Ok(1), "fail-safe");

    // Past fail_safe, the error surfaces, and is not cached.
    clock.advance(Duration::from_secs(3_700));
    assert_eq!(call().await, Err(SourceError::Down));
    source.fail.store(false, SeqCst);
    let recovered = call().await;
    assert!(matches!(recovered, Ok(n) if n >= 2), "{recovered:?}");
    assert_eq!(call().await, recovered, "the Ok is cached");
}

macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        mod in_memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(in_memory().await).await;
                }
            )*
        }

        mod on_redis {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let server = RedisServer::start();
                    super::$scenario(super::on_redis(server.url()).await).await;
                }
            )*
        }

        mod on_a_cluster {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let cluster = RedisCluster::shared();
                    let clock = ManualClock::new(START);
                    let cache = Cache::builder()
                        .redis_cluster(cluster.urls())
                        .namespace(unique_namespace("life-cluster"))
                        .op_timeout(Duration::from_secs(2))
                        .clock(clock.clone())
                        .build()
                        .await
                        .unwrap();
                    super::$scenario(Setup { cache, clock }).await;
                }
            )*
        }
    };
}

on_every_backend!(
    stale_while_revalidate,
    an_invalidated_value_is_never_served_stale,
    early_refresh_refreshes_before_the_expiry,
    fail_safe_serves_the_expired_value_within_its_limit,
    fail_safe_never_serves_an_invalidated_value,
    a_soft_timeout_answers_with_the_expired_value,
    a_put_entry_is_kept_for_the_readers_fail_safe,
    a_failed_refresh_is_retried_once_per_throttle_period,
    fail_safe_does_not_serve_a_value_invalidated_during_the_load,
    a_soft_timeout_does_not_serve_a_value_invalidated_meanwhile,
    a_generic_result_refreshed_in_the_background_never_caches_its_err,
);

/// `jitter` spreads the expiry of entries written together.
#[tokio::test]
async fn jitter_spreads_the_ttls_of_entries_written_together() {
    #[cached(ttl = 100, jitter = "50%", key = "j:<id>", cache = cache, ignore = [cache])]
    async fn jittered(cache: &Cache, id: u64) -> u64 {
        id
    }
    let server = RedisServer::start();
    let ns = unique_namespace("jitter");
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(ns.as_str())
        .build()
        .await
        .unwrap();
    let mut ttls = Vec::new();
    for id in 0..20 {
        assert_eq!(jittered(&cache, id).await, id);
        let reply = server.command(&format!("PTTL {ns}:v:j:{id}"));
        ttls.push(reply.trim_start_matches(':').trim().parse::<i64>().unwrap());
    }
    assert!(
        ttls.iter().all(|ms| (54_000..=155_000).contains(ms)),
        "{ttls:?}"
    );
    let (min, max) = (ttls.iter().min().unwrap(), ttls.iter().max().unwrap());
    assert!(max - min > 10_000, "spread out: {ttls:?}");
}

/// The programmatic form: `Cache::fetch` with `EntryOptions`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_takes_the_same_lifecycle_options() {
    let Setup { cache, clock } = in_memory().await;
    let options = redcache::EntryOptions::new(Duration::from_secs(10))
        .tags(["t:f"])
        .stale(Duration::from_secs(60))
        .fail_safe(Duration::from_secs(3_600));
    let source = Arc::new(Source::default());
    let call = || {
        let source = source.clone();
        let cache = cache.clone();
        let options = options.clone();
        async move {
            cache
                .fetch("f", &options, move || async move { source.load().await })
                .await
        }
    };
    assert_eq!(call().await, Ok(1));
    clock.advance(Duration::from_secs(11));
    assert_eq!(call().await, Ok(1), "served stale");
    eventually(call, 2).await;
    source.fail.store(true, SeqCst);
    clock.advance(Duration::from_secs(100));
    assert_eq!(call().await, Ok(2), "fail-safe, past the stale window");
    cache.invalidate_tag("t:f").await.unwrap();
    assert_eq!(
        call().await,
        Err(SourceError::Down),
        "never an invalidated value"
    );
}

/// Eight OS processes read one hot key (ttl 1 s, a 50 ms load) for four
/// seconds, with `early_refresh` and `stale`: after the first load no call
/// waits for a load (a miss), and the processes together load about once
/// per expiry, not once per process.
#[test]
fn eight_processes_on_a_hot_key_load_once_per_expiry_and_never_wait() {
    use std::process::{Command, Stdio};
    use std::time::{SystemTime, UNIX_EPOCH};

    let server = RedisServer::start();
    let ns = unique_namespace("hot");
    let start_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 1_500;
    let run_ms = 4_000;
    let workers: Vec<_> = (0..8)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_hot-key-worker"))
                .args([
                    server.url(),
                    ns.clone(),
                    start_at.to_string(),
                    run_ms.to_string(),
                ])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a worker")
        })
        .collect();
    let (mut calls, mut misses, mut loads) = (0u64, 0u64, 0u64);
    for worker in workers {
        let out = worker.wait_with_output().expect("a worker ends");
        assert!(out.status.success(), "a worker failed: {out:?}");
        let line = String::from_utf8(out.stdout).unwrap();
        let fields: Vec<u64> = line
            .split_whitespace()
            .filter_map(|word| word.parse().ok())
            .collect();
        let [c, m, l] = fields[..] else {
            panic!("unexpected worker output {line:?}");
        };
        calls += c;
        misses += m;
        loads += l;
    }
    println!("calls {calls}, misses {misses}, loads {loads}");
    assert!(calls > 1_000, "the processes read the key: {calls} calls");
    // The first load: a miss in each process that started before it was
    // stored. Never again after.
    assert!(misses <= 8, "{misses} calls waited for a load");
    // Four seconds of a 1 s ttl: the first load and about one refresh per
    // expiry, with a little room for a refresh that landed just as
    // another process looked.
    assert!((4..=7).contains(&loads), "{loads} loads in four expiries");
}
