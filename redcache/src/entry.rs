//! The stored format of a cached value.
//!
//! An entry is a JSON object, readable in `redis-cli`:
//!
//! ```text
//! {"v":1,"at":1764090000123,"tags":[["category:7",3]],"value":{"id":42,"name":"lamp"}}
//! ```
//!
//! - `v` is the format version; any other version is a miss.
//! - `at` is the creation time (milliseconds since the Unix epoch).
//! - `tags` lists each tag with the epoch it had *before* the value was
//!   loaded; the entry is valid only while every tag still has that epoch.
//! - `value` is the cached value, encoded with `serde_json`.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The version written into every entry.
pub(crate) const FORMAT_VERSION: u8 = 1;

/// The epoch of a tag as read from the backend; a tag that was never
/// invalidated (no epoch key) has epoch 0.
pub(crate) type Epoch = u64;

#[derive(Serialize)]
struct EntryRef<'a, T> {
    v: u8,
    at: u64,
    tags: Vec<(&'a str, Epoch)>,
    value: &'a T,
}

#[derive(Deserialize)]
struct EntryOwned<'a, T> {
    v: u8,
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
    /// A well-formed entry invalidated by a tag (or made for other tags).
    Stale,
    /// Bytes that are not an entry of this version holding a `T`.
    Invalid,
}

/// Encodes `value` with the tags and the epochs they had before loading.
pub(crate) fn encode<T: Serialize>(
    value: &T,
    tags: &[String],
    epochs: &[Epoch],
) -> Result<Vec<u8>, serde_json::Error> {
    debug_assert_eq!(tags.len(), epochs.len());
    let entry = EntryRef {
        v: FORMAT_VERSION,
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

/// Decodes `bytes` and checks it against the tags of the call and their
/// current epochs.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
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
    let same_tags = entry.tags.len() == tags.len()
        && entry
            .tags
            .iter()
            .zip(tags.iter().zip(current))
            .all(|((name, epoch), (tag, now))| name == tag && epoch == now);
    if same_tags {
        Decoded::Fresh(entry.value)
    } else {
        Decoded::Stale
    }
}

/// Decodes the value of an entry without checking its tags: for entries a
/// leader of this process just made for the same epochs.
pub(crate) fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let entry: EntryOwned<'_, T> = serde_json::from_slice(bytes).ok()?;
    (entry.v == FORMAT_VERSION).then_some(entry.value)
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
        let bytes = encode(&vec![1u32, 2], &t, &[3]).unwrap();
        assert_eq!(
            decode::<Vec<u32>>(&bytes, &t, &[3]),
            Decoded::Fresh(vec![1, 2])
        );
    }

    #[test]
    fn the_payload_is_readable_json() {
        let bytes = encode(&"lamp", &tags(&["c:1"]), &[0]).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(r#"{"v":1,"at":"#), "{text}");
        assert!(
            text.ends_with(r#","tags":[["c:1",0]],"value":"lamp"}"#),
            "{text}"
        );
    }

    #[test]
    fn a_bumped_epoch_makes_the_entry_stale() {
        let t = tags(&["a", "b"]);
        let bytes = encode(&1u8, &t, &[0, 5]).unwrap();
        assert_eq!(decode::<u8>(&bytes, &t, &[0, 6]), Decoded::Stale);
    }

    #[test]
    fn other_tags_make_the_entry_stale() {
        let bytes = encode(&1u8, &tags(&["a"]), &[0]).unwrap();
        assert_eq!(decode::<u8>(&bytes, &tags(&["b"]), &[0]), Decoded::Stale);
        assert_eq!(decode::<u8>(&bytes, &[], &[]), Decoded::Stale);
    }

    #[test]
    fn garbage_other_types_and_other_versions_are_invalid() {
        assert_eq!(decode::<u8>(b"\xff\x00garbage", &[], &[]), Decoded::Invalid);
        assert_eq!(decode::<u8>(b"42", &[], &[]), Decoded::Invalid);
        let bytes = encode(&"text", &[], &[]).unwrap();
        assert_eq!(decode::<u8>(&bytes, &[], &[]), Decoded::Invalid);
        let v2 = br#"{"v":2,"at":0,"tags":[],"value":1}"#;
        assert_eq!(decode::<u8>(v2, &[], &[]), Decoded::Invalid);
    }
}
