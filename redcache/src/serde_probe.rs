//! What the crate's probes share: a probe is a `Serializer` that looks at
//! the top of a value only and answers through its error, which ends the
//! walk at once (`codec/null_some.rs`: is it `Some` of something written
//! as null; `private/generic_result.rs`: is it the `Err` of a `Result`).
//! Asking costs a call or two, whatever the value's size.

/// The parts of a probe's `impl Serializer` that end the walk with
/// `$other` (its "something else"): its associated types, the methods
/// named in the list (each taking the listed arguments), and every
/// compound value (sequences, tuples, maps, structs, their variants).
macro_rules! ends_walk {
    ($error:ty, $other:expr; $($name:ident($($arg:ty),*)),* $(,)?) => {
        type Ok = ();
        type Error = $error;
        type SerializeSeq = ::serde::ser::Impossible<(), $error>;
        type SerializeTuple = ::serde::ser::Impossible<(), $error>;
        type SerializeTupleStruct = ::serde::ser::Impossible<(), $error>;
        type SerializeTupleVariant = ::serde::ser::Impossible<(), $error>;
        type SerializeMap = ::serde::ser::Impossible<(), $error>;
        type SerializeStruct = ::serde::ser::Impossible<(), $error>;
        type SerializeStructVariant = ::serde::ser::Impossible<(), $error>;

        $(
            fn $name(self, $(_: $arg),*) -> Result<(), $error> {
                Err($other)
            }
        )*

        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, $error> {
            Err($other)
        }

        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, $error> {
            Err($other)
        }

        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, $error> {
            Err($other)
        }

        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, $error> {
            Err($other)
        }

        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, $error> {
            Err($other)
        }

        fn serialize_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStruct, $error> {
            Err($other)
        }

        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, $error> {
            Err($other)
        }
    };
}

/// What a probe's finding (its serializer's error type) must be: an
/// error, whose `custom` errors (a `Serialize` impl's own) are `$other`.
macro_rules! finding {
    ($error:ty, $other:expr) => {
        impl ::std::fmt::Display for $error {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str("probe")
            }
        }

        impl ::std::error::Error for $error {}

        impl ::serde::ser::Error for $error {
            fn custom<M: ::std::fmt::Display>(_: M) -> Self {
                $other
            }
        }
    };
}

pub(crate) use {ends_walk, finding};
