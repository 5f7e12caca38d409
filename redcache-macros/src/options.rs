//! The options of `#[cached]` and `get_or_load!`: parsed into a typed
//! struct, with every mistake collected (unknown, duplicate, ill-typed) and
//! reported at its own token.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::parse::ParseStream;
use syn::{Expr, ExprArray, ExprLit, Ident, Lit, LitBool, Token};

use crate::duration::SpannedDuration;
use crate::errors::Errors;
use crate::template::Template;

/// Which macro the options are for: each takes its own subset.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Site {
    /// `#[cached(...)]`
    Attribute,
    /// `get_or_load!(..., future)`
    Inline,
    /// `#[rate_limited(...)]`
    RateLimit,
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
            ],
            Site::Inline => &["ttl", "key", "tags", "tag", "cache", "stampede"],
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

#[derive(Default)]
pub(crate) struct Options {
    pub(crate) ttl: Option<Ttl>,
    pub(crate) key: Option<Template>,
    pub(crate) tags: Vec<Template>,
    pub(crate) cache: Option<Expr>,
    pub(crate) stampede: Option<Stampede>,
    pub(crate) cache_none: Option<LitBool>,
    /// Parameters left out of the key: `ignore = [db, trace_id]`.
    pub(crate) ignore: Vec<Ident>,
    pub(crate) limit: Option<Spanned<u64>>,
    pub(crate) window: Option<SpannedDuration>,
    pub(crate) algorithm: Option<Spanned<Algorithm>>,
    pub(crate) burst: Option<Spanned<u64>>,
    pub(crate) cost: Option<Expr>,
    pub(crate) on_error: Option<Spanned<OnError>>,
    /// The names given so far, to report duplicates.
    seen: Vec<String>,
}

impl Options {
    /// Parses `name = value, ...`; for [`Site::Inline`], the last item is
    /// the future to cache, returned with the options. Recoverable mistakes
    /// go to `errors`; a syntax error ends parsing.
    pub(crate) fn parse(
        input: ParseStream,
        site: Site,
        errors: &mut Errors,
    ) -> syn::Result<(Options, Option<Expr>)> {
        let mut options = Options::default();
        let mut future = None;
        while !input.is_empty() {
            // In `get_or_load!` no option is a bare flag, so a name without
            // `=` is the future (a variable): `get_or_load!(ttl = 60, key = "k", fut)`.
            let is_option = input.peek(Ident)
                && (input.peek2(Token![=])
                    || (site != Site::Inline && (input.peek2(Token![,]) || peek_last(input))));
            if site == Site::Inline && !is_option {
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
            let value = if input.peek(Token![=]) {
                input.parse::<Token![=]>()?;
                Some(input.parse::<Expr>()?)
            } else {
                None
            };
            options.set(site, &name, value, errors);
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok((options, future))
    }

    fn set(&mut self, site: Site, name: &Ident, value: Option<Expr>, errors: &mut Errors) {
        let text = name.to_string();
        if !site.allowed().contains(&text.as_str()) {
            errors.push_new(name.span(), unknown_option(&text, site));
            return;
        }
        let plural = if text == "tag" { "tags" } else { text.as_str() };
        if self.seen.iter().any(|seen| seen == plural) {
            errors.push_new(name.span(), format!("duplicate option `{text}`"));
            return;
        }
        self.seen.push(plural.to_string());
        let Some(value) = value else {
            if text == "cache_none" {
                self.cache_none = Some(LitBool::new(true, name.span()));
            } else {
                errors.push_new(
                    name.span(),
                    format!("`{text}` needs a value: `{text} = ...`"),
                );
            }
            return;
        };
        let result = match text.as_str() {
            // A constant or any expression: checked when the fn runs.
            "ttl" if !matches!(value, Expr::Lit(_)) => {
                self.ttl = Some(Ttl::Expr(value));
                Ok(())
            }
            "ttl" => SpannedDuration::parse(&value, "ttl").and_then(|ttl| {
                if ttl.value.is_zero() {
                    Err(syn::Error::new(
                        ttl.span,
                        "`ttl` must be greater than zero: every cached key needs an expiry",
                    ))
                } else {
                    self.ttl = Some(Ttl::Literal(ttl));
                    Ok(())
                }
            }),
            "key" => template(&value, "key").map(|t| self.key = Some(t)),
            "tag" => template(&value, "tag").map(|t| self.tags.push(t)),
            "tags" => self.parse_tags(&value),
            "cache" => {
                self.cache = Some(value);
                Ok(())
            }
            "stampede" => stampede(&value).map(|s| self.stampede = Some(s)),
            "limit" => count(&value, "limit").map(|n| self.limit = Some(n)),
            "burst" => count(&value, "burst").map(|n| self.burst = Some(n)),
            "window" => SpannedDuration::parse(&value, "window").and_then(|window| {
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
                    self.window = Some(window);
                    Ok(())
                }
            }),
            "ignore" => ignore_list(&value).map(|names| self.ignore = names),
            "algorithm" => algorithm(&value).map(|a| self.algorithm = Some(a)),
            "cost" => {
                self.cost = Some(value);
                Ok(())
            }
            "on_error" => on_error(&value).map(|on_error| self.on_error = Some(on_error)),
            "cache_none" => match &value {
                Expr::Lit(ExprLit {
                    lit: Lit::Bool(flag),
                    ..
                }) => {
                    self.cache_none = Some(flag.clone());
                    Ok(())
                }
                other => Err(syn::Error::new_spanned(
                    other,
                    "`cache_none` takes `true` or `false`",
                )),
            },
            _ => unreachable!("every allowed option is handled above"),
        };
        if let Err(error) = result {
            errors.push(error);
        }
    }

    fn parse_tags(&mut self, value: &Expr) -> syn::Result<()> {
        let Expr::Array(ExprArray { elems, .. }) = value else {
            return Err(syn::Error::new_spanned(
                value,
                "`tags` takes a list of templates: `tags = [\"category:<id>\"]` (or `tag = \"...\"` for one)",
            ));
        };
        let mut errors = Errors::default();
        for elem in elems {
            match template(elem, "tags") {
                Ok(tag) => self.tags.push(tag),
                Err(error) => errors.push(error),
            }
        }
        errors.finish()
    }

    /// Whether the option was written (even with a value that was refused).
    pub(crate) fn given(&self, name: &str) -> bool {
        self.seen.iter().any(|seen| seen == name)
    }

    /// Reports a missing `ttl` at `span` (the attribute or macro call).
    pub(crate) fn require_ttl(&self, span: Span, errors: &mut Errors) {
        // A `ttl` that was given but rejected has its own error already.
        if !self.seen.iter().any(|name| name == "ttl") {
            errors.push_new(
                span,
                "missing `ttl`: every cached key needs an expiry, e.g. `ttl = 300` (seconds) or `ttl = \"5m\"`",
            );
        }
    }
}

/// True when the next token is the last of the input (a bare flag).
fn peek_last(input: ParseStream) -> bool {
    let fork = input.fork();
    fork.parse::<Ident>().is_ok() && fork.is_empty()
}

fn template(value: &Expr, option: &str) -> syn::Result<Template> {
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

fn ignore_list(value: &Expr) -> syn::Result<Vec<Ident>> {
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
fn count(value: &Expr, option: &str) -> syn::Result<Spanned<u64>> {
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

fn algorithm(value: &Expr) -> syn::Result<Spanned<Algorithm>> {
    let names: Vec<String> = Algorithm::ALL
        .iter()
        .map(|(name, _)| format!("\"{name}\""))
        .collect();
    let expected = format!("`algorithm` is one of {}", names.join(", "));
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Algorithm::ALL
            .iter()
            .find(|(name, _)| *name == lit.value())
            .map(|(_, variant)| Spanned {
                value: *variant,
                span: lit.span(),
            })
            .ok_or_else(|| syn::Error::new(lit.span(), expected)),
        other => Err(syn::Error::new_spanned(other, expected)),
    }
}

fn on_error(value: &Expr) -> syn::Result<Spanned<OnError>> {
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

fn stampede(value: &Expr) -> syn::Result<Stampede> {
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
        ("expire" | "expiry" | "expires" | "ttl_secs" | "time" | "duration" | "timeout", _) => {
            " (the expiry is called `ttl`)"
        }
        ("name" | "key_prefix" | "prefix", _) => " (the key template is called `key`)",
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
