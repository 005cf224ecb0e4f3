//! Finding peers with nothing but the passphrase (docs/protocol.md, "Discovery").
//!
//! Every source ends in the same place, [`crate::context::Context::discover`]: the endpoint
//! becomes a *candidate* for the engine's dialer, which dials it within bounds and trusts it
//! only once it passes admission (docs/protocol.md, "Discovery").
//! - [`rendezvous`]: sealed records in pkarr slots derived from the passphrase (internet);
//! - [`gossip`]: MACed announcements on a gossip topic derived from the passphrase;
//! - [`lan`]: mDNS on the LAN (iroh's lookup, under a service name derived from the passphrase);
//! - [`remembered`]: peers seen in earlier runs.

pub mod gossip;
pub mod info;
pub mod lan;
pub mod remembered;
pub mod rendezvous;
