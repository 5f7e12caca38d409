//! Distributed locks (`Cache::lock`) on real servers and on the embedded
//! backend: mutual exclusion across OS processes, fencing tokens, expiry
//! and extension, release by the holder only, release on drop and panic,
//! the watchdog, and failing closed when Redis is down.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redcache::{Cache, Error};
use redcache_suite::{eventually, unique_namespace, RedisCluster, RedisServer};

async fn redis_cache(server: &RedisServer, ns: &str) -> Cache {
    Cache::builder()
        .redis(server.url())
        .namespace(ns)
        .op_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap()
}

async fn memory_cache() -> Cache {
    Cache::builder().memory().build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn os_processes_incrementing_under_the_lock_lose_no_update() {
    let server = RedisServer::start();
    let ns = unique_namespace("locks");
    let (processes, tasks, iterations) = (3, 4, 15);
    let workers: Vec<_> = (0..processes)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_lock-worker"))
                .args([
                    server.url(),
                    ns.clone(),
                    tasks.to_string(),
                    iterations.to_string(),
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("start lock-worker")
        })
        .collect();
    for worker in workers {
        let out = tokio::task::block_in_place(|| worker.wait_with_output()).unwrap();
        assert!(out.status.success(), "a worker failed: {out:?}");
    }
    let count = server.command(&format!("GET {ns}-counter"));
    let expected = processes * tasks * iterations;
    assert!(
        count.contains(&format!("\r\n{expected}\r\n")),
        "counter {count:?}, expected {expected}"
    );
}

/// In one process: tasks doing read, pause, write on a shared number.
async fn tasks_incrementing_under_the_lock(cache: Cache) {
    let counter = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (cache, counter) = (cache.clone(), counter.clone());
            tokio::spawn(async move {
                let mut last = 0;
                for _ in 0..20 {
                    let guard = cache
                        .lock("n")
                        .wait(Duration::from_secs(30))
                        .acquire()
                        .await
                        .unwrap();
                    assert!(guard.fencing_token() > last, "tokens grow");
                    last = guard.fencing_token();
                    let n = counter.load(SeqCst);
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    counter.store(n + 1, SeqCst);
                    guard.release().await.unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(counter.load(SeqCst), 160);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_incrementing_under_the_lock_lose_no_update_in_memory() {
    tasks_incrementing_under_the_lock(memory_cache().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_incrementing_under_the_lock_lose_no_update_on_redis() {
    let server = RedisServer::start();
    tasks_incrementing_under_the_lock(redis_cache(&server, &unique_namespace("locks")).await).await;
}

/// A holder stalls past its ttl: the next holder gets the lock with a
/// larger token, and the stalled one can neither extend nor free it.
async fn a_holder_past_its_ttl(cache: Cache) {
    let ttl = Duration::from_millis(200);
    let stalled = cache.lock("job").ttl(ttl).try_acquire().await.unwrap();
    let busy = cache.lock("job").try_acquire().await.unwrap_err();
    assert!(!busy.is_unreachable() && busy.resource() == "job", "{busy}");
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;

    let next = cache
        .lock("job")
        .ttl(Duration::from_secs(30))
        .try_acquire()
        .await
        .unwrap();
    assert!(next.fencing_token() > stalled.fencing_token());
    assert!(
        matches!(stalled.extend(Duration::from_secs(30)).await, Err(Error::LockLost(r)) if r == "job")
    );
    assert!(matches!(stalled.release().await, Err(Error::LockLost(_))));
    // The stalled holder's release freed nothing.
    assert!(
        cache.lock("job").try_acquire().await.is_err(),
        "still the next holder's"
    );
    next.extend(Duration::from_secs(60)).await.unwrap();
    next.release().await.unwrap();
    cache
        .lock("job")
        .try_acquire()
        .await
        .expect("free after its release")
        .release()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_holder_past_its_ttl_loses_the_lock_in_memory() {
    a_holder_past_its_ttl(memory_cache().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_past_its_ttl_loses_the_lock_on_redis() {
    let server = RedisServer::start();
    a_holder_past_its_ttl(redis_cache(&server, &unique_namespace("locks")).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_guard_or_a_panicking_holder_frees_the_lock_in_the_background() {
    let server = RedisServer::start();
    let cache = redis_cache(&server, &unique_namespace("locks")).await;
    let guard = cache
        .lock("a")
        .ttl(Duration::from_secs(60))
        .try_acquire()
        .await
        .unwrap();
    drop(guard);
    eventually(
        "the dropped guard's release",
        Duration::from_secs(2),
        || async { cache.lock("a").try_acquire().await.is_ok() },
    )
    .await;

    let holder = {
        let cache = cache.clone();
        tokio::spawn(async move {
            let _guard = cache
                .lock("b")
                .ttl(Duration::from_secs(60))
                .try_acquire()
                .await
                .unwrap();
            panic!("the job failed while holding the lock");
        })
    };
    assert!(holder.await.unwrap_err().is_panic());
    eventually(
        "the panicking holder's release",
        Duration::from_secs(2),
        || async { cache.lock("b").try_acquire().await.is_ok() },
    )
    .await;

    // Cancelled while holding it: the same.
    let holder = {
        let cache = cache.clone();
        tokio::spawn(async move {
            let _guard = cache
                .lock("c")
                .ttl(Duration::from_secs(60))
                .try_acquire()
                .await
                .unwrap();
            std::future::pending::<()>().await;
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    holder.abort();
    eventually(
        "the cancelled holder's release",
        Duration::from_secs(2),
        || async { cache.lock("c").try_acquire().await.is_ok() },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_every_acquire_fails_closed_within_the_op_timeout() {
    let mut server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(unique_namespace("locks"))
        .op_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    cache
        .lock("x")
        .try_acquire()
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    server.stop();
    for _ in 0..10 {
        let started = Instant::now();
        let refused = cache
            .lock("x")
            .wait(Duration::from_secs(5))
            .acquire()
            .await
            .unwrap_err();
        assert!(refused.is_unreachable(), "{refused}");
        // Told at once, not after the wait: nobody holds it, Redis is gone.
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_extend_keeps_a_long_job_locked_and_tells_when_the_lock_is_lost() {
    let server = RedisServer::start();
    let ns = unique_namespace("locks");
    let cache = redis_cache(&server, &ns).await;
    let guard = cache
        .lock("long")
        .ttl(Duration::from_millis(300))
        .auto_extend()
        .try_acquire()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        cache.lock("long").try_acquire().await.is_err(),
        "extended past its ttl"
    );
    assert!(!guard.is_lost());

    // Someone deletes it: the next extension finds it gone.
    server.command(&format!("DEL {ns}:mutex:{{#long}}"));
    tokio::time::timeout(Duration::from_secs(2), guard.lost())
        .await
        .expect("the watchdog tells the holder");
    assert!(guard.is_lost());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_grow_even_after_the_last_one_expired() {
    let server = RedisServer::start();
    let ns = unique_namespace("locks");
    let cache = redis_cache(&server, &ns).await;
    let mut last = 0;
    for round in 0..5 {
        if round == 3 {
            server.command(&format!("DEL {ns}:fence:{{#r}}"));
        }
        let guard = cache.lock("r").try_acquire().await.unwrap();
        assert!(
            guard.fencing_token() > last,
            "round {round}: {} after {last}",
            guard.fencing_token()
        );
        last = guard.fencing_token();
        guard.release().await.unwrap();
    }
    // The last token's key has a TTL (`redis_backend::every_key_...`
    // checks the lock's too).
    let ttl = server.command(&format!("PTTL {ns}:fence:{{#r}}"));
    assert!(ttl.starts_with(':') && !ttl.starts_with(":-"), "PTTL {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_never_share_a_lock_and_stay_in_one_slot_on_a_cluster() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::shared)
        .await
        .unwrap();
    let cache = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace(unique_namespace("locks"))
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let resources = [
        "a",
        "a:",
        "{a}",
        "a}b",
        "",
        "order:payment:1",
        "order:payment:12",
    ];
    let guards: Vec<_> = {
        let mut guards = Vec::new();
        for resource in resources {
            let guard = cache.lock(resource).try_acquire().await;
            guards.push(guard.unwrap_or_else(|e| panic!("{resource:?}: {e}")));
        }
        guards
    };
    for resource in resources {
        assert!(
            cache.lock(resource).try_acquire().await.is_err(),
            "{resource:?} is held"
        );
    }
    for guard in guards {
        guard.release().await.unwrap();
    }
}

#[derive(Debug)]
enum JobError {
    NotLocked(redcache::Locked),
}

impl From<redcache::Locked> for JobError {
    fn from(locked: redcache::Locked) -> Self {
        JobError::NotLocked(locked)
    }
}

/// Runs until `finish` is notified, counting its runs.
#[redcache::locked(key = "job:<name>", ttl = "10s", cache = cache)]
async fn job(
    cache: &Cache,
    name: &str,
    runs: &AtomicU64,
    finish: Arc<tokio::sync::Notify>,
) -> Result<u64, JobError> {
    runs.fetch_add(1, SeqCst);
    finish.notified().await;
    Ok(runs.load(SeqCst))
}

/// The same job, waiting up to 5 s for the lock.
#[redcache::locked(key = "job:<name>", wait = "5s", cache = cache)]
async fn patient_job(cache: &Cache, name: &str) -> Result<&'static str, JobError> {
    Ok("ran")
}

async fn locked_fns_run_one_at_a_time_per_key(cache: Cache) {
    let runs = Arc::new(AtomicU64::new(0));
    let finish = Arc::new(tokio::sync::Notify::new());
    let first = {
        let (cache, runs, finish) = (cache.clone(), runs.clone(), finish.clone());
        tokio::spawn(async move { job(&cache, "nightly", &runs, finish).await.unwrap() })
    };
    eventually(
        "the first run holding the lock",
        Duration::from_secs(2),
        || async { runs.load(SeqCst) == 1 },
    )
    .await;

    // Same key, no wait: refused, the body does not run.
    let refused = job(&cache, "nightly", &runs, finish.clone())
        .await
        .unwrap_err();
    let JobError::NotLocked(locked) = refused;
    assert!(
        !locked.is_unreachable() && locked.resource() == "job:nightly",
        "{locked}"
    );
    assert_eq!(runs.load(SeqCst), 1);
    // Another key runs alongside.
    let other = tokio::spawn({
        let (cache, runs, finish) = (cache.clone(), runs.clone(), finish.clone());
        async move { job(&cache, "weekly", &runs, finish).await.unwrap() }
    });
    eventually("the other key's run", Duration::from_secs(2), || async {
        runs.load(SeqCst) == 2
    })
    .await;
    // A waiting caller runs once the first is done.
    let waiting = tokio::spawn({
        let cache = cache.clone();
        async move { patient_job(&cache, "nightly").await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "waits for the holder");
    finish.notify_waiters();
    first.await.unwrap();
    other.await.unwrap();
    assert_eq!(waiting.await.unwrap(), "ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_fns_run_one_at_a_time_per_key_in_memory() {
    locked_fns_run_one_at_a_time_per_key(memory_cache().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_fns_run_one_at_a_time_per_key_on_redis() {
    let server = RedisServer::start();
    locked_fns_run_one_at_a_time_per_key(redis_cache(&server, &unique_namespace("locks")).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_fn_does_not_run_when_redis_is_down() {
    let mut server = RedisServer::start();
    let cache = redis_cache(&server, &unique_namespace("locks")).await;
    server.stop();
    let runs = AtomicU64::new(0);
    let refused = job(
        &cache,
        "nightly",
        &runs,
        Arc::new(tokio::sync::Notify::new()),
    )
    .await
    .unwrap_err();
    let JobError::NotLocked(locked) = refused;
    assert!(locked.is_unreachable(), "{locked}");
    assert_eq!(runs.load(SeqCst), 0, "never run unlocked");
}
