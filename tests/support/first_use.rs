//! A new user's first run, as its own process: the zero-config global cache
//! (from `REDCACHE_URL`/`REDIS_URL`), no `tracing` subscriber, two calls of
//! a cached fn. Prints `VALUE <v>` per call and `ERRORS <n>` from
//! `redcache::global().stats()`; what redcache tells the user goes to
//! standard error. `tests/first_use.rs` runs it.

use std::time::Duration;

#[redcache::cached(ttl = 60)]
async fn square(x: u64) -> u64 {
    x * x
}

#[tokio::main]
async fn main() {
    for _ in 0..2 {
        println!("VALUE {}", square(12).await);
    }
    // The report of an unreachable server is made in the background.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    println!("VALUE {}", square(12).await);
    println!("ERRORS {}", redcache::global().stats().errors);
}
