//! Fuzz target `configs` for a bounded time (see `can_fuzz::harness`).
//! The CAN Service's and the agent's config parsers.

#[test]
fn configs() {
    can_fuzz::harness::check("configs");
}
