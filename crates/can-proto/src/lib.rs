//! Protobuf types generated from `proto/` at build time.
//!
//! - [`sync_api`]: the CAN Service sync API (`/sync/v1/`), used by the sync agent.

/// `can.sync.v1`: the CAN Service sync API.
pub mod sync_api {
    include!(concat!(env!("OUT_DIR"), "/can.sync.v1.rs"));
}

/// The media type of sync API bodies.
pub const PROTOBUF_MEDIA_TYPE: &str = "application/x-protobuf";

/// Largest length-delimited metadata message a reader accepts before the content bytes.
/// Metadata is small (a name, a MIME type, a timestamp); anything bigger is malformed.
pub const MAX_META_FRAME: usize = 64 * 1024;

pub mod frame;
