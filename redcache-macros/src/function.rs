//! What the attributes need to know about the fn they are on.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Pat, PathArguments, ReturnType, Signature, Type};

use crate::errors::Errors;

/// What the fn returns, decided from its written return type.
pub(crate) enum Returns<'a> {
    /// `Result<T, E>` (any path ending in `Result`). `E` is unknown for
    /// aliases such as `io::Result<T>`.
    Result {
        value: &'a Type,
        error: Option<&'a Type>,
    },
    /// `Option<T>`.
    Option,
    /// Anything else.
    Value,
}

/// A parameter: its name, when it has one, and where it is written.
pub(crate) struct Param {
    pub(crate) name: Option<String>,
    pub(crate) span: Span,
}

pub(crate) struct Function<'a> {
    pub(crate) params: Vec<Param>,
    pub(crate) has_receiver: bool,
    pub(crate) returns: Returns<'a>,
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
        let params = sig
            .inputs
            .iter()
            .map(|input| match input {
                FnArg::Receiver(receiver) => {
                    has_receiver = true;
                    Param {
                        name: Some("self".into()),
                        span: receiver.span(),
                    }
                }
                FnArg::Typed(typed) => Param {
                    name: match &*typed.pat {
                        Pat::Ident(ident) => Some(ident.ident.to_string()),
                        _ => None,
                    },
                    span: typed.pat.span(),
                },
            })
            .collect();
        let (returns, return_type) = match &sig.output {
            ReturnType::Default => {
                errors.push_new(
                    sig.ident.span(),
                    format!("a fn under `{attr}` must return a value"),
                );
                (Returns::Value, None)
            }
            ReturnType::Type(_, ty) => (classify(ty), Some(&**ty)),
        };
        Function {
            params,
            has_receiver,
            returns,
            return_type,
        }
    }

    /// The names a template may use.
    pub(crate) fn names(&self) -> Vec<String> {
        self.params.iter().filter_map(|p| p.name.clone()).collect()
    }

    /// Where to report a problem with what the fn returns.
    pub(crate) fn return_span(&self) -> Span {
        self.return_type.map_or_else(Span::call_site, Spanned::span)
    }
}

fn classify(ty: &Type) -> Returns<'_> {
    let Type::Path(path) = ty else {
        return Returns::Value;
    };
    let Some(last) = path.path.segments.last() else {
        return Returns::Value;
    };
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return Returns::Value;
    };
    let mut types = args.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    match (last.ident.to_string().as_str(), types.next()) {
        ("Result", Some(value)) => Returns::Result {
            value,
            error: types.next(),
        },
        ("Option", Some(_)) => Returns::Option,
        _ => Returns::Value,
    }
}
