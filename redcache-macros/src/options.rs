//! The options of `#[cached]` and `get_or_load!`: parsed into a typed
//! struct, with every mistake collected (unknown, duplicate, ill-typed) and
//! reported at its own token.

use proc_macro2::Span;
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
            ],
            Site::Inline => &["ttl", "key", "tags", "tag", "cache", "stampede"],
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Stampede {
    Off,
    Local,
    Distributed,
}

#[derive(Default)]
pub(crate) struct Options {
    pub(crate) ttl: Option<SpannedDuration>,
    pub(crate) key: Option<Template>,
    pub(crate) tags: Vec<Template>,
    pub(crate) cache: Option<Expr>,
    pub(crate) stampede: Option<Stampede>,
    pub(crate) cache_none: Option<LitBool>,
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
            let is_option = input.peek(Ident)
                && (input.peek2(Token![=]) || input.peek2(Token![,]) || peek_last(input));
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
            "ttl" => SpannedDuration::parse(&value, "ttl").and_then(|ttl| {
                if ttl.value.is_zero() {
                    Err(syn::Error::new(
                        ttl.span,
                        "`ttl` must be greater than zero: every cached key needs an expiry",
                    ))
                } else {
                    self.ttl = Some(ttl);
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
    let hint = match name {
        "expire" | "expiry" | "expires" | "ttl_secs" | "time" | "duration" | "timeout" => {
            " (the expiry is called `ttl`)".to_string()
        }
        "name" | "key_prefix" | "prefix" => " (the key template is called `key`)".to_string(),
        "cache_none" if site == Site::Inline => {
            " (`get_or_load!` caches the `Ok` of a `Result`; there is no `None` to cache)"
                .to_string()
        }
        _ => String::new(),
    };
    format!(
        "unknown option `{name}`{hint}; expected one of: {}",
        site.allowed().join(", ")
    )
}
