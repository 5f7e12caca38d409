//! One typed struct of arguments per macro ([`CachedArgs`],
//! [`GetOrLoadArgs`], [`RateLimitedArgs`]), each built from [`Slot`]s that
//! report a repeated option at its second name (as serde_derive's
//! `Attr::set`). Values are parsed and checked alone in `options`; what
//! relates options to each other or to the fn is checked in `valid`.

use proc_macro2::Span;
use syn::parse::ParseStream;
use syn::{Expr, Ident, LitBool, Token};

use crate::duration::SpannedDuration;
use crate::errors::Errors;
use crate::options::{self, Algorithm, OnError, Spanned, Stampede, Ttl};
use crate::template::Template;

/// An option given at most once.
pub(crate) struct Slot<T> {
    value: Option<T>,
    /// Written, even with a value that was refused (its own error is out).
    written: bool,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            value: None,
            written: false,
        }
    }
}

impl<T> Slot<T> {
    /// Takes the value of `name`, or reports a repeat at `name`.
    fn set(&mut self, name: &Ident, value: syn::Result<T>, errors: &mut Errors) {
        if self.written {
            errors.push_new(name.span(), format!("duplicate option `{name}`"));
            return;
        }
        self.written = true;
        match value {
            Ok(value) => self.value = Some(value),
            Err(error) => errors.push(error),
        }
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }

    pub(crate) fn written(&self) -> bool {
        self.written
    }
}

/// The arguments of one macro.
pub(crate) trait Args: Default {
    const SITE: Site;

    /// Takes `name = value`; returns `false` for a name this macro does not
    /// know (reported by the caller, with the valid names).
    fn set(&mut self, name: &Ident, value: Expr, errors: &mut Errors) -> bool;

    /// A name without `= value`.
    fn flag(&mut self, name: &Ident, errors: &mut Errors) {
        errors.push_new(
            name.span(),
            format!("`{name}` needs a value: `{name} = ...`"),
        );
    }
}

/// Parses `name = value, ...` into `A`; for `get_or_load!`, the last item
/// is the future to cache, returned beside. Mistakes in values go to
/// `errors`; a syntax error ends parsing.
pub(crate) fn parse<A: Args>(
    input: ParseStream,
    errors: &mut Errors,
) -> syn::Result<(A, Option<Expr>)> {
    let mut args = A::default();
    let mut future = None;
    let inline = A::SITE == Site::Inline;
    while !input.is_empty() {
        // In `get_or_load!` no option is a bare flag, so a name without
        // `=` is the future (a variable): `get_or_load!(ttl = 60, key = "k", fut)`.
        let is_option = input.peek(Ident)
            && (input.peek2(Token![=])
                || (!inline && (input.peek2(Token![,]) || peek_last(input))));
        if inline && !is_option {
            future = Some(input.parse::<Expr>()?);
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
            if !input.is_empty() {
                return Err(input.error("the future to cache must be the last argument"));
            }
            break;
        }
        let name: Ident = input.parse()?;
        let known = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            let value = input.parse::<Expr>()?;
            args.set(&name, value, errors)
        } else {
            let known = A::SITE.allowed().contains(&name.to_string().as_str());
            if known {
                args.flag(&name, errors);
            }
            known
        };
        if !known {
            errors.push_new(name.span(), unknown_option(&name.to_string(), A::SITE));
        }
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
    }
    Ok((args, future))
}

/// The arguments of an attribute; a syntax error is collected in `errors`
/// and leaves the defaults, so the other checks still report.
pub(crate) fn parse_attribute<A: Args>(args: proc_macro2::TokenStream, errors: &mut Errors) -> A {
    let parsed = syn::parse::Parser::parse2(|input: ParseStream| parse(input, errors), args);
    match parsed {
        Ok((args, _)) => args,
        Err(error) => {
            errors.push(error);
            A::default()
        }
    }
}

/// True when the next token is the last of the input (a bare flag).
fn peek_last(input: ParseStream) -> bool {
    let fork = input.fork();
    fork.parse::<Ident>().is_ok() && fork.is_empty()
}

/// What a cache entry is: the options `#[cached]` and `get_or_load!` share.
#[derive(Default)]
pub(crate) struct EntryArgs {
    pub(crate) ttl: Slot<Ttl>,
    pub(crate) key: Slot<Template>,
    /// `tags = [..]` or `tag = ".."`, one slot.
    pub(crate) tags: Slot<Vec<Template>>,
    pub(crate) cache: Slot<Expr>,
    pub(crate) stampede: Slot<Stampede>,
    /// `codec = "msgpack"`: the codec of this fn's entries.
    pub(crate) codec: Slot<Spanned<options::Codec>>,
}

impl EntryArgs {
    fn set(&mut self, name: &Ident, value: Expr, errors: &mut Errors) -> bool {
        match name.to_string().as_str() {
            "ttl" => self.ttl.set(name, options::ttl(value), errors),
            "key" => self.key.set(name, options::template(&value, "key"), errors),
            "tags" => self.tags.set(name, options::tags(&value), errors),
            "tag" => {
                let tag = options::template(&value, "tag").map(|tag| vec![tag]);
                self.tags.set(name, tag, errors);
            }
            "cache" => self.cache.set(name, Ok(value), errors),
            "stampede" => self.stampede.set(name, options::stampede(&value), errors),
            "codec" => self.codec.set(name, options::codec(&value), errors),
            _ => return false,
        }
        true
    }

    pub(crate) fn tags(&self) -> &[Template] {
        self.tags.get().map_or(&[], Vec::as_slice)
    }

    /// Reports a missing `ttl` at `span` (the attribute or macro call).
    pub(crate) fn require_ttl(&self, span: Span, errors: &mut Errors) {
        // A `ttl` that was given but refused has its own error already.
        if !self.ttl.written() {
            errors.push_new(
                span,
                "missing `ttl`: every cached key needs an expiry, e.g. `ttl = 300` (seconds) or `ttl = \"5m\"`",
            );
        }
    }
}

/// `#[cached(...)]`.
#[derive(Default)]
pub(crate) struct CachedArgs {
    pub(crate) entry: EntryArgs,
    pub(crate) cache_none: Slot<LitBool>,
    /// Parameters left out of the key: `ignore = [db, trace_id]`.
    pub(crate) ignore: Slot<Vec<Ident>>,
    /// Serve an expired value this long while one refresh runs.
    pub(crate) stale: Slot<SpannedDuration>,
    /// Answer with an expired value this old when the load fails.
    pub(crate) fail_safe: Slot<SpannedDuration>,
    /// XFetch's β.
    pub(crate) early_refresh: Slot<Spanned<f64>>,
    /// The fraction each ttl is spread by.
    pub(crate) jitter: Slot<Spanned<f64>>,
    /// A load this slow fails with `LoadTimeout`.
    pub(crate) hard_timeout: Slot<SpannedDuration>,
    /// A load this slow is answered with the expired value, if any.
    pub(crate) timeout: Slot<SpannedDuration>,
}

impl CachedArgs {
    /// Whether a load may be finished after its call returned: the body
    /// must then own what it uses.
    pub(crate) fn refreshes(&self) -> Option<Span> {
        self.early_refresh
            .get()
            .map(|beta| beta.span)
            .or_else(|| self.stale.get().map(|stale| stale.span))
            .or_else(|| self.timeout.get().map(|timeout| timeout.span))
    }

    pub(crate) fn ignored(&self) -> &[Ident] {
        self.ignore.get().map_or(&[], Vec::as_slice)
    }
}

impl Args for CachedArgs {
    const SITE: Site = Site::Attribute;

    fn set(&mut self, name: &Ident, value: Expr, errors: &mut Errors) -> bool {
        match name.to_string().as_str() {
            "cache_none" => {
                let flag = options::flag(&value, "cache_none");
                self.cache_none.set(name, flag, errors);
            }
            "ignore" => self.ignore.set(name, options::ignore_list(&value), errors),
            "stale" => {
                let stale = options::positive_duration(&value, "stale");
                self.stale.set(name, stale, errors);
            }
            "fail_safe" => {
                let fail_safe = options::positive_duration(&value, "fail_safe");
                self.fail_safe.set(name, fail_safe, errors);
            }
            "hard_timeout" => {
                let timeout = options::positive_duration(&value, "hard_timeout");
                self.hard_timeout.set(name, timeout, errors);
            }
            "early_refresh" => {
                let beta = options::early_refresh(&value);
                self.early_refresh.set(name, beta, errors);
            }
            "jitter" => self.jitter.set(name, options::jitter(&value), errors),
            "timeout" => {
                let timeout = options::positive_duration(&value, "timeout");
                self.timeout.set(name, timeout, errors);
            }
            _ => return self.entry.set(name, value, errors),
        }
        true
    }

    /// `cache_none` alone means `cache_none = true`, `early_refresh`
    /// alone `early_refresh = true`.
    fn flag(&mut self, name: &Ident, errors: &mut Errors) {
        if name == "cache_none" {
            let flag = Ok(LitBool::new(true, name.span()));
            self.cache_none.set(name, flag, errors);
        } else if name == "early_refresh" {
            let beta = Ok(Spanned {
                value: 1.0,
                span: name.span(),
            });
            self.early_refresh.set(name, beta, errors);
        } else {
            errors.push_new(
                name.span(),
                format!("`{name}` needs a value: `{name} = ...`"),
            );
        }
    }
}

/// `get_or_load!(..., future)`: the entry options (the future is parsed
/// beside them).
#[derive(Default)]
pub(crate) struct GetOrLoadArgs {
    pub(crate) entry: EntryArgs,
}

impl Args for GetOrLoadArgs {
    const SITE: Site = Site::Inline;

    fn set(&mut self, name: &Ident, value: Expr, errors: &mut Errors) -> bool {
        self.entry.set(name, value, errors)
    }
}

/// `#[cache_put(...)]`: the entry a writing fn stores its new value as.
#[derive(Default)]
pub(crate) struct CachePutArgs {
    pub(crate) entry: EntryArgs,
    /// The reader's `stale` and `fail_safe`: how long the entry is kept
    /// past its expiry for them.
    pub(crate) stale: Slot<SpannedDuration>,
    pub(crate) fail_safe: Slot<SpannedDuration>,
}

impl Args for CachePutArgs {
    const SITE: Site = Site::CachePut;

    fn set(&mut self, name: &Ident, value: Expr, errors: &mut Errors) -> bool {
        match name.to_string().as_str() {
            "stale" => {
                let stale = options::positive_duration(&value, "stale");
                self.stale.set(name, stale, errors);
            }
            "fail_safe" => {
                let fail_safe = options::positive_duration(&value, "fail_safe");
                self.fail_safe.set(name, fail_safe, errors);
            }
            "stampede" => return false,
            _ => return self.entry.set(name, value, errors),
        }
        true
    }
}

/// `#[invalidates(...)]`: the tags and keys a writing fn invalidates.
#[derive(Default)]
pub(crate) struct InvalidatesArgs {
    /// `tags = [..]` or `tag = ".."`.
    pub(crate) tags: Slot<Vec<Template>>,
    /// `keys = [..]` or `key = ".."`.
    pub(crate) keys: Slot<Vec<Template>>,
    pub(crate) cache: Slot<Expr>,
}

impl InvalidatesArgs {
    pub(crate) fn tags(&self) -> &[Template] {
        self.tags.get().map_or(&[], Vec::as_slice)
    }

    pub(crate) fn keys(&self) -> &[Template] {
        self.keys.get().map_or(&[], Vec::as_slice)
    }
}

impl Args for InvalidatesArgs {
    const SITE: Site = Site::Invalidates;

    fn set(&mut self, name: &Ident, value: Expr, errors: &mut Errors) -> bool {
        match name.to_string().as_str() {
            "tags" => self
                .tags
                .set(name, options::templates(&value, "tags", "tag"), errors),
            "tag" => {
                let tag = options::template(&value, "tag").map(|tag| vec![tag]);
                self.tags.set(name, tag, errors);
            }
            "keys" => self
                .keys
                .set(name, options::templates(&value, "keys", "key"), errors),
            "key" => {
                let key = options::template(&value, "key").map(|key| vec![key]);
                self.keys.set(name, key, errors);
            }
            "cache" => self.cache.set(name, Ok(value), errors),
            _ => return false,
        }
        true
    }
}

/// One `#[rate_limited(...)]`: a policy, and the options stacked
/// attributes share (`key`, `cost`, `on_error`, `cache`).
#[derive(Default)]
pub(crate) struct RateLimitedArgs {
    pub(crate) limit: Slot<Spanned<u64>>,
    pub(crate) window: Slot<SpannedDuration>,
    pub(crate) algorithm: Slot<Spanned<Algorithm>>,
    pub(crate) burst: Slot<Spanned<u64>>,
    pub(crate) key: Slot<Template>,
    pub(crate) cost: Slot<Expr>,
    pub(crate) on_error: Slot<Spanned<OnError>>,
    pub(crate) cache: Slot<Expr>,
}

impl Args for RateLimitedArgs {
    const SITE: Site = Site::RateLimit;

    fn set(&mut self, name: &Ident, value: Expr, errors: &mut Errors) -> bool {
        match name.to_string().as_str() {
            "limit" => self
                .limit
                .set(name, options::count(&value, "limit"), errors),
            "window" => self.window.set(name, options::window(&value), errors),
            "algorithm" => self.algorithm.set(name, options::algorithm(&value), errors),
            "burst" => self
                .burst
                .set(name, options::count(&value, "burst"), errors),
            "key" => self.key.set(name, options::template(&value, "key"), errors),
            "cost" => self.cost.set(name, Ok(value), errors),
            "on_error" => self.on_error.set(name, options::on_error(&value), errors),
            "cache" => self.cache.set(name, Ok(value), errors),
            _ => return false,
        }
        true
    }
}

/// The options of `#[locked]`.
#[derive(Default)]
pub(crate) struct LockedArgs {
    pub(crate) key: Slot<Template>,
    pub(crate) ttl: Slot<SpannedDuration>,
    pub(crate) wait: Slot<SpannedDuration>,
    pub(crate) auto_extend: Slot<LitBool>,
    pub(crate) cache: Slot<Expr>,
}

impl Args for LockedArgs {
    const SITE: Site = Site::Locked;

    fn set(&mut self, name: &Ident, value: Expr, errors: &mut Errors) -> bool {
        match name.to_string().as_str() {
            "key" => self.key.set(name, options::template(&value, "key"), errors),
            "ttl" => self.ttl.set(name, options::lock_ttl(&value), errors),
            "wait" => self
                .wait
                .set(name, SpannedDuration::parse(&value, "wait"), errors),
            "auto_extend" => {
                self.auto_extend
                    .set(name, options::flag(&value, "auto_extend"), errors)
            }
            "cache" => self.cache.set(name, Ok(value), errors),
            _ => return false,
        }
        true
    }
}

/// Which macro the options are for: each takes its own subset.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Site {
    /// `#[cached(...)]`
    Attribute,
    /// `get_or_load!(..., future)`
    Inline,
    /// `#[rate_limited(...)]`
    RateLimit,
    /// `#[cache_put(...)]`
    CachePut,
    /// `#[invalidates(...)]`
    Invalidates,
    /// `#[locked(...)]`
    Locked,
}

impl Site {
    fn allowed(self) -> &'static [&'static str] {
        match self {
            Site::Attribute => &[
                "ttl",
                "key",
                "tags",
                "tag",
                "cache",
                "stampede",
                "cache_none",
                "ignore",
                "stale",
                "fail_safe",
                "early_refresh",
                "jitter",
                "timeout",
                "hard_timeout",
                "codec",
            ],
            Site::Inline => &["ttl", "key", "tags", "tag", "cache", "stampede", "codec"],
            Site::CachePut => &[
                "ttl",
                "key",
                "tags",
                "tag",
                "cache",
                "stale",
                "fail_safe",
                "codec",
            ],
            Site::Invalidates => &["tags", "tag", "keys", "key", "cache"],
            Site::Locked => &["key", "ttl", "wait", "auto_extend", "cache"],
            Site::RateLimit => &[
                "limit",
                "window",
                "key",
                "algorithm",
                "burst",
                "cost",
                "on_error",
                "cache",
            ],
        }
    }
}

fn unknown_option(name: &str, site: Site) -> String {
    let hint = match (name, site) {
        ("ttl" | "tags" | "tag" | "stampede" | "cache_none", Site::RateLimit) => {
            " (an option of `#[cached]`: stack the two attributes to cache and limit)"
        }
        ("rate" | "max" | "requests" | "count", Site::RateLimit) => {
            " (the calls per window are the `limit`)"
        }
        ("period" | "per" | "interval" | "duration", Site::RateLimit) => {
            " (the length of the window is `window`)"
        }
        ("load_timeout" | "max_load_time", Site::Attribute) => {
            " (a load's time limit is `hard_timeout`; `timeout` answers with the expired value)"
        }
        ("stale_while_revalidate" | "swr" | "serve_stale", Site::Attribute) => {
            " (stale-while-revalidate is `stale = \"10m\"`)"
        }
        ("failsafe" | "failover" | "soft", Site::Attribute) => {
            " (serving an expired value when the load fails is `fail_safe = \"1h\"`)"
        }
        ("refresh" | "refresh_ahead" | "xfetch", Site::Attribute) => {
            " (refreshing before the expiry is `early_refresh = true`)"
        }
        ("expire" | "expiry" | "expires" | "ttl_secs" | "time" | "duration" | "timeout", _) => {
            " (the expiry is called `ttl`)"
        }
        ("name" | "key_prefix" | "prefix", _) => " (the key template is called `key`)",
        ("serializer" | "serde" | "format" | "encoding" | "serialize", _) => {
            " (the serde format of the entry is `codec = \"json\"` or `\"msgpack\"`)"
        }
        ("compress" | "compression" | "zstd" | "lz4", _) => {
            " (compression is set per cache: `Cache::builder().compression(..)`)"
        }
        ("ttl" | "stampede" | "cache_none", Site::Invalidates) => {
            " (`#[invalidates]` stores nothing; stack `#[cache_put]` to store the new value)"
        }
        ("stampede" | "cache_none" | "ignore", Site::CachePut) => {
            " (an option of `#[cached]`: a put loads nothing, it stores the fn's value)"
        }
        ("cache_none", Site::Inline) => {
            " (`get_or_load!` caches the `Ok` of a `Result`; there is no `None` to cache)"
        }
        _ => "",
    };
    format!(
        "unknown option `{name}`{hint}; expected one of: {}",
        site.allowed().join(", ")
    )
}
