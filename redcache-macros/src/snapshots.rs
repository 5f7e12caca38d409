//! Expansion snapshots: each `tests/expand/NAME.rs` holds one annotated fn;
//! its expansion, formatted with prettyplease, must equal
//! `tests/expand/NAME.expanded.rs`. Refresh with `REDCACHE_BLESS=1`.

use std::fs;
use std::path::Path;

fn expand_file(source: &str) -> String {
    let mut file: syn::File = syn::parse_str(source).expect("fixture parses");
    for item in &mut file.items {
        match item {
            syn::Item::Fn(func) => {
                if let Some((attr, args)) = take_first_attribute(&mut func.attrs) {
                    let expanded = crate::expand::attribute(attr, args, quote::quote!(#func));
                    *item = syn::parse2(expanded).expect("expansion is an item");
                }
            }
            syn::Item::Impl(block) => {
                for impl_item in &mut block.items {
                    let syn::ImplItem::Fn(method) = impl_item else {
                        continue;
                    };
                    if let Some((attr, args)) = take_first_attribute(&mut method.attrs) {
                        let expanded = crate::expand::attribute(attr, args, quote::quote!(#method));
                        *impl_item = syn::parse2(expanded).expect("expansion is a method");
                    }
                }
            }
            _ => {}
        }
    }
    prettyplease::unparse(&file)
}

/// Removes the first redcache attribute from `attrs`, as the compiler does
/// before it calls the macro, and returns which it is and its arguments.
fn take_first_attribute(
    attrs: &mut Vec<syn::Attribute>,
) -> Option<(crate::expand::Attr, proc_macro2::TokenStream)> {
    let index = attrs
        .iter()
        .position(|a| crate::expand::Attr::of(a).is_some())?;
    let attribute = attrs.remove(index);
    let attr = crate::expand::Attr::of(&attribute)?;
    let args = match attribute.meta {
        syn::Meta::List(list) => list.tokens,
        _ => proc_macro2::TokenStream::new(),
    };
    Some((attr, args))
}

#[test]
fn expansions_match_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expand");
    let bless = std::env::var_os("REDCACHE_BLESS").is_some();
    let mut checked = 0;
    for entry in fs::read_dir(&dir).expect("tests/expand exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".rs") || name.ends_with(".expanded.rs") {
            continue;
        }
        let expanded = expand_file(&fs::read_to_string(&path).unwrap());
        let snapshot = path.with_extension("expanded.rs");
        if bless {
            fs::write(&snapshot, &expanded).unwrap();
        }
        let expected = fs::read_to_string(&snapshot).unwrap_or_else(|_| {
            panic!(
                "no snapshot {}: run with REDCACHE_BLESS=1",
                snapshot.display()
            )
        });
        assert_eq!(
            expanded, expected,
            "expansion of {name} changed (REDCACHE_BLESS=1 to accept)"
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected at least three fixtures in tests/expand, found {checked}"
    );
}
