//! The JSON entry (format version 3): what the default codec writes for a
//! value below the compression threshold, readable in `redis-cli`.

use std::borrow::Cow;
use std::io::Write as _;
use std::ops::Range;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{check, Decoded, Epoch, Meta, Times, Want, FORMAT_VERSION};
use crate::codec::{Codec, EncodeError};

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

/// Only the version, to tell an entry of another format from garbage.
#[derive(Deserialize)]
struct VersionOnly {
    v: u8,
}

/// The entry, and where its value is in it (for compression).
pub(super) fn encode<T: Serialize>(
    value: &T,
    meta: &Meta<'_>,
) -> Result<(Vec<u8>, Range<usize>), EncodeError> {
    let mut out = Vec::with_capacity(128);
    let id = rand::random::<u64>();
    // Writing to a Vec cannot fail.
    let _ = write!(out, r#"{{"v":{FORMAT_VERSION},"w":"{id:016x}","k":"#);
    serde_json::to_writer(&mut out, meta.name).map_err(EncodeError::Json)?;
    let Times {
        at_ms,
        expires_ms,
        load_ms,
    } = meta.times;
    let _ = write!(
        out,
        r#","at":{at_ms},"exp":{expires_ms},"d":{load_ms},"tags":["#
    );
    for (i, (tag, epoch)) in meta.tags.iter().zip(meta.epochs).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        serde_json::to_writer(&mut out, tag).map_err(EncodeError::Json)?;
        let _ = write!(out, ",{epoch}]");
    }
    out.extend_from_slice(br#"],"value":"#);
    let start = out.len();
    Codec::Json.encode_into(value, &mut out)?;
    let end = out.len();
    out.push(b'}');
    Ok((out, start..end))
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8], want: &Want<'_>) -> Decoded<T> {
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
    let entry_tags = entry.tags.iter().map(|(tag, epoch)| (tag.as_ref(), *epoch));
    if let Some(miss) = check(&entry.k, entry_tags, want) {
        return miss;
    }
    let times = Times {
        at_ms: entry.at,
        expires_ms: entry.exp,
        load_ms: entry.d,
    };
    Decoded::found(entry.value, times, want.now_ms)
}
