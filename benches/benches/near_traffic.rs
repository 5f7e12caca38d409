//! What the near cache costs the server, measured on a fresh redis-server:
//!
//! - invalidation traffic: with N caches (each its own tracking
//!   connection, as N processes would have) holding a key in L1, the
//!   messages they receive and the bytes the server sends per write;
//! - the server memory of default-mode tracking at 1M tracked keys, next
//!   to BCAST's (which keeps no per-key table: the reason redcache uses it).
//!
//! `cargo bench -p redcache-benches --bench near_traffic`; prints a table and
//! writes `<criterion home>/near/traffic.json`.

use std::time::{Duration, Instant};

use redcache::{Cache, NearCache, NearStatus};
use redcache_benches::{runtime, write_result};
use redcache_suite::RedisServer;

const WRITES: u64 = 2_000;
const TRACKED_KEYS: u64 = 1_000_000;

fn info_field(server: &RedisServer, section: &str, field: &str) -> u64 {
    let info = server.command(&format!("INFO {section}"));
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
        .trim()
        .parse()
        .unwrap()
}

async fn near_cache(url: &str) -> Cache {
    let cache = Cache::builder()
        .redis(url)
        .namespace("traffic")
        .near_cache(NearCache::new())
        .build()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.stats().near != NearStatus::Tracking {
        assert!(Instant::now() < deadline, "tracking did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cache
}

/// Bytes the server sent and messages the holders received per write,
/// with `holders` caches holding the key (and `idle` caches tracking the
/// prefix without holding it).
async fn traffic(server: &RedisServer, holders: usize) -> (f64, f64) {
    let writer = Cache::builder()
        .redis(server.url())
        .namespace("traffic")
        .build()
        .await
        .unwrap();
    let mut caches = Vec::new();
    for _ in 0..holders {
        caches.push(near_cache(&server.url()).await);
    }
    let ttl = Duration::from_secs(600);
    writer.put("k", &1u64, ttl, &[]).await.unwrap();
    for cache in &caches {
        let _: u64 = cache.get_with("k", ttl, &[], || async { 0 }).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let received = |caches: &[Cache]| {
        caches
            .iter()
            .map(|c| c.stats().near_invalidations)
            .sum::<u64>()
    };
    let (before_bytes, before_msgs) = (
        info_field(server, "stats", "total_net_output_bytes"),
        received(&caches),
    );
    for i in 0..WRITES {
        writer.put("k", &i, ttl, &[]).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bytes = info_field(server, "stats", "total_net_output_bytes") - before_bytes;
    let msgs = received(&caches) - before_msgs;
    (bytes as f64 / WRITES as f64, msgs as f64 / WRITES as f64)
}

/// `GET`s every key of the memory test on `conn`, in pipelines.
async fn read_all(conn: &mut redis::aio::MultiplexedConnection) {
    for chunk in (0..TRACKED_KEYS).collect::<Vec<_>>().chunks(10_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("GET").arg(format!("mem:v:{i}")).ignore();
        }
        pipe.query_async::<()>(conn).await.unwrap();
    }
}

/// used_memory added by one default-mode tracking client that read
/// `TRACKED_KEYS` keys, and by one BCAST client, in bytes.
async fn tracking_memory(server: &RedisServer) -> (u64, u64, u64) {
    let client = redis::Client::open(format!("{}/?protocol=resp3", server.url())).unwrap();
    let mut setup = client.get_multiplexed_async_connection().await.unwrap();
    for chunk in (0..TRACKED_KEYS).collect::<Vec<_>>().chunks(10_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET")
                .arg(format!("mem:v:{i}"))
                .arg("x")
                .arg("EX")
                .arg(3600)
                .ignore();
        }
        pipe.query_async::<()>(&mut setup).await.unwrap();
    }
    let base = info_field(server, "memory", "used_memory");

    let config =
        redis::AsyncConnectionConfig::new().set_push_sender(|_: redis::PushInfo| Ok::<(), ()>(()));
    let mut tracked = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .query_async::<()>(&mut tracked)
        .await
        .unwrap();
    read_all(&mut tracked).await;
    let default_mode = info_field(server, "memory", "used_memory").saturating_sub(base);
    let keys = info_field(server, "stats", "tracking_total_keys");
    drop(tracked);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let base = info_field(server, "memory", "used_memory");
    let mut bcast = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg("mem:v:")
        .query_async::<()>(&mut bcast)
        .await
        .unwrap();
    read_all(&mut bcast).await;
    let bcast_mode = info_field(server, "memory", "used_memory").saturating_sub(base);
    (default_mode, keys, bcast_mode)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let smoke = std::env::args().any(|a| a == "--test");
    let rt = runtime();
    let mut json = Vec::new();
    println!("invalidation traffic per write (BCAST), {WRITES} puts of one key");
    println!(
        "{:>8} {:>18} {:>22}",
        "holders", "messages/write", "server bytes out/write"
    );
    for holders in [0usize, 1, 4, 16] {
        let server = RedisServer::start();
        let (bytes, msgs) = rt.block_on(traffic(&server, holders));
        println!("{holders:>8} {msgs:>18.2} {bytes:>22.1}");
        json.push(format!(
            "  {{ \"holders\": {holders}, \"messages_per_write\": {msgs:.3}, \"bytes_per_write\": {bytes:.1} }}"
        ));
        if smoke {
            break;
        }
    }
    if smoke {
        return;
    }
    let server = RedisServer::start();
    let (default_mode, keys, bcast_mode) = rt.block_on(tracking_memory(&server));
    println!(
        "tracking table: default mode {keys} keys tracked, {:.1} MiB ({:.0} B/key); BCAST {:.2} MiB",
        default_mode as f64 / 1048576.0,
        default_mode as f64 / keys.max(1) as f64,
        bcast_mode as f64 / 1048576.0
    );
    write_result(
        "near/traffic.json",
        &format!(
            "{{\n \"traffic\": [\n{}\n ],\n \"default_mode_bytes\": {default_mode},\n \"tracked_keys\": {keys},\n \"bcast_bytes\": {bcast_mode}\n}}\n",
            json.join(",\n")
        ),
    );
}
