//! Durations in attributes: `300` (seconds) or `"90s"`, `"500ms"`, `"5m"`,
//! `"1h"`, `"1d"`.

use std::time::Duration;

use proc_macro2::{Literal, Span, TokenStream};
use quote::quote_spanned;
use syn::{Expr, ExprLit, Lit};

/// A duration given in an attribute, with the span of its literal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpannedDuration {
    pub(crate) value: Duration,
    pub(crate) span: Span,
}

impl SpannedDuration {
    /// Parses `expr`, which must be an integer (seconds) or a duration string.
    pub(crate) fn parse(expr: &Expr, option: &str) -> syn::Result<Self> {
        let expected = || {
            syn::Error::new_spanned(
                expr,
                format!("`{option}` takes whole seconds (`{option} = 300`) or a duration string (`{option} = \"5m\"`; units ms, s, m, h, d)"),
            )
        };
        let value = match expr {
            Expr::Lit(ExprLit { lit: Lit::Int(int), .. }) => {
                Duration::from_secs(int.base10_parse::<u64>().map_err(|_| expected())?)
            }
            Expr::Lit(ExprLit { lit: Lit::Str(text), .. }) => {
                parse_text(&text.value()).ok_or_else(|| {
                    syn::Error::new(
                        text.span(),
                        format!("`{}` is not a duration: write a number and a unit, e.g. \"500ms\", \"90s\", \"5m\", \"1h\" or \"1d\"", text.value()),
                    )
                })?
            }
            _ => return Err(expected()),
        };
        Ok(SpannedDuration {
            value,
            span: syn::spanned::Spanned::span(expr),
        })
    }

    /// `Duration::from_secs(n)` (or `from_millis`), spanned at the literal.
    pub(crate) fn to_tokens(self) -> TokenStream {
        let span = self.span;
        if self.value.subsec_millis() == 0 {
            let secs = Literal::u64_unsuffixed(self.value.as_secs());
            quote_spanned!(span=> ::redcache::__private::Duration::from_secs(#secs))
        } else {
            let millis = Literal::u64_unsuffixed(self.value.as_millis() as u64);
            quote_spanned!(span=> ::redcache::__private::Duration::from_millis(#millis))
        }
    }
}

fn parse_text(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_text("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_text("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_text("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_text("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_text("250ms"), Some(Duration::from_millis(250)));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in ["", "s", "10", "10 years", "1.5h", "-3s", "m5"] {
            assert_eq!(parse_text(bad), None, "{bad:?}");
        }
    }
}
