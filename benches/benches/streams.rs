//! Streams against raw redis-rs, on a fresh redis-server:
//!
//! - emit: `EventStream::emit` (one script: `XADD MAXLEN ~` and the
//!   expiry) against a raw `XADD key MAXLEN ~ n * d <payload>`, at 1 and
//!   64 tasks, alternating in short batches (A B B A ...): the median of
//!   the per-round ratios;
//! - a consumer group draining a backlog of entries, with 1 and 4
//!   consumers: redcache's worker (no-op handler) against raw loops of
//!   `XREADGROUP COUNT 64` + one `XACK` per batch, alternating rounds;
//! - end to end: entries emitted at about 1 000/s, the time from `emit`
//!   to the handler, p50/p99.
//!
//! `cargo bench -p redcache-benches --bench streams`; prints a table and
//! writes `<criterion home>/streams/figures.json`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redcache::{Cache, Delivery, EventStream};
use redcache_benches::{runtime, write_result};
use redcache_suite::RedisServer;
use serde::{Deserialize, Serialize};

const MAX_LEN: u64 = 1_000_000;

/// A JSON-ish event of ~120 bytes.
#[derive(Clone, Serialize, Deserialize)]
struct OrderPlaced {
    order: u64,
    customer: u64,
    cents: u64,
    currency: String,
    sent_us: u64,
}

fn event(order: u64) -> OrderPlaced {
    OrderPlaced {
        order,
        customer: order % 977,
        cents: 4_200 + order % 100,
        currency: "EUR".into(),
        sent_us: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64,
    }
}

async fn redis_conn(url: &str) -> redis::aio::ConnectionManager {
    redis::aio::ConnectionManager::new(redis::Client::open(url).unwrap())
        .await
        .unwrap()
}

/// Emits per second over `batch`, from `tasks` tasks.
async fn emit_rate<F, Fut>(tasks: usize, batch: Duration, emit: F) -> f64
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (emit, done) = (emit.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                let mut i = t as u64 * 1_000_000;
                while started.elapsed() < batch {
                    emit(i).await;
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

async fn emit_pair(cache: &Cache, url: &str, tasks: usize, rounds: usize) -> (f64, f64, f64) {
    let stream: EventStream<OrderPlaced> = cache.stream("emit").max_len(MAX_LEN);
    let raw = redis_conn(url).await;
    let ours = {
        let stream = stream.clone();
        move |i: u64| {
            let stream = stream.clone();
            async move {
                stream.emit(&event(i)).await.unwrap();
            }
        }
    };
    let theirs = move |i: u64| {
        let mut raw = raw.clone();
        async move {
            let payload = serde_json::to_vec(&event(i)).unwrap();
            let _: String = redis::cmd("XADD")
                .arg("raw-emit")
                .arg("MAXLEN")
                .arg("~")
                .arg(MAX_LEN)
                .arg("*")
                .arg("d")
                .arg(payload)
                .query_async(&mut raw)
                .await
                .unwrap();
        }
    };
    let batch = Duration::from_millis(200);
    let (mut ratios, mut a_rates, mut b_rates) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (a, b) = if round % 2 == 0 {
            let a = emit_rate(tasks, batch, ours.clone()).await;
            (a, emit_rate(tasks, batch, theirs.clone()).await)
        } else {
            let b = emit_rate(tasks, batch, theirs.clone()).await;
            (emit_rate(tasks, batch, ours.clone()).await, b)
        };
        ratios.push(a / b);
        a_rates.push(a);
        b_rates.push(b);
    }
    (median(a_rates), median(b_rates), median(ratios))
}

/// Fills `key` with `n` entries (raw pipelines, the same payload shape).
async fn fill(url: &str, key: &str, n: u64) {
    let mut raw = redis_conn(url).await;
    let mut made = 0;
    while made < n {
        let mut pipe = redis::pipe();
        for i in made..(made + 500).min(n) {
            pipe.cmd("XADD")
                .arg(key)
                .arg("*")
                .arg("d")
                .arg(serde_json::to_vec(&event(i)).unwrap())
                .ignore();
        }
        pipe.query_async::<()>(&mut raw).await.unwrap();
        made = (made + 500).min(n);
    }
}

/// Entries per second that `consumers` redcache consumers drain from a
/// backlog of `n`.
async fn drain_redcache(cache: &Cache, url: &str, name: &str, n: u64, consumers: usize) -> f64 {
    let stream: EventStream<OrderPlaced> = cache.stream(name).max_len(MAX_LEN);
    fill(url, stream.key(), n).await;
    let handled = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut running = Vec::new();
    for _ in 0..consumers {
        let handled = Arc::clone(&handled);
        running.push(
            stream
                .consumer("g")
                .concurrency(64)
                .batch(64)
                .block(Duration::from_millis(50))
                .start(move |_: Delivery<OrderPlaced>| {
                    handled.fetch_add(1, Ordering::Relaxed);
                    async { Ok::<_, String>(()) }
                })
                .await
                .unwrap(),
        );
    }
    while handled.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    for consumer in running {
        consumer.shutdown().await;
    }
    rate
}

/// The same with raw loops: `XREADGROUP COUNT 64 ... >`, then one `XACK`
/// of the batch, per consumer task.
async fn drain_raw(url: &str, key: &str, n: u64, consumers: usize) -> f64 {
    fill(url, key, n).await;
    let mut raw = redis_conn(url).await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg("g")
        .arg("0")
        .query_async(&mut raw)
        .await
        .unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..consumers)
        .map(|c| {
            let (key, handled) = (key.to_string(), Arc::clone(&handled));
            let url = url.to_string();
            tokio::spawn(async move {
                let mut conn = redis_conn(&url).await;
                loop {
                    let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg("g")
                        .arg(format!("raw-{c}"))
                        .arg("COUNT")
                        .arg(64)
                        .arg("STREAMS")
                        .arg(&key)
                        .arg(">")
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    let ids: Vec<String> = reply
                        .keys
                        .into_iter()
                        .flat_map(|k| k.ids)
                        .map(|e| {
                            let _: Option<OrderPlaced> = e
                                .get::<Vec<u8>>("d")
                                .and_then(|d| serde_json::from_slice(&d).ok());
                            e.id
                        })
                        .collect();
                    if ids.is_empty() {
                        return;
                    }
                    let _: i64 = redis::cmd("XACK")
                        .arg(&key)
                        .arg("g")
                        .arg(&ids)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    handled.fetch_add(ids.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(handled.load(Ordering::Relaxed), n);
    n as f64 / started.elapsed().as_secs_f64()
}

/// Emit-to-handler latency at about `per_second` entries per second.
async fn latency(cache: &Cache, count: u64, per_second: u64) -> (f64, f64, f64) {
    let stream: EventStream<OrderPlaced> = cache.stream("latency").max_len(MAX_LEN);
    let seen = Arc::new(std::sync::Mutex::new(Vec::with_capacity(count as usize)));
    let record = Arc::clone(&seen);
    let consumer = stream
        .consumer("g")
        .start(move |order: Delivery<OrderPlaced>| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64;
            record
                .lock()
                .unwrap()
                .push(now.saturating_sub(order.value.sent_us));
            async { Ok::<_, String>(()) }
        })
        .await
        .unwrap();
    let gap = Duration::from_micros(1_000_000 / per_second);
    let mut next = tokio::time::Instant::now();
    for i in 0..count {
        stream.emit(&event(i)).await.unwrap();
        next += gap;
        tokio::time::sleep_until(next).await;
    }
    while (seen.lock().unwrap().len() as u64) < count {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    consumer.shutdown().await;
    let mut us = seen.lock().unwrap().clone();
    us.sort_unstable();
    let at = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize] as f64 / 1_000.0;
    (at(0.5), at(0.99), at(1.0))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let smoke = std::env::args().any(|a| a == "--test");
    let (rounds, backlog, drains) = if smoke {
        (1, 1_000, 1)
    } else {
        (10, 20_000, 3)
    };
    let rt = runtime();
    let server = RedisServer::start();
    let url = server.url();
    let mut json = Vec::new();
    rt.block_on(async {
        let cache = Cache::builder()
            .redis(url.as_str())
            .namespace("benchstreams")
            .op_timeout(Duration::from_secs(1))
            .build()
            .await
            .unwrap();
        println!("streams vs raw redis-rs (median over rounds)");
        for tasks in [1, 64] {
            let (ours, theirs, ratio) = emit_pair(&cache, &url, tasks, rounds).await;
            println!("emit, {tasks:>2} tasks: {ours:>9.0}/s vs raw XADD {theirs:>9.0}/s  ratio {ratio:.3}");
            json.push(format!(
                "  {{ \"id\": \"emit/{tasks}\", \"ours\": {ours:.0}, \"raw\": {theirs:.0}, \"ratio\": {ratio:.4} }}"
            ));
        }
        for consumers in [1, 4] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for round in 0..drains {
                let name = format!("drain-{consumers}-{round}");
                let raw_key = format!("raw-drain-{consumers}-{round}");
                if round % 2 == 0 {
                    ours.push(drain_redcache(&cache, &url, &name, backlog, consumers).await);
                    theirs.push(drain_raw(&url, &raw_key, backlog, consumers).await);
                } else {
                    theirs.push(drain_raw(&url, &raw_key, backlog, consumers).await);
                    ours.push(drain_redcache(&cache, &url, &name, backlog, consumers).await);
                }
                let _: () = redis::cmd("DEL")
                    .arg(cache.stream::<OrderPlaced>(&name).key())
                    .arg(&raw_key)
                    .query_async(&mut redis_conn(&url).await)
                    .await
                    .unwrap();
            }
            let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| a / b).collect();
            let (ours, theirs, ratio) = (median(ours), median(theirs), median(ratios));
            println!("group, {consumers} consumer(s): {ours:>9.0}/s vs raw XREADGROUP+XACK {theirs:>9.0}/s  ratio {ratio:.3}");
            json.push(format!(
                "  {{ \"id\": \"group/{consumers}\", \"ours\": {ours:.0}, \"raw\": {theirs:.0}, \"ratio\": {ratio:.4} }}"
            ));
        }
        let count = if smoke { 100 } else { 3_000 };
        let (p50, p99, max) = latency(&cache, count, 1_000).await;
        println!("end to end at ~1000/s: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms");
        json.push(format!(
            "  {{ \"id\": \"latency\", \"p50_ms\": {p50:.3}, \"p99_ms\": {p99:.3}, \"max_ms\": {max:.3} }}"
        ));
    });
    drop(server);
    if !smoke {
        write_result(
            "streams/figures.json",
            &format!("[\n{}\n]\n", json.join(",\n")),
        );
    }
}
