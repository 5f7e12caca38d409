//! What every expansion emits the same way: the cache handle, the key
//! variable, the `Call`, and the fn kept with its errors.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, Ident};

use crate::attr::EntryArgs;
use crate::duration::SpannedDuration;
use crate::options::Stampede;
use crate::template::Template;

/// The `let` of the tags (if any) and the `Call` built from the options.
/// `name` (the key template, or the fn's path) names the call in spans and
/// metrics.
pub(crate) fn call_tokens(entry: &EntryArgs, name: TokenStream) -> (TokenStream, TokenStream) {
    let ttl = entry.ttl.get().expect("checked by require_ttl").to_tokens();
    let key_var = key_var();
    let mut call = quote!(::redcache::__private::Call::new(#name, &#key_var, #ttl));
    let mut tags_let = TokenStream::new();
    if !entry.tags().is_empty() {
        let tags_var = format_ident!("__redcache_tags", span = Span::mixed_site());
        let tags = entry.tags().iter().map(Template::render);
        tags_let = quote!(let #tags_var = [#(#tags),*];);
        call.extend(quote!(.tags(&#tags_var)));
    }
    // The default (distributed) is left out of the expansion.
    if let Some(stampede) = entry
        .stampede
        .get()
        .filter(|s| **s != Stampede::Distributed)
    {
        call.extend(quote!(.stampede(#stampede)));
    }
    // Spanned at the option's value: a codec whose feature is off is
    // reported there.
    if let Some(codec) = entry.codec.get() {
        call.extend(quote_spanned!(codec.span=> .codec(#codec)));
    }
    (tags_let, call)
}

/// `.stale(..)` and `.fail_safe(..)` on a `Call`: how long its entry is kept
/// past its expiry (a reader's windows, or a writer's for its reader).
pub(crate) fn keep_windows(
    stale: Option<&SpannedDuration>,
    fail_safe: Option<&SpannedDuration>,
    call: &mut TokenStream,
) {
    if let Some(stale) = stale {
        let stale = stale.to_tokens();
        call.extend(quote!(.stale(#stale)));
    }
    if let Some(fail_safe) = fail_safe {
        let fail_safe = fail_safe.to_tokens();
        call.extend(quote!(.fail_safe(#fail_safe)));
    }
}

/// `let __redcache_cache = ...;`: the cache as an owned handle, evaluated
/// once before the body (which may move `self`: `self: Arc<Self>` with
/// `cache = self.cache`). A `cache =` of the wrong type is reported at the
/// expression.
pub(crate) fn cache_let(cache: Option<&Expr>) -> (TokenStream, Ident) {
    let var = format_ident!("__redcache_cache", span = Span::mixed_site());
    let value = match cache {
        Some(expr) => quote_spanned!(expr.span()=> ::redcache::__private::handle(&(#expr))),
        None => quote!(::redcache::__private::global()),
    };
    (quote!(let #var = #value;), var)
}

pub(crate) fn key_var() -> Ident {
    format_ident!("__redcache_key", span = Span::mixed_site())
}

/// The errors of a function-like macro as one expression of type `stand_in`
/// (a value the call site can use): several `compile_error!`s side by side
/// are not an expression, and rustc would add its own noise about them
/// ("missing angle brackets", E0223) to the real errors.
pub(crate) fn error_expr(error: syn::Error, stand_in: TokenStream) -> TokenStream {
    let errors = error.into_iter().map(|e| {
        let e = e.into_compile_error();
        quote!(#e;)
    });
    quote!({ #(#errors)* #stand_in })
}

pub(crate) fn with_error(mut item: TokenStream, error: syn::Error) -> TokenStream {
    item.extend(error.into_compile_error());
    item
}
