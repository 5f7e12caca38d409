//! The checks across options and the fn signature, each an error at the
//! offending token. (Checks of one value alone live with its parser:
//! `options.rs`, `template.rs`, `duration.rs`; of one macro's arguments
//! alone, with its parser in `attr.rs` or `expand/`.)

use crate::ast::Function;
use crate::errors::Errors;
use proc_macro2::Span;

use crate::attr::{CachedArgs, RateLimitedArgs};
use crate::options::{Algorithm, MAX_WINDOW};
use crate::template::Template;

/// A soft `timeout` answers with the value that expired, which only
/// `fail_safe` keeps (FusionCache's rule for its soft timeouts).
pub(crate) fn timeout_has_a_value_to_serve(args: &CachedArgs, errors: &mut Errors) {
    if let (Some(timeout), false) = (args.timeout.get(), args.fail_safe.written()) {
        errors.push_new(
            timeout.span,
            "`timeout` answers a slow load with the value that expired, and `fail_safe` is what keeps it: add `fail_safe = \"1h\"` (how long an expired value may still answer), or use `hard_timeout` to fail slow loads",
        );
    }
}

/// Every template names only the fn's parameters, with `<..>`; false if
/// one does not (its error is in `errors`).
pub(crate) fn templates_name_parameters<'t>(
    templates: impl IntoIterator<Item = &'t Template>,
    function: &Function<'_>,
    errors: &mut Errors,
) -> bool {
    let names = function.names();
    let mut valid = true;
    for template in templates {
        if let Err(error) = template
            .check_roots(&names, "fn")
            .and_then(|()| template.check_braces(&names))
        {
            valid = false;
            errors.push(error);
        }
    }
    valid
}

/// Every name in `ignore` is a parameter, and not one the key uses.
pub(crate) fn ignored(args: &CachedArgs, function: &Function<'_>, errors: &mut Errors) {
    for name in args.ignored() {
        if !function.bindings.iter().any(|b| *name == b.name) {
            errors.push_new(
                name.span(),
                format!(
                    "`{name}` is not a parameter of this fn; valid parameters: {}",
                    function.names().join(", ")
                ),
            );
        } else if args
            .entry
            .key
            .get()
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
pub(crate) fn key_names_every_parameter(
    key: &Template,
    args: &CachedArgs,
    function: &Function<'_>,
    errors: &mut Errors,
) {
    for binding in &function.bindings {
        let named = std::iter::once(key)
            .chain(args.entry.tags())
            .any(|template| template.roots().any(|root| root == binding.name));
        let ignored =
            binding.is_ignored_by_name() || args.ignored().iter().any(|i| *i == binding.name);
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

/// `limit` and `window` are required; `burst` is for GCRA only.
pub(crate) fn policy(options: &RateLimitedArgs, span: Span, errors: &mut Errors) {
    if !options.limit.written() {
        errors.push_new(
            span,
            "missing `limit`: the number of calls allowed per window, e.g. `limit = 100`",
        );
    }
    if !options.window.written() {
        errors.push_new(
            span,
            "missing `window`: the length of the window, e.g. `window = \"60s\"`",
        );
    }
    let gcra = options.algorithm.get().map(|a| a.value) == Some(Algorithm::Gcra);
    if let Some(burst) = options.burst.get() {
        if !gcra {
            errors.push_new(burst.span, "`burst` applies only to `algorithm = \"gcra\"`");
        }
    }
    // GCRA's interval, window / limit in whole nanoseconds, must be at
    // least 1 ns, and a burst must be earned back within the longest window
    // (as `Policy::validate` checks at run time).
    if let (true, Some(limit), Some(window)) = (gcra, options.limit.get(), options.window.get()) {
        let window_ns = window.value.as_nanos();
        let interval = window_ns / u128::from(limit.value);
        if interval == 0 {
            errors.push_new(
                limit.span,
                "with `algorithm = \"gcra\"`, `limit` must be at most the window in nanoseconds (an interval of at least 1 ns)",
            );
        } else if let Some(burst) = options.burst.get() {
            if interval * u128::from(burst.value) > MAX_WINDOW.as_nanos() {
                errors.push_new(
                    burst.span,
                    "`burst` × window / limit must be at most 100 years: a burst is earned back within the longest window",
                );
            }
        }
    }
}
