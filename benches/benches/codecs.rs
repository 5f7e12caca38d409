//! Codecs and compression, in process (no server): what encoding and
//! decoding a value costs with each serde format redcache could store, and
//! what lz4 and zstd make of a realistic JSON-ish payload.
//!
//! The candidates of the codec choice: `serde_json` (the default, readable
//! in `redis-cli`), MessagePack (`rmp-serde`, with structs as maps, and as
//! arrays), `postcard` and `bincode`. Prints the sizes and the compression
//! ratios; criterion measures the times.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The small record of the hit benches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u64,
}

/// One item of a catalogue page: text, numbers, a list and a map, the
/// shape of what services cache from a database or an API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u64,
    sku: String,
    name: String,
    description: String,
    price_cents: u64,
    rating: f32,
    in_stock: bool,
    tags: Vec<String>,
    attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Page {
    category: String,
    page: u32,
    total: u64,
    items: Vec<Item>,
}

const WORDS: [&str; 24] = [
    "lamp",
    "desk",
    "brass",
    "warm",
    "light",
    "adjustable",
    "arm",
    "shade",
    "linen",
    "oak",
    "base",
    "switch",
    "cable",
    "bulb",
    "modern",
    "classic",
    "matte",
    "black",
    "white",
    "reading",
    "room",
    "office",
    "soft",
    "glow",
];

/// A page of `n` items, deterministic (a small linear congruential draw).
fn page(n: u64) -> Page {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let mut words = |count: usize| {
        (0..count)
            .map(|_| WORDS[next() % WORDS.len()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let items = (0..n)
        .map(|id| Item {
            id: 10_000 + id,
            sku: format!("LMP-{:06}", 31 * id + 7),
            name: words(3),
            description: words(40),
            price_cents: 999 + 250 * (id % 17),
            rating: 3.0 + (id % 20) as f32 / 10.0,
            in_stock: id % 3 != 0,
            tags: (0..4).map(|_| words(1)).collect(),
            attributes: [
                ("colour", words(1)),
                ("material", words(2)),
                ("size", "M".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        })
        .collect();
    Page {
        category: "lighting".into(),
        page: 1,
        total: 1_000,
        items,
    }
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    MessagePackMap,
    MessagePackArray,
    Postcard,
    Bincode,
}

impl Format {
    const ALL: [Format; 5] = [
        Format::Json,
        Format::MessagePackMap,
        Format::MessagePackArray,
        Format::Postcard,
        Format::Bincode,
    ];

    fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::MessagePackMap => "msgpack_map",
            Format::MessagePackArray => "msgpack_array",
            Format::Postcard => "postcard",
            Format::Bincode => "bincode",
        }
    }

    fn encode<T: Serialize>(self, value: &T) -> Vec<u8> {
        match self {
            Format::Json => serde_json::to_vec(value).unwrap(),
            Format::MessagePackMap => rmp_serde::to_vec_named(value).unwrap(),
            Format::MessagePackArray => rmp_serde::to_vec(value).unwrap(),
            Format::Postcard => postcard::to_stdvec(value).unwrap(),
            Format::Bincode => {
                bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
            }
        }
    }

    fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> T {
        match self {
            Format::Json => serde_json::from_slice(bytes).unwrap(),
            Format::MessagePackMap | Format::MessagePackArray => {
                rmp_serde::from_slice(bytes).unwrap()
            }
            Format::Postcard => postcard::from_bytes(bytes).unwrap(),
            Format::Bincode => {
                bincode::serde::decode_from_slice(bytes, bincode::config::standard())
                    .unwrap()
                    .0
            }
        }
    }
}

fn formats<T>(c: &mut Criterion, label: &str, value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut group = c.benchmark_group(format!("codec/{label}"));
    for format in Format::ALL {
        let bytes = format.encode(value);
        assert_eq!(
            &format.decode::<T>(&bytes),
            value,
            "{} round trip",
            format.name()
        );
        println!(
            "codec/{label}: {:14} {:>8} bytes",
            format.name(),
            bytes.len()
        );
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(BenchmarkId::new("encode", format.name()), |b| {
            b.iter(|| format.encode(black_box(value)))
        });
        group.bench_function(BenchmarkId::new("decode", format.name()), |b| {
            b.iter(|| format.decode::<T>(black_box(&bytes)))
        });
    }
    group.finish();
}

fn codecs(c: &mut Criterion) {
    formats(
        c,
        "product",
        &Product {
            id: 1,
            name: "desk lamp #1".into(),
            price_cents: 1999,
        },
    );
    formats(c, "page_of_40", &page(40));
    formats(c, "string_1mb", &"x".repeat(1 << 20));
}

fn compression(c: &mut Criterion) {
    let page = page(40);
    let mut group = c.benchmark_group("compression");
    for format in [Format::Json, Format::MessagePackMap] {
        let bytes = format.encode(&page);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        let name = |codec: &str| format!("{}/{codec}", format.name());

        let lz4 = lz4_flex::compress_prepend_size(&bytes);
        assert_eq!(lz4_flex::decompress_size_prepended(&lz4).unwrap(), bytes);
        println!(
            "compression: {:12} {:>6} bytes -> lz4 {:>6} ({:.2}x)",
            format.name(),
            bytes.len(),
            lz4.len(),
            bytes.len() as f64 / lz4.len() as f64
        );
        group.bench_function(BenchmarkId::new("compress", name("lz4")), |b| {
            b.iter(|| lz4_flex::compress_prepend_size(black_box(&bytes)))
        });
        group.bench_function(BenchmarkId::new("decompress", name("lz4")), |b| {
            b.iter(|| lz4_flex::decompress_size_prepended(black_box(&lz4)).unwrap())
        });
        for level in [1, 3] {
            let zstd = zstd::bulk::compress(&bytes, level).unwrap();
            assert_eq!(zstd::bulk::decompress(&zstd, bytes.len()).unwrap(), bytes);
            println!(
                "compression: {:12} {:>6} bytes -> zstd -{level} {:>6} ({:.2}x)",
                format.name(),
                bytes.len(),
                zstd.len(),
                bytes.len() as f64 / zstd.len() as f64
            );
            let codec = format!("zstd{level}");
            group.bench_function(BenchmarkId::new("compress", name(&codec)), |b| {
                b.iter(|| zstd::bulk::compress(black_box(&bytes), level).unwrap())
            });
            group.bench_function(BenchmarkId::new("decompress", name(&codec)), |b| {
                b.iter(|| zstd::bulk::decompress(black_box(&zstd), bytes.len()).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(1))
        .warm_up_time(Duration::from_millis(300));
    targets = codecs, compression
}
criterion_main!(benches);
