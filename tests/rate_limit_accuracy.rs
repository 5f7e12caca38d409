//! Deterministic accuracy of each algorithm, on the embedded backend with a
//! clock the test moves. The expected counts are worked out in the comments
//! from each algorithm's definition, not read off the implementation.

use std::time::Duration;

use redcache::{Algorithm, Cache, ManualClock, Policy, RateLimiter};

const LIMIT: u64 = 10;
const WINDOW: Duration = Duration::from_secs(1);
/// A window edge: a whole number of seconds since the epoch.
const EDGE: Duration = Duration::from_secs(1_000_000);

async fn limiter(algorithm: Algorithm, clock: &ManualClock) -> RateLimiter {
    let cache = Cache::builder()
        .memory()
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let policy = Policy::new(LIMIT, WINDOW).algorithm(algorithm);
    RateLimiter::new(&cache, "accuracy", [policy]).unwrap()
}

async fn fire(limiter: &RateLimiter, calls: usize) -> usize {
    let mut admitted = 0;
    for _ in 0..calls {
        admitted += usize::from(limiter.check("k").await.is_ok());
    }
    admitted
}

/// 20 calls 1 ms before a window edge, 20 calls 1 ms after it.
async fn boundary_burst(algorithm: Algorithm) -> (usize, usize) {
    let clock = ManualClock::new(EDGE - Duration::from_millis(1));
    let limiter = limiter(algorithm, &clock).await;
    let before = fire(&limiter, 20).await;
    clock.advance(Duration::from_millis(2));
    (before, fire(&limiter, 20).await)
}

#[tokio::test]
async fn boundary_burst_fixed_window_admits_twice_the_limit() {
    // Each side of the edge is a fresh window of 10.
    assert_eq!(boundary_burst(Algorithm::FixedWindow).await, (10, 10));
}

#[tokio::test]
async fn boundary_burst_sliding_log_admits_the_limit() {
    // The 10 calls before the edge are still within the last second.
    assert_eq!(boundary_burst(Algorithm::SlidingLog).await, (10, 0));
}

#[tokio::test]
async fn boundary_burst_sliding_window_admits_the_limit() {
    // 1 ms into the new window the previous one weighs 999/1000:
    // 10 * 0.999 = 9.99, and 9.99 + 1 > 10.
    assert_eq!(boundary_burst(Algorithm::SlidingWindow).await, (10, 0));
}

#[tokio::test]
async fn boundary_burst_gcra_admits_the_burst() {
    // Burst 10 at once; 2 ms later the next call is 98 ms short of its
    // 100 ms emission interval.
    assert_eq!(boundary_burst(Algorithm::Gcra).await, (10, 0));
}

/// A call every 50 ms (twice the limit) for 5 windows from an edge; the
/// number admitted in each window.
async fn uniform_stream(algorithm: Algorithm) -> Vec<usize> {
    let clock = ManualClock::new(EDGE);
    let limiter = limiter(algorithm, &clock).await;
    let mut per_window = vec![0; 5];
    for i in 0..100 {
        per_window[i / 20] += usize::from(limiter.check("k").await.is_ok());
        clock.advance(Duration::from_millis(50));
    }
    per_window
}

#[tokio::test]
async fn uniform_stream_fixed_window() {
    // The first 10 calls of each window.
    assert_eq!(uniform_stream(Algorithm::FixedWindow).await, [10; 5]);
}

#[tokio::test]
async fn uniform_stream_sliding_log() {
    // 0..450 ms, then each call as the one a second older leaves: 10 per window.
    assert_eq!(uniform_stream(Algorithm::SlidingLog).await, [10; 5]);
}

#[tokio::test]
async fn uniform_stream_sliding_window() {
    // Window 1: the previous 10 weigh 10 * (1 - e); a call fits when
    // 10 * (1 - e) + current + 1 <= 10: at 100, 200, ..., 900 ms: 9.
    // Window 2 on (previous 9): at 0, 150, 250, 350, 450, 600, 700, 800,
    // 900 ms: 9; windows 3 and 4 repeat window 2.
    assert_eq!(
        uniform_stream(Algorithm::SlidingWindow).await,
        [10, 9, 9, 9, 9]
    );
}

#[tokio::test]
async fn uniform_stream_gcra() {
    // Emission interval 100 ms, burst 10: after n admissions at t = 50k the
    // next fits while 100 (n + 1) - 50k <= 1000, so k = 0..18 all pass (19);
    // from then on one call per 100 ms: 10 per window.
    assert_eq!(uniform_stream(Algorithm::Gcra).await, [19, 10, 10, 10, 10]);
}

#[tokio::test]
async fn gcra_with_a_small_burst_spaces_calls_evenly() {
    let clock = ManualClock::new(EDGE);
    let cache = Cache::builder()
        .memory()
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let policy = Policy::new(10, WINDOW).algorithm(Algorithm::Gcra).burst(1);
    let limiter = RateLimiter::new(&cache, "smooth", [policy]).unwrap();
    let mut admitted = 0;
    for _ in 0..100 {
        admitted += usize::from(limiter.check("k").await.is_ok());
        clock.advance(Duration::from_millis(10));
    }
    // One call per 100 ms over one second.
    assert_eq!(admitted, 10);
}

/// `retry_after` is exact: a microsecond earlier the call is still refused,
/// at `retry_after` it passes.
#[tokio::test]
async fn retry_after_is_the_first_moment_a_retry_succeeds() {
    for algorithm in [
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
        Algorithm::Gcra,
    ] {
        let clock = ManualClock::new(EDGE + Duration::from_millis(300));
        let limiter = limiter(algorithm, &clock).await;
        for _ in 0..30 {
            clock.advance(Duration::from_millis(7));
            let _ = limiter.check("k").await;
        }
        let refused = limiter.peek("k").await.expect_err("the limit is reached");
        let wait = refused.retry_after();
        assert!(wait > Duration::ZERO, "{algorithm:?}");
        clock.advance(wait - Duration::from_micros(1));
        assert!(
            limiter.peek("k").await.is_err(),
            "{algorithm:?}: allowed before retry_after ({wait:?})"
        );
        clock.advance(Duration::from_micros(1));
        assert!(
            limiter.peek("k").await.is_ok(),
            "{algorithm:?}: still refused at retry_after ({wait:?})"
        );
    }
}

#[tokio::test]
async fn costs_are_taken_whole_or_not_at_all() {
    for algorithm in [
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
        Algorithm::Gcra,
    ] {
        let clock = ManualClock::new(EDGE);
        let limiter = limiter(algorithm, &clock).await;
        for expected in [7, 4, 1] {
            assert_eq!(
                limiter.check_cost("k", 3).await.unwrap().remaining(),
                expected,
                "{algorithm:?}"
            );
        }
        let refused = limiter.check_cost("k", 3).await.unwrap_err();
        assert_eq!(
            refused.remaining(),
            1,
            "{algorithm:?}: a refused cost takes nothing"
        );
        assert_eq!(
            limiter.check_cost("k", 1).await.unwrap().remaining(),
            0,
            "{algorithm:?}"
        );
    }
}

#[tokio::test]
async fn peek_takes_nothing() {
    let clock = ManualClock::new(EDGE);
    let limiter = limiter(Algorithm::SlidingLog, &clock).await;
    for _ in 0..50 {
        assert_eq!(limiter.peek("k").await.unwrap().remaining(), 9);
    }
    assert_eq!(fire(&limiter, 20).await, 10);
}

#[tokio::test]
async fn several_policies_are_consumed_all_or_nothing() {
    let clock = ManualClock::new(EDGE);
    let cache = Cache::builder()
        .memory()
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let per_second = Policy::new(2, Duration::from_secs(1));
    let per_ten = Policy::new(3, Duration::from_secs(10));
    let limiter = RateLimiter::new(&cache, "multi", [per_second, per_ten]).unwrap();
    assert_eq!(fire(&limiter, 5).await, 2, "the per-second policy binds");
    clock.advance(Duration::from_secs(1));
    // The three refusals above took nothing from the 10-second policy.
    let third = limiter.check("k").await.unwrap();
    assert_eq!((third.limit(), third.remaining()), (3, 0));
    clock.advance(Duration::from_secs(1));
    let refused = limiter.check("k").await.unwrap_err();
    assert_eq!(refused.limit(), 3, "now the 10-second policy binds");
    assert_eq!(refused.retry_after(), Duration::from_secs(8));
}

#[tokio::test]
async fn a_denial_is_remembered_in_process_until_retry_after() {
    let clock = ManualClock::new(EDGE);
    let cache = Cache::builder()
        .memory()
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let limiter = RateLimiter::new(
        &cache,
        "memo",
        [Policy::new(2, WINDOW).algorithm(Algorithm::FixedWindow)],
    )
    .unwrap();
    assert_eq!(fire(&limiter, 2).await, 2);
    assert!(limiter.check("k").await.is_err());
    assert_eq!(cache.stats().rate_denied, 1);
    for _ in 0..10 {
        assert!(limiter.check("k").await.is_err());
    }
    let stats = cache.stats();
    assert_eq!(
        (stats.rate_denied, stats.rate_denied_locally),
        (1, 10),
        "{stats:?}"
    );
    clock.advance(WINDOW);
    assert!(
        limiter.check("k").await.is_ok(),
        "the memory ends at retry_after"
    );
}

async fn gcra_limiter(
    clock: &ManualClock,
    limit: u64,
    window: Duration,
    burst: u64,
) -> RateLimiter {
    let cache = Cache::builder()
        .memory()
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let policy = Policy::new(limit, window)
        .algorithm(Algorithm::Gcra)
        .burst(burst);
    RateLimiter::new(&cache, "gcra", [policy]).unwrap()
}

/// Issue 9, item 10: with the interval (333 333.3 µs) rounded up on every
/// call, the third call at one instant needed 1 000 002 µs of a 1 000 000 µs
/// tolerance and was refused.
#[tokio::test]
async fn gcra_three_per_second_with_burst_three_admits_three_at_one_instant() {
    let clock = ManualClock::new(EDGE);
    let limiter = gcra_limiter(&clock, 3, Duration::from_secs(1), 3).await;
    assert_eq!(fire(&limiter, 10).await, 3);
}

#[tokio::test]
async fn gcra_seven_per_second_admits_seven_at_one_instant() {
    let clock = ManualClock::new(EDGE);
    let limiter = gcra_limiter(&clock, 7, Duration::from_secs(1), 7).await;
    assert_eq!(fire(&limiter, 10).await, 7);
}

/// GCRA decides as governor does (the same `t`, `tau` and admit test, for
/// costs above 1 too), on 300 random traces of costs and times; a cost
/// above the burst is refused by both. The trace is replayed on governor's
/// fake clock and on the embedded backend's manual clock, through the
/// public API (so the remembered denials are part of what is compared).
#[tokio::test]
async fn gcra_decisions_match_governor_on_random_traces() {
    use std::num::NonZeroU32;

    use governor::clock::FakeRelativeClock;
    use governor::Quota;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    for seed in 0..300u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let limit = rng.random_range(1..=50u32);
        let window = Duration::from_micros(rng.random_range(1_000..=3_000_000));
        let burst = rng.random_range(1..=2 * limit);
        let quota = Quota::with_period(window / limit)
            .unwrap()
            .allow_burst(NonZeroU32::new(burst).unwrap());
        let fake = FakeRelativeClock::default();
        let governor = governor::RateLimiter::direct_with_clock(quota, fake.clone());
        let clock = ManualClock::new(EDGE + Duration::from_micros(rng.random_range(0..1_000_000)));
        let limiter = gcra_limiter(&clock, limit.into(), window, burst.into()).await;
        let interval_us = (window / limit).as_micros() as u64;
        let mut trace = Vec::new();
        for _ in 0..100 {
            let step = if rng.random_bool(0.3) {
                Duration::ZERO
            } else {
                Duration::from_micros(rng.random_range(0..=2 * interval_us))
            };
            fake.advance(step);
            clock.advance(step);
            let cost = if rng.random_bool(0.7) {
                1
            } else {
                rng.random_range(1..=burst + 1)
            };
            let theirs = matches!(governor.check_n(NonZeroU32::new(cost).unwrap()), Ok(Ok(())));
            let ours = limiter.check_cost("k", cost.into()).await.is_ok();
            trace.push((step.as_micros(), cost, theirs));
            assert_eq!(
                ours, theirs,
                "seed {seed}: {limit} per {window:?}, burst {burst}; trace (step µs, cost, governor) {trace:?}"
            );
        }
    }
}

/// Issue 9, item 9: every input gets an answer or a clear error, never a
/// panic. A cost of u64::MAX wrapped the fixed window's count (and
/// admitted), and made the sliding log allocate one entry per unit
/// ("capacity overflow"); it is now refused, and takes nothing.
#[tokio::test]
async fn a_cost_of_u64_max_is_refused_and_takes_nothing() {
    for algorithm in [
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
        Algorithm::Gcra,
    ] {
        let clock = ManualClock::new(EDGE);
        let limiter = limiter(algorithm, &clock).await;
        for cost in [u64::MAX, LIMIT + 1] {
            let refused = limiter.check_cost("k", cost).await.unwrap_err();
            assert_eq!(
                (refused.remaining(), refused.retry_after()),
                (0, WINDOW),
                "{algorithm:?}"
            );
        }
        assert_eq!(fire(&limiter, 20).await, 10, "{algorithm:?}: nothing taken");
        assert!(
            limiter.check_cost("k", 0).await.is_ok(),
            "{algorithm:?}: cost 0"
        );
    }
}

#[tokio::test]
async fn figures_beyond_exact_arithmetic_are_configuration_errors() {
    let cache = Cache::builder().memory().build().await.unwrap();
    let refused = |policy: Policy| match RateLimiter::new(&cache, "n", [policy]) {
        Err(redcache::Error::Config(message)) => message,
        other => panic!("{policy:?}: {other:?}"),
    };
    let second = Duration::from_secs(1);
    assert!(refused(Policy::new(u64::MAX, second)).contains("2^53"));
    assert!(refused(Policy::new(Policy::MAX_LIMIT + 1, second)).contains("2^53"));
    // A window of 2^64 µs or more truncated to 0 µs (a division by zero);
    // Duration::MAX made the sliding log enforce nothing.
    for window in [
        Duration::from_micros(u64::MAX) + Duration::from_micros(1),
        Duration::MAX,
    ] {
        for algorithm in [Algorithm::SlidingLog, Algorithm::FixedWindow] {
            let policy = Policy::new(10, window).algorithm(algorithm);
            assert!(refused(policy).contains("100 years"), "{policy:?}");
        }
    }
    let gcra = Policy::new(10, second).algorithm(Algorithm::Gcra);
    assert!(refused(gcra.burst(u64::MAX)).contains("2^53"));
    assert!(RateLimiter::new(
        &cache,
        "n",
        [Policy::new(Policy::MAX_LIMIT, Policy::MAX_WINDOW)]
    )
    .is_ok());
}
