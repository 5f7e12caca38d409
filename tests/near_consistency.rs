//! The near cache's consistency across processes, measured: reader
//! processes (`near-worker`) read a tagged key through L1 while this
//! process bumps a version in the "database" (a second redis-server) and
//! invalidates the tag, then publishes the version as the floor no reader
//! may go below. In the middle, the readers' tracking connections are
//! killed (`CLIENT KILL`) and the cache's server is restarted.
//!
//! It prints the staleness window (from an invalidation's return to a
//! reader's last stale read of it) and fails on any stale read later than
//! `BOUND` after the invalidation returned. README's Guarantees quote a
//! release run of it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redcache::Cache;
use redcache_suite::{unique_namespace, RedisServer};

const READERS: usize = 3;
const RUN: Duration = Duration::from_secs(12);
/// No reader may serve a value this long after its invalidation returned.
/// Loopback delivers in well under a millisecond; the bound leaves room for
/// a CI machine whose two cores run four processes and two servers.
const BOUND: Duration = Duration::from_millis(100);

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Kills every BCAST tracking connection of `server`; returns how many.
fn kill_tracking_connections(server: &RedisServer) -> usize {
    let list = server.command("CLIENT LIST");
    let ids: Vec<String> = list
        .lines()
        .filter(|line| {
            line.split(' ')
                .find_map(|f| f.strip_prefix("flags="))
                .is_some_and(|flags| flags.contains('t') && flags.contains('B'))
        })
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_string)
        .collect();
    for id in &ids {
        server.command(&format!("CLIENT KILL ID {id}"));
    }
    ids.len()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_in_other_processes_serve_no_invalidated_value_past_the_window() {
    let mut server = RedisServer::start();
    let db = RedisServer::start();
    let ns = unique_namespace("near-consistency");
    let dir = std::env::temp_dir().join(format!("{ns}-floor"));
    std::fs::create_dir_all(&dir).unwrap();
    let floor_file = dir.join("floor");
    let publish = |version: u64| {
        let tmp = dir.join("floor.tmp");
        std::fs::write(&tmp, format!("{version} {}", now_ns())).unwrap();
        std::fs::rename(&tmp, &floor_file).unwrap();
    };
    publish(0);

    let writer = Cache::builder()
        .redis(server.url())
        .namespace(&ns)
        .build()
        .await
        .unwrap();
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_near-worker"))
                .args([
                    server.url(),
                    db.url(),
                    ns.clone(),
                    floor_file.display().to_string(),
                    RUN.as_millis().to_string(),
                ])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start near-worker")
        })
        .collect();
    // Let the readers connect and fill their L1.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let began = Instant::now();
    let writing = RUN - Duration::from_secs(2);
    let (mut version, mut killed, mut restarted) = (0u64, 0, false);
    while began.elapsed() < writing {
        tokio::time::sleep(Duration::from_millis(5 + rand::random::<u64>() % 15)).await;
        version += 1;
        assert_eq!(db.command(&format!("SET version {version}")), "+OK\r\n");
        // Only an invalidation that returned Ok binds the readers.
        while writer.invalidate_tag("items").await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        publish(version);
        let third = writing / 3;
        if killed == 0 && began.elapsed() > third {
            killed = kill_tracking_connections(&server);
        }
        if !restarted && began.elapsed() > third * 2 {
            server.restart();
            restarted = true;
        }
    }
    assert_eq!(killed, READERS, "each reader had its tracking connection");

    let mut windows = Vec::new();
    let (mut reads, mut near_hits, mut stale) = (0u64, 0u64, 0u64);
    for reader in readers {
        let out = reader.wait_with_output().unwrap();
        assert!(out.status.success(), "a reader failed");
        let line = String::from_utf8(out.stdout).unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let number = |name: &str| -> u64 {
            let at = fields.iter().position(|f| *f == name).unwrap();
            fields[at + 1].parse().unwrap()
        };
        reads += number("READS");
        near_hits += number("NEAR_HITS");
        stale += number("STALE");
        let at = fields.iter().position(|f| *f == "WINDOWS").unwrap();
        if let Some(list) = fields.get(at + 1) {
            windows.extend(list.split(',').map(|w| w.parse::<u64>().unwrap()));
        }
    }
    windows.sort_unstable();
    let per_invalidation = version as usize * READERS;
    // An invalidation a reader never served stale after had a window of 0.
    let mut all = vec![0; per_invalidation.saturating_sub(windows.len())];
    all.extend(&windows);
    all.sort_unstable();
    let us = |ns: u64| ns as f64 / 1000.0;
    println!(
        "{READERS} readers, {version} invalidations, {reads} reads ({near_hits} from L1), {stale} stale reads after {} invalidations",
        windows.len()
    );
    println!(
        "staleness window: p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        us(percentile(&all, 0.5)),
        us(percentile(&all, 0.99)),
        us(all.last().copied().unwrap_or(0))
    );
    assert!(
        near_hits > reads / 2,
        "the readers mostly hit L1: {near_hits} of {reads}"
    );
    let late: Vec<_> = windows
        .iter()
        .filter(|w| **w > BOUND.as_nanos() as u64)
        .collect();
    assert!(
        late.is_empty(),
        "stale reads later than {BOUND:?} after the invalidation returned: {late:?} ns"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
