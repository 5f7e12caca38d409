//! One process of the cross-process lock test (tests/locks.rs): TASKS tasks
//! each increment a counter in Redis ITERATIONS times with a non-atomic
//! read, pause, write, under `Cache::lock("counter")`. Inside the lock each
//! also checks that its fencing token is larger than the last one written
//! (by any process), then writes its own. Prints `DONE <increments>`.
//!
//! Usage: lock-worker REDIS_URL NAMESPACE TASKS ITERATIONS

use std::time::Duration;

use redcache::Cache;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, namespace, tasks, iterations] = args.as_slice() else {
        eprintln!("usage: lock-worker REDIS_URL NAMESPACE TASKS ITERATIONS");
        std::process::exit(2);
    };
    let cache = Cache::builder()
        .redis(url.as_str())
        .namespace(namespace.as_str())
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("cache");
    let db = redis::Client::open(url.as_str()).expect("url");
    let db = db
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let (tasks, iterations): (usize, usize) = (tasks.parse().unwrap(), iterations.parse().unwrap());
    let counter = format!("{namespace}-counter");
    let last_token = format!("{namespace}-last-token");
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (cache, mut db) = (cache.clone(), db.clone());
            let (counter, last_token) = (counter.clone(), last_token.clone());
            tokio::spawn(async move {
                for _ in 0..iterations {
                    let guard = cache
                        .lock("counter")
                        .ttl(Duration::from_secs(10))
                        .wait(Duration::from_secs(60))
                        .acquire()
                        .await
                        .expect("the lock, within a minute");
                    let last: Option<u64> = redis::cmd("GET")
                        .arg(&last_token)
                        .query_async(&mut db)
                        .await
                        .unwrap();
                    assert!(
                        last.is_none_or(|last| guard.fencing_token() > last),
                        "fencing token {} not above the last holder's {last:?}",
                        guard.fencing_token()
                    );
                    let n: Option<u64> = redis::cmd("GET")
                        .arg(&counter)
                        .query_async(&mut db)
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let () = redis::cmd("SET")
                        .arg(&counter)
                        .arg(n.unwrap_or(0) + 1)
                        .arg("EX")
                        .arg(600)
                        .query_async(&mut db)
                        .await
                        .unwrap();
                    let () = redis::cmd("SET")
                        .arg(&last_token)
                        .arg(guard.fencing_token())
                        .arg("EX")
                        .arg(600)
                        .query_async(&mut db)
                        .await
                        .unwrap();
                    guard.release().await.expect("released by its holder");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("a task failed");
    }
    println!("DONE {}", tasks * iterations);
}
