//! Rate limits on a real redis-server (started by the test), and the
//! semantics both backends share.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redcache::{Algorithm, Cache, ManualClock, OnError, Policy, RateLimiter};
use redcache_suite::{unique_namespace, RedisServer};

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::SlidingLog,
    Algorithm::SlidingWindow,
    Algorithm::FixedWindow,
    Algorithm::Gcra,
];

async fn redis_cache(server: &RedisServer) -> Cache {
    Cache::builder()
        .redis(server.url())
        .namespace(unique_namespace("rl"))
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap()
}

fn limiter(cache: &Cache, policy: Policy) -> RateLimiter {
    RateLimiter::new(cache, "api", [policy]).unwrap()
}

async fn fire(limiter: &RateLimiter, key: &str, calls: usize) -> usize {
    let mut admitted = 0;
    for _ in 0..calls {
        admitted += usize::from(limiter.check(key).await.is_ok());
    }
    admitted
}

/// The Redis server's clock, in microseconds.
fn server_micros(server: &RedisServer) -> u64 {
    let reply = server.command("TIME");
    let numbers: Vec<u64> = reply.lines().filter_map(|l| l.parse().ok()).collect();
    numbers[0] * 1_000_000 + numbers[1]
}

/// Sleeps until `offset` past the next multiple of `window` on the server's clock.
async fn sleep_until_window_offset(
    server: &RedisServer,
    window: Duration,
    offset: Duration,
) -> Instant {
    let now = server_micros(server);
    let w = window.as_micros() as u64;
    let target = (now / w + 1) * w + offset.as_micros() as u64;
    let start = Instant::now() + Duration::from_micros(target - now);
    tokio::time::sleep_until(start.into()).await;
    start
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_burst_on_redis_admits_what_each_algorithm_must() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let window = Duration::from_secs(2);
    // 20 calls 400 ms before a window edge, 20 calls 100 ms after it.
    // GCRA (burst 10, one call per 200 ms) has earned back 500 ms / 200 ms = 2.
    let expected = [(10, 0), (10, 0), (10, 10), (10, 2)];
    let limiters: Vec<RateLimiter> = ALGORITHMS
        .iter()
        .map(|&a| limiter(&cache, Policy::new(10, window).algorithm(a)))
        .collect();
    let edge =
        sleep_until_window_offset(&server, window, window - Duration::from_millis(400)).await;
    let mut before = Vec::new();
    for limiter in &limiters {
        before.push(fire(limiter, "k", 20).await);
    }
    tokio::time::sleep_until((edge + Duration::from_millis(500)).into()).await;
    for (i, limiter) in limiters.iter().enumerate() {
        let after = fire(limiter, "k", 20).await;
        assert_eq!((before[i], after), expected[i], "{:?}", ALGORITHMS[i]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uniform_stream_on_redis_admits_what_each_algorithm_must() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    // Limit 5 per 2 s; a call every 240 ms from 40 ms past a window edge, for
    // three windows. Every call is 40 ms or more from any edge or expiry.
    // Fixed and log: 5 per window. Sliding window: 5, then 4 and 4 (the
    // previous window weighs (2000 - e) / 2000; see the accuracy tests).
    let window = Duration::from_secs(2);
    let algorithms = [
        Algorithm::FixedWindow,
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
    ];
    let expected = [[5, 5, 5], [5, 5, 5], [5, 4, 4]];
    let limiters: Vec<RateLimiter> = algorithms
        .iter()
        .map(|&a| limiter(&cache, Policy::new(5, window).algorithm(a)))
        .collect();
    let start = sleep_until_window_offset(&server, window, Duration::from_millis(40)).await;
    let mut counts = [[0; 3]; 3];
    for j in 0..25u32 {
        tokio::time::sleep_until((start + Duration::from_millis(240) * j).into()).await;
        let window_index = (40 + 240 * j as usize) / 2000;
        for (i, limiter) in limiters.iter().enumerate() {
            counts[i][window_index] += usize::from(limiter.check("k").await.is_ok());
        }
    }
    for i in 0..3 {
        assert_eq!(counts[i], expected[i], "{:?}", algorithms[i]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_on_one_key_never_exceed_the_limit() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let memory = Cache::builder().memory().build().await.unwrap();
    for cache in [cache, memory] {
        for algorithm in ALGORITHMS {
            let limiter = Arc::new(limiter(
                &cache,
                Policy::new(50, Duration::from_secs(600)).algorithm(algorithm),
            ));
            let admitted = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let (limiter, admitted) = (limiter.clone(), admitted.clone());
                    tokio::spawn(async move {
                        for _ in 0..10 {
                            if limiter.check("hot").await.is_ok() {
                                admitted.fetch_add(1, SeqCst);
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            assert_eq!(admitted.load(SeqCst), 50, "{algorithm:?} on {cache:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_with_skewed_clocks_share_one_limit() {
    let server = RedisServer::start();
    let namespace = unique_namespace("skew");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let hour = Duration::from_secs(3600);
    let mut limiters = Vec::new();
    for clock in [ManualClock::new(now + hour), ManualClock::new(now - hour)] {
        let cache = Cache::builder()
            .redis(server.url())
            .namespace(&namespace)
            .clock(clock)
            .op_timeout(Duration::from_secs(2))
            .build()
            .await
            .unwrap();
        limiters.push(limiter(&cache, Policy::new(20, Duration::from_secs(600))));
    }
    let mut admitted = 0;
    for _ in 0..30 {
        for limiter in &limiters {
            admitted += usize::from(limiter.check("shared").await.is_ok());
        }
    }
    assert_eq!(
        admitted, 20,
        "two hours of skew between clients must not buy any extra calls"
    );
}

#[tokio::test]
async fn every_rate_limit_key_lives_no_longer_than_its_algorithm_needs() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let window = Duration::from_secs(60);
    // The longest each state must live: one window for the log and the fixed
    // window (at most), two for the sliding window, burst x interval for GCRA.
    let most = [window, window * 2, window, window / 10 * 3];
    for (algorithm, most) in ALGORITHMS.into_iter().zip(most) {
        let policy = Policy::new(10, window).algorithm(algorithm);
        let policy = if algorithm == Algorithm::Gcra {
            policy.burst(3)
        } else {
            policy
        };
        let limiter = RateLimiter::new(&cache, algorithm.name(), [policy]).unwrap();
        limiter.check("k").await.unwrap();
        let key = scan_one(&server, &format!("*{}*", algorithm.name()));
        let pttl: i64 = server
            .command(&format!("PTTL {key}"))
            .trim_start_matches(':')
            .trim()
            .parse()
            .unwrap();
        assert!(
            pttl > 0 && pttl as u128 <= most.as_millis(),
            "{algorithm:?}: PTTL {pttl} ms, at most {most:?}"
        );
    }
}

fn scan_one(server: &RedisServer, pattern: &str) -> String {
    let reply = server.command(&format!("SCAN 0 MATCH {pattern} COUNT 1000"));
    let keys: Vec<&str> = reply
        .lines()
        .filter(|l| l.contains(':') && !l.starts_with('*') && !l.starts_with('$'))
        .collect();
    assert_eq!(keys.len(), 1, "one key matching {pattern}: {reply:?}");
    keys[0].to_string()
}

#[tokio::test]
async fn a_remembered_denial_saves_the_round_trip() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let limiter = limiter(
        &cache,
        Policy::new(3, Duration::from_secs(60)).algorithm(Algorithm::FixedWindow),
    );
    assert_eq!(fire(&limiter, "abuser", 4).await, 3);
    let evals_before = script_calls(&server);
    assert_eq!(fire(&limiter, "abuser", 100).await, 0);
    assert_eq!(
        script_calls(&server),
        evals_before,
        "denied calls must not reach Redis"
    );
    assert_eq!(cache.stats().rate_denied_locally, 100);
    // Another key is not affected.
    assert_eq!(fire(&limiter, "someone-else", 1).await, 1);
}

/// EVALSHA (and EVAL) calls the server has run.
fn script_calls(server: &RedisServer) -> u64 {
    let info = server.command("INFO commandstats");
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .map(|l| {
            l.split("calls=")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

#[tokio::test]
async fn the_script_is_reloaded_after_script_flush() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let limiter = limiter(&cache, Policy::new(5, Duration::from_secs(60)));
    assert_eq!(fire(&limiter, "k", 2).await, 2);
    assert_eq!(server.command("SCRIPT FLUSH"), "+OK\r\n");
    assert_eq!(fire(&limiter, "k", 5).await, 3);
}

#[tokio::test]
async fn peek_and_costs_on_redis() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    for algorithm in ALGORITHMS {
        let limiter = limiter(
            &cache,
            Policy::new(10, Duration::from_secs(60)).algorithm(algorithm),
        );
        let key = algorithm.name();
        assert_eq!(limiter.peek(key).await.unwrap().remaining(), 9);
        assert_eq!(
            limiter.check_cost(key, 4).await.unwrap().remaining(),
            6,
            "{algorithm:?}"
        );
        assert_eq!(
            limiter.check_cost(key, 6).await.unwrap().remaining(),
            0,
            "{algorithm:?}"
        );
        let refused = limiter.check_cost(key, 2).await.unwrap_err();
        // The sliding window may have to wait into the next window.
        let wait = refused.retry_after();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(120),
            "{algorithm:?}: {wait:?}"
        );
        assert_eq!(
            refused.headers()[0],
            ("RateLimit-Policy", "\"10-per-1m\";q=10;w=60".to_string())
        );
    }
}

#[tokio::test]
async fn several_policies_on_redis_are_consumed_all_or_nothing() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let limiter = RateLimiter::new(
        &cache,
        "multi",
        [
            Policy::new(2, Duration::from_secs(600)),
            Policy::new(3, Duration::from_secs(3600)).algorithm(Algorithm::SlidingWindow),
        ],
    )
    .unwrap();
    assert_eq!(fire(&limiter, "k", 10).await, 2);
    let status = RateLimiter::new(
        &cache,
        "multi",
        [Policy::new(3, Duration::from_secs(3600)).algorithm(Algorithm::SlidingWindow)],
    )
    .unwrap()
    .peek("k")
    .await
    .unwrap();
    assert_eq!(
        status.remaining(),
        0,
        "the hourly policy counted only the 2 admitted calls (3 - 2 - 1 for this peek)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_on_error_decides() {
    let mut server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(unique_namespace("down"))
        .op_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let allow = limiter(&cache, Policy::new(1, Duration::from_secs(60)));
    let deny = limiter(&cache, Policy::new(1, Duration::from_secs(60))).on_error(OnError::Deny);
    server.stop();
    let allowed = allow
        .check("k")
        .await
        .expect("on_error = allow lets calls through");
    assert!(allowed.is_degraded());
    let refused = deny.check("k").await.expect_err("on_error = deny refuses");
    assert!(refused.status().is_degraded());
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match allow.check("fresh").await {
            Ok(status) if !status.is_degraded() => break,
            _ => assert!(
                Instant::now() < deadline,
                "limits did not come back with Redis"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
