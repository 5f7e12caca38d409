//! Key and tag templates: `"product:<id>"`, `"user:<user.id>"`.
//!
//! Parsed and checked at compile time; the expansion builds the key with
//! `Key::new().lit(..).part(key_part!(..))`, so nothing is parsed at run time.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::LitStr;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    Lit(String),
    /// A parameter and the fields below it: `<user.id>` is `["user", "id"]`.
    Arg(Vec<String>),
}

/// A parsed template and the literal it came from.
#[derive(Clone)]
pub(crate) struct Template {
    pub(crate) parts: Vec<Part>,
    pub(crate) lit: LitStr,
}

impl Template {
    pub(crate) fn parse(lit: &LitStr) -> syn::Result<Self> {
        let parts =
            parse_parts(&lit.value()).map_err(|message| syn::Error::new(lit.span(), message))?;
        Ok(Template {
            parts,
            lit: lit.clone(),
        })
    }

    /// The parameters the template names, in order, each once.
    pub(crate) fn roots(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Arg(path) => Some(path[0].as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Checks that every placeholder names one of `params`.
    pub(crate) fn check_roots(&self, params: &[String], what: &str) -> syn::Result<()> {
        for root in self.roots() {
            if !params.iter().any(|p| p == root) {
                let valid = if params.is_empty() {
                    format!("this {what} has no parameters")
                } else {
                    format!("valid parameters: {}", params.join(", "))
                };
                return Err(syn::Error::new(
                    self.lit.span(),
                    format!("`<{root}>` does not name a parameter of this {what}; {valid}"),
                ));
            }
        }
        Ok(())
    }

    /// Reports a `{name}` (format!-style, as cashews writes them) naming one
    /// of `params`: it would be taken literally, and every call would share
    /// one key.
    pub(crate) fn check_braces(&self, params: &[String]) -> syn::Result<()> {
        for part in &self.parts {
            let Part::Lit(text) = part else { continue };
            let mut rest = text.as_str();
            while let Some(open) = rest.find('{') {
                rest = &rest[open + 1..];
                let Some(close) = rest.find('}') else { break };
                let inner = &rest[..close];
                let root = inner.split('.').next().unwrap_or_default();
                if params.iter().any(|p| p == root) {
                    return Err(syn::Error::new(
                        self.lit.span(),
                        format!("`{{{inner}}}` is taken literally: placeholders are written `<{inner}>`"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `::redcache::__private::Key::new().lit("product:").part(key_part!(id)).finish()`
    pub(crate) fn render(&self) -> TokenStream {
        let span = self.lit.span();
        let steps = self.parts.iter().map(|part| match part {
            Part::Lit(text) => quote!(.lit(#text)),
            Part::Arg(path) => {
                let access = field_access(path, span);
                quote_spanned!(span=> .part(::redcache::__private::key_part!(#access)))
            }
        });
        quote!(::redcache::__private::Key::new() #(#steps)* .finish())
    }
}

/// `user.id` as tokens; the root resolves where the template was written.
fn field_access(path: &[String], span: Span) -> TokenStream {
    let root = if path[0] == "self" {
        quote_spanned!(span=> self)
    } else {
        let ident = format_ident!("{}", path[0], span = span);
        quote!(#ident)
    };
    let fields = path[1..].iter().map(|field| match field.parse::<u32>() {
        Ok(index) => {
            let index = syn::Index { index, span };
            quote!(.#index)
        }
        Err(_) => {
            let ident = format_ident!("{}", field, span = span);
            quote!(.#ident)
        }
    });
    quote!(#root #(#fields)*)
}

fn parse_parts(template: &str) -> Result<Vec<Part>, String> {
    if template.is_empty() {
        return Err("a key template cannot be empty".into());
    }
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('<') {
        lit.push_str(&rest[..open]);
        rest = &rest[open + 1..];
        if let Some(after) = rest.strip_prefix('<') {
            lit.push('<');
            rest = after;
            continue;
        }
        let close = rest.find('>').ok_or_else(|| {
            format!("unclosed `<` in template {template:?}; write `<<` for a literal `<`")
        })?;
        let inner = &rest[..close];
        let path: Vec<String> = inner.split('.').map(str::to_string).collect();
        let valid = path.iter().enumerate().all(|(i, segment)| {
            is_ident(segment)
                || (i > 0 && !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()))
        });
        if inner.is_empty() || !valid {
            return Err(format!(
                "`<{inner}>` is not a placeholder: write a parameter name like `<id>` or a field like `<user.id>`"
            ));
        }
        if matches!(parts.last(), Some(Part::Arg(_))) && !lit.contains(':') {
            return Err(separator_error(&parts, &lit, inner));
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(std::mem::take(&mut lit)));
        }
        parts.push(Part::Arg(path));
        rest = &rest[close + 1..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(parts)
}

/// Two placeholders must be apart by a `:`, which arguments never contain
/// (they escape it): otherwise `<a>-<b>` renders ("a", "b-c") and
/// ("a-b", "c") alike.
fn separator_error(parts: &[Part], between: &str, next: &str) -> String {
    let previous = match parts.last() {
        Some(Part::Arg(path)) => path.join("."),
        _ => String::new(),
    };
    let suggestion = format!("<{previous}>:<{next}>");
    format!(
        "`<{previous}>{between}<{next}>`: placeholders must be apart by a `:` (arguments escape `:`, so a key splits back into its arguments; any other separator lets (\"a\", \"b-c\") and (\"a-b\", \"c\") share a key): write `{suggestion}`"
    )
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(path: &[&str]) -> Part {
        Part::Arg(path.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn splits_literals_and_placeholders() {
        assert_eq!(
            parse_parts("product:<id>:<user.id>!").unwrap(),
            vec![
                Part::Lit("product:".into()),
                arg(&["id"]),
                Part::Lit(":".into()),
                arg(&["user", "id"]),
                Part::Lit("!".into()),
            ]
        );
        assert_eq!(parse_parts("<pair.0>").unwrap(), vec![arg(&["pair", "0"])]);
    }

    #[test]
    fn double_angle_is_a_literal() {
        assert_eq!(
            parse_parts("a<<b>").unwrap(),
            vec![Part::Lit("a<b>".into())]
        );
    }

    #[test]
    fn rejects_malformed_templates() {
        for bad in ["", "a:<id", "<>", "<a b>", "<0>", "<a..b>", "<a-b>"] {
            assert!(parse_parts(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn placeholders_must_be_apart_by_a_colon() {
        for bad in [
            "<a><b>",
            "<a>-<b>",
            "x:<a>/<b>",
            "<a>.<b>:c",
            "<a>_<b>",
            "<a>|<b>",
        ] {
            let error = parse_parts(bad).unwrap_err();
            assert!(error.contains("apart by a `:`"), "{bad:?}: {error}");
        }
        for good in ["<a>:<b>", "<a>-x:<b>", "p-<a>:v<b>.json", "<a>::<b>"] {
            assert!(parse_parts(good).is_ok(), "{good:?}");
        }
    }

    mod injective {
        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::*;

        /// Renders `parts` exactly as the expansion does, with the runtime's
        /// own `Key` (the placeholders' roots looked up in `args`).
        fn render(parts: &[Part], args: &BTreeMap<String, String>) -> String {
            let mut key = redcache::Key::new();
            for part in parts {
                key = match part {
                    Part::Lit(text) => key.lit(text),
                    Part::Arg(path) => key.arg(&args[&path[0]]),
                };
            }
            key.finish()
        }

        /// Templates over the characters that separate words in keys, with
        /// up to three placeholders (repeats allowed).
        fn template() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                3 => "[ab:/._|%{} -]{0,3}",
                2 => "<p[0-2]>",
                1 => Just("<<".to_string()),
            ];
            prop::collection::vec(piece, 1..7).prop_map(|pieces| pieces.concat())
        }

        fn argument() -> impl Strategy<Value = String> {
            "[ab:/._|%{}<> -]{0,4}"
        }

        fn arguments() -> impl Strategy<Value = BTreeMap<String, String>> {
            (argument(), argument(), argument()).prop_map(|(a, b, c)| {
                [("p0", a), ("p1", b), ("p2", c)]
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), value))
                    .collect()
            })
        }

        /// The arguments a template actually uses.
        fn used(parts: &[Part], args: &BTreeMap<String, String>) -> Vec<String> {
            parts
                .iter()
                .filter_map(|part| match part {
                    Part::Arg(path) => Some(args[&path[0]].clone()),
                    Part::Lit(_) => None,
                })
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(20_000))]

            /// For every template the macros accept, two calls share a key
            /// only if they pass the same arguments.
            #[test]
            fn a_template_renders_different_arguments_to_different_keys(
                text in template(),
                a in arguments(),
                b in arguments(),
            ) {
                let Ok(parts) = parse_parts(&text) else { return Ok(()) };
                if render(&parts, &a) == render(&parts, &b) {
                    prop_assert_eq!(used(&parts, &a), used(&parts, &b), "template {:?}", text);
                }
            }

            /// The same with arguments that differ in one character only:
            /// the near misses a uniform strategy rarely draws.
            #[test]
            fn moving_a_separator_between_arguments_changes_the_key(
                text in template(),
                left in "[ab:-]{0,3}",
                right in "[ab:-]{0,3}",
            ) {
                let Ok(parts) = parse_parts(&text) else { return Ok(()) };
                let a: BTreeMap<_, _> = [("p0", format!("{left}-")), ("p1", right.clone()), ("p2", String::new())]
                    .into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                let b: BTreeMap<_, _> = [("p0", left.clone()), ("p1", format!("-{right}")), ("p2", String::new())]
                    .into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                if render(&parts, &a) == render(&parts, &b) {
                    prop_assert_eq!(used(&parts, &a), used(&parts, &b), "template {:?}", text);
                }
            }
        }
    }
}
