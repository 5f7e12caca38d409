//! `#[cache_put(...)]`: after the body succeeds, its value is stored under
//! the key, so the next `#[cached]` read of that key (same template, same
//! tags) is a hit with it.
//!
//! ```text
//! // Input:
//! #[cache_put(ttl = 300, key = "product:<product.id>")]
//! async fn save(product: Product) -> Result<Product, DbError> { body }
//! // Output:
//! async fn save(product: Product) -> Result<Product, DbError> {
//!     let __redcache_cache = ::redcache::__private::global();
//!     let __redcache_key = ::redcache::__private::Key::new().lit("product:").part(key_part!(product.id)).finish();
//!     ::redcache::__private::writes!(Result<Product, DbError>)
//!         .put(__redcache_cache, Call::new("product:<product.id>", &__redcache_key, Duration::from_secs(300)), async move { body })
//!         .await
//! }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::ItemFn;

use crate::ast::Function;
use crate::attr::{self, CachePutArgs};
use crate::emit::{cache_let, call_tokens, keep_windows, key_var};
use crate::errors::Errors;
use crate::valid;

pub(super) fn body(args: TokenStream, span: Span, func: &ItemFn) -> syn::Result<syn::Block> {
    let mut errors = Errors::default();
    let args: CachePutArgs = attr::parse_attribute(args, &mut errors);
    let entry = &args.entry;
    entry.require_ttl(span, &mut errors);
    if !entry.key.written() {
        errors.push_new(
            span,
            "missing `key`: `#[cache_put]` stores under the key of the `#[cached]` fn it updates, e.g. `key = \"product:<product.id>\"`",
        );
    }
    let function = Function::analyze(&func.sig, "#[cache_put]", &mut errors);
    let templates = entry.key.get().into_iter().chain(entry.tags());
    valid::templates_name_parameters(templates, &function, &mut errors);
    errors.finish()?;

    let template = entry.key.get().expect("checked above");
    let key = template.render();
    let name = template.lit.to_token_stream();
    let (cache_let, cache) = cache_let(entry.cache.get());
    let (tags_let, mut call) = call_tokens(entry, name);
    // The reader's windows past the expiry, so the entry is kept for them.
    keep_windows(args.stale.get(), args.fail_safe.get(), &mut call);
    let key_var = key_var();
    let return_type = function.return_type.expect("checked by Function::analyze");
    // Spanned at what is stored (the `T` of a written `Result<T, E>`): a
    // value type without `Serialize` is reported there.
    let value_span = function.value_span();
    let block = &func.block;
    let put = quote_spanned!(value_span=>
        ::redcache::__private::writes!(#return_type).put(#cache, #call, async move #block).await
    );
    syn::parse2(quote!({
        #cache_let
        let #key_var = #key;
        #tags_let
        #put
    }))
}
