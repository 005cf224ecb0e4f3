//! Fuzz target `rbsr_pair` for a bounded time (see `can_fuzz::harness`).
//! Two honest RBSR peers: they converge and learn exactly their difference.

#[test]
fn rbsr_pair() {
    can_fuzz::harness::check("rbsr_pair");
}
