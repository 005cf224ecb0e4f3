//! Fuzz target `peer_frames` for a bounded time (see `can_fuzz::harness`).
//! Peer frames (`can_sync::wire::read_frame`) of every message type at both limits.

#[test]
fn peer_frames() {
    can_fuzz::harness::check("peer_frames");
}
