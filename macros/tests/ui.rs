//! Compile-fail cases: each pins one diagnostic of the macros (`TRYBUILD=overwrite` to regenerate).

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
