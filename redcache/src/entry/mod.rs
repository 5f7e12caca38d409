//! The stored format of a cached value.
//!
//! With the default codec (JSON) and no compression, an entry is a JSON
//! object, readable in `redis-cli` (`json.rs`):
//!
//! ```text
//! {"v":3,"w":"9f0c2a7d41b3e855","k":"product:<id>","at":1764090000123,"exp":1764090300123,"d":12,"tags":[["category:7",3]],"value":{"id":42,"name":"lamp"}}
//! ```
//!
//! - `v` is the format version; any other version is a miss.
//! - `w` is the write's id, random, in the first [`HEAD_LEN`] bytes: a load
//!   stores its value only if the key still holds what the load began from
//!   (the same head, or still nothing), so a `put` or an `invalidate_key`
//!   that came in between is never overwritten by an older load.
//! - `k` is the key template that wrote the entry (or the fn's path for a
//!   default key). A call of a template of another *shape* that renders the
//!   same key reads a miss, never the other's value. The shape is the
//!   template without its placeholders' names: `product:<id>` (a
//!   `#[cached]` reader) and `product:<product.id>` (its `#[cache_put]`
//!   writer) are one shape, so they share entries; `page-<slug>` and
//!   `page-draft-<slug>` are two.
//! - `at` is the creation time, `exp` the logical expiry (milliseconds since
//!   the Unix epoch, on the writer's `Clock`), `d` how long the load took
//!   (ms, for early refresh). After `exp` the entry is *expired*: served
//!   only as a stale value (`stale`, `fail_safe`), until the key's TTL in
//!   the backend (`exp` plus the longer of the two) removes it.
//! - `tags` lists each tag with the epoch it had *before* the value was
//!   loaded; the entry is valid only while every tag still has that epoch.
//! - `value` is the cached value.
//!
//! A binary codec, or a compressed value, is written as a binary entry
//! with the same fields (`binary.rs`), which says its codec and
//! compression: any reader decodes it, or reads a miss when it was built
//! without them. The two are told apart by their first byte.
//!
//! `invalidate_key` writes a tombstone, `{"v":3,"w":"...","gone":1}`: a
//! miss for readers, and a new head for loads that began before it.

mod binary;
mod json;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{
    compress, is_some_of_null, Codec, Compression, EncodeError, Encoding, MAX_DECOMPRESSED,
};

/// The version written into every JSON entry.
pub(crate) const FORMAT_VERSION: u8 = 3;

/// The length of an entry's head, `{"v":3,"w":"<16 hex digits>"`: it holds
/// the write id, so two writes never share a head (a binary entry's first
/// bytes hold its write id too).
pub(crate) const HEAD_LEN: usize = r#"{"v":3,"w":"0123456789abcdef""#.len();

/// What a load began from, compared by the store: the head of the entry it
/// read, or empty when the key held nothing.
pub(crate) fn head(bytes: Option<&[u8]>) -> &[u8] {
    bytes.map_or(&[], |bytes| &bytes[..bytes.len().min(HEAD_LEN)])
}

/// The entry `invalidate_key` leaves: a miss with a head of its own.
pub(crate) fn tombstone() -> Vec<u8> {
    format!(
        r#"{{"v":{FORMAT_VERSION},"w":"{:016x}","gone":1}}"#,
        rand::random::<u64>()
    )
    .into_bytes()
}

const TOMBSTONE_TAIL: &[u8] = br#","gone":1}"#;

pub(crate) fn is_tombstone(bytes: &[u8]) -> bool {
    bytes.len() == HEAD_LEN + TOMBSTONE_TAIL.len()
        && bytes.first() == Some(&b'{')
        && bytes.ends_with(TOMBSTONE_TAIL)
}

/// The epoch of a tag as read from the backend. On Redis it starts at the
/// server's clock in µs (never at 0: see `scripts/start_epoch.lua`); the
/// embedded backend, which never evicts an epoch before its entries,
/// starts it at 0.
pub(crate) type Epoch = u64;

/// When an entry was written and expires, and how long its load took, in
/// milliseconds (the first two since the Unix epoch, on the cache's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub(crate) at_ms: u64,
    pub(crate) expires_ms: u64,
    pub(crate) load_ms: u64,
}

/// A value read from an entry, with its times.
#[derive(Debug, PartialEq)]
pub(crate) struct Found<T> {
    pub(crate) value: T,
    pub(crate) times: Times,
}

/// What reading an entry found.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded<T> {
    /// The value, valid for the current tag epochs, before its expiry.
    Fresh(Found<T>),
    /// The value, valid for the current tag epochs, past its expiry: only
    /// for `stale` and `fail_safe`.
    Expired(Found<T>),
    /// A well-formed entry invalidated by a tag since it was loaded.
    Stale,
    /// An entry stored under other tags: an entry belongs to one tag set,
    /// and a call of the same key with other tags replaces it.
    OtherTags,
    /// Bytes that are not an entry of this version holding a `T`.
    Invalid,
    /// An entry written by another key template that renders the same key.
    Foreign,
    /// What `invalidate_key` left.
    Gone,
    /// An entry of another format version (written before an upgrade, or
    /// by a newer redcache): a miss, replaced by the next load.
    OtherVersion,
    /// An entry in a codec or compression this build lacks (named): a
    /// miss, replaced by the next load.
    Unreadable(&'static str),
}

impl<T> Decoded<T> {
    /// A valid entry's value: fresh before its expiry, expired after.
    fn found(value: T, times: Times, now_ms: u64) -> Self {
        let found = Found { value, times };
        if now_ms < times.expires_ms {
            Decoded::Fresh(found)
        } else {
            Decoded::Expired(found)
        }
    }
}

/// What an entry is written with, besides its value.
pub(crate) struct Meta<'a> {
    name: &'a str,
    tags: &'a [String],
    epochs: &'a [Epoch],
    times: Times,
}

/// Encodes `value` with the template `name` that writes it, the tags and
/// the epochs they had before loading, and its times, in `encoding`.
pub(crate) fn encode<T: Serialize>(
    value: &T,
    name: &str,
    tags: &[String],
    epochs: &[Epoch],
    times: Times,
    encoding: Encoding,
) -> Result<Vec<u8>, EncodeError> {
    debug_assert_eq!(tags.len(), epochs.len());
    if is_some_of_null(value, encoding.codec == Codec::Json) {
        return Err(EncodeError::SomeOfNull(std::any::type_name::<T>()));
    }
    let meta = Meta {
        name,
        tags,
        epochs,
        times,
    };
    let codec = encoding.codec;
    let (bytes, range) = match codec {
        Codec::Json => json::encode(value, &meta)?,
        #[allow(unreachable_patterns)] // without a binary codec
        _ => binary::encode(value, &meta, codec)?,
    };
    let compresses = |c: &Compression| c.above <= range.len() && range.len() <= MAX_DECOMPRESSED;
    let Some(compression) = encoding.compression.filter(compresses) else {
        return Ok(bytes);
    };
    match compress(compression.compressor, &bytes[range.clone()]) {
        Some(packed) => binary::encode_compressed(
            &meta,
            codec,
            compression.compressor.id(),
            range.len(),
            &packed,
        ),
        None => Ok(bytes),
    }
}

/// Decodes `bytes` and checks it against the template `name`, the tags of
/// the call and their current epochs, and its expiry against `now_ms`.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    name: &str,
    tags: &[String],
    current: &[Epoch],
    now_ms: u64,
) -> Decoded<T> {
    let want = Want {
        name,
        tags,
        current,
        now_ms,
    };
    match bytes.first() {
        Some(&binary::MARKER) => binary::decode(bytes, &want),
        _ if is_tombstone(bytes) => Decoded::Gone,
        _ => json::decode(bytes, &want),
    }
}

/// What a call expects of an entry: its template, its tags and their
/// current epochs; and the time, for the expiry.
struct Want<'a> {
    name: &'a str,
    tags: &'a [String],
    current: &'a [Epoch],
    now_ms: u64,
}

/// About how many bytes an entry's value takes decoded: its stored length,
/// or for a compressed value its length before compression (what the
/// near cache's `max_bytes` counts).
pub(crate) fn expanded_len(bytes: &[u8]) -> usize {
    match bytes.first() {
        Some(&binary::MARKER) => bytes.len().max(binary::raw_len(bytes).unwrap_or(0)),
        _ => bytes.len(),
    }
}

/// Whether an entry of template `k` with `entry_tags` (and the epochs they
/// had) is valid for the call that `want`s it: `None` when it is, else the
/// miss it is.
fn check<'e, T>(
    k: &str,
    entry_tags: impl ExactSizeIterator<Item = (&'e str, Epoch)> + Clone,
    want: &Want<'_>,
) -> Option<Decoded<T>> {
    if !same_shape(k, want.name) {
        return Some(Decoded::Foreign);
    }
    let same_tags = entry_tags.len() == want.tags.len()
        && entry_tags
            .clone()
            .zip(want.tags)
            .all(|((name, _), tag)| name == tag);
    if !same_tags {
        return Some(Decoded::OtherTags);
    }
    let same_epochs = entry_tags
        .zip(want.current)
        .all(|((_, epoch), now)| epoch == *now);
    (!same_epochs).then_some(Decoded::Stale)
}

/// Whether two templates are one shape: the same literal text, and a
/// placeholder wherever the other has one, naming the same last field
/// (`<id>` and `<product.id>` match; `<user_id>` and `<org_id>` do not).
/// Within one shape, different arguments never render the same key
/// (placeholders are apart by `:`, which arguments escape), so a writer
/// (`#[cache_put(key = "product:<product.id>")]`) reaches its reader
/// (`#[cached(key = "product:<id>")]`) and only for the same arguments.
pub(crate) fn same_shape(a: &str, b: &str) -> bool {
    a == b || shape(a).eq(shape(b))
}

/// A piece of a template: a literal character, or a placeholder by the
/// last field it names.
#[derive(PartialEq)]
enum Piece<'a> {
    Char(char),
    Hole(&'a str),
}

/// A template's pieces; a placeholder (`<...>`, nested for a fn path's
/// generics) is one piece; `<<` is a literal `<`.
fn shape(template: &str) -> impl Iterator<Item = Piece<'_>> + '_ {
    let mut rest = template;
    std::iter::from_fn(move || {
        let mut chars = rest.char_indices();
        let (_, c) = chars.next()?;
        if c != '<' {
            rest = &rest[c.len_utf8()..];
            return Some(Piece::Char(c));
        }
        if rest[1..].starts_with('<') {
            rest = &rest[2..];
            return Some(Piece::Char('<'));
        }
        let mut depth = 0;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = i;
                break;
            }
        }
        let inside = &rest[1..end.max(1)];
        rest = rest.get(end + 1..).unwrap_or("");
        let last = inside.rsplit('.').next().unwrap_or(inside);
        Some(Piece::Hole(last))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Times = Times {
        at_ms: 1_000,
        expires_ms: 2_000,
        load_ms: 5,
    };
    const NOW: u64 = 1_500;

    fn fresh<T>(value: T) -> Decoded<T> {
        Decoded::Fresh(Found { value, times: T0 })
    }

    fn tags(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// Every way this build writes entries; compression from the first
    /// byte, so that every value that shrinks is compressed.
    fn encodings() -> Vec<Encoding> {
        let codecs = [
            Codec::Json,
            #[cfg(feature = "msgpack")]
            Codec::MessagePack,
        ];
        let compressions = [
            None,
            #[cfg(feature = "lz4")]
            Some(Compression::lz4().above(0)),
            #[cfg(feature = "zstd")]
            Some(Compression::zstd(3).above(0)),
        ];
        codecs
            .iter()
            .flat_map(|&codec| {
                compressions
                    .iter()
                    .map(move |&compression| Encoding { codec, compression })
            })
            .collect()
    }

    /// A value long enough to compress.
    fn long() -> String {
        "lamp brass oak ".repeat(200)
    }

    fn json<T: Serialize>(value: &T, name: &str, tags: &[String], epochs: &[Epoch]) -> Vec<u8> {
        encode(value, name, tags, epochs, T0, Encoding::default()).unwrap()
    }

    #[test]
    fn round_trip_with_matching_epochs_is_fresh_in_every_encoding() {
        let t = tags(&["category:7"]);
        for encoding in encodings() {
            for value in [vec![1u32, 2], vec![7; 5000]] {
                let bytes = encode(&value, "n", &t, &[3], T0, encoding).unwrap();
                assert_eq!(
                    decode::<Vec<u32>>(&bytes, "n", &t, &[3], NOW),
                    fresh(value.clone()),
                    "{encoding:?}"
                );
            }
        }
    }

    #[test]
    fn the_payload_is_readable_json() {
        let bytes = json(&"lamp", "lamp:<id>", &tags(&["c:1", "d:\"2\""]), &[0, 9]);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(r#"{"v":3,"w":""#), "{text}");
        assert!(
            text[HEAD_LEN..].starts_with(r#","k":"lamp:<id>","at":1000,"exp":2000,"d":5,"#),
            "{text}"
        );
        assert!(
            text.ends_with(r#","tags":[["c:1",0],["d:\"2\"",9]],"value":"lamp"}"#),
            "{text}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["value"], "lamp");
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn a_binary_codec_writes_a_binary_entry_and_small_json_stays_json() {
        let msgpack = Encoding {
            codec: Codec::MessagePack,
            compression: None,
        };
        let bytes = encode(&"lamp", "n", &[], &[], T0, msgpack).unwrap();
        assert_eq!(bytes[0], binary::MARKER);
        assert!(std::str::from_utf8(&bytes).is_err());
        #[cfg(feature = "lz4")]
        {
            let json_lz4 = Encoding {
                codec: Codec::Json,
                compression: Some(Compression::lz4().above(1024)),
            };
            let small = encode(&"lamp", "n", &[], &[], T0, json_lz4).unwrap();
            assert_eq!(small[0], b'{', "below the threshold: plain JSON");
            let large = encode(&long(), "n", &[], &[], T0, json_lz4).unwrap();
            assert_eq!(large[0], binary::MARKER);
            assert!(large.len() < long().len() / 4, "{}", large.len());
        }
    }

    #[test]
    fn an_entry_past_its_expiry_is_expired_with_its_times() {
        for encoding in encodings() {
            let bytes = encode(&long(), "n", &[], &[], T0, encoding).unwrap();
            let found = |now| decode::<String>(&bytes, "n", &[], &[], now);
            assert_eq!(found(1_999), fresh(long()));
            assert_eq!(
                found(2_000),
                Decoded::Expired(Found {
                    value: long(),
                    times: T0
                })
            );
        }
    }

    #[test]
    fn a_bumped_epoch_makes_the_entry_stale() {
        let t = tags(&["a", "b"]);
        for encoding in encodings() {
            let bytes = encode(&1u8, "n", &t, &[0, 5], T0, encoding).unwrap();
            assert_eq!(decode::<u8>(&bytes, "n", &t, &[0, 6], NOW), Decoded::Stale);
        }
    }

    #[test]
    fn an_entry_under_other_tags_is_told_apart_from_a_stale_one() {
        for encoding in encodings() {
            let bytes = encode(&long(), "n", &tags(&["a"]), &[0], T0, encoding).unwrap();
            let read = |t: &[String], e: &[Epoch]| decode::<String>(&bytes, "n", t, e, NOW);
            assert_eq!(read(&tags(&["b"]), &[0]), Decoded::OtherTags);
            assert_eq!(read(&[], &[]), Decoded::OtherTags);
            assert_eq!(read(&tags(&["a", "b"]), &[0, 0]), Decoded::OtherTags);
            assert_eq!(read(&tags(&["a"]), &[1]), Decoded::Stale);
            assert_eq!(read(&tags(&["a"]), &[0]), fresh(long()));
        }
    }

    #[test]
    fn templates_of_one_shape_share_entries_and_others_do_not() {
        assert!(same_shape("product:<id>", "product:<product.id>"));
        assert!(same_shape("p:<a>:<b.c>", "p:<x.a>:<c>"));
        assert!(!same_shape("stats:<user_id>", "stats:<org_id>"));
        assert!(!same_shape("p:<a>:<b>", "p:<b>:<a>"));
        assert!(same_shape("<A as T>::f", "<A as T>::f"));
        assert!(!same_shape("Repo<A>::f", "Repo<B>::f"));
        assert!(same_shape("a<<b:<id>", "a<<b:<x.id>"));
        assert!(!same_shape("page-<slug>", "page-draft-<slug>"));
        assert!(!same_shape("p:<a>:<b>", "p:<a>"));
        assert!(!same_shape("p:<a>", "p:<a>:"));
        assert!(
            !same_shape("a<<b:<id>", "a<b:<id>"),
            "`<<` is a literal `<`"
        );
        assert!(!same_shape("q:<id>", "p:<id>"));
        for encoding in encodings() {
            let bytes = encode(&7u64, "product:<product.id>", &[], &[], T0, encoding).unwrap();
            assert_eq!(
                decode::<u64>(&bytes, "product:<id>", &[], &[], NOW),
                fresh(7)
            );
        }
    }

    #[test]
    fn every_write_has_a_head_of_its_own() {
        for encoding in encodings() {
            let a = encode(&long(), "n", &[], &[], T0, encoding).unwrap();
            let b = encode(&long(), "n", &[], &[], T0, encoding).unwrap();
            let gone = tombstone();
            assert_ne!(head(Some(&a)), head(Some(&b)), "{encoding:?}");
            assert_ne!(head(Some(&a)), head(Some(&gone)));
            assert_eq!(head(Some(&a)).len(), HEAD_LEN);
            assert_eq!(head(Some(&gone)).len(), HEAD_LEN);
        }
        assert_eq!(head(None), b"");
        // The head of a JSON entry ends with the write id's closing quote:
        // nothing of the rest of the entry is in it.
        assert_eq!(head(Some(&json(&1u8, "n", &[], &[]))).last(), Some(&b'"'));
    }

    #[test]
    fn a_tombstone_is_gone_and_other_versions_are_told_apart_from_garbage() {
        assert_eq!(
            decode::<u8>(&tombstone(), "n", &[], &[], NOW),
            Decoded::Gone
        );
        let v2 = br#"{"v":2,"k":"n","at":0,"tags":[],"value":1}"#;
        assert_eq!(decode::<u8>(v2, "n", &[], &[], NOW), Decoded::OtherVersion);
        let v4 = br#"{"v":4,"w":"0123456789abcdef","k":"n","at":0,"tags":[],"value":1}"#;
        assert_eq!(decode::<u8>(v4, "n", &[], &[], NOW), Decoded::OtherVersion);
        for encoding in encodings() {
            let mut bytes = encode(&1u8, "n", &[], &[], T0, encoding).unwrap();
            if bytes[0] == binary::MARKER {
                bytes[1] = 2;
                assert_eq!(
                    decode::<u8>(&bytes, "n", &[], &[], NOW),
                    Decoded::OtherVersion
                );
            }
        }
    }

    #[test]
    fn garbage_and_other_types_are_invalid() {
        assert_eq!(
            decode::<u8>(b"\xff\x00garbage", "n", &[], &[], NOW),
            Decoded::Invalid
        );
        assert_eq!(decode::<u8>(b"42", "n", &[], &[], NOW), Decoded::Invalid);
        assert_eq!(decode::<u8>(b"", "n", &[], &[], NOW), Decoded::Invalid);
        assert_eq!(decode::<u8>(b"\xc1", "n", &[], &[], NOW), Decoded::Invalid);
        for encoding in encodings() {
            let bytes = encode(&"text", "n", &[], &[], T0, encoding).unwrap();
            assert_eq!(decode::<u8>(&bytes, "n", &[], &[], NOW), Decoded::Invalid);
        }
        // This version without its write id: not an entry.
        let no_id = br#"{"v":3,"k":"n","at":0,"tags":[],"value":1}"#;
        assert_eq!(decode::<u8>(no_id, "n", &[], &[], NOW), Decoded::Invalid);
    }

    #[test]
    fn a_cut_or_damaged_binary_entry_is_never_a_hit_nor_a_panic() {
        let t = tags(&["category:7"]);
        for encoding in encodings() {
            let bytes = encode(&long(), "n", &t, &[3], T0, encoding).unwrap();
            if bytes[0] != binary::MARKER {
                continue;
            }
            for len in 0..bytes.len() {
                let cut = decode::<String>(&bytes[..len], "n", &t, &[3], NOW);
                assert!(
                    !matches!(cut, Decoded::Fresh(_)),
                    "{encoding:?} cut at {len}"
                );
            }
            // Every byte of the header, and the first of the value, damaged.
            for at in 0..60.min(bytes.len()) {
                let mut damaged = bytes.clone();
                damaged[at] ^= 0x5a;
                let read = decode::<String>(&damaged, "n", &t, &[3], NOW);
                if let Decoded::Fresh(found) = read {
                    // Only a damaged time or write id can still decode.
                    assert_eq!(found.value, long(), "{encoding:?} byte {at}");
                }
            }
        }
    }

    #[test]
    fn an_entry_this_build_cannot_read_is_named_and_missed() {
        let encoding = encodings().pop().unwrap();
        let mut bytes = encode(&long(), "n", &[], &[], T0, encoding).unwrap();
        if bytes[0] != binary::MARKER {
            // Only JSON in this build: make a binary entry by hand.
            let meta = Meta {
                name: "n",
                tags: &[],
                epochs: &[],
                times: T0,
            };
            bytes = binary::encode(&long(), &meta, Codec::Json).unwrap().0;
        }
        let mut other_codec = bytes.clone();
        other_codec[binary::CODEC_AT] = 77;
        assert_eq!(
            decode::<String>(&other_codec, "n", &[], &[], NOW),
            Decoded::Unreadable("an unknown codec")
        );
        let mut other_compression = bytes.clone();
        other_compression[binary::COMPRESSION_AT] = 77;
        assert_eq!(
            decode::<String>(&other_compression, "n", &[], &[], NOW),
            Decoded::Unreadable("an unknown compressor")
        );
    }

    #[test]
    fn a_compressed_entry_counts_its_expanded_length() {
        for encoding in encodings() {
            let bytes = encode(&long(), "n", &[], &[], T0, encoding).unwrap();
            let len = expanded_len(&bytes);
            assert!(
                len >= long().len() && len <= bytes.len().max(long().len() + 16),
                "{encoding:?}: {len}"
            );
        }
        assert_eq!(expanded_len(b"\xc1\x01"), 2);
    }

    #[test]
    fn an_entry_of_another_template_is_foreign_even_with_the_same_value_type() {
        for encoding in encodings() {
            let bytes = encode(&7u64, "page-<slug>", &[], &[], T0, encoding).unwrap();
            assert_eq!(
                decode::<u64>(&bytes, "page-draft-<slug>", &[], &[], NOW),
                Decoded::Foreign
            );
            assert_eq!(
                decode::<u64>(&bytes, "page-<slug>", &[], &[], NOW),
                fresh(7)
            );
        }
    }
}
