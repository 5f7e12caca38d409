//! The stored format of a cached value.
//!
//! An entry is a JSON object, readable in `redis-cli`:
//!
//! ```text
//! {"v":2,"k":"product:<id>","at":1764090000123,"tags":[["category:7",3]],"value":{"id":42,"name":"lamp"}}
//! ```
//!
//! - `v` is the format version; any other version is a miss.
//! - `k` is the key template that wrote the entry (or the fn's path for a
//!   default key). A call of another template that renders the same key
//!   reads a miss, never the other's value.
//! - `at` is the creation time (milliseconds since the Unix epoch).
//! - `tags` lists each tag with the epoch it had *before* the value was
//!   loaded; the entry is valid only while every tag still has that epoch.
//! - `value` is the cached value, encoded with `serde_json`.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The version written into every entry.
pub(crate) const FORMAT_VERSION: u8 = 2;

/// The epoch of a tag as read from the backend; a tag that was never
/// invalidated (no epoch key) has epoch 0.
pub(crate) type Epoch = u64;

#[derive(Serialize)]
struct EntryRef<'a, T> {
    v: u8,
    k: &'a str,
    at: u64,
    tags: Vec<(&'a str, Epoch)>,
    value: &'a T,
}

#[derive(Deserialize)]
struct EntryOwned<'a, T> {
    v: u8,
    #[serde(borrow)]
    k: Cow<'a, str>,
    #[allow(dead_code)] // kept for operators reading entries; the engine does not need it
    at: u64,
    #[serde(borrow)]
    tags: Vec<(Cow<'a, str>, Epoch)>,
    value: T,
}

/// What reading an entry found.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded<T> {
    /// The value, valid for the current tag epochs.
    Fresh(T),
    /// A well-formed entry invalidated by a tag since it was loaded.
    Stale,
    /// An entry stored under other tags: an entry belongs to one tag set,
    /// and a call of the same key with other tags replaces it.
    OtherTags,
    /// Bytes that are not an entry of this version holding a `T`.
    Invalid,
    /// An entry written by another key template that renders the same key.
    Foreign,
}

/// Encodes `value` with the template `name` that writes it, the tags and
/// the epochs they had before loading.
pub(crate) fn encode<T: Serialize>(
    value: &T,
    name: &str,
    tags: &[String],
    epochs: &[Epoch],
) -> Result<Vec<u8>, serde_json::Error> {
    debug_assert_eq!(tags.len(), epochs.len());
    let entry = EntryRef {
        v: FORMAT_VERSION,
        k: name,
        at: now_millis(),
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
/// the call and their current epochs.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    name: &str,
    tags: &[String],
    current: &[Epoch],
) -> Decoded<T> {
    let entry: EntryOwned<'_, T> = match serde_json::from_slice(bytes) {
        Ok(entry) => entry,
        Err(_) => return Decoded::Invalid,
    };
    if entry.v != FORMAT_VERSION {
        return Decoded::Invalid;
    }
    if entry.k != name {
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
    if same_epochs {
        Decoded::Fresh(entry.value)
    } else {
        Decoded::Stale
    }
}

/// Decodes the value of an entry of template `name` without checking its
/// tags: for entries a leader of this process just made for the same epochs.
pub(crate) fn decode_value<T: DeserializeOwned>(bytes: &[u8], name: &str) -> Option<T> {
    let entry: EntryOwned<'_, T> = serde_json::from_slice(bytes).ok()?;
    (entry.v == FORMAT_VERSION && entry.k == name).then_some(entry.value)
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn round_trip_with_matching_epochs_is_fresh() {
        let t = tags(&["category:7"]);
        let bytes = encode(&vec![1u32, 2], "n", &t, &[3]).unwrap();
        assert_eq!(
            decode::<Vec<u32>>(&bytes, "n", &t, &[3]),
            Decoded::Fresh(vec![1, 2])
        );
    }

    #[test]
    fn the_payload_is_readable_json() {
        let bytes = encode(&"lamp", "lamp:<id>", &tags(&["c:1"]), &[0]).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with(r#"{"v":2,"k":"lamp:<id>","at":"#),
            "{text}"
        );
        assert!(
            text.ends_with(r#","tags":[["c:1",0]],"value":"lamp"}"#),
            "{text}"
        );
    }

    #[test]
    fn a_bumped_epoch_makes_the_entry_stale() {
        let t = tags(&["a", "b"]);
        let bytes = encode(&1u8, "n", &t, &[0, 5]).unwrap();
        assert_eq!(decode::<u8>(&bytes, "n", &t, &[0, 6]), Decoded::Stale);
    }

    #[test]
    fn an_entry_under_other_tags_is_told_apart_from_a_stale_one() {
        let bytes = encode(&1u8, "n", &tags(&["a"]), &[0]).unwrap();
        assert_eq!(
            decode::<u8>(&bytes, "n", &tags(&["b"]), &[0]),
            Decoded::OtherTags
        );
        assert_eq!(decode::<u8>(&bytes, "n", &[], &[]), Decoded::OtherTags);
        assert_eq!(
            decode::<u8>(&bytes, "n", &tags(&["a"]), &[1]),
            Decoded::Stale
        );
    }

    #[test]
    fn garbage_other_types_and_other_versions_are_invalid() {
        assert_eq!(
            decode::<u8>(b"\xff\x00garbage", "n", &[], &[]),
            Decoded::Invalid
        );
        assert_eq!(decode::<u8>(b"42", "n", &[], &[]), Decoded::Invalid);
        let bytes = encode(&"text", "n", &[], &[]).unwrap();
        assert_eq!(decode::<u8>(&bytes, "n", &[], &[]), Decoded::Invalid);
        let v1 = br#"{"v":1,"at":0,"tags":[],"value":1}"#;
        assert_eq!(decode::<u8>(v1, "n", &[], &[]), Decoded::Invalid);
        let v3 = br#"{"v":3,"k":"n","at":0,"tags":[],"value":1}"#;
        assert_eq!(decode::<u8>(v3, "n", &[], &[]), Decoded::Invalid);
    }

    #[test]
    fn an_entry_of_another_template_is_foreign_even_with_the_same_value_type() {
        let bytes = encode(&7u64, "page-<slug>", &[], &[]).unwrap();
        assert_eq!(
            decode::<u64>(&bytes, "page-draft-<slug>", &[], &[]),
            Decoded::Foreign
        );
        assert_eq!(decode_value::<u64>(&bytes, "page-draft-<slug>"), None);
        assert_eq!(decode_value::<u64>(&bytes, "page-<slug>"), Some(7));
    }
}
