//! How many multiplexed connections a process needs: `GET`s of a cached
//! entry's bytes at 64 and 256 tasks, over 1, 2 and 4 redis-rs
//! `ConnectionManager`s taken round-robin, against one connection, in
//! alternating batches (A B B A ...; the median of per-round ratios).
//!
//! `cargo bench -p redcache-benches --bench connections`; prints a table and
//! writes `<criterion home>/connections/figures.json`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redcache_benches::{runtime, write_result};
use redcache_suite::RedisServer;

/// Connections taken in turn.
struct Pool {
    conns: Vec<redis::aio::ConnectionManager>,
    next: AtomicUsize,
}

impl Pool {
    async fn new(url: &str, n: usize) -> Arc<Pool> {
        let mut conns = Vec::new();
        for _ in 0..n {
            let client = redis::Client::open(url).unwrap();
            conns.push(redis::aio::ConnectionManager::new(client).await.unwrap());
        }
        Arc::new(Pool {
            conns,
            next: AtomicUsize::new(0),
        })
    }

    fn conn(&self) -> redis::aio::ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }
}

/// GETs per second from `tasks` tasks over `batch`.
async fn rate(pool: &Arc<Pool>, tasks: usize, batch: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (pool, done) = (Arc::clone(pool), Arc::clone(&done));
            tokio::spawn(async move {
                while started.elapsed() < batch {
                    let mut conn = pool.conn();
                    let value: Option<Vec<u8>> = redis::cmd("GET")
                        .arg("entry")
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    assert!(value.is_some());
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let smoke = std::env::args().any(|a| a == "--test");
    let rounds = if smoke { 1 } else { 10 };
    let batch = Duration::from_millis(200);
    let rt = runtime();
    let server = RedisServer::start();
    let url = server.url();
    let mut json = Vec::new();
    rt.block_on(async {
        let one = Pool::new(&url, 1).await;
        // An entry of a typical size (~300 bytes of JSON).
        let entry = format!("{{\"v\":3,\"value\":\"{}\"}}", "x".repeat(300));
        let _: () = redis::cmd("SET")
            .arg("entry")
            .arg(entry)
            .query_async(&mut one.conn())
            .await
            .unwrap();
        println!("GETs/s over n connections (round-robin) vs 1, median of {rounds} rounds");
        for tasks in [64, 256] {
            for n in [2, 4] {
                let pool = Pool::new(&url, n).await;
                let (mut ratios, mut ours, mut base) = (Vec::new(), Vec::new(), Vec::new());
                for round in 0..rounds {
                    let (a, b) = if round % 2 == 0 {
                        let a = rate(&pool, tasks, batch).await;
                        (a, rate(&one, tasks, batch).await)
                    } else {
                        let b = rate(&one, tasks, batch).await;
                        (rate(&pool, tasks, batch).await, b)
                    };
                    ratios.push(a / b);
                    ours.push(a);
                    base.push(b);
                }
                let (a, b, r) = (median(ours), median(base), median(ratios));
                println!("{tasks:>3} tasks, {n} connections: {a:>9.0}/s vs 1 connection {b:>9.0}/s  ratio {r:.3}");
                json.push(format!(
                    "  {{ \"tasks\": {tasks}, \"connections\": {n}, \"rate\": {a:.0}, \"one\": {b:.0}, \"ratio\": {r:.4} }}"
                ));
            }
        }
    });
    drop(server);
    if !smoke {
        write_result(
            "connections/figures.json",
            &format!("[\n{}\n]\n", json.join(",\n")),
        );
    }
}
