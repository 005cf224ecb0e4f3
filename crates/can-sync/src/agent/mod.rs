//! The headless agent's local interfaces, around a running [`Engine`](crate::Engine):
//!
//! - [`socket`]: the control socket `can-sync status|pause|resume` talk to (its user only);
//! - [`metrics`]: Prometheus metrics on an opt-in loopback address;
//! - [`report`]: the engine's status as `can-sync status` prints it for people.

pub mod metrics;
pub mod report;
pub mod socket;
