//! Procedural macros of [redcache](https://docs.rs/redcache). Depend on
//! `redcache`, which re-exports them; their expansions call into
//! `redcache::__private`.
//!
//! Layout: `options` parses the attribute into a typed struct, `template`
//! and `duration` check its values, `function` reads the fn signature, and
//! `expand` emits the code. Every mistake is collected in `errors` and
//! reported at once, at its own token.

mod duration;
mod errors;
mod expand;
mod function;
mod options;
mod template;

#[cfg(test)]
mod snapshots;

use proc_macro::TokenStream;

/// Caches the result of an async fn.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Product { id: u64 }
/// # #[derive(Debug)] struct DbError;
/// #[redcache::cached(ttl = 300, key = "product:<id>", tags = ["category:<category_id>"])]
/// async fn get_product(id: u64, category_id: u64) -> Result<Product, DbError> {
///     Ok(Product { id })
/// }
/// ```
///
/// Options:
/// - `ttl` (required): whole seconds (`300`) or a duration string (`"90s"`,
///   `"500ms"`, `"5m"`, `"1h"`, `"1d"`). Zero is an error: every key expires.
/// - `key = "..."`: a template over the parameters, `<name>` or
///   `<name.field>` (`<<` is a literal `<`). Arguments are escaped, so no
///   argument can make two calls share a key. Default: the fn's path and
///   all its arguments, `crate::module::fn_name:arg1:arg2`.
/// - `tags = ["..."]` or `tag = "..."`: templates like `key`, for
///   [`invalidate_tag`](https://docs.rs/redcache/latest/redcache/fn.invalidate_tag.html).
/// - `cache = <expr>`: a `Cache` or `&Cache` to use instead of the global one.
/// - `stampede = "distributed" | "local" | "off"` (default distributed).
/// - `cache_none = true`: for `Option<T>`, cache `None` too.
///
/// `Result<T, E>` caches only `Ok`; `Option<T>` caches only `Some` (unless
/// `cache_none`); any other type is cached as it is. The value type needs
/// `Serialize + DeserializeOwned`.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached(args.into(), item.into()).into()
}

/// Cache-aside for a block that is not a whole fn: a future of the cached
/// `Result`, with the options of `#[cached]` (`key` required, no
/// `cache_none`). Placeholders in templates name variables in scope.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), std::io::Error> {
/// let id = 7;
/// let name: String = redcache::get_or_load!(ttl = "5m", key = "user-name:<id>", async {
///     Ok::<_, std::io::Error>(format!("user {id}"))
/// })
/// .await?;
/// assert_eq!(name, "user 7");
/// # Ok(()) }
/// ```
#[proc_macro]
pub fn get_or_load(input: TokenStream) -> TokenStream {
    expand::get_or_load(input.into()).into()
}

/// Renders a key (or tag) exactly as `#[cached]` renders the same template,
/// with the same escaping: to invalidate one call's entry.
///
/// Placeholders take variables in scope, or `name = value` arguments.
///
/// ```
/// let id = 42;
/// assert_eq!(redcache::key!("product:<id>"), "product:42");
/// assert_eq!(redcache::key!("user:<name>", name = "a:b"), "user:a%3Ab");
/// ```
#[proc_macro]
pub fn key(input: TokenStream) -> TokenStream {
    expand::key(input.into()).into()
}
