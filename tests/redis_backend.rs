//! What only the Redis backend can show: the keys it writes, data written by
//! others, several processes, and Redis going away.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redcache::Cache;
use redcache_suite::{unique_namespace, RedisServer};
use redis::AsyncCommands;

const TTL: Duration = Duration::from_secs(60);

async fn cache_on(server: &RedisServer, namespace: &str) -> Cache {
    Cache::builder()
        .redis(server.url())
        .namespace(namespace)
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap()
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Every key under `namespace`, found with SCAN (never KEYS).
async fn keys_under(conn: &mut redis::aio::MultiplexedConnection, namespace: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut iter: redis::AsyncIter<String> =
        conn.scan_match(format!("{namespace}:*")).await.unwrap();
    while let Some(key) = iter.next_item().await {
        keys.push(key.unwrap());
    }
    keys.sort();
    keys
}

#[tokio::test]
async fn every_key_the_framework_writes_has_a_ttl() {
    let server = RedisServer::start();
    let ns = unique_namespace("ttl");
    let cache = cache_on(&server, &ns).await;
    let mut conn = raw(&server).await;

    // An entry with tags, an invalidated tag, and a load holding the lock.
    cache
        .get_or_load("a", TTL, &["t1", "t2"], || async { Ok::<_, String>(1) })
        .await
        .unwrap();
    cache.invalidate_tag("t1").await.unwrap();
    cache.invalidate_tag("never-used").await.unwrap();
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("b", TTL, &["t2"], || async move {
                    let _ = locked_tx.send(());
                    let _ = release_rx.await;
                    Ok::<_, String>(2)
                })
                .await
        })
    };
    locked_rx.await.unwrap();
    // A distributed lock, held, and its fencing token.
    let mutex = cache.lock("job").try_acquire().await.unwrap();

    let keys = keys_under(&mut conn, &ns).await;
    for expected in [
        "v:a",
        "tag:t1",
        "tag:t2",
        "tag:never-used",
        "lock:b",
        "mutex:{#job}",
        "fence:{#job}",
    ] {
        assert!(
            keys.contains(&format!("{ns}:{expected}")),
            "{expected} missing from {keys:?}"
        );
    }
    for key in &keys {
        let pttl: i64 = conn.pttl(key).await.unwrap();
        assert!(pttl > 0, "{key} has no expiry (PTTL {pttl})");
    }
    release_tx.send(()).unwrap();
    mutex.release().await.unwrap();
    holder.await.unwrap().unwrap();
    for key in keys_under(&mut conn, &ns).await {
        let pttl: i64 = conn.pttl(&key).await.unwrap();
        assert!(pttl > 0, "{key} has no expiry (PTTL {pttl})");
    }
}

#[tokio::test]
async fn a_tag_epoch_outlives_every_entry_recorded_under_it() {
    let server = RedisServer::start();
    let ns = unique_namespace("epoch");
    let cache = cache_on(&server, &ns).await;
    let mut conn = raw(&server).await;
    let long = Duration::from_secs(3 * 24 * 3600);
    cache.invalidate_tag("t").await.unwrap();
    cache
        .get_or_load("short", Duration::from_secs(5), &["t"], || async {
            Ok::<_, String>(1)
        })
        .await
        .unwrap();
    cache
        .get_or_load("long", long, &["t"], || async { Ok::<_, String>(1) })
        .await
        .unwrap();
    let entry: i64 = conn.pttl(format!("{ns}:v:long")).await.unwrap();
    let epoch: i64 = conn.pttl(format!("{ns}:tag:t")).await.unwrap();
    assert!(
        epoch > entry,
        "epoch PTTL {epoch} must exceed entry PTTL {entry}"
    );
    // A later, shorter entry does not shorten the epoch's life.
    cache
        .get_or_load("short2", Duration::from_secs(5), &["t"], || async {
            Ok::<_, String>(1)
        })
        .await
        .unwrap();
    let epoch_after: i64 = conn.pttl(format!("{ns}:tag:t")).await.unwrap();
    assert!(
        epoch_after > entry,
        "epoch PTTL {epoch_after} shrank below entry PTTL {entry}"
    );
}

#[tokio::test]
async fn entries_are_readable_json_in_redis() {
    let server = RedisServer::start();
    let ns = unique_namespace("json");
    let cache = cache_on(&server, &ns).await;
    let mut conn = raw(&server).await;
    cache
        .get_or_load("user:1", TTL, &["team:3"], || async {
            Ok::<_, String>(vec!["ada".to_string(), "grace".to_string()])
        })
        .await
        .unwrap();
    let stored: String = conn.get(format!("{ns}:v:user:1")).await.unwrap();
    // `w`: the write id, 16 hex digits (see `Cache::put`'s ordering).
    assert!(stored.starts_with(r#"{"v":3,"w":""#), "{stored}");
    assert!(
        stored[r#"{"v":3,"w":"0123456789abcdef""#.len()..]
            .starts_with(r#","k":"get_or_load","at":"#),
        "{stored}"
    );
    // The tag's epoch: started at the server's clock (µs), one more per
    // invalidation.
    let (_, tags) = stored.split_once(r#""tags":[["team:3","#).expect("the tag");
    let (epoch, rest) = tags.split_once(']').unwrap();
    assert!(
        epoch.parse::<u64>().unwrap() > 1_700_000_000_000_000,
        "{stored}"
    );
    assert_eq!(rest, r#"],"value":["ada","grace"]}"#, "{stored}");
}

#[tokio::test]
async fn garbage_in_redis_is_a_miss_and_is_overwritten() {
    let server = RedisServer::start();
    let ns = unique_namespace("garbage");
    let cache = cache_on(&server, &ns).await;
    let mut conn = raw(&server).await;
    let key = format!("{ns}:v:k");
    for garbage in [
        &b"\xff\xfe not json"[..],
        br#"{"v":1,"at":0,"tags":[],"value":"text"}"#,
        br#"{"v":9}"#,
        b"",
    ] {
        let _: () = conn.set(&key, garbage).await.unwrap();
        let value = cache
            .get_or_load("k", TTL, &[], || async { Ok::<_, String>(41u32) })
            .await;
        assert_eq!(value, Ok(41));
        let stored: String = conn.get(&key).await.unwrap();
        assert!(
            stored.contains(r#""value":41"#),
            "not overwritten: {stored}"
        );
    }
    // A tag epoch holding garbage is a backend error: the function runs.
    let _: () = conn
        .set(format!("{ns}:tag:t"), "not a number")
        .await
        .unwrap();
    let value = cache
        .get_or_load("k2", TTL, &["t"], || async { Ok::<_, String>(7u32) })
        .await;
    assert_eq!(value, Ok(7));
    // Garbage counts as undecodable; an entry of another format version
    // (`v` 1 and 9) is a quiet miss, as after an upgrade.
    assert_eq!(cache.stats().undecodable, 2);
}

#[tokio::test]
async fn a_caller_waits_for_the_lock_holder_in_another_instance_and_gets_its_value() {
    let server = RedisServer::start();
    let ns = unique_namespace("lock");
    let (a, b) = (cache_on(&server, &ns).await, cache_on(&server, &ns).await);
    let loads = Arc::new(AtomicUsize::new(0));
    let load = |loads: Arc<AtomicUsize>| async move {
        loads.fetch_add(1, SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok::<_, String>("shared".to_string())
    };
    let first = {
        let (a, loads) = (a.clone(), loads.clone());
        tokio::spawn(async move { a.get_or_load("k", TTL, &[], || load(loads)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = b.get_or_load("k", TTL, &[], || load(loads.clone())).await;
    assert_eq!(second, Ok("shared".to_string()));
    assert_eq!(first.await.unwrap(), Ok("shared".to_string()));
    assert_eq!(loads.load(SeqCst), 1);
    assert_eq!(b.stats().lock_waits, 1);
}

/// How long a caller waits for another process's load lock is measured on
/// the cache's clock: a waiter whose clock passes `lock_wait` stops waiting
/// and loads by itself, though the holder is still loading (the holder's
/// lock lives for `lock_ttl` on the server, an hour here).
#[tokio::test]
async fn the_lock_wait_ends_when_the_caches_clock_passes_it() {
    let server = RedisServer::start();
    let ns = unique_namespace("lock-clock");
    let builder = |clock: redcache::ManualClock| {
        Cache::builder()
            .redis(server.url())
            .namespace(ns.as_str())
            .lock_ttl(Duration::from_secs(3600))
            .lock_wait(Duration::from_secs(3600))
            .clock(clock)
            .build()
    };
    let start = redcache::ManualClock::new(Duration::from_secs(1_000_000));
    let (holder, waiter) = (
        builder(start.clone()).await.unwrap(),
        builder(start.clone()).await.unwrap(),
    );
    let (loading, never) = (
        tokio::sync::oneshot::channel::<()>(),
        tokio::sync::Notify::new(),
    );
    let never = Arc::new(never);
    let (started, started_rx) = loading;
    let held = {
        let never = never.clone();
        tokio::spawn(async move {
            holder
                .get_or_load("k", TTL, &[], || async move {
                    let _ = started.send(());
                    never.notified().await;
                    Ok::<_, String>("holder".to_string())
                })
                .await
        })
    };
    started_rx.await.unwrap();
    let waiting = tokio::spawn(async move {
        waiter
            .get_or_load("k", TTL, &[], || async {
                Ok::<_, String>("waiter".to_string())
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "the waiter waits while its clock is short of lock_wait"
    );
    start.advance(Duration::from_secs(3601));
    let value = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the wait ends within a poll once the clock passes lock_wait")
        .unwrap();
    assert_eq!(value, Ok("waiter".to_string()));
    never.notify_one();
    assert_eq!(held.await.unwrap(), Ok("holder".to_string()));
}

/// A caller waiting on another instance's load lock when the key's tag is
/// invalidated: the holder's value cannot be stored, and the waiter's load
/// under the old epoch could not be stored either. It reads again with the
/// new epoch, so its one load is stored and the next call hits. Before, it
/// loaded under the old epoch after taking the lock: a value returned, not
/// stored, and one more load on the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_tag_epoch_moved_on_reads_again_instead_of_loading_in_vain() {
    let server = RedisServer::start();
    let ns = unique_namespace("epoch");
    let (a, b) = (cache_on(&server, &ns).await, cache_on(&server, &ns).await);
    let loads = Arc::new(AtomicUsize::new(0));
    let load = |loads: Arc<AtomicUsize>| async move {
        let n = loads.fetch_add(1, SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok::<_, String>(n)
    };
    let holder = {
        let (a, loads) = (a.clone(), loads.clone());
        tokio::spawn(async move { a.get_or_load("k", TTL, &["t"], || load(loads)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiter = {
        let (b, loads) = (b.clone(), loads.clone());
        tokio::spawn(async move { b.get_or_load("k", TTL, &["t"], || load(loads)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.invalidate_tag("t").await.unwrap();
    assert_eq!(
        holder.await.unwrap(),
        Ok(0),
        "the holder returns its own load"
    );
    let waited = waiter.await.unwrap().unwrap();
    assert_eq!(waited, 1, "the waiter loads after the invalidation");
    assert_eq!(
        b.get_or_load("k", TTL, &["t"], || load(loads.clone()))
            .await,
        Ok(1),
        "the waiter's load was stored"
    );
    assert_eq!(loads.load(SeqCst), 2);
}

#[tokio::test]
async fn a_lock_held_too_long_is_waited_for_a_bounded_time_then_loaded_around() {
    let server = RedisServer::start();
    let ns = unique_namespace("stuck");
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(&ns)
        .op_timeout(Duration::from_secs(2))
        .lock_wait(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let mut conn = raw(&server).await;
    // A process that took the lock and died without releasing it.
    let _: () = redis::cmd("SET")
        .arg(format!("{ns}:lock:k"))
        .arg("dead-process")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let value = tokio::time::timeout(
        Duration::from_secs(10),
        cache.get_or_load("k", TTL, &[], || async { Ok::<_, String>(5u8) }),
    )
    .await
    .expect("a stuck lock must not make callers hang");
    assert_eq!(value, Ok(5));
    assert_eq!(cache.stats().lock_waits, 1);
    let holder: String = conn.get(format!("{ns}:lock:k")).await.unwrap();
    assert_eq!(
        holder, "dead-process",
        "a caller must never release a lock it does not hold"
    );
}

#[test]
fn several_os_processes_on_one_cold_key_run_one_load() {
    let server = RedisServer::start();
    let ns = unique_namespace("procs");
    let start_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 2000;
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_stampede-worker"))
                .args([
                    server.url(),
                    ns.clone(),
                    "cold".to_string(),
                    start_at.to_string(),
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("start a worker process")
        })
        .collect();
    let outputs: Vec<String> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "worker failed: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    let loaded = outputs.iter().filter(|o| o.contains("LOADED")).count();
    let values: Vec<&str> = outputs
        .iter()
        .filter_map(|o| o.lines().find_map(|l| l.strip_prefix("VALUE ")))
        .collect();
    assert_eq!(loaded, 1, "exactly one process must load: {outputs:?}");
    assert_eq!(values.len(), 4);
    assert!(
        values.iter().all(|v| *v == values[0]),
        "all processes must see one value: {values:?}"
    );
}

#[tokio::test]
async fn a_cancelled_load_releases_its_lock_for_other_processes() {
    let server = RedisServer::start();
    let ns = unique_namespace("cancel");
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(&ns)
        .op_timeout(Duration::from_secs(2))
        .lock_ttl(Duration::from_secs(600))
        .build()
        .await
        .unwrap();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("k", TTL, &[], || async move {
                    let _ = started_tx.send(());
                    std::future::pending::<()>().await;
                    Ok::<u8, String>(0)
                })
                .await
        })
    };
    started_rx.await.unwrap();
    let lock = format!("EXISTS {ns}:lock:k");
    assert_eq!(
        server.command(&lock),
        ":1\r\n",
        "the loading process holds the lock"
    );
    leader.abort();
    let _ = leader.await;
    let mut released = false;
    for _ in 0..100 {
        if server.command(&lock) == ":0\r\n" {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        released,
        "the lock (TTL 600 s) must be released when its load is cancelled"
    );
}

/// Watches the commands clients send to `server` (`MONITOR`), leaving out
/// those that scripts run.
struct Monitor(std::net::TcpStream);

impl Monitor {
    fn start(server: &RedisServer) -> Monitor {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        stream.write_all(b"MONITOR\r\n").unwrap();
        let mut ok = [0u8; 5];
        stream.read_exact(&mut ok).unwrap();
        assert_eq!(&ok, b"+OK\r\n");
        Monitor(stream)
    }

    /// The names of the commands sent since the last call, in order.
    fn commands(&mut self) -> Vec<String> {
        use std::io::Read;
        self.0
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = self.0.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen)
            .lines()
            // +1764090000.123456 [0 127.0.0.1:5555] "GET" "key"; scripts' commands show [0 lua]
            .filter(|line| !line.contains(" lua]"))
            .filter_map(|line| line.split('"').nth(1).map(str::to_uppercase))
            .collect()
    }
}

#[tokio::test]
async fn a_miss_stores_its_entry_and_releases_its_lock_in_one_round_trip() {
    let server = RedisServer::start();
    let ns = unique_namespace("miss");
    let cache = cache_on(&server, &ns).await;
    let load = || async { Ok::<_, String>(7u32) };
    // Load the scripts once, so that no NOSCRIPT retry shows below.
    cache.get_or_load("warm", TTL, &["t"], load).await.unwrap();
    let mut monitor = Monitor::start(&server);

    assert_eq!(cache.get_or_load("k", TTL, &[], load).await, Ok(7));
    // The read, the lock, then the entry and the unlock in one script.
    assert_eq!(monitor.commands(), ["GET", "SET", "EVALSHA"]);

    assert_eq!(cache.get_or_load("tagged", TTL, &["t"], load).await, Ok(7));
    // Entry and epoch in one read, the lock, the epoch made to outlive the
    // entry, then the entry and the unlock.
    assert_eq!(monitor.commands(), ["MGET", "SET", "EVALSHA", "EVALSHA"]);

    for key in ["k", "tagged"] {
        assert_eq!(
            server.command(&format!("EXISTS {ns}:lock:{key}")),
            ":0\r\n",
            "the lock of {key} is released"
        );
        let ttl = server.command(&format!("PTTL {ns}:v:{key}"));
        let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
        // Its ttl, and 5 s past it for a load that began from it.
        assert!(
            ttl > 0 && ttl <= (TTL + Duration::from_secs(5)).as_millis() as i64,
            "the entry of {key} is stored with its TTL: {ttl}"
        );
    }
    // And a hit is one GET.
    monitor.commands(); // the checks above
    assert_eq!(cache.get_or_load("k", TTL, &[], load).await, Ok(7));
    assert_eq!(monitor.commands(), ["GET"]);
    assert_eq!(cache.stats().loads, 3);
}
