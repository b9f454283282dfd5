//! Compile-fail tests for `#[derive(Event)]` and `#[derive(Request)]`
//! (`request_*`): each file in `tests/ui/` makes one mistake, and its
//! `.stderr` snapshot shows the one error it gets, with the span on the
//! offending token.
//!
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo test -p xbus --test ui`
//! and read every changed `.stderr` before committing it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
