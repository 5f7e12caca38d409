//! Rendering of cache keys from templates.
//!
//! A template such as `"product:<id>"` is split at compile time by the macros
//! into literal parts and arguments; at run time [`Key`] appends the literals
//! as they are and the arguments escaped. Escaping makes the rendering
//! injective: an argument can never contain a `:` (or any other character
//! with a meaning in a Redis key pattern or in cluster hash tags), so two
//! different calls cannot share a key and an argument cannot reach into the
//! key space of another template.

use std::fmt::{self, Display, Write};

/// A value that may stand for a placeholder in a key or tag template.
///
/// Implemented for every type that implements [`Display`]; the rendered text
/// is escaped (see [`Key::arg`]).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key: it does not implement `Display`",
    label = "used in a key or tag template here",
    note = "name the key explicitly with `key = \"...\"` using fields that implement `Display`, or implement `Display` for `{Self}`"
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
        let mut out = Escaper(&mut self.buf);
        // Writing to a String cannot fail; a Display impl that reports an
        // error leaves whatever it wrote so far, which is still escaped.
        let _ = value.write_key(&mut out);
        self
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

struct Escaper<'a>(&'a mut String);

impl Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if needs_escape(c) {
                let mut utf8 = [0u8; 4];
                for b in c.encode_utf8(&mut utf8).bytes() {
                    write!(self.0, "%{b:02X}")?;
                }
            } else {
                self.0.push(c);
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

    #[test]
    fn non_ascii_text_stays_readable() {
        assert_eq!(Key::new().arg(&"café").finish(), "café");
        assert_eq!(Key::new().arg(&"a\u{a0}b").finish(), "a%C2%A0b");
    }
}
