//! The stored format of a cached value.
//!
//! An entry is a JSON object, readable in `redis-cli`:
//!
//! ```text
//! {"v":3,"w":"9f0c2a7d41b3e855","k":"product:<id>","at":1764090000123,"tags":[["category:7",3]],"value":{"id":42,"name":"lamp"}}
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
//! - `value` is the cached value, encoded with `serde_json`.
//!
//! `invalidate_key` writes a tombstone, `{"v":3,"w":"...","gone":1}`: a
//! miss for readers, and a new head for loads that began before it.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The version written into every entry.
pub(crate) const FORMAT_VERSION: u8 = 3;

/// The length of an entry's head, `{"v":3,"w":"<16 hex digits>"`: it holds
/// the write id, so two writes never share a head.
pub(crate) const HEAD_LEN: usize = r#"{"v":3,"w":"0123456789abcdef""#.len();

/// What a load began from, compared by the store: the head of the entry it
/// read, or empty when the key held nothing.
pub(crate) fn head(bytes: Option<&[u8]>) -> &[u8] {
    bytes.map_or(&[], |bytes| &bytes[..bytes.len().min(HEAD_LEN)])
}

/// A random write id, as 16 hex digits.
fn write_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The entry `invalidate_key` leaves: a miss with a head of its own.
pub(crate) fn tombstone() -> Vec<u8> {
    format!(r#"{{"v":{FORMAT_VERSION},"w":"{}","gone":1}}"#, write_id()).into_bytes()
}

const TOMBSTONE_TAIL: &[u8] = br#","gone":1}"#;

pub(crate) fn is_tombstone(bytes: &[u8]) -> bool {
    bytes.len() == HEAD_LEN + TOMBSTONE_TAIL.len() && bytes.ends_with(TOMBSTONE_TAIL)
}

/// The epoch of a tag as read from the backend. On Redis it starts at the
/// server's clock in µs (never at 0: see `scripts/start_epoch.lua`); the
/// embedded backend, which never evicts an epoch before its entries,
/// starts it at 0.
pub(crate) type Epoch = u64;

#[derive(Serialize)]
struct EntryRef<'a, T> {
    v: u8,
    w: String,
    k: &'a str,
    at: u64,
    exp: u64,
    d: u64,
    tags: Vec<(&'a str, Epoch)>,
    value: &'a T,
}

#[derive(Deserialize)]
struct EntryOwned<'a, T> {
    v: u8,
    #[allow(dead_code)] // compared as raw bytes by the store (see `head`)
    #[serde(borrow)]
    w: Cow<'a, str>,
    #[serde(borrow)]
    k: Cow<'a, str>,
    at: u64,
    exp: u64,
    d: u64,
    #[serde(borrow)]
    tags: Vec<(Cow<'a, str>, Epoch)>,
    value: T,
}

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
}

/// Only the version, to tell an entry of another format from garbage.
#[derive(Deserialize)]
struct VersionOnly {
    v: u8,
}

/// Encodes `value` with the template `name` that writes it, the tags and
/// the epochs they had before loading, and its times.
pub(crate) fn encode<T: Serialize>(
    value: &T,
    name: &str,
    tags: &[String],
    epochs: &[Epoch],
    times: Times,
) -> Result<Vec<u8>, serde_json::Error> {
    debug_assert_eq!(tags.len(), epochs.len());
    let entry = EntryRef {
        v: FORMAT_VERSION,
        w: write_id(),
        k: name,
        at: times.at_ms,
        exp: times.expires_ms,
        d: times.load_ms,
        tags: tags
            .iter()
            .map(String::as_str)
            .zip(epochs.iter().copied())
            .collect(),
        value,
    };
    serde_json::to_vec(&entry)
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
    if is_tombstone(bytes) {
        return Decoded::Gone;
    }
    let entry: EntryOwned<'_, T> = match serde_json::from_slice(bytes) {
        Ok(entry) => entry,
        Err(_) => {
            return match serde_json::from_slice::<VersionOnly>(bytes) {
                Ok(VersionOnly { v }) if v != FORMAT_VERSION => Decoded::OtherVersion,
                _ => Decoded::Invalid,
            }
        }
    };
    if entry.v != FORMAT_VERSION {
        return Decoded::OtherVersion;
    }
    if !same_shape(&entry.k, name) {
        return Decoded::Foreign;
    }
    let same_tags = entry.tags.len() == tags.len()
        && entry
            .tags
            .iter()
            .zip(tags)
            .all(|((name, _), tag)| name == tag);
    if !same_tags {
        return Decoded::OtherTags;
    }
    let same_epochs = entry
        .tags
        .iter()
        .zip(current)
        .all(|((_, epoch), now)| epoch == now);
    if !same_epochs {
        return Decoded::Stale;
    }
    let found = Found {
        value: entry.value,
        times: Times {
            at_ms: entry.at,
            expires_ms: entry.exp,
            load_ms: entry.d,
        },
    };
    if now_ms < entry.exp {
        Decoded::Fresh(found)
    } else {
        Decoded::Expired(found)
    }
}

/// Decodes the value of an entry of template `name` without checking its
/// tags: for entries a leader of this process just made for the same epochs.
pub(crate) fn decode_value<T: DeserializeOwned>(bytes: &[u8], name: &str) -> Option<T> {
    let entry: EntryOwned<'_, T> = serde_json::from_slice(bytes).ok()?;
    (entry.v == FORMAT_VERSION && same_shape(&entry.k, name)).then_some(entry.value)
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

    #[test]
    fn round_trip_with_matching_epochs_is_fresh() {
        let t = tags(&["category:7"]);
        let bytes = encode(&vec![1u32, 2], "n", &t, &[3], T0).unwrap();
        assert_eq!(
            decode::<Vec<u32>>(&bytes, "n", &t, &[3], NOW),
            fresh(vec![1, 2])
        );
    }

    #[test]
    fn the_payload_is_readable_json() {
        let bytes = encode(&"lamp", "lamp:<id>", &tags(&["c:1"]), &[0], T0).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(r#"{"v":3,"w":""#), "{text}");
        assert!(
            text[HEAD_LEN..].starts_with(r#","k":"lamp:<id>","at":"#),
            "{text}"
        );
        assert!(
            text.ends_with(r#","tags":[["c:1",0]],"value":"lamp"}"#),
            "{text}"
        );
    }

    #[test]
    fn an_entry_past_its_expiry_is_expired_with_its_times() {
        let bytes = encode(&1u8, "n", &[], &[], T0).unwrap();
        let found = |now| decode::<u8>(&bytes, "n", &[], &[], now);
        assert_eq!(found(1_999), fresh(1));
        assert_eq!(
            found(2_000),
            Decoded::Expired(Found {
                value: 1,
                times: T0
            })
        );
    }

    #[test]
    fn a_bumped_epoch_makes_the_entry_stale() {
        let t = tags(&["a", "b"]);
        let bytes = encode(&1u8, "n", &t, &[0, 5], T0).unwrap();
        assert_eq!(decode::<u8>(&bytes, "n", &t, &[0, 6], NOW), Decoded::Stale);
    }

    #[test]
    fn an_entry_under_other_tags_is_told_apart_from_a_stale_one() {
        let bytes = encode(&1u8, "n", &tags(&["a"]), &[0], T0).unwrap();
        assert_eq!(
            decode::<u8>(&bytes, "n", &tags(&["b"]), &[0], NOW),
            Decoded::OtherTags
        );
        assert_eq!(decode::<u8>(&bytes, "n", &[], &[], NOW), Decoded::OtherTags);
        assert_eq!(
            decode::<u8>(&bytes, "n", &tags(&["a"]), &[1], NOW),
            Decoded::Stale
        );
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
        let bytes = encode(&7u64, "product:<product.id>", &[], &[], T0).unwrap();
        assert_eq!(
            decode::<u64>(&bytes, "product:<id>", &[], &[], NOW),
            fresh(7)
        );
    }

    #[test]
    fn every_write_has_a_head_of_its_own() {
        let a = encode(&1u8, "n", &[], &[], T0).unwrap();
        let b = encode(&1u8, "n", &[], &[], T0).unwrap();
        let gone = tombstone();
        assert_ne!(head(Some(&a)), head(Some(&b)));
        assert_ne!(head(Some(&a)), head(Some(&gone)));
        assert_eq!(head(Some(&a)).len(), HEAD_LEN);
        assert_eq!(head(Some(&gone)).len(), HEAD_LEN);
        assert_eq!(head(None), b"");
        // The head ends with the write id's closing quote: nothing of the
        // rest of the entry is in it.
        assert_eq!(head(Some(&a)).last(), Some(&b'"'));
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
    }

    #[test]
    fn garbage_and_other_types_are_invalid() {
        assert_eq!(
            decode::<u8>(b"\xff\x00garbage", "n", &[], &[], NOW),
            Decoded::Invalid
        );
        assert_eq!(decode::<u8>(b"42", "n", &[], &[], NOW), Decoded::Invalid);
        let bytes = encode(&"text", "n", &[], &[], T0).unwrap();
        assert_eq!(decode::<u8>(&bytes, "n", &[], &[], NOW), Decoded::Invalid);
        // This version without its write id: not an entry.
        let no_id = br#"{"v":3,"k":"n","at":0,"tags":[],"value":1}"#;
        assert_eq!(decode::<u8>(no_id, "n", &[], &[], NOW), Decoded::Invalid);
    }

    #[test]
    fn an_entry_of_another_template_is_foreign_even_with_the_same_value_type() {
        let bytes = encode(&7u64, "page-<slug>", &[], &[], T0).unwrap();
        assert_eq!(
            decode::<u64>(&bytes, "page-draft-<slug>", &[], &[], NOW),
            Decoded::Foreign
        );
        assert_eq!(decode_value::<u64>(&bytes, "page-draft-<slug>"), None);
        assert_eq!(decode_value::<u64>(&bytes, "page-<slug>"), Some(7));
    }
}
