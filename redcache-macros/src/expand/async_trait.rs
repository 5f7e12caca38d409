//! Methods of an `#[async_trait]` impl. `#[async_trait]` on the impl runs
//! first and hands each method to the redcache attribute already boxed:
//!
//! ```text
//! // What the attribute receives:
//! fn get<'life0, 'async_trait>(&'life0 self, id: u64)
//!     -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'async_trait>>
//! {
//!     Box::pin(async move { /* the body, `self` renamed `__self` */ })
//! }
//! // What the expansion sees (`unbox`): the same fn as an `async fn`
//! async fn get<'life0, 'async_trait>(&'life0 self, id: u64) -> Result<T, E> {
//!     /* the body */
//! }
//! // What it emits (`Boxed::rebox`): the expansion, boxed again
//! fn get<..>(&'life0 self, id: u64) -> Pin<Box<dyn Future<..> + ..>> {
//!     Box::pin(async move { /* the expansion */ })
//! }
//! ```

use syn::{
    Expr, FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Stmt, Type,
    TypeParamBound,
};

use crate::errors::Errors;

/// The boxed signature to restore after the expansion.
pub(super) struct Boxed {
    sig: syn::Signature,
}

/// An `#[async_trait]` method as the `async fn` it was written as, or
/// `None` when `func` does not have that shape.
pub(super) fn unbox(func: &ItemFn) -> Option<(ItemFn, Boxed)> {
    if func.sig.asyncness.is_some() {
        return None;
    }
    let output = future_output(&func.sig.output)?;
    let body = boxed_async_block(&func.block)?;
    let mut unboxed = func.clone();
    unboxed.sig.asyncness = Some(Default::default());
    unboxed.sig.output = ReturnType::Type(Default::default(), Box::new(output.clone()));
    unboxed.block = Box::new(body.block.clone());
    Some((
        unboxed,
        Boxed {
            sig: func.sig.clone(),
        },
    ))
}

impl Boxed {
    /// Reports parameters `#[async_trait]` renamed: `(a, b): (u8, u8)`
    /// becomes `__arg1`, and its names exist only inside the body, too late
    /// for a key.
    pub(super) fn check(&self, errors: &mut Errors) {
        for input in &self.sig.inputs {
            let FnArg::Typed(typed) = input else { continue };
            if let Pat::Ident(ident) = &*typed.pat {
                let name = ident.ident.to_string();
                if name
                    .strip_prefix("__arg")
                    .is_some_and(|n| n.parse::<u32>().is_ok())
                {
                    errors.push_new(
                        ident.ident.span(),
                        "inside `#[async_trait]`, a pattern parameter's names cannot be in a key (`#[async_trait]` renames the parameter before redcache sees it): take the parameter by name and destructure it in the body",
                    );
                }
            }
        }
    }

    /// The expanded `async fn`, boxed again under its `#[async_trait]`
    /// signature.
    pub(super) fn rebox(self, mut func: ItemFn) -> ItemFn {
        let block = &func.block;
        func.block = Box::new(syn::parse_quote!({
            ::std::boxed::Box::pin(async move #block)
        }));
        func.sig = self.sig;
        func
    }
}

/// `T` of `Pin<Box<dyn Future<Output = T> + ..>>`.
fn future_output(output: &ReturnType) -> Option<&Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let pin = last_segment_args(ty, "Pin")?;
    let boxed = last_segment_args(pin, "Box")?;
    let Type::TraitObject(object) = boxed else {
        return None;
    };
    object.bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let future = bound.path.segments.last()?;
        if future.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &future.arguments else {
            return None;
        };
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(&assoc.ty),
            _ => None,
        })
    })
}

/// The single type argument of a path type whose last segment is `name`.
fn last_segment_args<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    }
}

/// The `async move { .. }` of a body that is exactly `Box::pin(async move { .. })`.
fn boxed_async_block(block: &syn::Block) -> Option<&syn::ExprAsync> {
    let [Stmt::Expr(Expr::Call(call), None)] = block.stmts.as_slice() else {
        return None;
    };
    let Expr::Path(func) = &*call.func else {
        return None;
    };
    let segments: Vec<String> = func
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    if !segments.ends_with(&["Box".to_string(), "pin".to_string()]) || call.args.len() != 1 {
        return None;
    }
    match &call.args[0] {
        Expr::Async(block) if block.capture.is_some() => Some(block),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    #[test]
    fn unboxes_what_async_trait_emits_and_nothing_else() {
        let boxed: ItemFn = syn::parse_quote! {
            fn get<'life0, 'async_trait>(&'life0 self, id: u64)
                -> ::core::pin::Pin<Box<dyn ::core::future::Future<Output = Result<String, E>> + ::core::marker::Send + 'async_trait>>
            where Self: 'async_trait
            {
                Box::pin(async move { let __self = self; Ok(id.to_string()) })
            }
        };
        let (unboxed, _) = unbox(&boxed).expect("the async_trait shape");
        assert!(unboxed.sig.asyncness.is_some());
        let output = &unboxed.sig.output;
        assert_eq!(
            quote!(#output).to_string(),
            quote!(-> Result<String, E>).to_string()
        );

        let plain: ItemFn = syn::parse_quote! {
            fn get(&self) -> Pin<Box<dyn Future<Output = u8>>> { let x = 1; Box::pin(async move { x }) }
        };
        assert!(unbox(&plain).is_none());
    }
}
