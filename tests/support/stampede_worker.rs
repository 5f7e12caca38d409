//! One process of the cross-process stampede test: waits for a common start
//! time, asks for one key, and prints `LOADED` if its loader ran, then
//! `VALUE <value>`.
//!
//! Usage: stampede-worker REDIS_URL NAMESPACE KEY START_AT_UNIX_MS

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, namespace, key, start_at] = args.as_slice() else {
        eprintln!("usage: stampede-worker REDIS_URL NAMESPACE KEY START_AT_UNIX_MS");
        std::process::exit(2);
    };
    let cache = redcache::Cache::builder()
        .redis(url.as_str())
        .namespace(namespace.as_str())
        .op_timeout(Duration::from_secs(2))
        .lock_wait(Duration::from_secs(10))
        .build()
        .await
        .expect("cache");
    let start_at: u128 = start_at.parse().expect("START_AT_UNIX_MS");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    tokio::time::sleep(Duration::from_millis(start_at.saturating_sub(now) as u64)).await;
    let value = cache
        .get_or_load(key, Duration::from_secs(60), &[], || async {
            println!("LOADED");
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok::<_, std::convert::Infallible>(format!("loaded by {}", std::process::id()))
        })
        .await
        .unwrap_or_else(|never| match never {});
    println!("VALUE {value}");
}
