//! `get_or_load!(ttl = .., key = "..", async { .. })`.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::parse::{ParseStream, Parser};

use crate::attr::{self, GetOrLoadArgs};
use crate::emit::{cache_let, call_tokens, error_expr, key_var};
use crate::errors::Errors;
use crate::template::Template;

/// `get_or_load!(ttl = .., key = "..", async { .. })`: a future of the
/// cached `Result`.
pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let parsed = (|input: ParseStream| attr::parse(input, &mut errors)).parse2(input);
    let (GetOrLoadArgs { entry }, future) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            errors.push(error);
            (GetOrLoadArgs::default(), None)
        }
    };
    entry.require_ttl(Span::call_site(), &mut errors);
    if !entry.key.written() {
        errors.push_new(
            Span::call_site(),
            "missing `key`: `get_or_load!` needs a key template, e.g. `key = \"product:<id>\"`",
        );
    }
    if future.is_none() {
        errors.push_new(
            Span::call_site(),
            "missing the future to cache: `get_or_load!(ttl = 60, key = \"...\", async { ... })`",
        );
    }
    if let Err(error) = errors.finish() {
        // A future that never ends stands in for the cached one, so the
        // caller's `.await?` adds no error of its own.
        return error_expr(error, quote!(::core::future::pending()));
    }
    let key = entry.key.get().map(Template::render);
    let (cache_let, cache) = cache_let(entry.cache.get());
    let name = entry.key.get().map(|template| &template.lit);
    let (tags_let, call) = call_tokens(&entry, quote!(#name));
    let key_var = key_var();
    quote!(async {
        #cache_let
        let #key_var = #key;
        #tags_let
        ::redcache::__private::cached_result(#cache, #call, #future).await
    })
}
