//! Fuzz target `rbsr_session` for a bounded time (see `can_fuzz::harness`).
//! An RBSR responder session fed hostile frames: errors, never panics, within its limits.

#[test]
fn rbsr_session() {
    can_fuzz::harness::check("rbsr_session");
}
