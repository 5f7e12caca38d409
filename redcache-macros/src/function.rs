//! What `#[cached]` needs to know about the fn it is on.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Pat, PathArguments, ReturnType, Signature, Type};

use crate::errors::Errors;

/// How the fn's result is cached, decided from its written return type.
pub(crate) enum Returns<'a> {
    /// `Result<T, E>` (any path ending in `Result`): `Ok` is cached.
    Result { value: &'a Type },
    /// `Option<T>`: `Some` is cached, `None` with `cache_none = true`.
    Option,
    /// Anything else: every value is cached.
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
    /// Reads `sig`, reporting what `#[cached]` cannot work with.
    pub(crate) fn analyze(sig: &'a Signature, errors: &mut Errors) -> Self {
        if let Some(constness) = &sig.constness {
            errors.push_new(
                constness.span,
                "`#[cached]` cannot go on a `const fn`: caching happens at run time",
            );
        }
        if sig.asyncness.is_none() {
            errors.push_new(
                sig.fn_token.span,
                "`#[cached]` goes on an `async fn`: reading the cache is asynchronous",
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
                    "a cached fn must return the value to cache",
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
    let first_type = args.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    match (last.ident.to_string().as_str(), first_type) {
        ("Result", Some(value)) => Returns::Result { value },
        ("Option", Some(_)) => Returns::Option,
        _ => Returns::Value,
    }
}
