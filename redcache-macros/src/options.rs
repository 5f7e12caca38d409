//! The values the options take, each parsed and checked alone, with an
//! error at its own token: durations, counts, templates and the enums
//! (`Algorithm`, `OnError`, `Stampede`) that turn into the runtime's.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::{Expr, ExprArray, ExprLit, Ident, Lit, LitBool};

use crate::duration::SpannedDuration;
use crate::errors::Errors;
use crate::template::Template;

/// `algorithm = "..."`: the variants of `redcache::Algorithm`.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Algorithm {
    SlidingLog,
    SlidingWindow,
    FixedWindow,
    Gcra,
}

impl Algorithm {
    /// Each algorithm by the name the attribute takes.
    const ALL: [(&'static str, Algorithm); 4] = [
        ("sliding_log", Algorithm::SlidingLog),
        ("sliding_window", Algorithm::SlidingWindow),
        ("fixed_window", Algorithm::FixedWindow),
        ("gcra", Algorithm::Gcra),
    ];
}

impl ToTokens for Algorithm {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let variant = match self {
            Algorithm::SlidingLog => quote!(SlidingLog),
            Algorithm::SlidingWindow => quote!(SlidingWindow),
            Algorithm::FixedWindow => quote!(FixedWindow),
            Algorithm::Gcra => quote!(Gcra),
        };
        tokens.extend(quote!(::redcache::__private::Algorithm::#variant));
    }
}

/// `on_error = "allow" | "deny"`: the variants of `redcache::OnError`.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum OnError {
    Allow,
    Deny,
}

impl ToTokens for OnError {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let variant = match self {
            OnError::Allow => quote!(Allow),
            OnError::Deny => quote!(Deny),
        };
        tokens.extend(quote!(::redcache::__private::OnError::#variant));
    }
}

/// An option value and where it was written.
#[derive(Clone, Copy)]
pub(crate) struct Spanned<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

/// `stampede = "..."`: the variants of `redcache::Stampede`.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Stampede {
    Off,
    Local,
    Distributed,
}

impl ToTokens for Stampede {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let variant = match self {
            Stampede::Off => quote!(Off),
            Stampede::Local => quote!(Local),
            Stampede::Distributed => quote!(Distributed),
        };
        tokens.extend(quote!(::redcache::__private::Stampede::#variant));
    }
}

/// `codec = "..."`: the codecs of `redcache::Codec`, by name.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Codec {
    Json,
    MessagePack,
}

impl Codec {
    const ALL: [(&'static str, Codec); 2] =
        [("json", Codec::Json), ("msgpack", Codec::MessagePack)];
}

/// Spanned at the option's value: a codec this build of redcache lacks
/// (its feature is off) is reported there.
impl ToTokens for Spanned<Codec> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let name = match self.value {
            Codec::Json => "JSON",
            Codec::MessagePack => "MSGPACK",
        };
        let name = Ident::new(name, self.span);
        tokens.extend(quote_spanned!(self.span=> ::redcache::__private::codecs::#name));
    }
}

pub(crate) fn codec(value: &Expr) -> syn::Result<Spanned<Codec>> {
    named(
        value,
        &Codec::ALL,
        "`codec` is \"json\" (the default: readable in redis-cli) or \"msgpack\" (MessagePack: smaller, faster to decode)",
    )
}

/// A `ttl`: a literal, checked here, or an expression (`ttl = CACHE_TTL`,
/// `ttl = Duration::from_secs(90)`), a `Duration` or whole seconds.
pub(crate) enum Ttl {
    Literal(SpannedDuration),
    Expr(Expr),
}

impl Ttl {
    pub(crate) fn to_tokens(&self) -> proc_macro2::TokenStream {
        match self {
            Ttl::Literal(duration) => duration.to_tokens(),
            Ttl::Expr(expr) => {
                quote::quote_spanned!(syn::spanned::Spanned::span(expr)=> ::redcache::__private::ttl(#expr))
            }
        }
    }
}

/// `ttl = 300`, `ttl = "5m"` (checked here: not zero), or an expression.
pub(crate) fn ttl(value: Expr) -> syn::Result<Ttl> {
    if !matches!(value, Expr::Lit(_)) {
        // A constant or any expression: checked when the fn runs.
        return Ok(Ttl::Expr(value));
    }
    let ttl = SpannedDuration::parse(&value, "ttl")?;
    if ttl.value.is_zero() {
        return Err(syn::Error::new(
            ttl.span,
            "`ttl` must be greater than zero: every cached key needs an expiry",
        ));
    }
    Ok(Ttl::Literal(ttl))
}

/// `window = "60s"`: more than zero, at most 100 years.
pub(crate) fn window(value: &Expr) -> syn::Result<SpannedDuration> {
    let window = SpannedDuration::parse(value, "window")?;
    if window.value.is_zero() {
        Err(syn::Error::new(
            window.span,
            "`window` must be greater than zero",
        ))
    } else if window.value > MAX_WINDOW {
        Err(syn::Error::new(
            window.span,
            "`window` must be at most 100 years (\"36525d\"), so that times stay exact in the rate-limit script",
        ))
    } else {
        Ok(window)
    }
}

/// A duration that must be more than zero: `stale`, `fail_safe`,
/// `hard_timeout`.
pub(crate) fn positive_duration(value: &Expr, option: &str) -> syn::Result<SpannedDuration> {
    let duration = SpannedDuration::parse(value, option)?;
    if duration.value.is_zero() {
        return Err(syn::Error::new(
            duration.span,
            format!("`{option}` must be greater than zero (leave it out to turn it off)"),
        ));
    }
    Ok(duration)
}

/// The `ttl` of `#[locked]`: more than zero (a lock that expires at once
/// protects nothing).
pub(crate) fn lock_ttl(value: &Expr) -> syn::Result<SpannedDuration> {
    let duration = SpannedDuration::parse(value, "ttl")?;
    if duration.value.is_zero() {
        return Err(syn::Error::new(
            duration.span,
            "a lock's `ttl` must be greater than zero (leave it out for the default, 30 s)",
        ));
    }
    Ok(duration)
}

/// `early_refresh = true` (β = 1) or `early_refresh = <β>`, a positive
/// number: larger refreshes earlier.
pub(crate) fn early_refresh(value: &Expr) -> syn::Result<Spanned<f64>> {
    let expected = || {
        syn::Error::new_spanned(
            value,
            "`early_refresh` takes `true` (β = 1.0) or a β greater than zero, e.g. `early_refresh = 2.0` to refresh earlier",
        )
    };
    let beta = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(flag),
            ..
        }) if flag.value => 1.0,
        Expr::Lit(ExprLit {
            lit: Lit::Float(float),
            ..
        }) => float.base10_parse::<f64>().map_err(|_| expected())?,
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int.base10_parse::<u32>().map_err(|_| expected())?.into(),
        _ => return Err(expected()),
    };
    if !(beta.is_finite() && beta > 0.0) {
        return Err(expected());
    }
    Ok(Spanned {
        value: beta,
        span: syn::spanned::Spanned::span(value),
    })
}

/// `jitter = "10%"`: the fraction each entry's ttl is spread by, above 0 %
/// and below 100 %.
pub(crate) fn jitter(value: &Expr) -> syn::Result<Spanned<f64>> {
    let expected = |span| {
        syn::Error::new(
            span,
            "`jitter` takes a percentage above 0 and below 100, e.g. `jitter = \"10%\"`",
        )
    };
    let Expr::Lit(ExprLit {
        lit: Lit::Str(text),
        ..
    }) = value
    else {
        return Err(expected(syn::spanned::Spanned::span(value)));
    };
    let percent: f64 = text
        .value()
        .trim()
        .strip_suffix('%')
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| expected(text.span()))?;
    if !(percent > 0.0 && percent < 100.0) {
        return Err(expected(text.span()));
    }
    Ok(Spanned {
        value: percent / 100.0,
        span: text.span(),
    })
}

/// `cache_none = true` or `false`.
pub(crate) fn flag(value: &Expr, option: &str) -> syn::Result<LitBool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(flag),
            ..
        }) => Ok(flag.clone()),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{option}` takes `true` or `false`"),
        )),
    }
}

/// `tags = ["category:<id>", ...]`: every template checked, each error at
/// its own element.
pub(crate) fn tags(value: &Expr) -> syn::Result<Vec<Template>> {
    templates(value, "tags", "tag")
}

/// A list of templates, `option = ["...", ...]` (`one = "..."` for one).
pub(crate) fn templates(value: &Expr, option: &str, one: &str) -> syn::Result<Vec<Template>> {
    let Expr::Array(ExprArray { elems, .. }) = value else {
        return Err(syn::Error::new_spanned(
            value,
            format!("`{option}` takes a list of templates: `{option} = [\"category:<id>\"]` (or `{one} = \"...\"` for one)"),
        ));
    };
    let mut errors = Errors::default();
    let mut templates = Vec::new();
    for elem in elems {
        match template(elem, option) {
            Ok(template) => templates.push(template),
            Err(error) => errors.push(error),
        }
    }
    errors.finish().map(|()| templates)
}

pub(crate) fn template(value: &Expr, option: &str) -> syn::Result<Template> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Template::parse(lit),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{option}` takes a string template such as \"product:<id>\""),
        )),
    }
}

pub(crate) fn ignore_list(value: &Expr) -> syn::Result<Vec<Ident>> {
    let expected = |span: &dyn quote::ToTokens| {
        syn::Error::new_spanned(
            span,
            "`ignore` takes a list of parameter names: `ignore = [db, request_id]`",
        )
    };
    let Expr::Array(ExprArray { elems, .. }) = value else {
        return Err(expected(value));
    };
    elems
        .iter()
        .map(|elem| match elem {
            Expr::Path(path) if path.qself.is_none() => {
                path.path.get_ident().cloned().ok_or_else(|| expected(elem))
            }
            other => Err(expected(other)),
        })
        .collect()
}

/// `redcache::Policy::MAX_LIMIT`: the largest limit or burst, 2^53.
pub(crate) const MAX_LIMIT: u64 = 1 << 53;

/// `redcache::Policy::MAX_WINDOW`: 100 years of 365.25 days.
pub(crate) const MAX_WINDOW: Duration = Duration::from_secs(36_525 * 86_400);

/// A `limit` or `burst`: a whole number from 1 to 2^53.
pub(crate) fn count(value: &Expr, option: &str) -> syn::Result<Spanned<u64>> {
    let count = positive_int(value, option)?;
    if count.value > MAX_LIMIT {
        return Err(syn::Error::new(
            count.span,
            format!("`{option}` must be at most 2^53 (9007199254740992), the largest count the rate-limit script holds exactly"),
        ));
    }
    Ok(count)
}

fn positive_int(value: &Expr, option: &str) -> syn::Result<Spanned<u64>> {
    let expected = || {
        syn::Error::new_spanned(
            value,
            format!("`{option}` takes a whole number greater than zero"),
        )
    };
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u64>() {
            Ok(0) | Err(_) => Err(expected()),
            Ok(n) => Ok(Spanned {
                value: n,
                span: int.span(),
            }),
        },
        _ => Err(expected()),
    }
}

pub(crate) fn algorithm(value: &Expr) -> syn::Result<Spanned<Algorithm>> {
    let names: Vec<String> = Algorithm::ALL
        .iter()
        .map(|(name, _)| format!("\"{name}\""))
        .collect();
    let expected = format!("`algorithm` is one of {}", names.join(", "));
    named(value, &Algorithm::ALL, &expected)
}

/// A string literal naming one of `all`, with where it was written; else
/// the `expected` error at the value.
fn named<T: Copy>(value: &Expr, all: &[(&str, T)], expected: &str) -> syn::Result<Spanned<T>> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => all
            .iter()
            .find(|(name, _)| *name == lit.value())
            .map(|(_, value)| Spanned {
                value: *value,
                span: lit.span(),
            })
            .ok_or_else(|| syn::Error::new(lit.span(), expected)),
        other => Err(syn::Error::new_spanned(other, expected)),
    }
}

pub(crate) fn on_error(value: &Expr) -> syn::Result<Spanned<OnError>> {
    let expected = "`on_error` is \"allow\" (the default: let calls through while the backend is unreachable) or \"deny\"";
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => match lit.value().as_str() {
            "allow" => Ok(Spanned {
                value: OnError::Allow,
                span: lit.span(),
            }),
            "deny" => Ok(Spanned {
                value: OnError::Deny,
                span: lit.span(),
            }),
            _ => Err(syn::Error::new(lit.span(), expected)),
        },
        other => Err(syn::Error::new_spanned(other, expected)),
    }
}

pub(crate) fn stampede(value: &Expr) -> syn::Result<Stampede> {
    let expected = "`stampede` is one of \"distributed\" (default), \"local\" or \"off\"";
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => match lit.value().as_str() {
            "off" => Ok(Stampede::Off),
            "local" => Ok(Stampede::Local),
            "distributed" => Ok(Stampede::Distributed),
            _ => Err(syn::Error::new(lit.span(), expected)),
        },
        other => Err(syn::Error::new_spanned(other, expected)),
    }
}
