//! Code generation. Each expansion renders the key and tags and makes one
//! call into `::redcache::__private`; the engine stays in the runtime crate.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Ident, ItemFn, LitStr, Meta, Token};

use crate::errors::Errors;
use crate::function::{Function, Generic};
use crate::options::{Options, Site, Stampede};
use crate::template::Template;

/// A redcache attribute.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Attr {
    Cached,
    RateLimited,
}

impl Attr {
    /// Recognises `cached`, `rate_limited` and the same under `redcache::`.
    pub(crate) fn of(attribute: &Attribute) -> Option<Attr> {
        let segments = &attribute.path().segments;
        let last = segments.last()?.ident.to_string();
        let ours = segments.len() == 1 || (segments.len() == 2 && segments[0].ident == "redcache");
        match last.as_str() {
            "cached" if ours => Some(Attr::Cached),
            "rate_limited" if ours => Some(Attr::RateLimited),
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
    match apply(attr, args, Span::call_site(), func.clone()) {
        Ok(func) => func.into_token_stream(),
        // Keep the user's fn so that the rest of the crate and IDEs still
        // see it, without the redcache attributes below this one (their
        // errors are among these; they must not be reported twice).
        Err(error) => with_error(without_ours(func).into_token_stream(), error),
    }
}

/// Applies `attr` (written at `span`) to `func`, after the redcache
/// attributes below it. Errors of all of them are reported together.
fn apply(attr: Attr, args: TokenStream, span: Span, mut func: ItemFn) -> syn::Result<ItemFn> {
    match attr {
        Attr::Cached => {
            let (mut func, inner) = split_result(apply_inner(func.clone()), func);
            let outer = cached_body(args, span, &func).map(|block| *func.block = block);
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
            let outer = crate::rate_limit::rate_limited(stack, func);
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

fn cached_body(args: TokenStream, span: Span, func: &ItemFn) -> syn::Result<syn::Block> {
    let mut errors = Errors::default();
    let parsed =
        (|input: ParseStream| Options::parse(input, Site::Attribute, &mut errors)).parse2(args);
    let options = match parsed {
        Ok((options, _)) => options,
        Err(error) => {
            errors.push(error);
            Options::default()
        }
    };
    options.require_ttl(span, &mut errors);
    let function = Function::analyze(&func.sig, "#[cached]", &mut errors);
    let names = function.names();
    let mut templates_valid = true;
    for template in options.key.iter().chain(&options.tags) {
        if let Err(error) = template
            .check_roots(&names, "fn")
            .and_then(|()| template.check_braces(&names))
        {
            templates_valid = false;
            errors.push(error);
        }
    }
    check_ignored(&options, &function, &mut errors);
    if let (Some(key), true) = (&options.key, templates_valid) {
        check_key_names_every_parameter(key, &options, &function, &mut errors);
    }
    errors.finish()?;

    let key_var = key_var();
    let fn_var = format_ident!("__redcache_fn", span = Span::mixed_site());
    let (fn_let, key, name) = match &options.key {
        Some(template) => (
            TokenStream::new(),
            template.render(),
            template.lit.to_token_stream(),
        ),
        None => (
            quote!(let #fn_var = ::redcache::__private::fn_path!();),
            default_key(&function, &options, &fn_var),
            quote!(#fn_var.as_str()),
        ),
    };
    let ttl = options.ttl.expect("checked by require_ttl").to_tokens();
    let (cache_let, cache) = cache_let(options.cache.as_ref());
    let block = &func.block;
    let future = quote!(async move #block);
    let (tags_let, mut call) = call_tokens(&options, name, ttl);
    if options.key.is_none() && !function.names_self {
        // In a generic impl without `Self` the path cannot tell instances
        // apart: the engine then runs the fn uncached, and says so.
        call.extend(quote!(.fn_path(#fn_var)));
    }
    let return_type = function.return_type.expect("checked by Function::analyze");
    // The call carries the span of the return type (its value type for a
    // written `Result`), so a value type that cannot be cached is reported
    // there, and `cache_none` on a fn without an `Option` at the flag.
    let value_span = function
        .written_result
        .as_ref()
        .map_or_else(|| function.return_span(), |result| result.value.span());
    let mut kind = quote_spanned!(value_span=> ::redcache::__private::returns!(#return_type));
    if let Some(flag) = &options.cache_none {
        let value = flag.value;
        kind = quote_spanned!(flag.span=> ::redcache::__private::cache_none(#kind, #value));
    }
    let body = quote_spanned!(value_span=> #kind.cached(#cache, #call, #future).await);
    syn::parse2(quote!({
        #fn_let
        #cache_let
        let #key_var = #key;
        #tags_let
        #body
    }))
}

/// Every name in `ignore` is a parameter, and not one the key uses.
fn check_ignored(options: &Options, function: &Function<'_>, errors: &mut Errors) {
    for name in &options.ignore {
        if !function.bindings.iter().any(|b| *name == b.name) {
            errors.push_new(
                name.span(),
                format!(
                    "`{name}` is not a parameter of this fn; valid parameters: {}",
                    function.names().join(", ")
                ),
            );
        } else if options
            .key
            .as_ref()
            .is_some_and(|key| key.roots().any(|root| name == root))
        {
            errors.push_new(
                name.span(),
                format!("`{name}` is both ignored and in the key template"),
            );
        }
    }
}

/// An explicit key must name every parameter that is not ignored: two
/// calls differing only in a parameter it leaves out would share an entry.
/// A parameter named in a tag counts: an entry is valid only for the tags
/// it was stored with, so a call with other tags never reads it.
fn check_key_names_every_parameter(
    key: &Template,
    options: &Options,
    function: &Function<'_>,
    errors: &mut Errors,
) {
    for binding in &function.bindings {
        let named = std::iter::once(key)
            .chain(&options.tags)
            .any(|template| template.roots().any(|root| root == binding.name));
        let ignored =
            binding.is_ignored_by_name() || options.ignore.iter().any(|i| *i == binding.name);
        if !named && !ignored {
            let name = &binding.name;
            errors.push_new(
                binding.span,
                format!(
                    "`{name}` is not in the key template {:?} (nor in a tag): calls that differ only in `{name}` would share one entry. Add `<{name}>` to the key, or, if `{name}` does not change the result, write `ignore = [{name}]` (or name it `_{name}`)",
                    key.lit.value()
                ),
            );
        }
    }
}

/// `get_or_load!(ttl = .., key = "..", async { .. })`: a future of the
/// cached `Result`.
pub(crate) fn get_or_load(input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let parsed =
        (|input: ParseStream| Options::parse(input, Site::Inline, &mut errors)).parse2(input);
    let (options, future) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            errors.push(error);
            (Options::default(), None)
        }
    };
    options.require_ttl(Span::call_site(), &mut errors);
    if options.key.is_none() {
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
        return error.into_compile_error();
    }
    let key = options.key.as_ref().map(Template::render);
    let ttl = options.ttl.expect("checked by require_ttl").to_tokens();
    let (cache_let, cache) = cache_let(options.cache.as_ref());
    let name = options.key.as_ref().map(|template| &template.lit);
    let (tags_let, call) = call_tokens(&options, quote!(#name), ttl);
    let key_var = key_var();
    quote!(async {
        #cache_let
        let #key_var = #key;
        #tags_let
        ::redcache::__private::cached_result(#cache, #call, #future).await
    })
}

/// `key!("product:<id>")` or `key!("product:<id>", id = 42)`.
pub(crate) fn key(input: TokenStream) -> TokenStream {
    match key_inner(input) {
        Ok(tokens) => tokens,
        Err(error) => error.into_compile_error(),
    }
}

fn key_inner(input: TokenStream) -> syn::Result<TokenStream> {
    let (lit, named) = (|input: ParseStream| {
        let lit: LitStr = input.parse()?;
        let mut named: Vec<(Ident, Expr)> = Vec::new();
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let name: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            named.push((name, input.parse()?));
        }
        Ok((lit, named))
    })
    .parse2(input)?;
    let template = Template::parse(&lit)?;
    let mut errors = Errors::default();
    for (name, _) in &named {
        if !template.roots().any(|root| name == root) {
            errors.push_new(
                name.span(),
                format!("`{name}` is not used by the template {:?}", lit.value()),
            );
        }
    }
    errors.finish()?;
    let render = template.render();
    let bindings = named.iter().map(|(name, value)| {
        let name = format_ident!("{}", name, span = lit.span());
        quote!(let #name = &(#value);)
    });
    Ok(quote!({ #(#bindings)* #render }))
}

/// The key of a fn without `key = ...`: its path (as the compiler names
/// it, impl and trait included, with `Self` where it can be named), its
/// generic arguments and its arguments, `crate::module::Type::fn_name:1:a`.
fn default_key(function: &Function<'_>, options: &Options, fn_var: &Ident) -> TokenStream {
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
        .filter(|b| !b.is_ignored_by_name() && !options.ignore.iter().any(|i| *i == b.name))
        .map(|binding| {
            let ident = binding.ident();
            quote_spanned!(binding.span=> .lit(":").arg(&#ident))
        });
    quote!(::redcache::__private::Key::new() #path #generics #(#args)* .finish())
}

/// The `let` of the tags (if any) and the `Call` built from the options.
/// `name` (the key template, or the fn's path) names the call in spans and
/// metrics.
fn call_tokens(
    options: &Options,
    name: TokenStream,
    ttl: TokenStream,
) -> (TokenStream, TokenStream) {
    let key_var = key_var();
    let mut call = quote!(::redcache::__private::Call::new(#name, &#key_var, #ttl));
    let mut tags_let = TokenStream::new();
    if !options.tags.is_empty() {
        let tags_var = format_ident!("__redcache_tags", span = Span::mixed_site());
        let tags = options.tags.iter().map(Template::render);
        tags_let = quote!(let #tags_var = [#(#tags),*];);
        call.extend(quote!(.tags(&#tags_var)));
    }
    let stampede = match options.stampede {
        Some(Stampede::Off) => Some(quote!(Off)),
        Some(Stampede::Local) => Some(quote!(Local)),
        Some(Stampede::Distributed) | None => None,
    };
    if let Some(variant) = stampede {
        call.extend(quote!(.stampede(::redcache::__private::Stampede::#variant)));
    }
    (tags_let, call)
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

fn with_error(mut item: TokenStream, error: syn::Error) -> TokenStream {
    item.extend(error.into_compile_error());
    item
}
