//! Procedural macros of [redcache](https://docs.rs/redcache). Depend on
//! `redcache`, which re-exports them; their expansions call into
//! `redcache::__private`.
//!
//! A pipeline: `attr` parses the arguments into one typed struct per macro
//! (with `options`, `template` and `duration` for their values), `ast` reads the fn
//! signature (the names its parameters bind, whether it can name `Self`,
//! its generics), `valid` checks the two against each other, and
//! `expand/` emits the code, one file per macro, with what they share in
//! `emit`. Every mistake is collected in `errors` and reported at once, at
//! its own token. Dependencies point one way: `expand` -> `valid`, `emit`
//! -> `ast`, `attr`, `options`, `template`.

mod ast;
mod attr;
mod duration;
mod emit;
mod errors;
mod expand;
mod options;
mod template;
mod valid;

#[cfg(test)]
mod snapshots;

use proc_macro::TokenStream;

/// Caches the result of an async fn.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Serialize, Deserialize)] struct Product { id: u64 }
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
/// - `key = "..."`: a template over the parameters (or the names a pattern
///   parameter binds), `<name>` or `<name.field>` (`<<` is a literal `<`).
///   It must name every parameter (one named in a tag counts), and two
///   placeholders must be apart by a `:`: arguments are escaped, so two
///   calls share a key only with the same arguments. Default: the fn's
///   path as the compiler names it (impl, trait and generic arguments
///   included) and its arguments, `crate::module::Type::fn_name:arg1:arg2`.
/// - `ignore = [name, ...]`: parameters that do not change the result, left
///   out of the key (a name starting with `_` is left out too). `self` is
///   never in a key unless a placeholder names it.
/// - `tags = ["..."]` or `tag = "..."`: templates like `key`, for
///   [`invalidate_tag`](https://docs.rs/redcache/latest/redcache/fn.invalidate_tag.html).
/// - `cache = <expr>`: a `Cache` or `&Cache` to use instead of the global one.
/// - `stampede = "distributed" | "local" | "off"` (default distributed).
/// - `cache_none = true`: for `Option<T>`, cache `None` too.
/// - `stale = "10m"`: after `ttl`, answer with the expired value for up to
///   this long while one refresh runs in the background.
/// - `early_refresh = true` (or a β > 0): refresh in the background before
///   the expiry (XFetch).
/// - `fail_safe = "1h"`: when the load fails, answer with a value expired
///   no longer than this ago.
/// - `timeout = "100ms"` (with `fail_safe`): a slower load is answered with
///   the expired value and finishes in the background.
/// - `hard_timeout = "2s"`: a slower load fails with `LoadTimeout` (the
///   error type needs `From<redcache::LoadTimeout>`).
/// - `jitter = "10%"`: spread each entry's ttl by up to this fraction.
///
/// With `stale`, `early_refresh` or `timeout` the load may finish after the call
/// returned, so the body must own what it uses (`Send + 'static`).
///
/// `Result<T, E>` caches only `Ok`; `Option<T>` caches only `Some` (unless
/// `cache_none`); any other type is cached as it is, decided on the real
/// type (an alias of `Result` is a `Result`). The value type needs
/// `Serialize + DeserializeOwned`.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::attribute(expand::Attr::Cached, args.into(), item.into()).into()
}

/// Limits how often an async fn runs: when a limit is reached, the body
/// does not run and the fn returns `Err(RateLimited.into())`.
///
/// ```
/// # #[derive(Debug)] struct ApiError;
/// # impl From<redcache::RateLimited> for ApiError { fn from(_: redcache::RateLimited) -> Self { ApiError } }
/// #[redcache::rate_limited(limit = 100, window = "60s", key = "user:<user_id>")]
/// async fn search(user_id: u64, q: &str) -> Result<Vec<String>, ApiError> {
///     Ok(vec![q.to_string()])
/// }
///
/// // Two policies, checked and consumed all-or-nothing:
/// #[redcache::rate_limited(limit = 10, window = "1s", key = "user:<user_id>")]
/// #[redcache::rate_limited(limit = 1000, window = "1h", algorithm = "sliding_window")]
/// async fn upload(user_id: u64) -> Result<(), ApiError> {
///     Ok(())
/// }
/// ```
///
/// Options:
/// - `limit` (required): calls (units of cost) per window, 1 to 2^53.
/// - `window` (required): `"60s"`, `"1m"`, `"500ms"`, or whole seconds; at
///   most 100 years.
/// - `key = "..."`: a template, as in `#[cached]`. Default: one limit for
///   the whole fn.
/// - `algorithm = "sliding_log" | "sliding_window" | "fixed_window" | "gcra"`
///   (default `sliding_log`, exact).
/// - `burst = n`: for `gcra`, calls allowed at once (default `limit`), at
///   most 2^53.
/// - `cost = <expr>`: the weight of a call (a `u64`, default 1). A cost
///   above the limit (the burst for `gcra`) is refused; 0 takes nothing.
/// - `on_error = "allow" | "deny"`: when the backend is unreachable
///   (default allow).
/// - `cache = <expr>`: a `Cache` or `&Cache` instead of the global one.
///
/// Stacked `#[rate_limited]` attributes are policies of one check on one
/// key (`key`, `cost`, `on_error` and `cache` are shared). Stacked with
/// `#[cached]`, the top attribute runs first: `#[cached]` on top limits
/// only misses; `#[rate_limited]` on top limits every call.
#[proc_macro_attribute]
pub fn rate_limited(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::attribute(expand::Attr::RateLimited, args.into(), item.into()).into()
}

/// Write-through: after the fn succeeds (`Ok(v)`, `Some(v)`, or any other
/// value), stores its value under `key`, so the next `#[cached]` read of
/// that key is a hit with it, in every process. A load of the key that
/// began before never overwrites it.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Serialize, Deserialize)] struct Product { id: u64, name: String }
/// # #[derive(Debug)] struct DbError;
/// #[redcache::cached(ttl = 300, key = "product:<id>")]
/// async fn get_product(id: u64) -> Result<Product, DbError> {
///     Ok(Product { id, name: "from the db".into() })
/// }
///
/// #[redcache::cache_put(ttl = 300, key = "product:<product.id>")]
/// async fn save_product(product: Product) -> Result<Product, DbError> {
///     // UPDATE products ...
///     Ok(product)
/// }
/// ```
///
/// Options: `key` (required: the template of the `#[cached]` fn it
/// updates, written the same), `ttl` (required), `tags`/`tag` (the same as
/// the reader's: an entry belongs to its tags), `stale` and `fail_safe`
/// (the reader's, to keep the entry for them past its expiry), `cache`. Placeholders name
/// the fn's parameters, read before the body runs.
///
/// If the value cannot be stored (Redis unreachable, a value too large), the
/// key is invalidated instead, retried until Redis takes it. For a fn
/// returning `Result<T, E>` with `E: From<redcache::Error>` that failure is
/// the fn's error; otherwise it shows in tracing and stats.
#[proc_macro_attribute]
pub fn cache_put(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::attribute(expand::Attr::CachePut, args.into(), item.into()).into()
}

/// Invalidate-on-write: after the fn succeeds (`Ok`, `Some`, or any other
/// value), invalidates its `tags` and `keys`.
///
/// ```
/// # #[derive(Debug)] struct DbError;
/// #[redcache::invalidates(tags = ["category:<category>"], keys = ["product:<id>"])]
/// async fn delete_product(id: u64, category: u64) -> Result<(), DbError> {
///     // DELETE FROM products ...
///     Ok(())
/// }
/// ```
///
/// Options: `tags = [..]`/`tag`, `keys = [..]`/`key` (templates over the
/// parameters, at least one of the two), `cache`. Stacks with
/// `#[cache_put]`. A failure to reach Redis is retried until delivered,
/// and is the fn's error when it returns `Result<T, E>` with
/// `E: From<redcache::Error>` (else it shows in tracing and stats).
#[proc_macro_attribute]
pub fn invalidates(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::attribute(expand::Attr::Invalidates, args.into(), item.into()).into()
}

/// Runs the body of an async fn under a distributed lock
/// ([`Cache::lock`](https://docs.rs/redcache/latest/redcache/struct.Cache.html#method.lock)).
///
/// ```
/// # #[derive(Debug)] enum JobError { Busy(redcache::Locked) }
/// # impl From<redcache::Locked> for JobError { fn from(l: redcache::Locked) -> Self { JobError::Busy(l) } }
/// #[redcache::locked(key = "job:<name>", ttl = "30s", wait = "5s")]
/// async fn nightly_report(name: String) -> Result<(), JobError> {
///     // only one process runs this for a given `name` at a time
///     Ok(())
/// }
/// ```
///
/// Options: `key` (a template over the parameters, as for `#[cached]`;
/// default: one lock for the whole fn), `ttl` (default 30 s), `wait`
/// (how long to wait for another holder; default: one attempt),
/// `auto_extend = true` (a watchdog extends the lock while the body runs),
/// `cache`. When the lock cannot be had (held by another after the wait,
/// or Redis unreachable: locks fail closed), the body does not run and
/// the fn returns `Err(E::from(redcache::Locked))`: it must return
/// `Result<T, E>` with `E: From<redcache::Locked>`.
#[proc_macro_attribute]
pub fn locked(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::attribute(expand::Attr::Locked, args.into(), item.into()).into()
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
    expand::get_or_load::expand(input.into()).into()
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
    expand::key::expand(input.into()).into()
}
