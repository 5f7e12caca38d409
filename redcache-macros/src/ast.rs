//! What the attributes need to know about the fn they are on.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, GenericParam, Ident, Pat, PathArguments, ReturnType, Signature, Type,
};

use crate::errors::Errors;

/// The written return type, when it reads as a `Result<T, E>`: only to
/// point errors at `T` or `E`. What is cached is decided on the real type
/// in the expansion (`returns!`), so aliases work.
pub(crate) struct WrittenResult<'a> {
    pub(crate) value: &'a Type,
    pub(crate) error: Option<&'a Type>,
}

/// A name bound by a parameter: `id` in `id: u64`, `a` and `b` in
/// `(a, b): (u32, u32)`, `self`.
pub(crate) struct Binding {
    pub(crate) name: String,
    pub(crate) span: Span,
}

impl Binding {
    /// `self`, or a name starting with `_`: left out of keys unless named.
    pub(crate) fn is_ignored_by_name(&self) -> bool {
        self.name == "self" || self.name.starts_with('_')
    }

    pub(crate) fn ident(&self) -> Ident {
        Ident::new(&self.name, self.span)
    }
}

/// A generic parameter of the fn that a default key must name.
pub(crate) enum Generic {
    Type(Ident),
    Const(Ident),
}

pub(crate) struct Function<'a> {
    /// Every name the parameters bind, in order.
    pub(crate) bindings: Vec<Binding>,
    /// Whether the signature writes `Self`, so the body can name it.
    pub(crate) names_self: bool,
    pub(crate) generics: Vec<Generic>,
    pub(crate) written_result: Option<WrittenResult<'a>>,
    pub(crate) return_type: Option<&'a Type>,
}

impl<'a> Function<'a> {
    /// Reads `sig`, reporting what the attribute `attr` cannot work with.
    pub(crate) fn analyze(sig: &'a Signature, attr: &str, errors: &mut Errors) -> Self {
        if let Some(constness) = &sig.constness {
            errors.push_new(
                constness.span,
                format!("`{attr}` cannot go on a `const fn`: it works at run time"),
            );
        }
        if sig.asyncness.is_none() {
            errors.push_new(
                sig.fn_token.span,
                format!("`{attr}` goes on an `async fn`: it talks to its backend asynchronously"),
            );
        }
        let mut has_receiver = false;
        let mut bindings = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(receiver) => {
                    has_receiver = true;
                    bindings.push(Binding {
                        name: "self".into(),
                        span: receiver.self_token.span,
                    });
                }
                FnArg::Typed(typed) => collect_bindings(&typed.pat, &mut bindings),
            }
        }
        let return_type = match &sig.output {
            ReturnType::Default => {
                errors.push_new(
                    sig.ident.span(),
                    format!("a fn under `{attr}` must return a value"),
                );
                None
            }
            ReturnType::Type(_, ty) => Some(&**ty),
        };
        let generics = sig
            .generics
            .params
            .iter()
            .filter_map(|param| match param {
                GenericParam::Type(ty) => Some(Generic::Type(ty.ident.clone())),
                GenericParam::Const(c) => Some(Generic::Const(c.ident.clone())),
                GenericParam::Lifetime(_) => None,
            })
            .collect();
        Function {
            bindings,
            names_self: has_receiver
                || mentions_self(sig.inputs.to_token_stream())
                || mentions_self(sig.output.to_token_stream()),
            generics,
            written_result: return_type.and_then(written_result),
            return_type,
        }
    }

    /// The names a template may use.
    pub(crate) fn names(&self) -> Vec<String> {
        self.bindings.iter().map(|b| b.name.clone()).collect()
    }

    /// Where to report a problem with what the fn returns.
    pub(crate) fn return_span(&self) -> Span {
        self.return_type.map_or_else(Span::call_site, Spanned::span)
    }

    /// Where to report an error type that cannot hold a refusal
    /// (`#[rate_limited]`, `#[locked]`): the `E` of a written
    /// `Result<T, E>`, else the whole return type (an alias is checked on
    /// its real type).
    pub(crate) fn error_span(&self) -> Span {
        self.written_result
            .as_ref()
            .and_then(|result| result.error)
            .map_or_else(|| self.return_span(), Spanned::span)
    }

    /// Where to report a problem with the value that is cached: the `T` of
    /// a written `Result<T, E>`, else the whole return type.
    pub(crate) fn value_span(&self) -> Span {
        self.written_result
            .as_ref()
            .map_or_else(|| self.return_span(), |result| result.value.span())
    }
}

/// The names a pattern binds; `_` and literals bind none.
fn collect_bindings(pat: &Pat, out: &mut Vec<Binding>) {
    match pat {
        Pat::Ident(ident) => {
            out.push(Binding {
                name: ident.ident.to_string(),
                span: ident.ident.span(),
            });
            if let Some((_, sub)) = &ident.subpat {
                collect_bindings(sub, out);
            }
        }
        Pat::Tuple(tuple) => tuple.elems.iter().for_each(|p| collect_bindings(p, out)),
        Pat::TupleStruct(tuple) => tuple.elems.iter().for_each(|p| collect_bindings(p, out)),
        Pat::Struct(strukt) => strukt
            .fields
            .iter()
            .for_each(|field| collect_bindings(&field.pat, out)),
        Pat::Reference(reference) => collect_bindings(&reference.pat, out),
        Pat::Paren(paren) => collect_bindings(&paren.pat, out),
        Pat::Slice(slice) => slice.elems.iter().for_each(|p| collect_bindings(p, out)),
        Pat::Type(typed) => collect_bindings(&typed.pat, out),
        _ => {}
    }
}

fn mentions_self(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => ident == "Self",
        TokenTree::Group(group) => mentions_self(group.stream()),
        _ => false,
    })
}

fn written_result(ty: &Type) -> Option<WrittenResult<'_>> {
    let Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    Some(WrittenResult {
        value: types.next()?,
        error: types.next(),
    })
}
