//! Fuzz target `proto_frames` for a bounded time (see `can_fuzz::harness`).
//! Length-delimited heads of sync API bodies (`can_proto::frame`) over arbitrary chunkings.

#[test]
fn proto_frames() {
    can_fuzz::harness::check("proto_frames");
}
