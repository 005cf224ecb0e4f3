//! Fuzz target `riblt_session` for a bounded time (see `can_fuzz::harness`).
//! Either side of a RIBLT session fed hostile turns: errors, never panics, within its limits.

#[test]
fn riblt_session() {
    can_fuzz::harness::check("riblt_session");
}
