//! How a cached value becomes bytes: the serde format ([`Codec`]) and, for
//! large values, [`Compression`].
//!
//! Every entry says which codec and compression wrote it (see
//! `entry/binary.rs`), so a reader decodes an entry whatever its own
//! settings are, and an entry it cannot decode (a codec or compressor this
//! build was compiled without) is a miss, never garbage.

mod compression;
mod null_some;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use self::compression::Compression;
pub(crate) use self::compression::{
    compress, decompress, UnknownCompressor, MAX_DECOMPRESSED, NONE_ID,
};
pub(crate) use self::null_some::is_some_of_null;

/// The serde format of cached values, per cache
/// ([`CacheBuilder::codec`](crate::CacheBuilder::codec)) or per function
/// (`#[cached(codec = "msgpack")]`).
///
/// - [`Json`](Codec::Json), the default: entries stay readable in
///   `redis-cli`.
/// - [`MessagePack`](Codec::MessagePack) (feature `msgpack`, on by
///   default): smaller, and faster to decode (a 1 MiB string decodes in
///   a quarter of JSON's time). Structs are written as maps with their
///   field names, so every type that round-trips through JSON round-trips
///   here too: `#[serde(untagged)]`, `flatten`, `skip_serializing_if`,
///   `serde_json::Value`.
///
/// Formats without field names (postcard, bincode) are not offered: they
/// cannot read self-describing shapes (`untagged`, `flatten`,
/// `serde_json::Value`), and a field left out by `skip_serializing_if` shifts
/// the fields after it, which with `#[serde(default)]` decodes to another
/// value. Their gain over MessagePack measured 30 ns per small value
/// (`cargo bench -p redcache-benches --bench codecs`).
///
#[cfg_attr(feature = "msgpack", doc = "```")]
#[cfg_attr(not(feature = "msgpack"), doc = "```ignore")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), redcache::Error> {
/// let cache = redcache::Cache::builder()
///     .memory()
///     .codec(redcache::Codec::MessagePack)
///     .build()
///     .await?;
/// # drop(cache); Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// `serde_json`.
    #[default]
    Json,
    /// MessagePack through `rmp-serde`, structs as maps.
    #[cfg(feature = "msgpack")]
    MessagePack,
}

/// A codec's id in an entry.
pub(crate) const JSON_ID: u8 = 0;
pub(crate) const MESSAGE_PACK_ID: u8 = 1;

impl Codec {
    /// The name `codec = "..."` takes, and metrics and logs show.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => "msgpack",
        }
    }

    pub(crate) fn id(self) -> u8 {
        match self {
            Codec::Json => JSON_ID,
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => MESSAGE_PACK_ID,
        }
    }

    /// The codec of an entry's id, if this build has it.
    pub(crate) fn from_id(id: u8) -> Option<Codec> {
        match id {
            JSON_ID => Some(Codec::Json),
            #[cfg(feature = "msgpack")]
            MESSAGE_PACK_ID => Some(Codec::MessagePack),
            _ => None,
        }
    }

    /// Appends `value` to `out`.
    pub(crate) fn encode_into<T: Serialize + ?Sized>(
        self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        match self {
            Codec::Json => serde_json::to_writer(out, value).map_err(EncodeError::Json),
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => {
                let mut serializer = rmp_serde::Serializer::new(out).with_struct_map();
                value
                    .serialize(&mut serializer)
                    .map_err(EncodeError::MessagePack)
            }
        }
    }

    /// Decodes a whole value; `None` for bytes that are not a `T`.
    pub(crate) fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Option<T> {
        match self {
            Codec::Json => serde_json::from_slice(bytes).ok(),
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => rmp_serde::from_slice(bytes).ok(),
        }
    }
}

/// `value` as JSON, for what is stored or sent outside cache entries
/// (session fields, pub/sub messages, stream entries): refused with
/// `Error::Unstorable` when it does not encode, or when it is `Some` of a
/// value written as null, which would be read back as `None`.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> crate::Result<Vec<u8>> {
    if is_some_of_null(value, true) {
        let error = EncodeError::SomeOfNull(std::any::type_name::<T>());
        return Err(crate::Error::Unstorable(error.to_string()));
    }
    serde_json::to_vec(value).map_err(|e| crate::Error::Unstorable(e.to_string()))
}

/// How a cache writes its entries: a codec, and compression above a size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Encoding {
    pub(crate) codec: Codec,
    pub(crate) compression: Option<Compression>,
}

/// A value that could not be written as an entry (reported as
/// `Error::Unstorable`, or counted and warned about on a load).
#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    /// `serde_json` refused the value (a map with non-string keys, a
    /// `Serialize` impl that failed).
    #[error("JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// `rmp-serde` refused the value.
    #[cfg(feature = "msgpack")]
    #[error("MessagePack: {0}")]
    MessagePack(#[source] rmp_serde::encode::Error),
    /// `Some(x)` where `x` is written as null (`Some(())`, `Some(None)`):
    /// it would read back as `None`.
    #[error("a {0} holding Some of a value written as null (Some(()), Some(None), a unit struct) would read back as None")]
    SomeOfNull(&'static str),
    /// A part of the entry is longer than its length field holds.
    #[error("{what} of {len} bytes is longer than an entry holds")]
    TooLong {
        /// What was too long: the key template, a tag, the value.
        what: &'static str,
        /// Its length.
        len: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// The codecs of this build.
    fn codecs() -> Vec<Codec> {
        vec![
            Codec::Json,
            #[cfg(feature = "msgpack")]
            Codec::MessagePack,
        ]
    }

    fn round_trip<T>(codec: Codec, value: &T) -> Option<T>
    where
        T: Serialize + DeserializeOwned,
    {
        let mut bytes = Vec::new();
        codec.encode_into(value, &mut bytes).unwrap();
        codec.decode(&bytes)
    }

    /// Shapes a format without field names gets wrong: an untagged enum,
    /// a flattened map, a field left out, a `serde_json::Value`.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }

    /// Enums in each of serde's representations.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type")]
    enum Internally {
        Lamp { watts: u32 },
        Shade,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "t", content = "c")]
    enum Adjacently {
        Count(u64),
        Name(String),
        Nothing,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Externally {
        Unit,
        Tuple(i64, bool),
        Struct { x: f32 },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Shapes {
        internally: Vec<Internally>,
        adjacently: Vec<Adjacently>,
        externally: Vec<Externally>,
        by_number: std::collections::HashMap<u64, String>,
        unit: (),
        tuple: (u8, String, Option<bool>),
        #[serde(skip_serializing_if = "Option::is_none", default)]
        nickname: Option<String>,
        #[serde(default)]
        age: u32,
        either: Vec<Either>,
        #[serde(flatten)]
        rest: std::collections::BTreeMap<String, serde_json::Value>,
        any: serde_json::Value,
        bytes: Vec<u8>,
        float: f64,
    }

    fn shapes() -> Shapes {
        Shapes {
            internally: vec![Internally::Lamp { watts: 40 }, Internally::Shade],
            adjacently: vec![
                Adjacently::Count(3),
                Adjacently::Name("oak".into()),
                Adjacently::Nothing,
            ],
            externally: vec![
                Externally::Unit,
                Externally::Tuple(-7, true),
                Externally::Struct { x: 0.5 },
            ],
            by_number: [(1, "one".to_string()), (u64::MAX, "max".to_string())].into(),
            unit: (),
            tuple: (1, "a".into(), None),
            nickname: None,
            age: 7,
            either: vec![Either::Number(1), Either::Text("two".into())],
            rest: [("extra".to_string(), serde_json::json!({"a": [1, 2]}))].into(),
            any: serde_json::json!({"n": null, "f": 1.5, "s": "x", "l": [true]}),
            bytes: vec![0, 255, 7],
            float: -0.25,
        }
    }

    #[test]
    fn every_codec_round_trips_the_shapes_json_does() {
        for codec in codecs() {
            assert_eq!(round_trip(codec, &shapes()), Some(shapes()), "{codec:?}");
            let named = Shapes {
                nickname: Some("ada".into()),
                ..shapes()
            };
            assert_eq!(round_trip(codec, &named), Some(named), "{codec:?}");
        }
    }

    #[test]
    fn bytes_of_another_type_do_not_decode() {
        for codec in codecs() {
            let mut bytes = Vec::new();
            codec.encode_into(&"text", &mut bytes).unwrap();
            assert_eq!(codec.decode::<u64>(&bytes), None, "{codec:?}");
            assert_eq!(codec.decode::<Shapes>(b"\xff\x00\x13"), None, "{codec:?}");
        }
    }

    #[test]
    fn messages_and_session_fields_refuse_some_written_as_null() {
        assert_eq!(to_json(&Some(7u8)).unwrap(), b"7");
        assert_eq!(to_json(&None::<u8>).unwrap(), b"null");
        let refused = to_json(&Some(())).unwrap_err();
        assert!(matches!(refused, crate::Error::Unstorable(_)), "{refused}");
        assert!(
            refused.to_string().contains("read back as None"),
            "{refused}"
        );
    }

    #[test]
    fn ids_name_their_codecs() {
        assert_eq!(Codec::from_id(Codec::Json.id()), Some(Codec::Json));
        #[cfg(feature = "msgpack")]
        assert_eq!(
            Codec::from_id(Codec::MessagePack.id()),
            Some(Codec::MessagePack)
        );
        assert_eq!(Codec::from_id(200), None);
    }
}
