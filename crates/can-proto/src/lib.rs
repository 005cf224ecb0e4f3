//! Protobuf types generated from `proto/` at build time.
//!
//! - [`sync_api`]: the CAN Service sync API (`/sync/v1/`), used by the sync agent.
//! - [`peer`]: the peer wire protocol between agents (over iroh).
//! - [`frame`]: length-delimited framing shared by both.

// Modules nest like the protobuf packages, so prost's cross-package paths
// (`super::super::sync::v1::Asset`) resolve.
#[allow(clippy::all)]
mod can {
    pub mod sync {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/can.sync.v1.rs"));
        }
    }
    pub mod peer {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/can.peer.v1.rs"));
        }
    }
}

/// `can.sync.v1`: the CAN Service sync API.
pub use can::sync::v1 as sync_api;

/// `can.peer.v1`: the peer wire protocol between sync agents.
pub use can::peer::v1 as peer;

/// The media type of sync API bodies.
pub const PROTOBUF_MEDIA_TYPE: &str = "application/x-protobuf";

/// Largest length-delimited metadata message a reader accepts before the content bytes.
/// Metadata is small (a name, a MIME type, a timestamp); anything bigger is malformed.
pub const MAX_META_FRAME: usize = 64 * 1024;

pub mod frame;
