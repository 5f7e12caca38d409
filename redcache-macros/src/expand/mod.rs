//! The expansions, one file per macro. This file applies stacked
//! attributes: each redcache attribute below the top one is applied first,
//! so the top one is the outermost at run time.

mod async_trait;
mod cache_put;
mod cached;
pub(crate) mod get_or_load;
mod invalidates;
pub(crate) mod key;
mod locked;
mod rate_limited;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Attribute, ItemFn, Meta};

use crate::emit::with_error;
use crate::errors::Errors;

/// A redcache attribute.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Attr {
    Cached,
    RateLimited,
    CachePut,
    Invalidates,
    Locked,
}

impl Attr {
    /// Recognises `cached`, `rate_limited`, `cache_put`, `invalidates`,
    /// `locked`, and the same under `redcache::`.
    pub(crate) fn of(attribute: &Attribute) -> Option<Attr> {
        let segments = &attribute.path().segments;
        let last = segments.last()?.ident.to_string();
        let ours = segments.len() == 1 || (segments.len() == 2 && segments[0].ident == "redcache");
        match last.as_str() {
            "cached" if ours => Some(Attr::Cached),
            "rate_limited" if ours => Some(Attr::RateLimited),
            "cache_put" if ours => Some(Attr::CachePut),
            "invalidates" if ours => Some(Attr::Invalidates),
            "locked" if ours => Some(Attr::Locked),
            _ => None,
        }
    }
}

/// A redcache attribute on an async fn. Redcache attributes below it are
/// applied first, so that the top attribute is the outermost at run time
/// (as decorators stack in other languages): `#[cached] #[rate_limited]`
/// checks the limit only on a miss, `#[rate_limited] #[cached]` on every call.
pub(crate) fn attribute(attr: Attr, args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(error) => return with_error(item, error),
    };
    // In an `#[async_trait]` impl the fn arrives boxed: expand the `async
    // fn` it was written as, and box the result again.
    let Some((unboxed, boxed)) = async_trait::unbox(&func) else {
        return match apply(attr, args, Span::call_site(), func.clone()) {
            Ok(func) => func.into_token_stream(),
            // Keep the user's fn so that the rest of the crate and IDEs
            // still see it, without the redcache attributes below this one
            // (their errors are among these; they must not be reported twice).
            Err(error) => with_error(without_ours(func).into_token_stream(), error),
        };
    };
    let mut errors = Errors::default();
    boxed.check(&mut errors);
    let expanded = apply(attr, args, Span::call_site(), unboxed);
    match (expanded, errors.finish()) {
        (Ok(expanded), Ok(())) => boxed.rebox(expanded).into_token_stream(),
        (Ok(_), Err(error)) | (Err(error), Ok(())) => {
            with_error(without_ours(func).into_token_stream(), error)
        }
        (Err(mut error), Err(renamed)) => {
            error.combine(renamed);
            with_error(without_ours(func).into_token_stream(), error)
        }
    }
}

/// Applies `attr` (written at `span`) to `func`, after the redcache
/// attributes below it. Errors of all of them are reported together.
fn apply(attr: Attr, args: TokenStream, span: Span, mut func: ItemFn) -> syn::Result<ItemFn> {
    match attr {
        Attr::Cached | Attr::CachePut | Attr::Invalidates | Attr::Locked => {
            let body = match attr {
                Attr::Cached => cached::body,
                Attr::CachePut => cache_put::body,
                Attr::Locked => locked::body,
                _ => invalidates::body,
            };
            let (mut func, inner) = split_result(apply_inner(func.clone()), func);
            let outer = body(args, span, &func).map(|block| *func.block = block);
            combine(inner, outer)?;
            Ok(func)
        }
        Attr::RateLimited => {
            // Stacked #[rate_limited] directly below are policies of the
            // same check, consumed all-or-nothing.
            let mut stack = vec![(args, span)];
            while let Some(index) = func.attrs.iter().position(|a| Attr::of(a).is_some()) {
                if Attr::of(&func.attrs[index]) != Some(Attr::RateLimited) {
                    break;
                }
                let attribute = func.attrs.remove(index);
                stack.push((attribute_args(&attribute), attribute_span(&attribute)));
            }
            let (func, inner) = split_result(apply_inner(func.clone()), func);
            let outer = rate_limited::expand(stack, func);
            combine(inner, outer.as_ref().map(|_| ()).map_err(Clone::clone))?;
            outer
        }
    }
}

/// The inner expansion, or the fn without redcache attributes and the error.
fn split_result(inner: syn::Result<ItemFn>, original: ItemFn) -> (ItemFn, syn::Result<()>) {
    match inner {
        Ok(func) => (func, Ok(())),
        Err(error) => (without_ours(original), Err(error)),
    }
}

fn combine(first: syn::Result<()>, second: syn::Result<()>) -> syn::Result<()> {
    match (first, second) {
        (Err(mut a), Err(b)) => {
            a.combine(b);
            Err(a)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
        _ => Ok(()),
    }
}

fn without_ours(mut func: ItemFn) -> ItemFn {
    func.attrs.retain(|a| Attr::of(a).is_none());
    func
}

/// Applies the first redcache attribute left on `func`, if any.
fn apply_inner(mut func: ItemFn) -> syn::Result<ItemFn> {
    let Some(index) = func.attrs.iter().position(|a| Attr::of(a).is_some()) else {
        return Ok(func);
    };
    let attribute = func.attrs.remove(index);
    let attr = Attr::of(&attribute).expect("found by Attr::of");
    apply(
        attr,
        attribute_args(&attribute),
        attribute_span(&attribute),
        func,
    )
}

/// Where to report a problem with a whole attribute below the top one: its
/// name (a span covering the whole attribute needs a nightly compiler).
fn attribute_span(attribute: &Attribute) -> Span {
    attribute
        .path()
        .segments
        .last()
        .map_or_else(|| attribute.span(), |segment| segment.ident.span())
}

fn attribute_args(attribute: &Attribute) -> TokenStream {
    match &attribute.meta {
        Meta::List(list) => list.tokens.clone(),
        _ => TokenStream::new(),
    }
}
