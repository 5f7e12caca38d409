//! Compression of large values: lz4 (feature `lz4`, pure Rust) or zstd
//! (feature `zstd`).

use std::borrow::Cow;

/// Compression of values above a size, for
/// [`CacheBuilder::compression`](crate::CacheBuilder::compression).
///
/// A value whose encoding is at least [`above`](Self::above) bytes (16 KiB
/// by default) is compressed, and stored compressed only when that made it
/// smaller. The entry says so, so every reader decompresses it, whatever
/// its own settings; a reader built without the compressor's feature reads
/// a miss. `max_value_size` applies to the stored, compressed bytes.
///
/// Measured on a 19 KB JSON page of 40 catalogue items
/// (`cargo bench -p redcache-benches --bench codecs`): lz4 2.5× smaller,
/// 28 µs to compress, 10 µs to decompress; zstd level 3 4.7× smaller,
/// 77 µs and 37 µs. lz4 when CPU matters more than memory, zstd when the
/// Redis memory or the network is the limit.
///
#[cfg_attr(feature = "zstd", doc = "```")]
#[cfg_attr(not(feature = "zstd"), doc = "```ignore")]
/// use redcache::Compression;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), redcache::Error> {
/// let cache = redcache::Cache::builder()
///     .memory()
///     .compression(Compression::zstd(3).above(32 * 1024))
///     .build()
///     .await?;
/// # drop(cache); Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    pub(crate) compressor: Compressor,
    pub(crate) above: usize,
}

/// The compressors this build has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compressor {
    #[cfg(feature = "lz4")]
    Lz4,
    /// With its level.
    #[cfg(feature = "zstd")]
    Zstd(i32),
}

/// A compressor's id in an entry (0: not compressed).
pub(crate) const NONE_ID: u8 = 0;
const LZ4_ID: u8 = 1;
const ZSTD_ID: u8 = 2;

/// The most bytes a compressed value may grow to. A writer does not
/// compress a larger value (it is stored as it is, and `max_value_size`
/// decides), and a reader refuses more, so a corrupt length cannot make
/// it allocate without bound.
pub(crate) const MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;

impl Compression {
    /// The size from which values are compressed by default: below it,
    /// the saving per key is small next to Redis' own per-key overhead,
    /// and short texts compress poorly without a dictionary.
    pub const DEFAULT_ABOVE: usize = 16 * 1024;

    /// lz4 (`lz4_flex`): fast, about 2.5× on JSON.
    #[cfg(feature = "lz4")]
    pub fn lz4() -> Self {
        Compression {
            compressor: Compressor::Lz4,
            above: Self::DEFAULT_ABOVE,
        }
    }

    /// zstd at `level` (1 to 22, others are taken as the nearest; 3 is
    /// zstd's own default): about 4.5× on
    /// JSON, at three times lz4's cost.
    #[cfg(feature = "zstd")]
    pub fn zstd(level: i32) -> Self {
        Compression {
            compressor: Compressor::Zstd(level.clamp(1, 22)),
            above: Self::DEFAULT_ABOVE,
        }
    }

    /// Compress values whose encoding is at least `bytes` long.
    pub fn above(mut self, bytes: usize) -> Self {
        self.above = bytes;
        self
    }

    /// The compressor's name: `"lz4"` or `"zstd"`.
    pub fn name(&self) -> &'static str {
        self.compressor.name()
    }
}

impl Compressor {
    fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "lz4")]
            Compressor::Lz4 => "lz4",
            #[cfg(feature = "zstd")]
            Compressor::Zstd(_) => "zstd",
        }
    }

    pub(crate) fn id(self) -> u8 {
        match self {
            #[cfg(feature = "lz4")]
            Compressor::Lz4 => LZ4_ID,
            #[cfg(feature = "zstd")]
            Compressor::Zstd(_) => ZSTD_ID,
        }
    }
}

/// `bytes` compressed, or `None` when that did not make them smaller.
#[cfg_attr(
    not(any(feature = "lz4", feature = "zstd")),
    allow(unreachable_code, unused_variables)
)] // a build without compressors
pub(crate) fn compress(compressor: Compressor, bytes: &[u8]) -> Option<Vec<u8>> {
    let compressed: Vec<u8> = match compressor {
        #[cfg(feature = "lz4")]
        Compressor::Lz4 => lz4_flex::block::compress(bytes),
        #[cfg(feature = "zstd")]
        Compressor::Zstd(level) => zstd_context::compress(bytes, level)?,
    };
    (compressed.len() < bytes.len()).then_some(compressed)
}

/// Why a stored value could not be decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnknownCompressor {
    /// Bytes that are not what the entry says.
    Corrupt,
    /// A compressor this build does not have (its feature is off, or a
    /// newer redcache wrote it).
    Missing(&'static str),
}

/// A stored value of `raw_len` bytes before compression, decompressed
/// with the compressor of `id`.
#[cfg_attr(
    not(any(feature = "lz4", feature = "zstd")),
    allow(unreachable_code, unused_variables)
)] // a build without compressors
pub(crate) fn decompress(
    id: u8,
    bytes: &[u8],
    raw_len: usize,
) -> Result<Cow<'_, [u8]>, UnknownCompressor> {
    if id == NONE_ID {
        return match bytes.len() == raw_len {
            true => Ok(Cow::Borrowed(bytes)),
            false => Err(UnknownCompressor::Corrupt),
        };
    }
    if raw_len > MAX_DECOMPRESSED {
        return Err(UnknownCompressor::Corrupt);
    }
    let raw: Option<Vec<u8>> = match id {
        #[cfg(feature = "lz4")]
        LZ4_ID => {
            // lz4 grows a block at most 255-fold: a larger length is corrupt,
            // and is refused before anything is allocated for it.
            if raw_len > bytes.len().saturating_mul(255).saturating_add(16) {
                return Err(UnknownCompressor::Corrupt);
            }
            lz4_flex::block::decompress(bytes, raw_len).ok()
        }
        #[cfg(not(feature = "lz4"))]
        LZ4_ID => return Err(UnknownCompressor::Missing("lz4")),
        #[cfg(feature = "zstd")]
        ZSTD_ID => zstd_context::decompress(bytes, raw_len),
        #[cfg(not(feature = "zstd"))]
        ZSTD_ID => return Err(UnknownCompressor::Missing("zstd")),
        _ => return Err(UnknownCompressor::Missing("an unknown compressor")),
    };
    match raw {
        Some(raw) if raw.len() == raw_len => Ok(Cow::Owned(raw)),
        _ => Err(UnknownCompressor::Corrupt),
    }
}

/// zstd with a context per thread: making one costs more than
/// compressing a small value.
#[cfg(feature = "zstd")]
mod zstd_context {
    use std::cell::RefCell;

    thread_local! {
        static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { RefCell::new(None) };
        static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { RefCell::new(None) };
    }

    pub(super) fn compress(bytes: &[u8], level: i32) -> Option<Vec<u8>> {
        COMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.as_ref().is_none_or(|(at, _)| *at != level) {
                *cell = Some((level, zstd::bulk::Compressor::new(level).ok()?));
            }
            let (_, compressor) = cell.as_mut()?;
            compressor.compress(bytes).ok()
        })
    }

    pub(super) fn decompress(bytes: &[u8], raw_len: usize) -> Option<Vec<u8>> {
        // The frame says its size too (the bulk compressor writes it): bytes
        // that do not agree with the entry are refused before anything is
        // allocated for them.
        let framed = zstd::zstd_safe::get_frame_content_size(bytes).ok()??;
        if usize::try_from(framed).ok()? != raw_len {
            return None;
        }
        DECOMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                *cell = Some(zstd::bulk::Decompressor::new().ok()?);
            }
            cell.as_mut()?.decompress(bytes, raw_len).ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compressors() -> Vec<Compressor> {
        vec![
            #[cfg(feature = "lz4")]
            Compressor::Lz4,
            #[cfg(feature = "zstd")]
            Compressor::Zstd(3),
        ]
    }

    fn text(len: usize) -> Vec<u8> {
        let words = ["lamp ", "brass ", "oak ", "reading ", "{\"id\":", "42}, "];
        words
            .iter()
            .cycle()
            .flat_map(|w| w.bytes())
            .take(len)
            .collect()
    }

    #[test]
    fn compressed_values_come_back_whole() {
        for compressor in compressors() {
            let raw = text(50_000);
            let packed = compress(compressor, &raw).expect("text compresses");
            assert!(packed.len() < raw.len() / 2, "{compressor:?}");
            let back = decompress(compressor.id(), &packed, raw.len()).unwrap();
            assert_eq!(back.as_ref(), raw.as_slice(), "{compressor:?}");
        }
    }

    #[test]
    fn what_does_not_shrink_is_left_alone() {
        for compressor in compressors() {
            let noise: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
            assert_eq!(compress(compressor, &noise), None, "{compressor:?}");
        }
    }

    #[test]
    fn corrupt_data_and_lying_lengths_are_refused() {
        for compressor in compressors() {
            let raw = text(20_000);
            let packed = compress(compressor, &raw).unwrap();
            let id = compressor.id();
            let corrupt = Err(UnknownCompressor::Corrupt);
            assert_eq!(decompress(id, &packed, raw.len() - 1), corrupt);
            assert_eq!(decompress(id, &packed, raw.len() + 1), corrupt);
            assert_eq!(decompress(id, &packed, MAX_DECOMPRESSED + 1), corrupt);
            assert_eq!(decompress(id, &packed, usize::MAX), corrupt);
            assert_eq!(
                decompress(id, &packed[..packed.len() / 2], raw.len()),
                corrupt
            );
            assert_eq!(decompress(id, b"\xff\xff\xff\xff garbage", 1000), corrupt);
        }
        assert_eq!(
            decompress(NONE_ID, b"abc", 4),
            Err(UnknownCompressor::Corrupt)
        );
        assert_eq!(
            decompress(NONE_ID, b"abc", 3).unwrap().as_ref(),
            b"abc".as_slice()
        );
        assert_eq!(
            decompress(9, b"abc", 3),
            Err(UnknownCompressor::Missing("an unknown compressor"))
        );
    }
}
