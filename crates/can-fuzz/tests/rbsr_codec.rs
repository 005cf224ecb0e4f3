//! Fuzz target `rbsr_codec` for a bounded time (see `can_fuzz::harness`).
//! The RBSR range codec (`can_sync::reconcile::codec::decode`): refuse or round-trip.

#[test]
fn rbsr_codec() {
    can_fuzz::harness::check("rbsr_codec");
}
