//! `Some(x)` where `x` is written as null (`Some(())`, `Some(None)`,
//! `Some(Marker)` of a unit struct, `Some(Value::Null)`, and in JSON
//! `Some(f64::NAN)` or an infinity): JSON and MessagePack write it as null,
//! which reads back as `None`. Such a value is not cached: a hit would
//! answer `None` where the function answered `Some`.
//!
//! A probe (`serde_probe.rs`) that follows `Some` and newtype structs,
//! and stops at the first anything else.

use serde::ser::{Serialize, Serializer};

use crate::serde_probe::{ends_walk, finding};

/// Whether `value` is, at its top, `Some` of something written as null;
/// `json`: in JSON, where a float that is not finite is written as null.
pub(crate) fn is_some_of_null<T: Serialize + ?Sized>(value: &T, json: bool) -> bool {
    let probe = Probe {
        in_some: false,
        json,
    };
    matches!(value.serialize(probe), Err(Top::SomeOfNull))
}

/// What the probe found (as the serializer's error, which ends the walk).
#[derive(Debug)]
enum Top {
    SomeOfNull,
    Other,
}

finding!(Top, Top::Other);

struct Probe {
    in_some: bool,
    json: bool,
}

impl Probe {
    fn null(self) -> Result<(), Top> {
        Err(if self.in_some {
            Top::SomeOfNull
        } else {
            Top::Other
        })
    }

    fn float(self, finite: bool) -> Result<(), Top> {
        match finite || !self.json {
            true => Err(Top::Other),
            false => self.null(),
        }
    }
}

impl Serializer for Probe {
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Top> {
        value.serialize(Probe {
            in_some: true,
            ..self
        })
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Top> {
        value.serialize(self)
    }

    fn serialize_none(self) -> Result<(), Top> {
        self.null()
    }

    fn serialize_unit(self) -> Result<(), Top> {
        self.null()
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Top> {
        self.null()
    }

    ends_walk!(Top, Top::Other;
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
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_f32(self, v: f32) -> Result<(), Top> {
        self.float(v.is_finite())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Top> {
        self.float(v.is_finite())
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Top> {
        Err(Top::Other)
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    #[derive(Serialize)]
    struct Marker;

    #[derive(Serialize)]
    struct Wrapped(Option<()>);

    #[derive(Serialize)]
    struct Lamp {
        watts: Option<()>,
    }

    fn is_some_of_null<T: Serialize>(value: &T) -> bool {
        let (json, binary) = (
            super::is_some_of_null(value, true),
            super::is_some_of_null(value, false),
        );
        assert_eq!(json, binary, "only floats tell JSON apart");
        json
    }

    #[test]
    fn a_float_that_is_not_finite_is_null_in_json_only() {
        for float in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(super::is_some_of_null(&Some(float), true));
            assert!(!super::is_some_of_null(&Some(float), false));
            assert!(super::is_some_of_null(&Some(float as f32), true));
            assert!(!super::is_some_of_null(&float, true));
        }
        assert!(!super::is_some_of_null(&Some(1.5f64), true));
        assert_eq!(serde_json::to_string(&Some(f64::NAN)).unwrap(), "null");
    }

    #[test]
    fn some_of_what_is_written_as_null_is_found() {
        assert!(is_some_of_null(&Some(())));
        assert!(is_some_of_null(&Some(None::<u8>)));
        assert!(is_some_of_null(&Some(Marker)));
        assert!(is_some_of_null(&Some(serde_json::Value::Null)));
        assert!(is_some_of_null(&Some(Some(()))));
        assert!(is_some_of_null(&Wrapped(Some(()))));
        assert!(is_some_of_null(&std::sync::Arc::new(Some(()))));
    }

    #[test]
    fn everything_else_is_not() {
        assert!(!is_some_of_null(&None::<()>));
        assert!(!is_some_of_null(&()));
        assert!(!is_some_of_null(&Marker));
        assert!(!is_some_of_null(&Some(0u8)));
        assert!(!is_some_of_null(&Some("")));
        assert!(!is_some_of_null(&Some(Some(1u8))));
        assert!(!is_some_of_null(&Some(vec![()])));
        assert!(!is_some_of_null(&Some(Lamp { watts: Some(()) })));
        assert!(!is_some_of_null(&Wrapped(None)));
        assert!(!is_some_of_null(&vec![Some(())]));
    }
}
