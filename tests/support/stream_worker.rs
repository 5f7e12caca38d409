//! One consumer process of the at-least-once test (tests/streams.rs): it
//! consumes the stream `jobs` of NAMESPACE in group `g` and, for each
//! entry, adds 1 to the entry's count in the hash `<NAMESPACE>-handled`
//! (the record of what was handled, and how often), then pauses 5 ms, so
//! that a SIGKILL often lands between the record and the ack. An entry
//! whose value is `u64::MAX` is poison: the process aborts on it.
//!
//! Usage: stream-worker REDIS_URL NAMESPACE

use std::time::Duration;

use redcache::{Cache, Delivery};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, namespace] = args.as_slice() else {
        eprintln!("usage: stream-worker REDIS_URL NAMESPACE");
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
    let handled = format!("{namespace}-handled");
    let consumer = cache
        .stream::<u64>("jobs")
        .consumer("g")
        .concurrency(8)
        .block(Duration::from_millis(200))
        .claim_idle(Duration::from_millis(500))
        .max_deliveries(3)
        .start(move |job: Delivery<u64>| {
            let (mut db, handled) = (db.clone(), handled.clone());
            async move {
                if job.value == u64::MAX {
                    std::process::abort();
                }
                redis::cmd("HINCRBY")
                    .arg(&handled)
                    .arg(job.value)
                    .arg(1)
                    .query_async::<i64>(&mut db)
                    .await?;
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<_, redis::RedisError>(())
            }
        })
        .await
        .expect("consumer");
    println!("STARTED {}", consumer.name());
    // Runs until killed.
    std::future::pending::<()>().await;
    drop(consumer);
}
