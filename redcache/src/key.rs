//! Rendering of cache keys from templates.
//!
//! A template such as `"product:<id>"` is split at compile time by the macros
//! into literal parts and arguments; at run time [`Key`] appends the literals
//! as they are and the arguments escaped. Escaping makes the rendering
//! injective: an argument can never contain a `:` (or any other character
//! with a meaning in a Redis key pattern or in cluster hash tags), so two
//! different calls cannot share a key and an argument cannot reach into the
//! key space of another template.
//!
//! Optional and list arguments ([`KeyList`]) render too: `None` as `%none`
//! and an empty list as `%empty` (a `%` followed by a lowercase letter,
//! which no escaped argument contains), list elements escaped and joined by
//! `,` (escaped inside an element). So `None`, `Some("")` and
//! `Some("%none")`, or `[]`, `[""]` and `["a,b"]` vs `["a", "b"]`, all
//! render differently.

use std::collections::{BTreeSet, VecDeque};
use std::fmt::{self, Display, Write};
use std::rc::Rc;
use std::sync::Arc;

/// A value that may stand for a placeholder in a key or tag template.
///
/// Implemented for every type that implements [`Display`]; the rendered text
/// is escaped (see [`Key::arg`]).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key: it does not implement `Display`",
    label = "used in a key or tag template here",
    note = "name the key explicitly with `key = \"...\"` using fields that implement `Display`, or implement `Display` for `{Self}` (an `Option`, `Vec` or slice of `Display` values works too)"
)]
pub trait KeyArg {
    /// Writes the value, unescaped, to `out`.
    fn write_key(&self, out: &mut dyn Write) -> fmt::Result;
}

impl<T: Display + ?Sized> KeyArg for T {
    fn write_key(&self, out: &mut dyn Write) -> fmt::Result {
        write!(out, "{self}")
    }
}

/// Builds a key from literal parts and escaped arguments.
///
/// This is what `#[cached]` and [`key!`](crate::key) expand to, and it is
/// public so that the rendering can be reproduced by hand:
///
/// ```
/// use redcache::Key;
/// let key = Key::new().lit("user:").arg(&"a:b c").finish();
/// assert_eq!(key, "user:a%3Ab%20c");
/// assert_eq!(key, redcache::key!("user:<name>", name = "a:b c"));
/// ```
#[derive(Debug, Default, Clone)]
pub struct Key {
    buf: String,
}

impl Key {
    /// An empty key.
    pub fn new() -> Self {
        Key {
            buf: String::with_capacity(48),
        }
    }

    /// Appends a literal part of the template, unchanged.
    pub fn lit(mut self, part: &str) -> Self {
        self.buf.push_str(part);
        self
    }

    /// Appends an argument. Characters that have a meaning in a key are
    /// percent-encoded: `%`, `:`, `*`, `?`, `[`, `]`, `{`, `}`, `\`,
    /// whitespace and control characters.
    pub fn arg<T: KeyArg + ?Sized>(mut self, value: &T) -> Self {
        write_escaped(&mut self.buf, value, false);
        self
    }

    /// Appends an optional or list argument (see [`KeyList`]).
    ///
    /// ```
    /// use redcache::Key;
    /// assert_eq!(Key::new().list(&Some("a:b")).finish(), "a%3Ab");
    /// assert_eq!(Key::new().list(&None::<u64>).finish(), "%none");
    /// assert_eq!(Key::new().list(&vec!["a,b", "c"]).finish(), "a%2Cb,c");
    /// assert_eq!(Key::new().list(&Vec::<u64>::new()).finish(), "%empty");
    /// ```
    pub fn list<L: KeyList + ?Sized>(mut self, value: &L) -> Self {
        value.write_list(&mut self.buf);
        self
    }

    /// Appends a part chosen by the expansion's dispatch (an argument or a
    /// list), see `__private::key_part!`.
    #[doc(hidden)]
    pub fn part(self, part: impl KeyPart) -> Self {
        part.append_to(self)
    }

    /// Appends the generic arguments of a generic fn, `::<A, B>`: types as
    /// `type_name` names them, consts as they display. A default key needs
    /// them, or `f::<A>(1)` and `f::<B>(1)` would share an entry.
    #[doc(hidden)]
    pub fn generics(mut self, args: &[&dyn Display]) -> Self {
        self.buf.push_str("::<");
        for (i, arg) in args.iter().enumerate() {
            if i > 0 {
                self.buf.push_str(", ");
            }
            let _ = write!(self.buf, "{arg}");
        }
        self.buf.push('>');
        self
    }

    /// The rendered key.
    pub fn finish(self) -> String {
        self.buf
    }
}

/// An optional or list argument of a key: `Option<T>`, `Vec<T>`, `[T]`,
/// `[T; N]`, `VecDeque<T>` and `BTreeSet<T>` of [`KeyArg`] elements, and
/// references, `Box`, `Rc` and `Arc` of them. (Not `HashSet`: its order
/// differs between processes, so the same set would render two keys.)
///
/// `None` renders as `%none`, `Some(v)` as `v`; a list as its elements,
/// escaped (`,` too) and joined by `,`; an empty list as `%empty`.
pub trait KeyList {
    /// Writes the rendered (escaped) list to `out`.
    fn write_list(&self, out: &mut String);
}

impl<T: KeyArg> KeyList for Option<T> {
    fn write_list(&self, out: &mut String) {
        match self {
            Some(value) => write_escaped(out, value, false),
            None => out.push_str("%none"),
        }
    }
}

impl<T: KeyArg> KeyList for [T] {
    fn write_list(&self, out: &mut String) {
        write_elements(out, self.iter());
    }
}

impl<T: KeyArg, const N: usize> KeyList for [T; N] {
    fn write_list(&self, out: &mut String) {
        write_elements(out, self.iter());
    }
}

impl<T: KeyArg> KeyList for Vec<T> {
    fn write_list(&self, out: &mut String) {
        write_elements(out, self.iter());
    }
}

impl<T: KeyArg> KeyList for VecDeque<T> {
    fn write_list(&self, out: &mut String) {
        write_elements(out, self.iter());
    }
}

impl<T: KeyArg> KeyList for BTreeSet<T> {
    fn write_list(&self, out: &mut String) {
        write_elements(out, self.iter());
    }
}

macro_rules! key_list_through {
    ($($ptr:ty),*) => {$(
        impl<L: KeyList + ?Sized> KeyList for $ptr {
            fn write_list(&self, out: &mut String) {
                (**self).write_list(out);
            }
        }
    )*};
}

key_list_through!(&L, &mut L, Box<L>, Rc<L>, Arc<L>);

fn write_elements<'a, T: KeyArg + 'a>(out: &mut String, elements: impl Iterator<Item = &'a T>) {
    let mut count = 0;
    for element in elements {
        if count > 0 {
            out.push(',');
        }
        write_escaped(out, element, true);
        count += 1;
    }
    // `[""]` renders empty; no element at all must differ from it.
    if count == 0 {
        out.push_str("%empty");
    }
}

fn write_escaped<T: KeyArg + ?Sized>(out: &mut String, value: &T, in_list: bool) {
    // Writing to a String cannot fail; a Display impl that reports an
    // error leaves whatever it wrote so far, which is still escaped.
    let _ = value.write_key(&mut Escaper { out, in_list });
}

/// What [`Key::part`] appends: chosen on the argument's concrete type by
/// the expansion (`__private::key_part!`), a list when it is a [`KeyList`],
/// else an argument that must be a [`KeyArg`].
#[doc(hidden)]
pub trait KeyPart {
    fn append_to(self, key: Key) -> Key;
}

/// An argument appended with [`Key::arg`].
#[doc(hidden)]
pub struct ArgPart<'a>(pub &'a dyn KeyArg);

impl KeyPart for ArgPart<'_> {
    fn append_to(self, key: Key) -> Key {
        key.arg(self.0)
    }
}

/// An integer argument, written with `itoa` rather than `Display`
/// (the same text: digits and `-` need no escaping), since most keys are
/// ids and the formatting machinery would be most of their rendering.
#[doc(hidden)]
pub struct IntPart<T>(pub T);

impl<T: itoa::Integer> KeyPart for IntPart<T> {
    fn append_to(self, mut key: Key) -> Key {
        key.buf.push_str(itoa::Buffer::new().format(self.0));
        key
    }
}

/// A list appended with [`Key::list`].
#[doc(hidden)]
pub struct ListPart<'a, T: ?Sized>(pub &'a T);

impl<T: KeyList + ?Sized> KeyPart for ListPart<'_, T> {
    fn append_to(self, key: Key) -> Key {
        key.list(self.0)
    }
}

struct Escaper<'a> {
    out: &'a mut String,
    /// Inside a list, `,` separates elements, so it is escaped too.
    in_list: bool,
}

impl Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if needs_escape(c) || (self.in_list && c == ',') {
                let mut utf8 = [0u8; 4];
                for b in c.encode_utf8(&mut utf8).bytes() {
                    write!(self.out, "%{b:02X}")?;
                }
            } else {
                self.out.push(c);
            }
        }
        Ok(())
    }
}

fn needs_escape(c: char) -> bool {
    matches!(c, '%' | ':' | '*' | '?' | '[' | ']' | '{' | '}' | '\\')
        || c.is_whitespace()
        || c.is_control()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_pass_through_and_arguments_are_escaped() {
        let key = Key::new()
            .lit("p:")
            .arg(&"x:y*{z}\n%")
            .lit(":")
            .arg(&42u64)
            .finish();
        assert_eq!(key, "p:x%3Ay%2A%7Bz%7D%0A%25:42");
    }

    #[test]
    fn separators_in_arguments_cannot_merge_two_calls() {
        let a = Key::new().lit("k:").arg(&"1:2").lit(":").arg(&"3").finish();
        let b = Key::new().lit("k:").arg(&"1").lit(":").arg(&"2:3").finish();
        assert_ne!(a, b);
    }

    #[test]
    fn escape_is_injective_on_percent() {
        let a = Key::new().arg(&"%3A").finish();
        let b = Key::new().arg(&":").finish();
        assert_ne!(a, b);
        assert_eq!(a, "%253A");
    }

    fn list<L: KeyList + ?Sized>(value: &L) -> String {
        Key::new().list(value).finish()
    }

    #[test]
    fn options_render_none_apart_from_every_some() {
        let none = list(&None::<&str>);
        assert_eq!(none, "%none");
        for some in ["", "none", "%none", "%25none", "null"] {
            assert_ne!(list(&Some(some)), none, "Some({some:?})");
        }
        assert_eq!(list(&Some("a:b")), "a%3Ab");
        assert_eq!(list(&Some(7u64)), Key::new().arg(&7u64).finish());
    }

    #[test]
    fn lists_render_apart_by_element_boundaries() {
        let renders = [
            list::<[&str]>(&[]),
            list(&[""]),
            list(&["", ""]),
            list(&["a,b"]),
            list(&["a", "b"]),
            list(&["a", "b,"]),
            list(&["a", "b", ""]),
            list(&["%empty"]),
            list(&[","]),
        ];
        for (i, a) in renders.iter().enumerate() {
            for b in &renders[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(list(&vec![1u8, 2, 3]), "1,2,3");
        assert_eq!(list(&["a:b", "c d"]), "a%3Ab,c%20d");
    }

    #[test]
    fn every_list_shape_renders_its_elements_in_order() {
        let expected = "3,1,2";
        assert_eq!(list(&vec![3, 1, 2]), expected);
        assert_eq!(list(&[3, 1, 2][..]), expected);
        assert_eq!(list(&VecDeque::from([3, 1, 2])), expected);
        assert_eq!(list(&Box::new([3, 1, 2])), expected);
        assert_eq!(list(&Arc::<[u32]>::from(vec![3, 1, 2])), expected);
        assert_eq!(list(&&vec![3, 1, 2]), expected);
        assert_eq!(list(&BTreeSet::from([3, 1, 2])), "1,2,3");
    }

    #[test]
    fn integers_render_as_display_renders_them() {
        macro_rules! same {
            ($($value:expr),*) => {$(
                let fast = Key::new().part(crate::__redcache_key_part!($value)).finish();
                assert_eq!(fast, Key::new().arg(&$value).finish());
                assert_eq!(fast, $value.to_string());
            )*};
        }
        same!(
            0u8,
            255u8,
            -128i8,
            u64::MAX,
            i64::MIN,
            -1i32,
            u128::MAX,
            i128::MIN,
            42usize,
            -7isize
        );
        // A reference to an integer, a string and a list take their own paths.
        let id = 7u64;
        let by_ref = &id;
        assert_eq!(
            Key::new()
                .part(crate::__redcache_key_part!(by_ref))
                .finish(),
            "7"
        );
        assert_eq!(
            Key::new().part(crate::__redcache_key_part!("a:b")).finish(),
            "a%3Ab"
        );
        assert_eq!(
            Key::new()
                .part(crate::__redcache_key_part!(vec![1, 2]))
                .finish(),
            "1,2"
        );
    }

    #[test]
    fn non_ascii_text_stays_readable() {
        assert_eq!(Key::new().arg(&"café").finish(), "café");
        assert_eq!(Key::new().arg(&"a\u{a0}b").finish(), "a%C2%A0b");
    }
}
