//! Fuzz target `riblt_pair` for a bounded time (see `can_fuzz::harness`).
//! Two honest RIBLT peers over overlapping random sets agree exactly on their difference.

#[test]
fn riblt_pair() {
    can_fuzz::harness::check("riblt_pair");
}
