//! `#[rate_limited(...)]`: one or several stacked policies, checked and
//! consumed all-or-nothing before the body runs.
//!
//! ```text
//! // Input:
//! #[rate_limited(limit = 100, window = "60s", key = "user:<user_id>")]
//! async fn search(user_id: u64) -> Result<Vec<Hit>, ApiError> { body }
//! // Output:
//! async fn search(user_id: u64) -> Result<Vec<Hit>, ApiError> {
//!     let __redcache_fn = ::redcache::__private::fn_path!();
//!     let __redcache_key = ::redcache::__private::Key::new().lit("user:").part(key_part!(user_id)).finish();
//!     ::redcache::__private::rate_limited(
//!         ::redcache::__private::global(),
//!         ::redcache::__private::Limits::new(
//!             __redcache_fn.as_str(),
//!             &__redcache_key,
//!             &[::redcache::__private::Policy::new(100, Duration::from_secs(60))],
//!         ),
//!         async move { body },
//!     )
//!     .await
//! }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, ItemFn};

use crate::ast::Function;
use crate::attr::{self, RateLimitedArgs};
use crate::emit::{cache_let, key_var};
use crate::errors::Errors;
use crate::options::OnError;
use crate::template::Template;
use crate::valid;

pub(super) fn expand(stack: Vec<(TokenStream, Span)>, mut func: ItemFn) -> syn::Result<ItemFn> {
    let mut errors = Errors::default();
    let mut policies = Vec::new();
    let mut shared = Shared::default();
    for (args, span) in stack {
        let parsed = (|input: ParseStream| attr::parse(input, &mut errors)).parse2(args);
        let options: RateLimitedArgs = match parsed {
            Ok((options, _)) => options,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        valid::policy(&options, span, &mut errors);
        shared.merge(&options, &mut errors);
        policies.push(options);
    }
    let function = Function::analyze(&func.sig, "#[rate_limited]", &mut errors);
    let key = shared.key.iter().map(|(_, key)| key);
    valid::templates_name_parameters(key, &function, &mut errors);
    // The refusal is returned as the fn's error.
    let error_span = function.error_span();
    errors.finish()?;

    let fn_var = format_ident!("__redcache_fn", span = Span::mixed_site());
    let name = if function.names_self {
        quote!(&#fn_var.with_self(::core::any::type_name::<Self>()))
    } else {
        quote!(#fn_var.as_str())
    };
    // Without a key, one limit for the whole fn: the empty key.
    let key_var = key_var();
    let (key_let, key_arg) = match &shared.key {
        Some((_, template)) => {
            let key = template.render();
            (quote!(let #key_var = #key;), quote!(&#key_var))
        }
        None => (TokenStream::new(), quote!("")),
    };
    let policies = policies.iter().map(policy_tokens);
    let mut limits = quote!(::redcache::__private::Limits::new(#name, #key_arg, &[#(#policies),*]));
    if let Some((_, cost)) = &shared.cost {
        limits.extend(quote_spanned!(cost.span()=> .cost(#cost)));
    }
    // The default (allow) is left out of the expansion.
    if let Some((on_error, _)) = shared.on_error.filter(|(o, _)| *o == OnError::Deny) {
        limits.extend(quote!(.on_error(#on_error)));
    }
    let (cache_let, cache) = cache_let(shared.cache.as_ref().map(|(_, cache)| cache));
    let block = &func.block;
    // The call carries the span of the error type, so an error type that
    // cannot hold the refusal is reported there.
    let call = quote_spanned!(error_span=>
        ::redcache::__private::rate_limited(#cache, #limits, async move #block).await
    );
    func.block = Box::new(syn::parse2(quote!({
        let #fn_var = ::redcache::__private::fn_path!();
        #cache_let
        #key_let
        #call
    }))?);
    Ok(func)
}

/// The options stacked attributes share (one check, on one key): each may
/// be given on any of them, and must then be the same wherever repeated.
/// Each slot keeps what it is compared by (the template's text, the tokens
/// of an expression, the variant) beside its value.
#[derive(Default)]
struct Shared {
    key: Option<(String, Template)>,
    cost: Option<(String, Expr)>,
    on_error: Option<(OnError, ())>,
    cache: Option<(String, Expr)>,
}

impl Shared {
    /// Takes the shared options of one attribute, reporting a repeat that
    /// differs from the first.
    fn merge(&mut self, options: &RateLimitedArgs, errors: &mut Errors) {
        let tokens = |e: &Expr| (e.to_token_stream().to_string(), e.span(), e.clone());
        let key = options
            .key
            .get()
            .map(|t| (t.lit.value(), t.lit.span(), t.clone()));
        merge_slot(&mut self.key, key, "key", errors);
        merge_slot(
            &mut self.cost,
            options.cost.get().map(tokens),
            "cost",
            errors,
        );
        let on_error = options.on_error.get().map(|o| (o.value, o.span, ()));
        merge_slot(&mut self.on_error, on_error, "on_error", errors);
        merge_slot(
            &mut self.cache,
            options.cache.get().map(tokens),
            "cache",
            errors,
        );
    }
}

fn merge_slot<K: PartialEq, T>(
    slot: &mut Option<(K, T)>,
    given: Option<(K, Span, T)>,
    name: &str,
    errors: &mut Errors,
) {
    let Some((compared, span, value)) = given else {
        return;
    };
    match slot {
        Some((first, _)) if *first != compared => errors.push_new(
            span,
            format!(
                "stacked `#[rate_limited]` attributes are one all-or-nothing check on one key: `{name}` must be the same on each, or given once"
            ),
        ),
        Some(_) => {}
        None => *slot = Some((compared, value)),
    }
}

/// `Policy::new(100, Duration::from_secs(60)).algorithm(Algorithm::Gcra).burst(10)`
fn policy_tokens(options: &RateLimitedArgs) -> TokenStream {
    let limit = options.limit.get().map_or(1, |l| l.value);
    let limit = proc_macro2::Literal::u64_unsuffixed(limit);
    let window = options
        .window
        .get()
        .map(|w| w.to_tokens())
        .unwrap_or_default();
    let mut policy = quote!(::redcache::__private::Policy::new(#limit, #window));
    if let Some(algorithm) = options.algorithm.get() {
        let algorithm = algorithm.value;
        policy.extend(quote!(.algorithm(#algorithm)));
    }
    if let Some(burst) = options.burst.get() {
        let burst = proc_macro2::Literal::u64_unsuffixed(burst.value);
        policy.extend(quote!(.burst(#burst)));
    }
    policy
}
