//! CAN Sync: keeps every CAN Service that shares one passphrase a full mirror of the others,
//! peer to peer over iroh.
//!
//! - [`config`]: settings (the agent's YAML, the app's own).
//! - [`keys`]: passphrase → Argon2id → per-purpose subkeys.
//! - [`identity`]: the node's Ed25519 key, stable across restarts.
//! - [`can_client`]: the local CAN Service's sync API.
//! - [`admission`]: SPAKE2 + key confirmation before anything else on a connection.
//! - [`wire`]: length-delimited protobuf frames with hard limits.
//! - [`plan`]: the pure sync decisions (what to fetch from whom, whom to tell).
//! - [`reconcile`]: range-based set reconciliation (RBSR) of hash sets, pure.
//! - [`limits`]: budgets for O(N) work and the failed-admission limiter, pure.
//! - [`candidates`]: which discovered endpoints get a dial loop and for how long, pure.
//! - [`transfer`]: how a transfer ended and what follows, pure.
//! - [`progress`]: transfers in flight, their bytes and rates.
//! - [`bandwidth`]: upload and download limits (token buckets), LAN exemption.
//! - [`flow`], [`congestion`]: QUIC windows for the path, CUBIC on LANs and BBRv3 elsewhere.
//! - [`context`]: what the engine's tasks share and the messages between them.
//! - [`peer`]: one connection's I/O; [`engine`]: the actor, the dialer and lifecycle.
//! - [`discovery`]: gossip, pkarr rendezvous, LAN, remembered peers.
//! - [`text`]: peer-chosen names as we show them; [`human`]: sizes and times for people.
//! - [`agent`]: the headless agent's control socket, metrics and status report.
//! - [`runtime`]: the Tokio runtime the engine runs on (spare workers on small machines).

pub mod admission;
pub mod agent;
pub mod bandwidth;
#[cfg(feature = "builtin-store")]
pub mod builtin_store;
pub mod can_client;
pub mod candidates;
pub mod config;
pub mod congestion;
pub(crate) mod context;
pub mod discovery;
pub mod engine;
pub mod events;
pub mod fanout;
pub mod flow;
pub mod guard;
pub mod human;
pub mod identity;
pub mod keys;
pub mod limits;
pub mod peer;
pub mod plan;
pub mod progress;
pub mod reconcile;
pub mod runtime;
pub mod secret;
pub mod store_link;
pub mod swarm;
pub mod text;
pub mod tombs;
pub mod transfer;
pub(crate) mod util;
pub mod wire;

pub use bandwidth::BandwidthLimits;
pub use config::{AgentConfig, Congestion, EngineConfig, ReconcileMode};
pub use engine::{Engine, EngineError, EngineHandle};
pub use events::{EngineEvent, PeerStatus, Status};
pub use progress::{Direction, TransferStatus};
pub use secret::Secret;

/// Now, UTC, RFC 3339 with millisecond precision.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_millisecond(now.millisecond()).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
