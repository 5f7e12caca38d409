//! Typed streams and consumer groups (`Cache::stream`), on real servers and
//! on the embedded backend: emit/range/len with `MAXLEN ~` and an expiry,
//! each entry handled once by a group, retries with backoff, dead letters,
//! entries a dead consumer left taken over, undecodable entries, graceful
//! shutdown, and at least once across SIGKILLed consumer processes and a
//! Redis restart (AOF on).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redcache::{Cache, Delivery, EventStream};
use redcache_suite::{eventually, redis_cache, unique_namespace, RedisCluster, RedisServer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    cents: u64,
}

async fn memory_cache() -> Cache {
    Cache::builder().memory().build().await.unwrap()
}

/// A consumer of `stream` in `group` that records every value it handled
/// and how often.
async fn recording(
    stream: &EventStream<Order>,
    group: &str,
    seen: Arc<Mutex<HashMap<u64, u64>>>,
) -> redcache::Consumer {
    recording_claiming_after(stream, group, seen, Duration::from_millis(300)).await
}

/// [`recording`], taking over another consumer's entries once idle for
/// `claim_idle`.
async fn recording_claiming_after(
    stream: &EventStream<Order>,
    group: &str,
    seen: Arc<Mutex<HashMap<u64, u64>>>,
    claim_idle: Duration,
) -> redcache::Consumer {
    stream
        .consumer(group)
        .concurrency(4)
        .block(Duration::from_millis(100))
        .claim_idle(claim_idle)
        .start(move |order: Delivery<Order>| {
            let seen = Arc::clone(&seen);
            async move {
                *seen.lock().unwrap().entry(order.value.id).or_default() += 1;
                Ok::<_, std::convert::Infallible>(())
            }
        })
        .await
        .unwrap()
}

async fn emit_range_and_len(cache: Cache) {
    let orders = cache.stream::<Order>("orders");
    assert_eq!(orders.len().await.unwrap(), 0);
    let mut ids = Vec::new();
    for id in 0..5 {
        ids.push(
            orders
                .emit(&Order {
                    id,
                    cents: id * 100,
                })
                .await
                .unwrap(),
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    assert_eq!(orders.len().await.unwrap(), 5);
    let all = orders.range("-", "+", 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.value.id).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    let after_second = orders.range(&format!("({}", ids[1]), "+", 2).await.unwrap();
    assert_eq!(
        after_second.iter().map(|e| e.value.id).collect::<Vec<_>>(),
        vec![2, 3]
    );
    let latest = orders.latest(2).await.unwrap();
    assert_eq!(
        latest.iter().map(|e| e.value.id).collect::<Vec<_>>(),
        vec![3, 4]
    );
    // Another stream, and another type under another name, never meet.
    let other = cache.stream::<String>("orders-eu");
    other.emit(&"x".to_string()).await.unwrap();
    assert_eq!(orders.len().await.unwrap(), 5);
    assert_eq!(other.range("-", "+", 10).await.unwrap()[0].value, "x");
}

#[tokio::test]
async fn emit_range_and_len_on_memory() {
    emit_range_and_len(memory_cache().await).await;
}

#[tokio::test]
async fn emit_range_and_len_on_redis_with_a_bound_and_an_expiry() {
    let server = RedisServer::start();
    let ns = unique_namespace("streams");
    let cache = redis_cache(server.url(), &ns).await;
    emit_range_and_len(cache.clone()).await;
    let orders = cache.stream::<Order>("orders");
    let pttl = server.command(&format!("PTTL {}", orders.key()));
    let pttl: i64 = pttl.trim().trim_start_matches(':').parse().unwrap();
    assert!(
        pttl > 6 * 24 * 3600 * 1000,
        "the stream expires after its retention: {pttl}"
    );
    // Deleted under a handle that slid its expiry moments ago: the next
    // emit makes the stream again, with an expiry (never without one).
    server.command(&format!("DEL {}", orders.key()));
    orders.emit(&Order { id: 9, cents: 0 }).await.unwrap();
    let pttl = server.command(&format!("PTTL {}", orders.key()));
    let pttl: i64 = pttl.trim().trim_start_matches(':').parse().unwrap();
    assert!(
        pttl > 6 * 24 * 3600 * 1000,
        "made again with its expiry: {pttl}"
    );
    assert_eq!(orders.len().await.unwrap(), 1);

    // MAXLEN ~: at least max_len entries stay, and at most a node more.
    let bounded = cache.stream::<u64>("bounded").max_len(50);
    for i in 0..1_000 {
        bounded.emit(&i).await.unwrap();
    }
    let len = bounded.len().await.unwrap();
    assert!(
        (50..=150).contains(&len),
        "len {len} after 1000 emits with max_len 50"
    );
    let zero = cache.stream::<u64>("zero").max_len(0);
    assert!(matches!(
        zero.emit(&1).await,
        Err(redcache::Error::Config(_))
    ));
}

async fn each_entry_once_across_a_group(cache: Cache) {
    let orders = cache.stream::<Order>("once");
    // Emitted before the group exists: the group starts at the beginning.
    for id in 0..50 {
        orders.emit(&Order { id, cents: 1 }).await.unwrap();
    }
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let a = recording(&orders, "billing", Arc::clone(&seen)).await;
    let b = recording(&orders, "billing", Arc::clone(&seen)).await;
    assert_ne!(a.name(), b.name(), "consumer names are unique");
    // Another group gets every entry too.
    let audit_seen = Arc::new(Mutex::new(HashMap::new()));
    let audit = recording(&orders, "audit", Arc::clone(&audit_seen)).await;
    for id in 50..200 {
        orders.emit(&Order { id, cents: 1 }).await.unwrap();
    }
    eventually("both groups handled 200 entries", Duration::from_secs(20), || {
        let (seen, audit_seen) = (Arc::clone(&seen), Arc::clone(&audit_seen));
        async move { seen.lock().unwrap().len() == 200 && audit_seen.lock().unwrap().len() == 200 }
    })
    .await;
    let (a, b, audit) = (
        a.shutdown().await,
        b.shutdown().await,
        audit.shutdown().await,
    );
    assert_eq!(a.handled + b.handled, 200);
    assert_eq!(audit.handled, 200);
    assert!(
        seen.lock().unwrap().values().all(|&n| n == 1),
        "no entry twice without a failure"
    );
    assert_eq!(orders.pending("billing").await.unwrap(), 0);
    assert_eq!(orders.pending("audit").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_entry_is_handled_once_by_a_group_on_memory() {
    each_entry_once_across_a_group(memory_cache().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_entry_is_handled_once_by_a_group_on_redis() {
    let server = RedisServer::start();
    let cache = redis_cache(server.url(), &unique_namespace("streams")).await;
    each_entry_once_across_a_group(cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_entry_is_handled_once_by_a_group_on_a_cluster() {
    let cluster = RedisCluster::shared();
    let cache = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace(unique_namespace("streams"))
        .op_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    each_entry_once_across_a_group(cache.clone()).await;
    // The dead-letter script touches the stream and its dead letters: one slot.
    retries_then_dead_letters(cache).await;
}

async fn retries_then_dead_letters(cache: Cache) {
    let orders = cache.stream::<Order>("flaky");
    let attempts: Arc<Mutex<HashMap<u64, Vec<u64>>>> = Arc::default();
    let seen = Arc::clone(&attempts);
    let consumer = orders
        .consumer("billing")
        .block(Duration::from_millis(50))
        .max_deliveries(3)
        .retry_backoff(Duration::from_millis(20))
        .start(move |order: Delivery<Order>| {
            let seen = Arc::clone(&seen);
            async move {
                let tries = {
                    let mut seen = seen.lock().unwrap();
                    let tries = seen.entry(order.value.id).or_default();
                    tries.push(order.deliveries);
                    tries.len()
                };
                match order.value.id {
                    // Always fails: dead-lettered after 3 deliveries.
                    13 => Err(format!("card {} declined", order.value.id)),
                    // Fails twice, then succeeds on its third delivery.
                    7 if tries < 3 => Err("timeout".to_string()),
                    // Panics once.
                    8 if tries < 2 => panic!("handler bug"),
                    _ => Ok(()),
                }
            }
        })
        .await
        .unwrap();
    for id in [1, 7, 8, 13, 2] {
        orders.emit(&Order { id, cents: 5 }).await.unwrap();
    }
    eventually(
        "the failing entry is dead-lettered",
        Duration::from_secs(10),
        || {
            let orders = orders.clone();
            async move { !orders.dead_letters(10).await.unwrap().is_empty() }
        },
    )
    .await;
    eventually("the rest are handled", Duration::from_secs(10), || {
        let handled = consumer.stats().handled;
        async move { handled == 4 }
    })
    .await;
    let stats = consumer.shutdown().await;
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(
        attempts[&13],
        vec![1, 2, 3],
        "deliveries count up to max_deliveries"
    );
    assert_eq!(attempts[&7], vec![1, 2, 3]);
    assert_eq!(attempts[&8], vec![1, 2]);
    assert_eq!(attempts[&1], vec![1]);
    // Failures: 13 three times, 7 twice, 8 once (a panic); each but the
    // last of 13 is retried.
    assert_eq!(
        (stats.handled, stats.failed, stats.dead_lettered),
        (4, 6, 1),
        "{stats:?}"
    );
    assert_eq!(stats.retried, 5, "{stats:?}");
    let dead = orders.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value, Some(Order { id: 13, cents: 5 }));
    assert_eq!(dead[0].error, "card 13 declined");
    assert_eq!(dead[0].deliveries, 3);
    assert_eq!(dead[0].group, "billing");
    assert_eq!(
        orders.pending("billing").await.unwrap(),
        0,
        "dead letters are acked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_backoff_then_dead_lettered_on_memory() {
    retries_then_dead_letters(memory_cache().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_backoff_then_dead_lettered_on_redis() {
    let server = RedisServer::start();
    let cache = redis_cache(server.url(), &unique_namespace("streams")).await;
    retries_then_dead_letters(cache).await;
}

/// A consumer stuck in its handlers shuts down: what it holds is handed
/// back, and another consumer takes it at once (not after claim_idle).
async fn shutdown_hands_back(cache: Cache) {
    let orders = cache.stream::<Order>("stuck");
    let stuck = orders
        .consumer("g")
        .block(Duration::from_millis(50))
        .claim_idle(Duration::from_secs(3))
        .drain_timeout(Duration::from_millis(200))
        .start(|_: Delivery<Order>| async {
            std::future::pending::<()>().await;
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    for id in 0..3 {
        orders.emit(&Order { id, cents: 0 }).await.unwrap();
    }
    eventually(
        "the stuck consumer holds them",
        Duration::from_secs(5),
        || {
            let orders = orders.clone();
            async move { orders.pending("g").await.unwrap() == 3 }
        },
    )
    .await;
    let stats = stuck.shutdown().await;
    assert_eq!(stats.handled, 0);
    let started = Instant::now();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    // It would take idle entries over only after 30 s: what it gets
    // sooner was handed back.
    let next =
        recording_claiming_after(&orders, "g", Arc::clone(&seen), Duration::from_secs(30)).await;
    eventually(
        "the next consumer takes them",
        Duration::from_secs(10),
        || {
            let seen = Arc::clone(&seen);
            async move { seen.lock().unwrap().len() == 3 }
        },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "handed back, not left to the next consumer's claim_idle (30 s)"
    );
    assert_eq!(next.shutdown().await.reclaimed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_back_what_is_in_hand_on_memory() {
    shutdown_hands_back(memory_cache().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_back_what_is_in_hand_on_redis() {
    let server = RedisServer::start();
    let cache = redis_cache(server.url(), &unique_namespace("streams")).await;
    shutdown_hands_back(cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_entries_are_taken_over_and_garbage_is_dead_lettered() {
    let server = RedisServer::start();
    let ns = unique_namespace("streams");
    let cache = redis_cache(server.url(), &ns).await;
    let orders = cache.stream::<Order>("ghosts");
    let key = orders.key().to_string();
    for id in 0..4 {
        orders.emit(&Order { id, cents: 0 }).await.unwrap();
    }
    // Foreign entries: not JSON of an Order, and no `d` field at all.
    server.command(&format!("XADD {key} * d not-json"));
    server.command(&format!("XADD {key} * other 1"));
    // A consumer that read everything and died.
    server.command(&format!("XGROUP CREATE {key} g 0"));
    let read = server.command(&format!(
        "XREADGROUP GROUP g ghost COUNT 100 STREAMS {key} >"
    ));
    assert!(read.starts_with("*1"), "{read}");
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let heir = recording(&orders, "g", Arc::clone(&seen)).await;
    eventually(
        "the ghost's entries are handled",
        Duration::from_secs(5),
        || {
            let seen = Arc::clone(&seen);
            async move { seen.lock().unwrap().len() == 4 }
        },
    )
    .await;
    eventually(
        "the garbage is dead-lettered",
        Duration::from_secs(5),
        || {
            let orders = orders.clone();
            async move { orders.dead_letters(10).await.unwrap().len() == 2 }
        },
    )
    .await;
    let stats = heir.shutdown().await;
    assert_eq!(stats.reclaimed, 6, "{stats:?}");
    assert_eq!(stats.undecodable, 2, "{stats:?}");
    assert_eq!(stats.handled, 4, "{stats:?}");
    let dead = orders.dead_letters(10).await.unwrap();
    assert!(
        dead.iter()
            .all(|d| d.value.is_none() && d.error.starts_with("does not decode")),
        "{dead:?}"
    );
    assert_eq!(orders.pending("g").await.unwrap(), 0);
}

/// Worker processes, killed (by pid) when the test ends, also by a panic.
struct Workers(Vec<std::process::Child>);

impl Workers {
    /// Starts again every worker that died (by a kill, or by the poison).
    fn revive(&mut self, spawn: &dyn Fn() -> std::process::Child) {
        for worker in &mut self.0 {
            if worker.try_wait().unwrap().is_some() {
                *worker = spawn();
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for worker in &mut self.0 {
            let _ = worker.kill();
            let _ = worker.wait();
        }
    }
}

/// Kills one of two consumer processes with SIGKILL five times while they
/// work through 400 entries (one of them poison: it aborts whichever
/// process handles it). No entry is lost: each is handled at least once
/// or (held by a dying consumer more than max_deliveries times)
/// dead-lettered; the poison is dead-lettered after max_deliveries without
/// running again, nothing stays pending, and the duplicates are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_across_sigkilled_consumer_processes() {
    let server = RedisServer::start();
    let ns = unique_namespace("streams");
    let cache = redis_cache(server.url(), &ns).await;
    let jobs = cache.stream::<u64>("jobs");
    let total = 400u64;
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_stream-worker"))
            .args([server.url(), ns.clone()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start stream-worker")
    };
    let mut workers = Workers(vec![spawn(), spawn()]);
    // The kills come at fixed points of the stream, not on a clock: on a
    // slow machine a timed schedule ran out of stream before its fifth
    // kill. Each kill waits until the workers have handled something since
    // the one before, so kills land while entries are in flight. A worker
    // the poison aborted is started again at once, so that two dead
    // workers never stall the stream.
    let handled_key = format!("{ns}-handled");
    let handled_count = || {
        let reply = server.command(&format!("HLEN {handled_key}"));
        reply
            .trim()
            .trim_start_matches(':')
            .parse::<u64>()
            .unwrap_or(0)
    };
    const KILL_AT: [u64; 5] = [40, 110, 180, 250, 320];
    let mut kills = 0;
    let mut handled_before = 0;
    for i in 0..total {
        jobs.emit(&i).await.unwrap();
        if i == 100 {
            jobs.emit(&u64::MAX).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        workers.revive(&spawn);
        if KILL_AT.contains(&i) {
            let at_work = Instant::now() + Duration::from_secs(20);
            while handled_count() <= handled_before {
                assert!(
                    Instant::now() < at_work,
                    "the workers handled nothing in 20 s before kill {}",
                    kills + 1
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
                workers.revive(&spawn);
            }
            let victim = &mut workers.0[kills % 2];
            victim.kill().unwrap(); // SIGKILL, by pid
            victim.wait().unwrap();
            *victim = spawn();
            kills += 1;
            handled_before = handled_count();
        }
    }
    // Until every entry is handled or dead-lettered, and the poison is.
    let mut db = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (counts, dead) = loop {
        workers.revive(&spawn);
        let counts: HashMap<u64, u64> = redis::cmd("HGETALL")
            .arg(&handled_key)
            .query_async(&mut db)
            .await
            .unwrap();
        let dead = jobs.dead_letters(100).await.unwrap();
        let poison_dead = dead.iter().any(|d| d.value == Some(u64::MAX));
        let unaccounted = (0..total)
            .filter(|i| !counts.contains_key(i) && !dead.iter().any(|d| d.value == Some(*i)))
            .count();
        let pending = jobs.pending("g").await.unwrap();
        if unaccounted == 0 && poison_dead && pending == 0 {
            break (counts, dead);
        }
        assert!(
            Instant::now() < deadline,
            "not done in 60 s: {unaccounted} entries neither handled nor dead-lettered, poison dead-lettered {poison_dead}, pending {pending}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(workers);
    let duplicates: u64 = counts.values().map(|n| n - 1).sum();
    let poison = dead.iter().find(|d| d.value == Some(u64::MAX)).unwrap();
    assert!(
        poison.deliveries > 3,
        "the poison was given up after max_deliveries: {poison:?}"
    );
    // An entry a consumer held when it died (killed, or by the poison)
    // more than max_deliveries times is dead-lettered too: not lost, but
    // its handler may have run (most often) or not (the poison aborted
    // the process before it got to its record, each time).
    let innocents: Vec<u64> = dead
        .iter()
        .filter_map(|d| d.value)
        .filter(|&v| v != u64::MAX)
        .collect();
    let never_ran = innocents.iter().filter(|v| !counts.contains_key(v)).count();
    println!(
        "at least once: {total} entries, {kills} SIGKILLs, {duplicates} extra handlings, poison dead-lettered after {} deliveries, {} other entries dead-lettered as well (held by a dying consumer > max_deliveries times; {never_ran} of them never recorded)",
        poison.deliveries,
        innocents.len()
    );
}

/// Redis restarted mid-stream, with AOF (`appendfsync always`): every
/// entry whose emit returned Ok is handled, including those pending when
/// the server died. (Without persistence a restart loses the stream:
/// README, "Streams".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_across_a_redis_restart_with_aof() {
    let mut server = RedisServer::start_with(
        &["--appendonly", "yes", "--appendfsync", "always"],
        redcache_suite::free_port,
    );
    let cache = redis_cache(server.url(), &unique_namespace("streams")).await;
    let jobs = cache.stream::<u64>("jobs");
    let handled = Arc::new(Mutex::new(HashMap::<u64, u64>::new()));
    let record = Arc::clone(&handled);
    let consumer = jobs
        .consumer("g")
        .block(Duration::from_millis(100))
        .claim_idle(Duration::from_millis(500))
        .start(move |job: Delivery<u64>| {
            let record = Arc::clone(&record);
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                *record.lock().unwrap().entry(job.value).or_default() += 1;
                Ok::<_, String>(())
            }
        })
        .await
        .unwrap();
    let emitted = Arc::new(AtomicU64::new(0));
    let mut confirmed = Vec::new();
    for i in 0..300u64 {
        if i == 150 {
            server.restart();
        }
        // A producer retries an emit that failed (Redis down): only Ok
        // counts as emitted.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match jobs.emit(&i).await {
                Ok(_) => break,
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "emit {i} failed for 10 s: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        emitted.fetch_add(1, SeqCst);
        confirmed.push(i);
    }
    eventually(
        "every confirmed entry is handled",
        Duration::from_secs(30),
        || {
            let handled = Arc::clone(&handled);
            async move { handled.lock().unwrap().len() == 300 }
        },
    )
    .await;
    let stats = consumer.shutdown().await;
    assert!(confirmed
        .iter()
        .all(|i| handled.lock().unwrap().contains_key(i)));
    assert_eq!(jobs.pending("g").await.unwrap(), 0);
    let duplicates: u64 = handled.lock().unwrap().values().map(|n| n - 1).sum();
    println!(
        "redis restart: 300 entries, {duplicates} handled twice, {} read/ack errors retried",
        stats.errors
    );
}

/// A consumer on Sentinel goes on after a forced failover: entries emitted
/// (and replicated) before it and emitted after it are all handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_follows_a_sentinel_failover() {
    let group = redcache_suite::SentinelGroup::start().await;
    let (master, replica, sentinel) = (&group.master, &group.replica, &group.sentinel);
    let cache = Cache::builder()
        .redis_sentinel([sentinel.url()], "mymaster")
        .namespace(unique_namespace("streams").as_str())
        .op_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let jobs = cache.stream::<u64>("jobs");
    let handled = Arc::new(Mutex::new(HashMap::<u64, u64>::new()));
    let record = Arc::clone(&handled);
    let consumer = jobs
        .consumer("g")
        .block(Duration::from_millis(100))
        .claim_idle(Duration::from_millis(500))
        .start(move |job: Delivery<u64>| {
            let record = Arc::clone(&record);
            async move {
                *record.lock().unwrap().entry(job.value).or_default() += 1;
                Ok::<_, String>(())
            }
        })
        .await
        .unwrap();
    for i in 0..50 {
        jobs.emit(&i).await.unwrap();
    }
    eventually("the first 50 handled", Duration::from_secs(10), || {
        let handled = Arc::clone(&handled);
        async move { handled.lock().unwrap().len() == 50 }
    })
    .await;
    // Replicated before the failover (Redis replicates asynchronously: what
    // the old master did not pass on is lost with it).
    assert!(master.command("WAIT 1 2000").starts_with(":1"));
    group.fail_over().await;
    // The sentinels name the new master before the old one is demoted
    // (seconds later), and the old one takes writes meanwhile, lost when it
    // resyncs. The cache must leave it once the sentinels name another:
    // half a second of polling, plus margin.
    eventually(
        "the sentinels naming the new master",
        Duration::from_secs(20),
        || {
            let named = sentinel.command("SENTINEL get-master-addr-by-name mymaster");
            let role = replica.command("ROLE");
            let port = replica.port().to_string();
            async move { named.contains(&port) && role.contains("master") }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for i in 50..100 {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(error) = jobs.emit(&i).await {
            assert!(
                Instant::now() < deadline,
                "emit {i} failed for 20 s: {error}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eventually("all 100 handled", Duration::from_secs(30), || {
        let handled = Arc::clone(&handled);
        async move { handled.lock().unwrap().len() == 100 }
    })
    .await;
    let on_new = replica.command(&format!("XLEN {}", jobs.key()));
    let on_old = master.command(&format!("XLEN {}", jobs.key()));
    println!("XLEN on the new master {on_new:?}, on the old one {on_old:?}");
    assert!(
        on_new.contains(":100"),
        "the new master holds every entry: {on_new:?}, old {on_old:?}"
    );
    consumer.shutdown().await;
}
