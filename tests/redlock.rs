//! Redlock over 5 independent redis-servers: a quorum survives 2 masters
//! down and not 3, two clients never hold the lock at once, and the
//! fencing token grows from holder to holder, also when the quorum changes.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redcache::{Cache, Redlock};
use redcache_suite::{unique_namespace, RedisServer};

async fn redlock(servers: &[RedisServer], ns: &str) -> Redlock {
    let mut masters = Vec::new();
    for server in servers {
        let cache = Cache::builder()
            .redis(server.url())
            .namespace(ns)
            .op_timeout(Duration::from_millis(200))
            .build()
            .await
            .unwrap();
        masters.push(cache);
    }
    Redlock::new(masters).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_survives_two_masters_down_of_five_and_not_three() {
    let mut servers: Vec<RedisServer> = (0..5).map(|_| RedisServer::start()).collect();
    let ns = unique_namespace("redlock");
    let redlock = redlock(&servers, &ns).await;
    assert_eq!(redlock.quorum(), 3);
    let ttl = Duration::from_secs(10);

    let first = redlock
        .lock("invoice:42")
        .ttl(ttl)
        .try_acquire()
        .await
        .unwrap();
    assert!(first.validity() > Duration::ZERO && first.validity() <= ttl);
    assert!(
        redlock.lock("invoice:42").try_acquire().await.is_err(),
        "held"
    );
    let token = first.fencing_token();
    assert_eq!(first.release().await, 5, "released on every master");

    servers[0].stop();
    servers[1].stop();
    let second = redlock
        .lock("invoice:42")
        .ttl(ttl)
        .try_acquire()
        .await
        .unwrap();
    assert!(
        second.fencing_token() > token,
        "a larger token from another quorum"
    );
    assert_eq!(second.release().await, 3);

    servers[2].stop();
    let started = Instant::now();
    let refused = redlock
        .lock("invoice:42")
        .ttl(ttl)
        .try_acquire()
        .await
        .unwrap_err();
    assert!(refused.is_unreachable(), "{refused}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_never_hold_the_quorum_at_once_and_tokens_grow() {
    let servers: Vec<RedisServer> = (0..5).map(|_| RedisServer::start()).collect();
    let ns = unique_namespace("redlock");
    // Two clients, each with its own connections to the five masters.
    let clients = [redlock(&servers, &ns).await, redlock(&servers, &ns).await];
    let held = Arc::new(AtomicBool::new(false));
    let last_token = Arc::new(Mutex::new(0u64));
    let mut tasks = Vec::new();
    for client in &clients {
        for _ in 0..3 {
            let (client, held, last_token) = (client.clone(), held.clone(), last_token.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    let guard = client
                        .lock("shared")
                        .ttl(Duration::from_secs(10))
                        .wait(Duration::from_secs(30))
                        .acquire()
                        .await
                        .expect("the lock within 30 s");
                    assert!(!held.swap(true, SeqCst), "two holders at once");
                    {
                        let mut last = last_token.lock().unwrap();
                        assert!(
                            guard.fencing_token() > *last,
                            "token {} after {}",
                            guard.fencing_token(),
                            *last
                        );
                        *last = guard.fencing_token();
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    held.store(false, SeqCst);
                    guard.release().await;
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
}
