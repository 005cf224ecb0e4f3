//! Fuzz target `hash_lists` for a bounded time (see `can_fuzz::harness`).
//! The hash-list splitter (`can_sync::wire::split_hashes`).

#[test]
fn hash_lists() {
    can_fuzz::harness::check("hash_lists");
}
