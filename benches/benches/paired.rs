//! Paired ratios: each contender and its reference alternate in short
//! batches (A B B A ...), and the ratio is the median, over the rounds, of
//! A's calls per second over B's. Drift on a shared machine (criterion's
//! sequential runs of the same bench moved by 30 % and more here) hits both
//! sides of a round alike, so these ratios hold where sequential ones do not.
//!
//! Prints a table and writes `<criterion home>/paired/ratios.json`, which
//! `benches/report.py` puts in the README table.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use redcache::{Algorithm, Policy, RateLimiter};
use redcache_benches::contenders::{
    cached_crate_product, memory_product, near_product, near_tagged, payload_json, payload_msgpack,
    rate_limit_script, raw_get_and_decode, raw_get_and_decode_large_msgpack,
    raw_get_and_decode_msgpack, raw_rate_limit_check, redcache_product, redcache_product_msgpack,
    redcache_tagged, warm, LARGE, PRODUCT_ENTRY, PRODUCT_MSGPACK_ENTRY, TAGGED_KEYS,
};
use redcache_benches::{
    bench, calls, in_tasks, product, runtime, write_result, Product, StopServerOnExit, CONCURRENCY,
};

/// One contender: a call, made `tasks` at a time by `in_tasks`.
type Call = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

fn call<F, Fut>(f: F) -> Call
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

const ROUNDS: usize = 30;
const BATCH: Duration = Duration::from_millis(60);

/// Calls per second of `contender` at `tasks` concurrency, over one batch.
async fn rate(contender: &Call, tasks: usize) -> f64 {
    let started = Instant::now();
    let mut made = 0;
    while started.elapsed() < BATCH {
        let c = Arc::clone(contender);
        in_tasks(tasks, move || c()).await;
        made += calls(tasks);
    }
    made as f64 / started.elapsed().as_secs_f64()
}

/// The median and quartiles of `a`'s throughput over `b`'s, per round.
async fn paired(a: &Call, b: &Call, tasks: usize, rounds: usize) -> [f64; 3] {
    let mut ratios = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // A B, then B A: a trend within a round favours neither side.
        let (ra, rb) = if round % 2 == 0 {
            let ra = rate(a, tasks).await;
            (ra, rate(b, tasks).await)
        } else {
            let rb = rate(b, tasks).await;
            (rate(a, tasks).await, rb)
        };
        ratios.push(ra / rb);
    }
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    [at(0.25), at(0.5), at(0.75)]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would not.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // `cargo bench -- --test`, as criterion: check that everything runs, once.
    let rounds = if std::env::args().any(|a| a == "--test") {
        1
    } else {
        ROUNDS
    };
    let _stop = StopServerOnExit;
    let rt = runtime();
    let b = bench();
    rt.block_on(warm());

    let raw_get = call(|| async {
        bench().raw_get(PRODUCT_ENTRY).await;
    });
    let raw_get_decode = call(|| async {
        raw_get_and_decode().await;
    });
    let raw_mget = call(|| async {
        bench().raw_mget(&TAGGED_KEYS).await;
    });
    let redcache = call(|| async {
        redcache_product(1).await.unwrap();
    });
    let tagged = call(|| async {
        redcache_tagged(1).await.unwrap();
    });
    let cached_crate = call(|| async {
        cached_crate_product(1).await.unwrap();
    });

    let near = call(|| async {
        near_product(1).await.unwrap();
    });
    let near_tagged = call(|| async {
        near_tagged(1).await.unwrap();
    });
    let memory = call(|| async {
        memory_product(1).await.unwrap();
    });
    // A bare moka `get` of the same value under its key: the floor of any
    // in-process hit.
    let moka: Arc<moka::sync::Cache<String, Product>> = Arc::new(moka::sync::Cache::new(1000));
    moka.insert("product:1".to_string(), product(1));
    let moka_get = call(move || {
        let value = moka.get("product:1").expect("inserted");
        async move {
            std::hint::black_box(value);
        }
    });

    let mut pairs: Vec<(String, String, Call, Call, usize)> = Vec::new();

    // Codecs: a MessagePack hit against a raw GET of its own stored bytes,
    // and a 1 MB value's hit (JSON and MessagePack) against a raw GET of
    // the same entry.
    let msgpack = call(|| async {
        redcache_product_msgpack(1).await.unwrap();
    });
    let raw_get_msgpack = call(|| async {
        bench().raw_get(PRODUCT_MSGPACK_ENTRY).await;
    });
    // The least a MessagePack cache does (GET, decode), to tell what
    // redcache adds from what the decode costs.
    let raw_get_decode_msgpack = call(|| async {
        raw_get_and_decode_msgpack().await;
    });
    for tasks in [1, 64] {
        pairs.push((
            format!("hit/redcache_msgpack/{tasks}"),
            format!("hit/raw_get_msgpack/{tasks}"),
            Arc::clone(&msgpack),
            Arc::clone(&raw_get_msgpack),
            tasks,
        ));
        pairs.push((
            format!("hit/raw_get_decode_msgpack/{tasks}"),
            format!("hit/raw_get_msgpack/{tasks}"),
            Arc::clone(&raw_get_decode_msgpack),
            Arc::clone(&raw_get_msgpack),
            tasks,
        ));
        pairs.push((
            format!("hit/redcache_msgpack/{tasks}"),
            format!("hit/raw_get_decode_msgpack/{tasks}"),
            Arc::clone(&msgpack),
            Arc::clone(&raw_get_decode_msgpack),
            tasks,
        ));
    }
    for (codec, hit) in [
        (
            "json",
            call(|| async {
                payload_json(LARGE).await.unwrap();
            }),
        ),
        (
            "msgpack",
            call(|| async {
                payload_msgpack(LARGE).await.unwrap();
            }),
        ),
    ] {
        let key = match codec {
            "json" => b.entry_key(&format!("payload:{LARGE}")),
            _ => b.entry_key(&format!("payload-msgpack:{LARGE}")),
        };
        let raw = call(move || {
            let key = key.clone();
            async move {
                bench().raw_get(&key).await.expect("stored");
            }
        });
        pairs.push((
            format!("hit_1mb/redcache_{codec}/1"),
            format!("hit_1mb/raw_get_{codec}/1"),
            Arc::clone(&hit),
            Arc::clone(&raw),
            1,
        ));
        if codec == "msgpack" {
            // What the decode of the string costs by itself.
            let decode = call(|| async {
                raw_get_and_decode_large_msgpack().await;
            });
            pairs.push((
                "hit_1mb/raw_get_decode_msgpack/1".to_string(),
                "hit_1mb/raw_get_msgpack/1".to_string(),
                Arc::clone(&decode),
                raw,
                1,
            ));
            pairs.push((
                "hit_1mb/redcache_msgpack/1".to_string(),
                "hit_1mb/raw_get_decode_msgpack/1".to_string(),
                hit,
                decode,
                1,
            ));
        }
    }
    for tasks in CONCURRENCY {
        pairs.push((
            format!("hit/redcache_near/{tasks}"),
            format!("hit/raw_get/{tasks}"),
            Arc::clone(&near),
            Arc::clone(&raw_get),
            tasks,
        ));
    }
    for tasks in [1, 64] {
        pairs.push((
            format!("hit/redcache_near_tagged/{tasks}"),
            format!("hit/redcache_near/{tasks}"),
            Arc::clone(&near_tagged),
            Arc::clone(&near),
            tasks,
        ));
    }
    for (name, contender) in [("redcache_near", &near), ("redcache_memory", &memory)] {
        pairs.push((
            format!("hit/{name}/1"),
            "hit/moka_get/1".to_string(),
            Arc::clone(contender),
            Arc::clone(&moka_get),
            1,
        ));
    }
    for tasks in CONCURRENCY {
        for (name, contender, reference, reference_name) in [
            ("redcache", &redcache, &raw_get, "raw_get"),
            ("raw_get_decode", &raw_get_decode, &raw_get, "raw_get"),
            ("redcache", &redcache, &raw_get_decode, "raw_get_decode"),
            ("redcache_tagged", &tagged, &raw_get, "raw_get"),
            ("redcache_tagged", &tagged, &raw_mget, "raw_mget"),
            ("cached_crate", &cached_crate, &raw_get, "raw_get"),
        ] {
            pairs.push((
                format!("hit/{name}/{tasks}"),
                format!("hit/{reference_name}/{tasks}"),
                Arc::clone(contender),
                Arc::clone(reference),
                tasks,
            ));
        }
    }

    let script = Arc::new(rate_limit_script());
    let limit = 1_000_000_000;
    let window = Duration::from_secs(1);
    for algorithm in [
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
        Algorithm::Gcra,
    ] {
        let name = algorithm.name();
        let policy = Policy::new(limit, window).algorithm(algorithm);
        let limiter = Arc::new(RateLimiter::new(&b.redis, "paired", [policy]).unwrap());
        let ours = call(move || {
            let limiter = Arc::clone(&limiter);
            async move {
                limiter.check("user:1").await.unwrap();
            }
        });
        let script = Arc::clone(&script);
        let key = format!("bench:paired-raw:{{user:1}}:{name}");
        let raw = call(move || {
            let (script, key) = (Arc::clone(&script), key.clone());
            async move { raw_rate_limit_check(&script, &key, policy).await }
        });
        for tasks in [1, 64] {
            pairs.push((
                format!("rate_limit/redcache/{name}/{tasks}"),
                format!("rate_limit/raw_evalsha/{name}/{tasks}"),
                Arc::clone(&ours),
                Arc::clone(&raw),
                tasks,
            ));
        }
    }

    // Distributed locks: acquire + release on a resource of each task's
    // own (no contention: the cost of the operations), against a raw
    // `SET NX PX` and an `EVALSHA` of the same compare-and-delete.
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ours = {
        let next = Arc::clone(&next);
        call(move || {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                let guard = bench()
                    .redis
                    .lock(&format!("bench-lock:{n}"))
                    .try_acquire()
                    .await
                    .unwrap();
                guard.release().await.unwrap();
            }
        })
    };
    let unlock = Arc::new(redis::Script::new(include_str!(
        "../../redcache/src/scripts/unlock.lua"
    )));
    let (next_raw, unlock_fenced) = (Arc::clone(&next), Arc::clone(&unlock));
    let raw = call(move || {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unlock = Arc::clone(&unlock);
        async move {
            let mut conn = bench().raw.clone();
            let key = format!("bench:raw-lock:{n}");
            let token = format!("{:032x}", n);
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(30_000)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(set.is_some());
            let released: i64 = unlock
                .key(&key)
                .arg(&token)
                .invoke_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(released, 1);
        }
    });
    // The same two scripts redcache runs, sent raw: what the fencing token
    // costs the server, apart from the client.
    let fenced = {
        let next = Arc::clone(&next_raw);
        let acquire = Arc::new(redis::Script::new(include_str!(
            "../../redcache/src/scripts/mutex_acquire.lua"
        )));
        let unlock = Arc::clone(&unlock_fenced);
        call(move || {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (acquire, unlock) = (Arc::clone(&acquire), Arc::clone(&unlock));
            async move {
                let mut conn = bench().raw.clone();
                let (key, fence) = (
                    format!("bench:fenced:{{#{n}}}"),
                    format!("bench:fence:{{#{n}}}"),
                );
                let token = format!("{:032x}", n);
                let fencing: Option<u64> = acquire
                    .key(&key)
                    .key(&fence)
                    .arg(&token)
                    .arg(30_000)
                    .arg(60_000)
                    .invoke_async(&mut conn)
                    .await
                    .unwrap();
                assert!(fencing.is_some());
                let released: i64 = unlock
                    .key(&key)
                    .arg(&token)
                    .invoke_async(&mut conn)
                    .await
                    .unwrap();
                assert_eq!(released, 1);
            }
        })
    };
    for tasks in [1, 64] {
        pairs.push((
            format!("lock/raw_fenced_scripts/{tasks}"),
            format!("lock/raw_set_nx_evalsha/{tasks}"),
            Arc::clone(&fenced),
            Arc::clone(&raw),
            tasks,
        ));
        pairs.push((
            format!("lock/redcache/{tasks}"),
            format!("lock/raw_set_nx_evalsha/{tasks}"),
            Arc::clone(&ours),
            Arc::clone(&raw),
            tasks,
        ));
    }

    // Sessions: a whole-session read and a one-field write (each a script
    // that also checks and slides the expiry) against a raw `HGETALL` and
    // `HSET` of a hash of the same shape.
    let sessions = bench().redis.sessions();
    let id = rt.block_on(async {
        let id = sessions.create(Some("bench")).await.unwrap();
        for field in ["user", "cart", "theme"] {
            sessions
                .set(&id, field, &format!("value of {field}"))
                .await
                .unwrap();
        }
        id
    });
    let raw_hash = "bench:raw-session";
    rt.block_on(async {
        let mut conn = bench().raw.clone();
        let () = redis::cmd("HSET")
            .arg(raw_hash)
            .arg(&[
                "m:created",
                "1",
                "m:user",
                "bench",
                "f:user",
                "\"value of user\"",
                "f:cart",
                "\"value of cart\"",
                "f:theme",
                "\"value of theme\"",
            ])
            .query_async(&mut conn)
            .await
            .unwrap();
    });
    let session_read = {
        let (sessions, id) = (sessions.clone(), id.clone());
        call(move || {
            let (sessions, id) = (sessions.clone(), id.clone());
            async move {
                assert!(sessions.load(&id).await.unwrap().is_some());
            }
        })
    };
    let session_write = call(move || {
        let (sessions, id) = (sessions.clone(), id.clone());
        async move {
            assert!(sessions.set(&id, "theme", "dark").await.unwrap());
        }
    });
    let raw_hgetall = call(move || async move {
        let mut conn = bench().raw.clone();
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(raw_hash)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!fields.is_empty());
    });
    let raw_hset = call(move || async move {
        let mut conn = bench().raw.clone();
        let _: i64 = redis::cmd("HSET")
            .arg(raw_hash)
            .arg("f:theme")
            .arg("\"dark\"")
            .query_async(&mut conn)
            .await
            .unwrap();
    });
    for tasks in [1, 64] {
        pairs.push((
            format!("session/read/{tasks}"),
            format!("session/raw_hgetall/{tasks}"),
            Arc::clone(&session_read),
            Arc::clone(&raw_hgetall),
            tasks,
        ));
        pairs.push((
            format!("session/write/{tasks}"),
            format!("session/raw_hset/{tasks}"),
            Arc::clone(&session_write),
            Arc::clone(&raw_hset),
            tasks,
        ));
    }

    // `cargo bench --bench paired -- <filter>`: only the pairs whose
    // contender's id holds the filter.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    pairs.retain(|(a_id, ..)| a_id.contains(&filter));

    let mut json = Vec::new();
    println!("paired ratio (median over {rounds} rounds, quartiles)");
    for (a_id, b_id, a, b, tasks) in &pairs {
        let [q1, median, q3] = rt.block_on(paired(a, b, *tasks, rounds));
        println!("{a_id:40} vs {b_id:40} {median:.3}  [{q1:.3} .. {q3:.3}]");
        json.push(format!(
            "  {{ \"id\": \"{a_id}\", \"vs\": \"{b_id}\", \"median\": {median:.4}, \"q1\": {q1:.4}, \"q3\": {q3:.4} }}"
        ));
    }
    if rounds < ROUNDS || !filter.is_empty() {
        return; // a smoke test or a part: keep the last full figures
    }
    write_result(
        "paired/ratios.json",
        &format!("[\n{}\n]\n", json.join(",\n")),
    );
}
