//! `#[cached(...)]`: the key, the tags and one call into
//! `redcache::__private`, dispatched on the real return type.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::{Ident, ItemFn};

use crate::ast::{Function, Generic};
use crate::attr::{self, CachedArgs};
use crate::emit::{cache_let, call_tokens, keep_windows, key_var};
use crate::errors::Errors;
use crate::valid;

pub(super) fn body(args: TokenStream, span: Span, func: &ItemFn) -> syn::Result<syn::Block> {
    let mut errors = Errors::default();
    let args: CachedArgs = attr::parse_attribute(args, &mut errors);
    let entry = &args.entry;
    entry.require_ttl(span, &mut errors);
    let function = Function::analyze(&func.sig, "#[cached]", &mut errors);
    let templates = entry.key.get().into_iter().chain(entry.tags());
    let templates_valid = valid::templates_name_parameters(templates, &function, &mut errors);
    valid::ignored(&args, &function, &mut errors);
    valid::timeout_has_a_value_to_serve(&args, &mut errors);
    if let (Some(key), true) = (entry.key.get(), templates_valid) {
        valid::key_names_every_parameter(key, &args, &function, &mut errors);
    }
    errors.finish()?;

    let key_var = key_var();
    let fn_var = format_ident!("__redcache_fn", span = Span::mixed_site());
    let (fn_let, key, name) = match entry.key.get() {
        Some(template) => (
            TokenStream::new(),
            template.render(),
            template.lit.to_token_stream(),
        ),
        None => (
            quote!(let #fn_var = ::redcache::__private::fn_path!();),
            default_key(&function, &args, &fn_var),
            quote!(#fn_var.as_str()),
        ),
    };
    let (cache_let, cache) = cache_let(entry.cache.get());
    let block = &func.block;
    let mut future = quote!(async move #block);
    if let Some(timeout) = args.hard_timeout.get() {
        // Spanned at the option: a return type that cannot carry the
        // timeout is reported there.
        let after = timeout.to_tokens();
        future =
            quote_spanned!(timeout.span=> ::redcache::__private::hard_timeout(#after, #future));
    }
    let (tags_let, mut call) = call_tokens(entry, name);
    lifecycle_tokens(&args, &mut call);
    if entry.key.get().is_none() && !function.names_self {
        // In a generic impl without `Self` the path cannot tell instances
        // apart: the engine then runs the fn uncached, and says so.
        call.extend(quote!(.fn_path(#fn_var)));
    }
    let return_type = function.return_type.expect("checked by Function::analyze");
    // The call carries the span of the return type (its value type for a
    // written `Result`), so a value type that cannot be cached is reported
    // there, and `cache_none` on a fn without an `Option` at the flag.
    let value_span = function.value_span();
    let mut kind = quote_spanned!(value_span=> ::redcache::__private::returns!(#return_type));
    if let Some(flag) = args.cache_none.get() {
        let value = flag.value;
        kind = quote_spanned!(flag.span=> ::redcache::__private::cache_none(#kind, #value));
    }
    // `early_refresh` and `stale` may finish a load after the call returned:
    // the body must own what it uses. Spanned at the option, so a body
    // that borrows is reported there.
    let body = match args.refreshes() {
        Some(span) => quote_spanned!(span=> #kind.cached_refreshing(#cache, #call, #future).await),
        None => quote_spanned!(value_span=> #kind.cached(#cache, #call, #future).await),
    };
    syn::parse2(quote!({
        #fn_let
        #cache_let
        let #key_var = #key;
        #tags_let
        #body
    }))
}

/// `.stale(..)`, `.fail_safe(..)`, `.early_refresh(..)`, `.soft_timeout(..)`, `.jitter(..)` on
/// the `Call`, for the options given.
fn lifecycle_tokens(args: &CachedArgs, call: &mut TokenStream) {
    keep_windows(args.stale.get(), args.fail_safe.get(), call);
    if let Some(beta) = args.early_refresh.get() {
        let beta = proc_macro2::Literal::f64_unsuffixed(beta.value);
        call.extend(quote!(.early_refresh(#beta)));
    }
    if let Some(timeout) = args.timeout.get() {
        let timeout = timeout.to_tokens();
        call.extend(quote!(.soft_timeout(#timeout)));
    }
    if let Some(jitter) = args.jitter.get() {
        let jitter = proc_macro2::Literal::f64_unsuffixed(jitter.value);
        call.extend(quote!(.jitter(#jitter)));
    }
}

/// The key of a fn without `key = ...`: its path (as the compiler names
/// it, impl and trait included, with `Self` where it can be named), its
/// generic arguments and its arguments, `crate::module::Type::fn_name:1:a`.
fn default_key(function: &Function<'_>, args: &CachedArgs, fn_var: &Ident) -> TokenStream {
    let path = if function.names_self {
        quote!(.lit(&#fn_var.with_self(::core::any::type_name::<Self>())))
    } else {
        quote!(.lit(#fn_var.as_str()))
    };
    let generics = (!function.generics.is_empty()).then(|| {
        let args = function.generics.iter().map(|generic| match generic {
            Generic::Type(ty) => quote!(&::core::any::type_name::<#ty>()),
            Generic::Const(name) => quote!(&#name),
        });
        quote!(.generics(&[#(#args),*]))
    });
    // Each argument is spanned at its parameter, so an argument that cannot
    // be part of a key is reported there.
    let args = function
        .bindings
        .iter()
        .filter(|b| !b.is_ignored_by_name() && !args.ignored().iter().any(|i| *i == b.name))
        .map(|binding| {
            let ident = binding.ident();
            quote_spanned!(binding.span=> .lit(":").part(::redcache::__private::key_part!(#ident)))
        });
    quote!(::redcache::__private::Key::new() #path #generics #(#args)* .finish())
}
