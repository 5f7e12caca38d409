//! Every mistake in an attribute is a compile error at the offending token.
//! One file per kind of mistake in tests/ui; refresh the expected output
//! with `TRYBUILD=overwrite cargo test --test compile_fail` and review it.

#[test]
fn attribute_mistakes_are_compile_errors() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
