//! The identity of a cached fn: what its default key starts with and what
//! its spans and metrics are named.
//!
//! A fn's own name is not enough (`User::load` and `Order::load` in one
//! module, an inherent and a trait method of one name), so the expansion
//! asks the compiler: a fn item nested in the cached fn's body has the
//! full path of its parent as its type name, impl and trait included.
//!
//! ```text
//! shop::User::load::__redcache_id                  ->  shop::User::load
//! <shop::User as shop::Loader>::load::__redcache_id ->  <shop::User as shop::Loader>::load
//! shop::Repo<_>::get::__redcache_id                ->  shop::Repo<_>::get   (a generic impl)
//! ```
//!
//! The generic parameters of an impl read as `_`; where the fn can name
//! `Self`, [`FnPath::with_self`] puts the real type in their place.

use std::borrow::Cow;
use std::sync::{OnceLock, PoisonError, RwLock};

/// The name of the nested item the expansion declares.
const MARKER: &str = "__redcache_id";

/// The path of one cached fn, computed on its first call. The expansion
/// declares one per fn as a `static` (see [`fn_path!`](crate::__private::fn_path)).
#[derive(Debug, Default)]
pub struct FnId(OnceLock<FnPath>);

impl FnId {
    /// An identity not computed yet.
    pub const fn new() -> Self {
        FnId(OnceLock::new())
    }

    /// The path of the fn whose body declares `item`.
    pub fn get<F>(&'static self, item: &F) -> &'static FnPath {
        let _ = item;
        self.0
            .get_or_init(|| FnPath::parse(std::any::type_name::<F>()))
    }
}

/// A cached fn's path, cleaned of what is not a name.
#[derive(Debug)]
pub struct FnPath {
    path: Box<str>,
    generic_impl: bool,
    /// For a fn of a generic impl: its path for each `Self` met so far, so
    /// a hit does not redo the substitution. The set of `Self` types is the
    /// program's instances of the impl, so it is small and bounded.
    instances: RwLock<Vec<(&'static str, &'static str)>>,
}

impl FnPath {
    /// Cleans the type name of the nested marker item: the marker's own
    /// segment goes, so do compiler-made segments such as `{{closure}}`, and
    /// no `{` or `}` is left (on Redis Cluster they would make a hash tag).
    pub fn parse(type_name: &str) -> Self {
        let trimmed = type_name
            .strip_suffix(MARKER)
            .and_then(|rest| rest.strip_suffix("::"))
            .unwrap_or(type_name);
        let mut path = String::with_capacity(trimmed.len());
        for segment in split_segments(trimmed) {
            if segment.starts_with("{{") {
                continue;
            }
            if !path.is_empty() {
                path.push_str("::");
            }
            path.extend(segment.chars().filter(|c| !matches!(c, '{' | '}')));
        }
        FnPath {
            generic_impl: has_placeholder(&path),
            path: path.into_boxed_str(),
            instances: RwLock::new(Vec::new()),
        }
    }

    /// The path, e.g. `shop::User::load`.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// Whether the fn is in an impl with generic parameters, which its path
    /// shows as `_`: its instances can be told apart only through `Self`.
    pub fn is_generic_impl(&self) -> bool {
        self.generic_impl
    }

    /// The path with `Self`'s type (as `type_name::<Self>()` names it) in
    /// place of the impl's `_` parameters: `shop::Repo<_>::get` for
    /// `Self = shop::Repo<shop::Users>` is `shop::Repo<shop::Users>::get`.
    /// Where the two cannot be matched, `Self` is appended in brackets, so
    /// two instances never share a path. Computed once per `Self`.
    pub fn with_self(&'static self, self_type: &'static str) -> &'static str {
        if !self.generic_impl {
            return &self.path;
        }
        let known = |instances: &[(&'static str, &'static str)]| {
            instances
                .iter()
                .find(|(ty, _)| *ty == self_type)
                .map(|(_, path)| *path)
        };
        let instances = self
            .instances
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(path) = known(&instances) {
            return path;
        }
        drop(instances);
        let mut instances = self
            .instances
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(path) = known(&instances) {
            return path;
        }
        let path: &'static str =
            Box::leak(self.substituted(self_type).into_owned().into_boxed_str());
        instances.push((self_type, path));
        path
    }

    fn substituted(&self, self_type: &str) -> Cow<'_, str> {
        if !self.generic_impl {
            return Cow::Borrowed(&self.path);
        }
        if let Some(path) = substitute_self(&self.path, self_type) {
            if !has_placeholder(&path) {
                return Cow::Owned(path);
            }
        }
        Cow::Owned(format!("{}[{}]", self.path, self_type))
    }
}

/// Splits at `::` outside angle brackets, so `<a::B as c::D>` stays whole.
fn split_segments(path: &str) -> Vec<&str> {
    let mut segments = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' => depth += 1,
            b'>' => depth -= 1,
            b':' if depth == 0 && bytes.get(i + 1) == Some(&b':') => {
                segments.push(&path[start..i]);
                i += 2;
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    segments.push(&path[start..]);
    segments.retain(|s| !s.is_empty());
    segments
}

/// Whether the path has a `_` standing for a type (not inside a name).
fn has_placeholder(path: &str) -> bool {
    let is_name = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    path.char_indices().any(|(i, c)| {
        c == '_'
            && !is_name(path[..i].chars().next_back())
            && !is_name(path[i + 1..].chars().next())
    })
}

/// Replaces the impl type in `path` by `self_type`: the generic arguments
/// that follow its base name (`shop::Repo<_>` -> `shop::Repo<shop::Users>`),
/// or a lone `_` before ` as ` (a blanket impl).
fn substitute_self(path: &str, self_type: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("<_ as ") {
        return Some(format!("<{self_type} as {rest}"));
    }
    let open = self_type.find('<')?;
    let base = &self_type[..open];
    let at = path.find(&format!("{base}<"))? + base.len();
    let close = at + matching_close(&path[at..])?;
    Some(format!(
        "{}{}{}",
        &path[..at],
        &self_type[open..],
        &path[close + 1..]
    ))
}

/// The index of the `>` closing the `<` that `s` starts with.
fn matching_close(s: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_and_compiler_segments_go() {
        let path = FnPath::parse("shop::User::load::__redcache_id");
        assert_eq!(path.as_str(), "shop::User::load");
        assert!(!path.is_generic_impl());
        let path = FnPath::parse("shop::routes::{{closure}}::load::__redcache_id");
        assert_eq!(path.as_str(), "shop::routes::load");
        let path = FnPath::parse("<shop::User as shop::Loader>::load::__redcache_id");
        assert_eq!(path.as_str(), "<shop::User as shop::Loader>::load");
    }

    #[test]
    fn no_brace_survives() {
        for name in [
            "a::{{closure}}::{{constant}}::f::__redcache_id",
            "a::{weird}::f::__redcache_id",
        ] {
            let path = FnPath::parse(name);
            assert!(!path.as_str().contains(['{', '}']), "{path:?}");
        }
    }

    #[test]
    fn impl_generics_are_seen_and_replaced_by_self() {
        let path = FnPath::parse("shop::Repo<_>::get::__redcache_id");
        assert!(path.is_generic_impl());
        assert_eq!(
            path.substituted("shop::Repo<shop::Users>"),
            "shop::Repo<shop::Users>::get"
        );
        let path = FnPath::parse("<shop::Repo<_, _> as shop::Load>::load::__redcache_id");
        assert_eq!(
            path.substituted("shop::Repo<u8, alloc::string::String>"),
            "<shop::Repo<u8, alloc::string::String> as shop::Load>::load"
        );
        let blanket = FnPath::parse("<_ as shop::Load>::load::__redcache_id");
        assert_eq!(blanket.substituted("u64"), "<u64 as shop::Load>::load");
    }

    #[test]
    fn with_self_is_computed_once_per_self_type() {
        let path: &'static FnPath =
            Box::leak(Box::new(FnPath::parse("shop::Repo<_>::get::__redcache_id")));
        let first = path.with_self("shop::Repo<u8>");
        assert_eq!(first, "shop::Repo<u8>::get");
        assert!(std::ptr::eq(first, path.with_self("shop::Repo<u8>")));
        assert_eq!(path.with_self("shop::Repo<u16>"), "shop::Repo<u16>::get");
    }

    #[test]
    fn an_unmatched_self_is_appended() {
        let path = FnPath::parse("shop::Repo<_>::get::__redcache_id");
        assert_eq!(
            path.substituted("other::Thing"),
            "shop::Repo<_>::get[other::Thing]"
        );
    }

    #[test]
    fn names_with_underscores_are_not_placeholders() {
        for name in [
            "my_crate::load_all::__redcache_id",
            "a::_private::f::__redcache_id",
        ] {
            assert!(!FnPath::parse(name).is_generic_impl(), "{name}");
        }
    }
}
