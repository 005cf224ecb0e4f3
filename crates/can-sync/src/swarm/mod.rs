//! Swarm transfers: a large asset fetched in verified pieces from every peer that has
//! them, including peers still fetching it (docs/protocol.md, "Swarm transfers").
//!
//! - `pieces`: the piece layout and the proof of each piece against the asset's hash (pure)
//! - `pick`: which piece to ask of which peer (pure)
//! - `download`: one swarm fetch (I/O: piece requests, the piece file, the store ingest)
//! - `serve`: answering piece-map and range requests
//!
//! [`Registry`] is what the connections share: our fetches in progress (so a
//! peer's range request can be answered from them) and what each peer says it holds of
//! its own.

pub(crate) mod download;
pub mod pick;
pub mod pieces;
pub(crate) mod registry;
pub(crate) mod serve;

pub(crate) use registry::{Partial, Registry, clean, have_msg};

/// Offered in Hello; both sides must offer it.
pub const FEATURE: &str = "swarm-v1";
/// The folder under the data dir that holds fetches in progress.
pub(crate) const DIR: &str = "swarm";
