//! Measures the table in the README's rate-limit section: for each
//! algorithm, how many calls it admits at worst in any window (accuracy),
//! the memory of one key in Redis, and the Redis CPU time of one check.
//!
//! ```text
//! cargo run --release --example rate_limit_figures   # needs redis-server on PATH
//! ```
//!
//! Accuracy runs on the embedded backend with a manual clock (the same
//! arithmetic as the Redis script); memory and CPU on a redis-server this
//! example starts on a free port.

use std::collections::VecDeque;
use std::time::Duration;

use redcache::{Algorithm, Cache, ManualClock, Policy, RateLimiter};
use redcache_suite::RedisServer;

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::SlidingLog,
    Algorithm::SlidingWindow,
    Algorithm::FixedWindow,
    Algorithm::Gcra,
];
const LIMIT: u64 = 100;
const WINDOW: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = RedisServer::start();
    println!(
        "limit {LIMIT} per {WINDOW:?}; redis-server on port {}\n",
        server.port()
    );
    let baseline = baseline_cpu(&server)?;
    println!("baseline: a one-key script (TIME, INCR, PEXPIRE) costs {baseline:.1} µs of Redis CPU per EVALSHA\n");
    println!("| algorithm | adversarial: quiet, burst at the edge, then a 4x stream (max in any window / limit) | random traffic at 2x (max in any window / limit) | memory per key, full (bytes) | Redis CPU per check (µs) |");
    println!("|---|---|---|---|---|");
    for algorithm in ALGORITHMS {
        let burst = worst_in_any_window(algorithm, edge_bursts()).await;
        let random = worst_in_any_window(algorithm, random_arrivals()).await;
        let memory = memory_per_key(&server, algorithm).await?;
        let cpu = cpu_per_check(&server, algorithm).await?;
        println!(
            "| {} | {:.2} | {:.2} | {memory} | {cpu:.1} |",
            algorithm.name(),
            burst as f64 / LIMIT as f64,
            random as f64 / LIMIT as f64
        );
    }
    Ok(())
}

/// An adversary (µs from the start): every other window it stays quiet,
/// sends 2 × limit calls in the last millisecond before the edge, then a
/// stream at 4 × the limit's rate through the next window. That is the
/// weak spot of the fixed window (two quotas back to back), of the sliding
/// window (the quiet start makes the previous window look light) and of
/// GCRA (a full burst, then the refill).
fn edge_bursts() -> Vec<u64> {
    let w = WINDOW.as_micros() as u64;
    let gap = w / (4 * LIMIT);
    let mut times = Vec::new();
    for edge in (2..=20).step_by(2) {
        times.extend((0..2 * LIMIT).map(|i| edge * w - 1_000 + i));
        times.extend((0..4 * LIMIT).map(|i| edge * w + 1_000 + i * gap));
    }
    times
}

/// Poisson arrivals at twice the limit's rate over 100 windows (a fixed
/// seed, so the figure is reproducible).
fn random_arrivals() -> Vec<u64> {
    let mean_gap = WINDOW.as_micros() as f64 / (2 * LIMIT) as f64;
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut t = 0.0;
    let mut times = Vec::new();
    while t < 100.0 * WINDOW.as_micros() as f64 {
        // xorshift64*, uniform in (0, 1]
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let u =
            ((state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        t += -mean_gap * u.ln();
        times.push(t as u64);
    }
    times
}

/// Runs the calls through the algorithm and returns the most calls admitted
/// within any window of length `WINDOW` (sliding over admission times).
async fn worst_in_any_window(algorithm: Algorithm, times: Vec<u64>) -> usize {
    let origin = Duration::from_secs(1_000_000_020); // a whole number of windows since the epoch
    let clock = ManualClock::new(origin);
    let cache = Cache::builder()
        .memory()
        .clock(clock.clone())
        .build()
        .await
        .expect("memory cache");
    let limiter = RateLimiter::new(
        &cache,
        "figures",
        [Policy::new(LIMIT, WINDOW).algorithm(algorithm)],
    )
    .expect("limiter");
    let w = WINDOW.as_micros() as u64;
    let mut admitted: VecDeque<u64> = VecDeque::new();
    let mut worst = 0;
    for t in times {
        clock.set(origin + Duration::from_micros(t));
        if limiter.check("k").await.is_ok() {
            admitted.push_back(t);
            while admitted.front().is_some_and(|&a| a + w <= t) {
                admitted.pop_front();
            }
            worst = worst.max(admitted.len());
        }
    }
    worst
}

/// `MEMORY USAGE` of a key whose quota is spent.
async fn memory_per_key(
    server: &RedisServer,
    algorithm: Algorithm,
) -> Result<u64, Box<dyn std::error::Error>> {
    let cache = Cache::builder()
        .redis(server.url())
        .namespace("figures-mem")
        .build()
        .await?;
    let limiter = RateLimiter::new(
        &cache,
        algorithm.name(),
        [Policy::new(LIMIT, WINDOW).algorithm(algorithm)],
    )?;
    for _ in 0..LIMIT {
        limiter.check("user:42").await?;
    }
    let reply = server.command(&format!(
        "SCAN 0 MATCH figures-mem:rl:{}* COUNT 1000",
        algorithm.name()
    ));
    let key = reply
        .lines()
        .find(|l| l.starts_with("figures-mem:"))
        .ok_or("no key")?;
    let usage = server.command(&format!("MEMORY USAGE {key}"));
    Ok(usage.trim().trim_start_matches(':').parse()?)
}

/// The Redis CPU of a minimal script that does what every check must: read
/// the clock, write one key with an expiry.
fn baseline_cpu(server: &RedisServer) -> Result<f64, Box<dyn std::error::Error>> {
    let client = redis::Client::open(server.url())?;
    let mut conn = client.get_connection()?;
    let script = redis::Script::new(
        "local t = redis.call('TIME') redis.call('INCR', KEYS[1]) redis.call('PEXPIRE', KEYS[1], 60000) return t[1]",
    );
    let _: String = script.key("baseline").invoke(&mut conn)?;
    server.command("CONFIG RESETSTAT");
    for i in 0..20_000u32 {
        let _: String = script
            .key(format!("baseline:{}", i % 100))
            .invoke(&mut conn)?;
    }
    usec_per_evalsha(server)
}

fn usec_per_evalsha(server: &RedisServer) -> Result<f64, Box<dyn std::error::Error>> {
    let info = server.command("INFO commandstats");
    let line = info
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .ok_or("no evalsha stats")?;
    let usec = line
        .split("usec_per_call=")
        .nth(1)
        .ok_or("no usec_per_call")?
        .split(',')
        .next()
        .ok_or("bad stats")?;
    Ok(usec.parse()?)
}

/// Average server CPU of the check script (`usec_per_call` of EVALSHA),
/// over 20 000 checks that are all admitted (a limit that is never reached).
async fn cpu_per_check(
    server: &RedisServer,
    algorithm: Algorithm,
) -> Result<f64, Box<dyn std::error::Error>> {
    let cache = Cache::builder()
        .redis(server.url())
        .namespace("figures-cpu")
        .build()
        .await?;
    let policy = Policy::new(1_000_000, WINDOW).algorithm(algorithm);
    let limiter = RateLimiter::new(&cache, algorithm.name(), [policy])?;
    limiter.check("warm").await?;
    server.command("CONFIG RESETSTAT");
    for i in 0..20_000u32 {
        // A hundred keys, so the sliding log holds up to 200 entries each, as a real one would.
        limiter.check(&format!("user:{}", i % 100)).await?;
    }
    usec_per_evalsha(server)
}
