//! The global cache: built from the environment on first use, replaced by
//! `set_global`. One test in its own binary, since it sets the environment.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use redcache::{cached, Cache};
use redcache_suite::RedisServer;

static LOADS: AtomicUsize = AtomicUsize::new(0);

/// On the global cache, with the default key.
#[cached(ttl = 60)]
async fn square(x: u64) -> u64 {
    LOADS.fetch_add(1, SeqCst);
    x * x
}

#[tokio::test]
async fn the_global_cache_comes_from_redcache_url_and_set_global_replaces_it() {
    let server = RedisServer::start();
    // Before any use of the global cache, and with no other thread running
    // redcache code in this binary.
    std::env::set_var("REDCACHE_URL", server.url());
    assert_eq!(square(12).await, 144);
    assert_eq!(square(12).await, 144);
    assert_eq!(LOADS.load(SeqCst), 1);
    let reply = server.command("EXISTS redcache:v:global::square:12");
    assert_eq!(
        reply, ":1\r\n",
        "the entry is in the server REDCACHE_URL names, default namespace"
    );

    redcache::set_global(Cache::builder().memory().build().await.unwrap());
    assert_eq!(square(12).await, 144);
    assert_eq!(LOADS.load(SeqCst), 2, "a new global cache starts empty");
    redcache::invalidate_key(&redcache::key!("global::square:<x>", x = 12))
        .await
        .unwrap();
    assert_eq!(square(12).await, 144);
    assert_eq!(
        LOADS.load(SeqCst),
        3,
        "invalidate_key acts on the global cache"
    );
}
