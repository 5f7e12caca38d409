//! A fn whose return type is one of its type parameters (`-> R`) is
//! dispatched where it is written, where nothing says `R` is a `Result`:
//! as a plain value, every return cached. An instance with
//! `R = Result<T, E>` must still never cache, share or write an `Err`.
//!
//! Only the instance knows: [`is_result`] asks its type's name, and
//! [`is_err`] asks a value which variant it is through its `Serialize`
//! (serde writes a `Result` as the newtype variant `Ok` or `Err` of
//! `Result`), with a probe (`serde_probe.rs`) that looks at the top of
//! the value only.

use serde::ser::{Serialize, Serializer};

use crate::serde_probe::{ends_walk, finding};

/// Whether `R` is `core::result::Result` (as `type_name` names it; a
/// user's own type named `Result` is in another path).
pub(crate) fn is_result<R: ?Sized>() -> bool {
    let name = std::any::type_name::<R>();
    name.starts_with("core::result::Result<") || name.starts_with("std::result::Result<")
}

/// Whether `value`, of a type that [`is_result`], holds an `Err`.
pub(crate) fn is_err<R: Serialize + ?Sized>(value: &R) -> bool {
    matches!(value.serialize(Probe), Err(Variant::Err))
}

/// What the probe found (as the serializer's error, which ends the walk).
#[derive(Debug)]
enum Variant {
    Err,
    Other,
}

finding!(Variant, Variant::Other);

struct Probe;

impl Serializer for Probe {
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: &T,
    ) -> Result<(), Variant> {
        Err(match (name, variant) {
            ("Result", "Err") => Variant::Err,
            _ => Variant::Other,
        })
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Variant> {
        Err(Variant::Other)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), Variant> {
        Err(Variant::Other)
    }

    ends_walk!(Variant, Variant::Other;
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    enum Result2 {
        Err(u8),
    }

    /// A user's enum that looks like `Result` from inside serde.
    #[derive(serde::Serialize)]
    #[serde(rename = "Result")]
    enum LookAlike {
        Err(u8),
    }

    #[test]
    fn results_are_told_by_their_type_and_errors_by_their_variant() {
        assert!(is_result::<Result<u8, String>>());
        assert!(is_result::<std::io::Result<()>>());
        assert!(!is_result::<Option<Result<u8, u8>>>());
        assert!(!is_result::<Vec<Result<u8, u8>>>());
        assert!(!is_result::<u8>());
        // serde cannot tell this enum from a `Result`; its type's name can.
        assert!(is_err(&LookAlike::Err(1)) && !is_result::<LookAlike>());

        assert!(is_err(&Err::<u8, String>("no".into())));
        assert!(is_err(&Err::<(), ()>(())));
        assert!(!is_err(&Ok::<u8, String>(1)));
        assert!(
            !is_err(&Ok::<Result<u8, u8>, u8>(Err(1))),
            "an Ok holding an Err is an Ok"
        );
        assert!(!is_err(&Result2::Err(1)));
    }
}
