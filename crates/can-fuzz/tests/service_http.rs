//! Fuzz target `service_http` for a bounded time (see `can_fuzz::harness`).
//! The CAN Service's router in process: Range, names, queries, Host/Origin, sync API bodies.

#[test]
fn service_http() {
    can_fuzz::harness::check("service_http");
}
