//! The binary entry: what a binary codec writes, and any codec for a
//! compressed value. A fixed header, then the key template and the tags,
//! then the value, so that an entry of another template or of other tag
//! epochs is turned down before its value is decompressed or decoded.
//!
//! ```text
//! offset  size
//!  0      1     0xC1: never the first byte of a JSON entry, never MessagePack
//!  1      1     the version of this layout
//!  2      8     the write's id, random (inside the head: see `entry::head`)
//! 10      1     the codec: 0 JSON, 1 MessagePack
//! 11      1     the compression: 0 none, 1 lz4, 2 zstd
//! 12      8     `at`   \
//! 20      8     `exp`   > as in the JSON entry, little-endian
//! 28      8     `d`    /
//! 36      4     the value's length before compression
//! 40      4     the key template's length, then the template
//!         4     the number of tags, then for each: 4 length, name, 8 epoch
//!         ...   the value
//! ```
//!
//! Every length is little-endian and checked: bytes that do not parse are
//! [`Decoded::Invalid`], never a panic.

use std::ops::Range;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{check, Decoded, Epoch, Meta, Times, Want, HEAD_LEN};
use crate::codec::{decompress, Codec, EncodeError, UnknownCompressor};

/// The first byte of every binary entry.
pub(super) const MARKER: u8 = 0xC1;
/// The version of this layout.
const VERSION: u8 = 1;
pub(super) const CODEC_AT: usize = 10;
pub(super) const COMPRESSION_AT: usize = 11;
const TIMES_AT: usize = 12;
const RAW_LEN_AT: usize = 36;
const FIXED_LEN: usize = 40;

// The write id is inside the head the store compares.
const _: () = assert!(2 + 8 <= HEAD_LEN && HEAD_LEN <= FIXED_LEN);

/// The entry's header (everything but the value), for a value of `codec`
/// compressed with `compression` (an id), with a placeholder length.
fn header(meta: &Meta<'_>, codec: Codec, compression: u8) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(FIXED_LEN + 64);
    out.extend_from_slice(&[MARKER, VERSION]);
    out.extend_from_slice(&rand::random::<u64>().to_le_bytes());
    out.extend_from_slice(&[codec.id(), compression]);
    for time in [meta.times.at_ms, meta.times.expires_ms, meta.times.load_ms] {
        out.extend_from_slice(&time.to_le_bytes());
    }
    out.extend_from_slice(&[0; 4]);
    put_str(&mut out, meta.name, "the key template")?;
    out.extend_from_slice(&len32(meta.tags.len(), "the tag list")?.to_le_bytes());
    for (tag, epoch) in meta.tags.iter().zip(meta.epochs) {
        put_str(&mut out, tag, "a tag")?;
        out.extend_from_slice(&epoch.to_le_bytes());
    }
    Ok(out)
}

fn len32(len: usize, what: &'static str) -> Result<u32, EncodeError> {
    u32::try_from(len).map_err(|_| EncodeError::TooLong { what, len })
}

fn put_str(out: &mut Vec<u8>, s: &str, what: &'static str) -> Result<(), EncodeError> {
    out.extend_from_slice(&len32(s.len(), what)?.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn set_raw_len(out: &mut [u8], len: usize) -> Result<(), EncodeError> {
    let len = len32(len, "the value")?;
    out[RAW_LEN_AT..FIXED_LEN].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// The entry of an uncompressed value, and where the value is in it.
pub(super) fn encode<T: Serialize>(
    value: &T,
    meta: &Meta<'_>,
    codec: Codec,
) -> Result<(Vec<u8>, Range<usize>), EncodeError> {
    let mut out = header(meta, codec, crate::codec::NONE_ID)?;
    let start = out.len();
    codec.encode_into(value, &mut out)?;
    let end = out.len();
    set_raw_len(&mut out, end - start)?;
    Ok((out, start..end))
}

/// The entry of a value of `codec`, `raw_len` bytes long, stored
/// compressed (with the compressor of id `compression`) as `packed`.
pub(super) fn encode_compressed(
    meta: &Meta<'_>,
    codec: Codec,
    compression: u8,
    raw_len: usize,
    packed: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut out = header(meta, codec, compression)?;
    set_raw_len(&mut out, raw_len)?;
    out.extend_from_slice(packed);
    Ok(out)
}

/// The value's length before compression, from the fixed header.
pub(super) fn raw_len(bytes: &[u8]) -> Option<usize> {
    Cursor(bytes.get(RAW_LEN_AT..FIXED_LEN)?).u32()
}

/// A parsed header, borrowing from the entry.
struct Header<'a> {
    codec: u8,
    compression: u8,
    times: Times,
    raw_len: usize,
    name: &'a str,
    tags: Vec<(&'a str, Epoch)>,
    value: &'a [u8],
}

/// Reads little-endian fields off the front of a slice.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<usize> {
        let bytes = self.take(4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(bytes)).ok()
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = self.u32()?;
        std::str::from_utf8(self.take(len)?).ok()
    }
}

impl<'a> Header<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Header<'a>> {
        let mut cursor = Cursor(bytes);
        let fixed = cursor.take(FIXED_LEN)?;
        let mut times = Cursor(&fixed[TIMES_AT..RAW_LEN_AT]);
        let times = Times {
            at_ms: times.u64()?,
            expires_ms: times.u64()?,
            load_ms: times.u64()?,
        };
        let raw_len = Cursor(&fixed[RAW_LEN_AT..]).u32()?;
        let (codec, compression) = (fixed[CODEC_AT], fixed[COMPRESSION_AT]);
        let name = cursor.str()?;
        let count = cursor.u32()?;
        // Each tag takes at least 12 bytes: a count beyond what is left is
        // corrupt, and allocates nothing.
        if count > cursor.0.len() / 12 {
            return None;
        }
        let mut tags = Vec::with_capacity(count);
        for _ in 0..count {
            tags.push((cursor.str()?, cursor.u64()?));
        }
        Some(Header {
            codec,
            compression,
            times,
            raw_len,
            name,
            tags,
            value: cursor.0,
        })
    }

    /// The value, decompressed and decoded.
    fn value<T: DeserializeOwned>(&self) -> Result<T, Decoded<T>> {
        let Some(codec) = Codec::from_id(self.codec) else {
            return Err(Decoded::Unreadable(codec_name(self.codec)));
        };
        let raw = match decompress(self.compression, self.value, self.raw_len) {
            Ok(raw) => raw,
            Err(UnknownCompressor::Missing(name)) => return Err(Decoded::Unreadable(name)),
            Err(UnknownCompressor::Corrupt) => return Err(Decoded::Invalid),
        };
        codec.decode(&raw).ok_or(Decoded::Invalid)
    }
}

/// The name of a codec this build may lack, for the warning.
fn codec_name(id: u8) -> &'static str {
    match id {
        crate::codec::MESSAGE_PACK_ID => "msgpack",
        _ => "an unknown codec",
    }
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8], want: &Want<'_>) -> Decoded<T> {
    // Another version may lay its header out otherwise: told before parsing.
    if bytes.get(1).is_some_and(|&version| version != VERSION) {
        return Decoded::OtherVersion;
    }
    let Some(header) = Header::parse(bytes) else {
        return Decoded::Invalid;
    };
    if let Some(miss) = check(header.name, header.tags.iter().copied(), want) {
        return miss;
    }
    match header.value() {
        Ok(value) => Decoded::found(value, header.times, want.now_ms),
        Err(miss) => miss,
    }
}
