//! Redis Sentinel: one master, one replica and a sentinel, all real
//! processes; a forced failover under load, after which writes go to the
//! new master without restarting anything.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redcache::{Cache, NearCache, NearStatus};
use redcache_suite::unique_namespace;

/// Waits until `check` holds, for at most `limit`.
async fn eventually(what: &str, limit: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_forced_failover_writes_go_to_the_new_master() {
    let group = redcache_suite::SentinelGroup::start().await;
    let (master, replica, sentinel) = (&group.master, &group.replica, &group.sentinel);

    let ns = unique_namespace("sentinel");
    let cache = Cache::builder()
        .url(&format!(
            "redis+sentinel://127.0.0.1:{}/mymaster",
            sentinel.port()
        ))
        .namespace(&ns)
        .op_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let loads = AtomicUsize::new(0);
    let value = cache
        .get_or_load("k", Duration::from_secs(60), &["t"], || async {
            loads.fetch_add(1, SeqCst);
            Ok::<_, String>(1)
        })
        .await;
    assert_eq!(value, Ok(1));
    assert_eq!(
        master.command(&format!("EXISTS {ns}:v:k")),
        ":1\r\n",
        "written on the first master"
    );

    // A second process with a near cache holds `k` in its L1.
    let near = Cache::builder()
        .url(&format!(
            "redis+sentinel://127.0.0.1:{}/mymaster",
            sentinel.port()
        ))
        .namespace(&ns)
        .op_timeout(Duration::from_millis(500))
        .near_cache(NearCache::new().check_interval(Duration::from_millis(200)))
        .build()
        .await
        .unwrap();
    eventually("near cache tracking", Duration::from_secs(10), || {
        near.stats().near == NearStatus::Tracking
    })
    .await;
    let near_read = || {
        near.get_or_load("k", Duration::from_secs(60), &["t"], || async {
            Ok::<_, String>(0)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let hits = near.stats().near_hits;
        assert_eq!(near_read().await, Ok(1));
        if near.stats().near_hits > hits {
            break;
        }
        assert!(Instant::now() < deadline, "k never reached L1");
    }
    let flushes = near.stats().near_flushes;

    // Load while the failover happens: every call returns the right value.
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = {
        let (cache, running) = (cache.clone(), running.clone());
        tokio::spawn(async move {
            let mut calls = 0u64;
            while running.load(SeqCst) {
                let id = calls % 50;
                let value = cache
                    .get_or_load(
                        &format!("item:{id}"),
                        Duration::from_secs(60),
                        &[],
                        || async move { Ok::<_, String>(id * 2) },
                    )
                    .await;
                assert_eq!(value, Ok(id * 2));
                calls += 1;
            }
            calls
        })
    };
    group.fail_over().await;
    eventually("the failover", Duration::from_secs(20), || {
        sentinel
            .command("SENTINEL get-master-addr-by-name mymaster")
            .contains(&replica.port().to_string())
            && replica.command("ROLE").contains("master")
    })
    .await;

    // The failover flushed L1 (the sentinel killed its connection, or its
    // check found the old master demoted), and tracking moved on.
    eventually("the near cache flushed", Duration::from_secs(5), || {
        near.stats().near_flushes > flushes
    })
    .await;
    eventually(
        "the near cache tracking the new master",
        Duration::from_secs(15),
        || near.stats().near == NearStatus::Tracking,
    )
    .await;

    // Writes continue on the new master, found by asking the sentinel again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let moved = Instant::now();
    loop {
        let _ = cache.invalidate_tag("after").await;
        if replica.command(&format!("EXISTS {ns}:tag:after")) == ":1\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "no write reached the new master");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "writes reached the new master {:?} after the sentinel named it",
        moved.elapsed()
    );
    running.store(false, SeqCst);
    let calls = load
        .await
        .expect("no call under load returned a wrong value");
    assert!(calls > 0);
    cache
        .invalidate_tag("t")
        .await
        .expect("invalidation reaches the new master");
    let value = cache
        .get_or_load("k", Duration::from_secs(60), &["t"], || async {
            loads.fetch_add(1, SeqCst);
            Ok::<_, String>(2)
        })
        .await;
    assert_eq!(value, Ok(2), "the invalidated entry was reloaded");
    // The near cache's process sees it too: tracking follows the new master.
    let deadline = Instant::now() + Duration::from_secs(1);
    while near_read().await != Ok(2) {
        assert!(
            Instant::now() < deadline,
            "the near cache kept the old value"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("{calls} cached calls under load during the failover, all correct");
}
