//! Fuzz target `riblt_codec` for a bounded time (see `can_fuzz::harness`).
//! The RIBLT section codec on raw bytes: refuses or round-trips.

#[test]
fn riblt_codec() {
    can_fuzz::harness::check("riblt_codec");
}
