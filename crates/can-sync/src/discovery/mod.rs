//! Finding peers with nothing but the passphrase (docs/protocol.md, "Discovery").
//!
//! Every source ends in the same place, [`crate::engine::Shared::learn`]: the address goes
//! into the endpoint's memory lookup and the peer is dialled (and kept connected).
//! - [`rendezvous`]: sealed records in pkarr slots derived from the passphrase (internet);
//! - [`gossip`]: MACed announcements on a gossip topic derived from the passphrase;
//! - mDNS on the LAN (iroh's lookup, under a service name derived from the passphrase);
//! - [`remembered`]: peers seen in earlier runs.

pub mod gossip;
pub mod info;
pub mod remembered;
pub mod rendezvous;
