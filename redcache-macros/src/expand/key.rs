//! `key!("product:<id>")`: a template rendered exactly as the attributes
//! render it.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::parse::{ParseStream, Parser};
use syn::{Expr, Ident, LitStr, Token};

use crate::emit::error_expr;
use crate::errors::Errors;
use crate::template::Template;

/// `key!("product:<id>")` or `key!("product:<id>", id = 42)`.
pub(crate) fn expand(input: TokenStream) -> TokenStream {
    match key_inner(input) {
        Ok(tokens) => tokens,
        Err(error) => error_expr(error, quote!(::std::string::String::new())),
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
