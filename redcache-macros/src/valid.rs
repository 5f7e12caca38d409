//! The checks across options and the fn signature, each an error at the
//! offending token. (Checks of one value alone live with its parser:
//! `options.rs`, `template.rs`, `duration.rs`.)

use crate::ast::Function;
use crate::errors::Errors;
use crate::options::Options;
use crate::template::Template;

/// Every name in `ignore` is a parameter, and not one the key uses.
pub(crate) fn ignored(options: &Options, function: &Function<'_>, errors: &mut Errors) {
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
pub(crate) fn key_names_every_parameter(
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
