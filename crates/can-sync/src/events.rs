//! What the engine reports: a status snapshot and a stream of events. Plain data, no
//! transport types, so the app and the agent can show or serialise them as they like.

use serde::{Deserialize, Serialize};

use crate::progress::TransferStatus;

/// One connected peer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PeerStatus {
    pub endpoint_id: String,
    pub device_name: String,
    /// "direct" or "relay" (or "unknown" before a path is selected).
    pub path: String,
    pub rtt_ms: Option<f64>,
    pub assets_sent: u64,
    pub assets_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// RFC 3339.
    pub last_activity: String,
}

/// A snapshot of the engine. Deserialisable (missing fields default) for `can-sync status`,
/// which reads it from the agent's control socket.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Status {
    pub endpoint_id: String,
    pub device_name: String,
    pub paused: bool,
    /// Whether the local CAN Service answers.
    pub store_online: bool,
    pub local_assets: usize,
    /// Assets known at peers and not stored here yet (those in flight included).
    pub pending: usize,
    pub in_flight: usize,
    pub peers: Vec<PeerStatus>,
    pub assets_sent: u64,
    pub assets_received: u64,
    /// Sizes of the assets sent / received whole.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Content bytes that crossed to / from peers in transfers, finished or not: beside
    /// `bytes_sent`/`bytes_received` they show what interruptions cost (a resumed transfer
    /// moves only what was missing).
    pub transfer_bytes_sent: u64,
    pub transfer_bytes_received: u64,
    pub last_error: Option<String>,
    /// Endpoints the dialer keeps a dial loop for (discovered, remembered, tickets).
    pub candidates: usize,
    /// Connection attempts in flight to endpoints only discovery vouches for (at most 16).
    pub dialing: usize,
    /// Transfers in flight, downloads and uploads, oldest first (at most 64 listed).
    pub transfers: Vec<TransferStatus>,
    /// Bytes still to download for the transfers in flight (sizes of assets not started
    /// yet are unknown until they start).
    pub bytes_left: u64,
    /// Bytes per second over the last 5 s, all downloads / all uploads.
    pub download_rate: f64,
    pub upload_rate: f64,
    /// Deleted assets whose content the store keeps in its trash, and their bytes.
    pub trash_assets: u64,
    pub trash_bytes: u64,
    /// Deletions the store remembers (tombstones).
    pub tombstones: u64,
    /// Deletions from peers held by the mass-deletion guard, waiting for
    /// `can-sync deletions apply` or `can-sync deletions keep`.
    pub mass_delete_held: Option<HeldDeletions>,
}

/// Deletions held by the mass-deletion guard.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HeldDeletions {
    pub count: usize,
    /// Names (or short hashes) of the first few.
    pub sample: Vec<String>,
    /// Deletions of the same burst applied before the guard tripped (in the trash now):
    /// "keep" undoes them too.
    pub applied: usize,
}

/// Something that happened.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    Started {
        endpoint_id: String,
        ticket: String,
    },
    PeerUp {
        peer: String,
        device_name: String,
        /// "direct", "relay" or "unknown" when the connection came up.
        path: String,
    },
    PeerDown {
        peer: String,
        reason: String,
    },
    AssetSent {
        peer: String,
        hash: String,
        name: String,
        size: u64,
    },
    AssetReceived {
        peer: String,
        hash: String,
        name: String,
        size: u64,
    },
    /// A reconciliation with a peer finished (at connection start or after a resume).
    Reconciled {
        peer: String,
        /// "riblt" (rateless IBLT, both sides offered "riblt-v2"), "rbsr" (range-based, both
        /// offered "rbsr-v1") or "full" (hash lists).
        method: String,
        /// Assets the peer has and we lack (we fetch them).
        missing_here: usize,
        /// Assets we have and the peer lacks (it fetches them); unknown with "full".
        missing_there: Option<usize>,
        /// Turns taken (two make a round trip); 1 with "full".
        turns: u32,
        /// Bytes of reconciliation frames sent and received (for "full": our last list and
        /// the peer's list).
        bytes_sent: u64,
        bytes_received: u64,
    },
    /// A peer did not prove the passphrase (or we did not convince it).
    AdmissionRefused {
        peer: String,
        /// It dialled us (else we dialled it).
        incoming: bool,
    },
    /// A peer speaks another version of the protocol; it is not dialled again.
    IncompatiblePeer {
        peer: String,
        reason: String,
    },
    /// Our CAN Service refused an asset a peer has (HTTP 400 or 413: too large, a name or
    /// type it does not take). It is not asked for again until the agent restarts.
    AssetRefused {
        peer: String,
        hash: String,
        status: u16,
        reason: String,
    },
    /// Our CAN Service is out of space (HTTP 507): transfers wait and retry.
    StoreFull {
        error: String,
    },
    PeerMisbehaved {
        peer: String,
        reason: String,
    },
    /// An asset was deleted here: by a peer's deletion (`peer`), or on this device's store
    /// (`peer` null).
    AssetDeleted {
        peer: Option<String>,
        hash: String,
        name: String,
        size: u64,
    },
    /// A deleted asset is back here (restored, or uploaded again).
    AssetRestored {
        peer: Option<String>,
        hash: String,
        name: String,
        size: u64,
    },
    /// Deletions from peers would remove more than `max_delete_share` of the store: they
    /// are held until `can-sync deletions apply|keep` (or the app's banner).
    MassDeleteHeld {
        count: usize,
        sample: Vec<String>,
    },
    /// Held deletions were applied (`applied`), or undone everywhere (the user kept theirs).
    MassDeleteReleased {
        applied: bool,
        count: usize,
    },
    StoreOnline,
    StoreOffline {
        error: String,
    },
    Paused,
    Resumed,
    /// Every second while transfers are in flight, and once when the last one ended: the
    /// same figures as the status's `transfers`, `bytes_left` and rates.
    Progress {
        transfers: Vec<TransferStatus>,
        bytes_left: u64,
        download_rate: f64,
        upload_rate: f64,
    },
}
