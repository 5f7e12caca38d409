//! Codecs and compression on a real Redis: a `codec = "msgpack"` fn
//! writes binary entries and hits them; caches with other codecs and
//! compression read each other's entries (the entry says how it was
//! written); `max_value_size` applies to the stored, compressed bytes; and
//! entries that do not decode (damaged, cut, or in a format this build
//! lacks) are misses, never a panic or another value.

#![cfg(all(feature = "lz4", feature = "zstd"))]

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use redcache::{cache_put, cached, Cache, Codec, Compression, EntryOptions, ManualClock};
use redcache_suite::{eventually, unique_namespace, RedisServer};
use serde::{Deserialize, Serialize};

const TTL: Duration = Duration::from_secs(300);

/// A field left out when empty: what a format without field names would
/// read wrongly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    note: Option<String>,
    #[serde(default)]
    price_cents: u64,
}

fn product(id: u64) -> Product {
    Product {
        id,
        name: format!("desk lamp #{id}"),
        note: (id % 2 == 0).then(|| "brass".to_string()),
        price_cents: 1000 + id,
    }
}

/// A product with a long, compressible description.
fn large(id: u64, len: usize) -> Product {
    Product {
        note: Some("warm light, brass arm, linen shade; ".repeat(len / 36 + 1)),
        ..product(id)
    }
}

/// A builder of a cache on the test Redis, with a 2 s operation timeout.
fn redis_builder(url: &str, ns: &str) -> redcache::CacheBuilder {
    Cache::builder()
        .redis(url)
        .namespace(ns)
        .op_timeout(Duration::from_secs(2))
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn raw_get(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<u8> {
    let bytes: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
    bytes.unwrap_or_else(|| panic!("{key} is stored"))
}

struct Shop {
    cache: Cache,
    loads: AtomicU64,
}

impl Shop {
    #[cached(ttl = 300, key = "product:<id>", codec = "msgpack", cache = self.cache)]
    async fn product(&self, id: u64) -> Result<Product, String> {
        self.loads.fetch_add(1, SeqCst);
        Ok(product(id))
    }

    #[cached(ttl = 300, key = "name:<id>", cache = self.cache)]
    async fn name(&self, id: u64) -> Result<String, String> {
        self.loads.fetch_add(1, SeqCst);
        Ok(format!("lamp {id}"))
    }

    /// The writer of `product`, in its codec.
    #[cache_put(ttl = 300, key = "product:<product.id>", codec = "msgpack", cache = self.cache)]
    async fn save(&self, product: Product) -> Result<Product, String> {
        Ok(product)
    }

    #[cached(ttl = 300, key = "failing:<id>", codec = "msgpack", cache = self.cache)]
    async fn failing(&self, id: u64) -> Result<Product, String> {
        self.loads.fetch_add(1, SeqCst);
        Err(format!("no product {id}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_msgpack_fn_writes_binary_entries_and_hits_them() {
    let server = RedisServer::start();
    let ns = unique_namespace("codec");
    let shop = Shop {
        cache: redis_builder(&server.url(), &ns).build().await.unwrap(),
        loads: AtomicU64::new(0),
    };
    for round in 0..3 {
        for id in 1..=4 {
            assert_eq!(shop.product(id).await, Ok(product(id)), "round {round}");
        }
    }
    assert_eq!(shop.loads.load(SeqCst), 4, "one load per id, then hits");
    assert_eq!(shop.cache.stats().undecodable, 0);

    let mut conn = raw(&server.url()).await;
    let entry = raw_get(&mut conn, &format!("{ns}:v:product:1")).await;
    assert_eq!(entry[0], 0xC1, "a binary entry");
    assert!(std::str::from_utf8(&entry).is_err());
    // The cache's own codec (JSON) for the fn that names none.
    assert_eq!(shop.name(1).await.unwrap(), "lamp 1");
    let entry = raw_get(&mut conn, &format!("{ns}:v:name:1")).await;
    assert!(entry.starts_with(br#"{"v":3,"#), "{entry:?}");

    // The writer stores in its codec what the reader then hits.
    let saved = Product {
        name: "saved".into(),
        ..product(3)
    };
    let before = shop.loads.load(SeqCst);
    shop.save(saved.clone()).await.unwrap();
    assert_eq!(shop.product(3).await, Ok(saved));
    assert_eq!(
        shop.product(4).await,
        Ok(product(4)),
        "another id is not touched"
    );
    assert_eq!(shop.loads.load(SeqCst), before);
    let entry = raw_get(&mut conn, &format!("{ns}:v:product:3")).await;
    assert_eq!(entry[0], 0xC1);

    // `get_or_load!` takes the option too.
    let id = 5;
    let value = redcache::get_or_load!(
        ttl = 60,
        key = "inline:<id>",
        codec = "msgpack",
        cache = &shop.cache,
        async { Ok::<_, String>(product(id)) }
    )
    .await;
    assert_eq!(value, Ok(product(id)));
    let entry = raw_get(&mut conn, &format!("{ns}:v:inline:{id}")).await;
    assert_eq!(entry[0], 0xC1);

    // An error is never cached, whatever the codec.
    let before = shop.loads.load(SeqCst);
    for _ in 0..2 {
        assert_eq!(shop.failing(9).await, Err("no product 9".to_string()));
    }
    assert_eq!(shop.loads.load(SeqCst), before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_with_other_codecs_and_compression_read_each_others_entries() {
    let server = RedisServer::start();
    let ns = unique_namespace("mixed");
    let settings: [(&str, Codec, Option<Compression>); 5] = [
        ("json", Codec::Json, None),
        ("msgpack", Codec::MessagePack, None),
        (
            "json+lz4",
            Codec::Json,
            Some(Compression::lz4().above(1024)),
        ),
        (
            "msgpack+zstd",
            Codec::MessagePack,
            Some(Compression::zstd(3).above(1024)),
        ),
        (
            "json+zstd",
            Codec::Json,
            Some(Compression::zstd(19).above(1024)),
        ),
    ];
    let mut caches = Vec::new();
    for (name, codec, compression) in settings {
        let mut builder = redis_builder(&server.url(), &ns).codec(codec);
        if let Some(compression) = compression {
            builder = builder.compression(compression);
        }
        caches.push((name, compression, builder.build().await.unwrap()));
    }
    let mut conn = raw(&server.url()).await;
    for (w, (writer, compression, cache)) in caches.iter().enumerate() {
        for (i, len) in [0, 20_000].into_iter().enumerate() {
            let id = (w * 10 + i) as u64;
            let value = if len == 0 {
                product(id)
            } else {
                large(id, len)
            };
            let key = format!("product:{id}");
            cache.put(&key, &value, TTL, &["shelf"]).await.unwrap();
            let stored = raw_get(&mut conn, &format!("{ns}:v:{key}")).await;
            let json_len = serde_json::to_vec(&value).unwrap().len();
            if compression.is_some() && len > 0 {
                assert_eq!(stored[0], 0xC1, "{writer}: compressed entries are binary");
                assert!(
                    stored.len() < json_len / 4,
                    "{writer}: {} stored bytes for {json_len} bytes of JSON",
                    stored.len()
                );
            }
            for (reader, _, other) in &caches {
                let loads = AtomicU64::new(0);
                let read = other
                    .get_or_load(&key, TTL, &["shelf"], || async {
                        loads.fetch_add(1, SeqCst);
                        Ok::<_, String>(product(999))
                    })
                    .await
                    .unwrap();
                assert_eq!(read, value, "{reader} reads what {writer} wrote ({len})");
                assert_eq!(
                    loads.load(SeqCst),
                    0,
                    "{reader} hit {writer}'s entry ({len})"
                );
            }
        }
    }
    // Two different keys never meet, whoever wrote them.
    let (_, _, last) = caches.last().unwrap();
    let first: Product = last
        .get_or_load("product:0", TTL, &["shelf"], || async {
            Ok::<_, String>(product(999))
        })
        .await
        .unwrap();
    assert_eq!(first, product(0));
    for (name, _, cache) in &caches {
        assert_eq!(cache.stats().undecodable, 0, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_guard_applies_to_the_stored_compressed_bytes() {
    let server = RedisServer::start();
    let limit = 8 * 1024;
    let value = large(1, 100_000);
    let noise: Vec<u64> = (0..4000).map(|_| rand::random::<u64>()).collect();
    for compression in [None, Some(Compression::lz4()), Some(Compression::zstd(3))] {
        let ns = unique_namespace("guard");
        let mut builder = redis_builder(&server.url(), &ns).max_value_size(limit);
        if let Some(compression) = compression {
            builder = builder.compression(compression.above(1024));
        }
        let cache = builder.build().await.unwrap();
        let loads = AtomicU64::new(0);
        for _ in 0..2 {
            let read = cache
                .get_or_load("big", TTL, &[], || async {
                    loads.fetch_add(1, SeqCst);
                    Ok::<_, String>(value.clone())
                })
                .await
                .unwrap();
            assert_eq!(read, value);
        }
        let label = compression.map_or("none", |c| c.name());
        match compression {
            // 100 KB of text compresses below 8 KiB: cached.
            Some(_) => {
                assert_eq!(loads.load(SeqCst), 1, "{label}");
                assert_eq!(cache.stats().too_large, 0, "{label}");
            }
            None => {
                assert_eq!(loads.load(SeqCst), 2, "{label}");
                assert_eq!(cache.stats().too_large, 2, "{label}");
            }
        }
        // Noise does not compress: above the limit either way.
        let err = cache.put("noise", &noise, TTL, &[]).await.unwrap_err();
        assert!(err.to_string().contains("max_value_size"), "{label}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_do_not_decode_are_misses_never_a_panic() {
    let server = RedisServer::start();
    let ns = unique_namespace("damaged");
    let cache = redis_builder(&server.url(), &ns)
        .codec(Codec::MessagePack)
        .compression(Compression::zstd(3).above(1024))
        .build()
        .await
        .unwrap();
    let mut conn = raw(&server.url()).await;
    let value = large(5, 20_000);
    cache.put("p", &value, TTL, &[]).await.unwrap();
    let good = raw_get(&mut conn, &format!("{ns}:v:p")).await;
    assert_eq!(good[0], 0xC1);

    let mut unknown_codec = good.clone();
    unknown_codec[10] = 77;
    let mut unknown_compressor = good.clone();
    unknown_compressor[11] = 77;
    let mut lying_length = good.clone();
    lying_length[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut damaged_value = good.clone();
    let last = damaged_value.len() - 40;
    damaged_value[last..].iter_mut().for_each(|b| *b ^= 0xff);
    let cut = good[..good.len() / 2].to_vec();
    let cases: [(&str, Vec<u8>); 6] = [
        ("unknown codec", unknown_codec),
        ("unknown compressor", unknown_compressor),
        ("lying length", lying_length),
        ("damaged value", damaged_value),
        ("cut", cut),
        ("marker only", vec![0xC1, 1, 2, 3]),
    ];
    for (i, (case, bytes)) in cases.into_iter().enumerate() {
        let key = format!("p{i}");
        let () = redis::cmd("SET")
            .arg(format!("{ns}:v:{key}"))
            .arg(&bytes)
            .arg("EX")
            .arg(60)
            .query_async(&mut conn)
            .await
            .unwrap();
        let undecodable = cache.stats().undecodable;
        let loads = AtomicU64::new(0);
        for _ in 0..2 {
            let read = cache
                .get_or_load(&key, TTL, &[], || async {
                    loads.fetch_add(1, SeqCst);
                    Ok::<_, String>(product(i as u64))
                })
                .await
                .unwrap();
            assert_eq!(read, product(i as u64), "{case}");
        }
        assert_eq!(
            loads.load(SeqCst),
            1,
            "{case}: a miss, replaced, then a hit"
        );
        assert_eq!(cache.stats().undecodable, undecodable + 1, "{case}");
    }
}

/// Refreshed in the background once expired: the refresh writes in the
/// fn's codec too.
#[cached(ttl = 60, stale = "10m", key = "refreshed:<id>", codec = "msgpack", cache = cache, ignore = [cache, loads])]
async fn refreshed(cache: Cache, loads: Arc<AtomicU64>, id: u64) -> Result<u64, String> {
    Ok(loads.fetch_add(1, SeqCst) + 100 * id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_refresh_writes_in_the_fns_codec() {
    let server = RedisServer::start();
    let ns = unique_namespace("refresh");
    let clock = ManualClock::new(Duration::from_secs(1_000_000));
    let cache = redis_builder(&server.url(), &ns)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let loads = Arc::new(AtomicU64::new(0));
    let call = || refreshed(cache.clone(), Arc::clone(&loads), 1);
    let mut conn = raw(&server.url()).await;
    let key = format!("{ns}:v:refreshed:1");
    assert_eq!(call().await, Ok(100));
    let first = raw_get(&mut conn, &key).await;
    assert_eq!(first[0], 0xC1);
    clock.advance(Duration::from_secs(61));
    // Expired: answered stale while one refresh runs in the background.
    assert_eq!(call().await, Ok(100));
    eventually(
        "the refresh stored its value",
        Duration::from_secs(5),
        || async {
            loads.load(SeqCst) == 2 && raw_get(&mut raw(&server.url()).await, &key).await != first
        },
    )
    .await;
    assert_eq!(call().await, Ok(101));
    let refreshed = raw_get(&mut conn, &key).await;
    assert_eq!(
        refreshed[0], 0xC1,
        "the refresh wrote MessagePack, not the cache's JSON"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_near_cache_holds_decoded_values_of_compressed_entries_and_drops_them_on_change() {
    let server = RedisServer::start();
    let ns = unique_namespace("nearcodec");
    let build = || async {
        redis_builder(&server.url(), &ns)
            .codec(Codec::MessagePack)
            .compression(Compression::zstd(3).above(1024))
            .near_cache(redcache::NearCache::new())
            .build()
            .await
            .unwrap()
    };
    let (reader, writer) = (build().await, build().await);
    eventually("tracking", Duration::from_secs(10), || async {
        reader.stats().near == redcache::NearStatus::Tracking
    })
    .await;
    let read = |id: u64| {
        let reader = reader.clone();
        async move {
            reader
                .get_or_load(&format!("p:{id}"), TTL, &["shelf"], || async {
                    Ok::<_, String>(product(999))
                })
                .await
                .unwrap()
        }
    };
    for id in [1, 2] {
        writer
            .put(&format!("p:{id}"), &large(id, 20_000), TTL, &["shelf"])
            .await
            .unwrap();
    }
    // Two keys, two values, whether read from Redis or from L1.
    eventually("both values in L1", Duration::from_secs(5), || async {
        let hits = reader.stats().near_hits;
        assert_eq!(read(1).await, large(1, 20_000));
        assert_eq!(read(2).await, large(2, 20_000));
        reader.stats().near_hits >= hits + 2
    })
    .await;
    // Another process's change reaches L1.
    writer
        .put("p:1", &large(11, 20_000), TTL, &["shelf"])
        .await
        .unwrap();
    eventually("the change seen", Duration::from_secs(5), || async {
        read(1).await == large(11, 20_000)
    })
    .await;
    assert_eq!(read(2).await, large(2, 20_000));
    assert_eq!(reader.stats().undecodable, 0);
}

#[tokio::test]
async fn codecs_on_the_embedded_backend() {
    let cache = Cache::builder()
        .memory()
        .codec(Codec::MessagePack)
        .compression(Compression::lz4().above(1024))
        .build()
        .await
        .unwrap();
    let shop = Shop {
        cache: cache.clone(),
        loads: AtomicU64::new(0),
    };
    for _ in 0..2 {
        for id in 1..=3 {
            assert_eq!(shop.product(id).await, Ok(product(id)));
            assert_eq!(shop.name(id).await, Ok(format!("lamp {id}")));
        }
    }
    assert_eq!(shop.loads.load(SeqCst), 6);
    let options = EntryOptions::new(TTL).codec(Codec::Json);
    cache
        .put_with("big", &large(7, 50_000), &options)
        .await
        .unwrap();
    let read = cache
        .get_or_load("big", TTL, &[], || async { Ok::<_, String>(product(0)) })
        .await
        .unwrap();
    assert_eq!(read, large(7, 50_000));
}

static SEEN: AtomicU64 = AtomicU64::new(0);

/// `Some(())` is written as null in JSON and MessagePack, and null reads
/// back as `None`: such a value must not be cached.
#[cached(ttl = 300, key = "exists:<id>", cache = cache, ignore = [cache])]
async fn exists(cache: &Cache, id: u64) -> Option<()> {
    SEEN.fetch_add(1, SeqCst);
    (id % 2 == 0).then_some(())
}

#[cached(ttl = 300, key = "maybe:<id>", codec = "msgpack", cache = cache, ignore = [cache])]
async fn maybe(cache: &Cache, id: u64) -> Result<Option<Option<u64>>, String> {
    Ok(match id {
        0 => None,
        1 => Some(None),
        n => Some(Some(n)),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn some_written_as_null_is_never_read_back_as_none() {
    let server = RedisServer::start();
    let redis = redis_builder(&server.url(), &unique_namespace("null"))
        .build()
        .await
        .unwrap();
    let memory = Cache::builder().memory().build().await.unwrap();
    for cache in [&redis, &memory] {
        for _ in 0..3 {
            assert_eq!(exists(cache, 2).await, Some(()));
            assert_eq!(exists(cache, 3).await, None);
            assert_eq!(maybe(cache, 0).await, Ok(None));
            assert_eq!(maybe(cache, 1).await, Ok(Some(None)));
            assert_eq!(maybe(cache, 7).await, Ok(Some(Some(7))));
        }
    }
    // `Some(())` ran each time (not cached); `None` was not cached either
    // (no `cache_none`).
    assert_eq!(SEEN.load(SeqCst), 12);
    assert!(redis.stats().errors >= 3, "each refusal is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_safe_rewrite_in_a_larger_codec_keeps_to_the_size_limit() {
    let server = RedisServer::start();
    let ns = unique_namespace("failsafe");
    let clock = ManualClock::new(Duration::from_secs(1_000_000));
    let build = |compression: Option<Compression>| {
        let clock = clock.clone();
        let (url, ns) = (server.url(), ns.clone());
        async move {
            let mut builder = redis_builder(&url, &ns)
                .clock(clock)
                .max_value_size(8 * 1024);
            if let Some(compression) = compression {
                builder = builder.compression(compression);
            }
            builder.build().await.unwrap()
        }
    };
    let compressed = build(Some(Compression::zstd(3).above(1024))).await;
    let plain = build(None).await;
    let options = EntryOptions::new(Duration::from_secs(60)).fail_safe(Duration::from_secs(3600));
    let value = large(1, 100_000);
    compressed.put_with("big", &value, &options).await.unwrap();
    let mut conn = raw(&server.url()).await;
    let stored = raw_get(&mut conn, &format!("{ns}:v:big")).await;
    assert!(stored.len() < 8 * 1024);
    clock.advance(Duration::from_secs(120));
    // Expired; the load fails: the expired value stands in, and its JSON
    // (100 KB) is not written back over the 8 KiB limit.
    let read = plain
        .fetch("big", &options, || async {
            Err::<Product, _>("source down".to_string())
        })
        .await;
    assert_eq!(read, Ok(value));
    let after = raw_get(&mut conn, &format!("{ns}:v:big")).await;
    assert!(
        after == stored,
        "the compressed entry was replaced: {} bytes, first {:#x}",
        after.len(),
        after[0]
    );
}

static SLOW_LOADS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 300, key = "slow-exists:<id>", cache = cache, ignore = [cache])]
async fn slow_exists(cache: &Cache, id: u64) -> Option<()> {
    SLOW_LOADS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    (id > 0).then_some(())
}

/// A value that is not cached is still shared with the callers that
/// waited for it: one load for concurrent callers, each with the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_a_value_that_is_not_cached() {
    let server = RedisServer::start();
    let redis = redis_builder(&server.url(), &unique_namespace("share"))
        .build()
        .await
        .unwrap();
    let calls = (0..20).map(|_| slow_exists(&redis, 1));
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(|a| *a == Some(())), "{answers:?}");
    assert_eq!(
        SLOW_LOADS.load(SeqCst),
        1,
        "one load for 20 concurrent callers"
    );
}
