//! `#[locked(...)]`: the body runs under a distributed lock; when the lock
//! cannot be had, the fn returns `Err(E::from(redcache::Locked))`.
//!
//! ```text
//! // Input:
//! #[locked(key = "job:<name>", ttl = "30s", wait = "5s")]
//! async fn run(name: String) -> Result<(), JobError> { body }
//! // Output:
//! async fn run(name: String) -> Result<(), JobError> {
//!     let __redcache_cache = ::redcache::__private::global();
//!     let __redcache_key = Key::new().lit("job:").part(key_part!(name)).finish();
//!     ::redcache::__private::locked(
//!         __redcache_cache,
//!         ::redcache::__private::LockCall::new(&__redcache_key)
//!             .ttl(Duration::from_secs(30))
//!             .wait(Duration::from_secs(5)),
//!         async move { body },
//!     )
//!     .await
//! }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ItemFn;

use crate::ast::Function;
use crate::attr::{self, LockedArgs};
use crate::emit::{cache_let, key_var};
use crate::errors::Errors;
use crate::valid;

pub(super) fn body(args: TokenStream, _span: Span, func: &ItemFn) -> syn::Result<syn::Block> {
    let mut errors = Errors::default();
    let args: LockedArgs = attr::parse_attribute(args, &mut errors);
    let function = Function::analyze(&func.sig, "#[locked]", &mut errors);
    valid::templates_name_parameters(args.key.get(), &function, &mut errors);
    // The refusal is returned as the fn's error.
    let error_span = function.error_span();
    errors.finish()?;

    let (cache_let, cache) = cache_let(args.cache.get());
    // Without a key, one lock for the whole fn: its path.
    let (resource_let, resource) = match args.key.get() {
        Some(template) => {
            let var = key_var();
            let key = template.render();
            (quote!(let #var = #key;), quote!(&#var))
        }
        None => {
            let var = format_ident!("__redcache_fn", span = Span::mixed_site());
            let name = if function.names_self {
                quote!(&#var.with_self(::core::any::type_name::<Self>()))
            } else {
                quote!(#var.as_str())
            };
            (quote!(let #var = ::redcache::__private::fn_path!();), name)
        }
    };
    let mut call = quote!(::redcache::__private::LockCall::new(#resource));
    if let Some(ttl) = args.ttl.get() {
        let ttl = ttl.to_tokens();
        call.extend(quote!(.ttl(#ttl)));
    }
    if let Some(wait) = args.wait.get() {
        let wait = wait.to_tokens();
        call.extend(quote!(.wait(#wait)));
    }
    if args.auto_extend.get().is_some_and(|flag| flag.value) {
        call.extend(quote!(.auto_extend()));
    }
    let block = &func.block;
    let locked = quote_spanned!(error_span=>
        ::redcache::__private::locked(#cache, #call, async move #block).await
    );
    syn::parse2(quote!({
        #cache_let
        #resource_let
        #locked
    }))
}
