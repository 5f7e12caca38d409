//! `#[invalidates(...)]`: after the body succeeds, its tags and keys are
//! invalidated.
//!
//! ```text
//! // Input:
//! #[invalidates(tags = ["category:<cat>"], keys = ["product:<id>"])]
//! async fn delete(id: u64, cat: u64) -> Result<(), DbError> { body }
//! // Output:
//! async fn delete(id: u64, cat: u64) -> Result<(), DbError> {
//!     let __redcache_cache = ::redcache::__private::global();
//!     let __redcache_tags: [String; 1] = [Key::new().lit("category:").part(key_part!(cat)).finish()];
//!     let __redcache_keys: [String; 1] = [Key::new().lit("product:").part(key_part!(id)).finish()];
//!     ::redcache::__private::writes!(Result<(), DbError>)
//!         .invalidate(__redcache_cache, Invalidation::new(&__redcache_tags, &__redcache_keys), async move { body })
//!         .await
//! }
//! ```

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote};
use syn::ItemFn;

use crate::ast::Function;
use crate::attr::{self, InvalidatesArgs};
use crate::emit::cache_let;
use crate::errors::Errors;
use crate::template::Template;
use crate::valid;

pub(super) fn body(args: TokenStream, span: Span, func: &ItemFn) -> syn::Result<syn::Block> {
    let mut errors = Errors::default();
    let args: InvalidatesArgs = attr::parse_attribute(args, &mut errors);
    if !args.tags.written() && !args.keys.written() {
        errors.push_new(
            span,
            "`#[invalidates]` needs what to invalidate: `tags = [\"category:<cat>\"]`, `keys = [\"product:<id>\"]`, or both",
        );
    }
    let function = Function::analyze(&func.sig, "#[invalidates]", &mut errors);
    let templates = args.tags().iter().chain(args.keys());
    valid::templates_name_parameters(templates, &function, &mut errors);
    errors.finish()?;

    let (cache_let, cache) = cache_let(args.cache.get());
    let tags_var = format_ident!("__redcache_tags", span = Span::mixed_site());
    let keys_var = format_ident!("__redcache_keys", span = Span::mixed_site());
    let tags_let = rendered(&tags_var, args.tags());
    let keys_let = rendered(&keys_var, args.keys());
    let return_type = function.return_type.expect("checked by Function::analyze");
    let block = &func.block;
    syn::parse2(quote!({
        #cache_let
        #tags_let
        #keys_let
        ::redcache::__private::writes!(#return_type)
            .invalidate(
                #cache,
                ::redcache::__private::Invalidation::new(&#tags_var, &#keys_var),
                async move #block,
            )
            .await
    }))
}

/// `let var: [String; N] = [..];`, the templates rendered.
fn rendered(var: &syn::Ident, templates: &[Template]) -> TokenStream {
    let len = Literal::usize_unsuffixed(templates.len());
    let renders = templates.iter().map(Template::render);
    quote!(let #var: [::std::string::String; #len] = [#(#renders),*];)
}
