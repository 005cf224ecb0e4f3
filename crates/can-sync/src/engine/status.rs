//! What the actor knows of each connected peer, and the status snapshot built from it.

use std::time::Instant;

use iroh::EndpointId;
use iroh::endpoint::Connection;
use tokio::sync::mpsc;

use crate::context::PeerCmd;
use crate::events::PeerStatus;

#[derive(Default, Clone, Copy)]
pub(super) struct Stats {
    pub assets_sent: u64,
    pub assets_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl Stats {
    pub fn sent(&mut self, bytes: u64) {
        self.assets_sent += 1;
        self.bytes_sent += bytes;
    }

    /// Bytes of a range (a peer's swarm fetch): not a whole asset sent.
    pub fn sent_bytes(&mut self, bytes: u64) {
        self.bytes_sent += bytes;
    }

    pub fn received(&mut self, bytes: u64) {
        self.assets_received += 1;
        self.bytes_received += bytes;
    }
}

/// The page count of the hash list a peer is sending (full mode), for the `reconciled` event.
#[derive(Default)]
pub(super) struct ListProgress {
    pub round: u64,
    pub missing_here: usize,
    pub bytes: u64,
}

pub(super) struct PeerEntry {
    pub conn: Connection,
    pub conn_id: usize,
    pub dialer: EndpointId,
    /// The peer's Hello.instance on this connection.
    pub instance: u64,
    pub device_name: String,
    /// The connection's control task; bounded, so a stuck connection shows as full.
    pub peer: mpsc::Sender<PeerCmd>,
    pub stats: Stats,
    pub last_activity: String,
    /// Reconcile with RBSR (both offered it); else full hash lists.
    pub rbsr: bool,
    /// Both offered "tombstones-v1": deletions travel as `Records`.
    pub tombs: bool,
    /// Both offered "swarm-v1": large assets travel in pieces from every peer.
    pub swarm: bool,
    pub list_in: ListProgress,
    /// When we last asked for a round of O(N) work (a reconciliation or a full list), and
    /// whether another is due: we stay well inside the peer's budget.
    pub last_round: Option<Instant>,
    pub round_due: bool,
}

impl PeerEntry {
    pub fn status(&self, id: &EndpointId) -> PeerStatus {
        let (path, rtt_ms) = path_of(&self.conn);
        PeerStatus {
            endpoint_id: id.to_string(),
            device_name: self.device_name.clone(),
            path: path.to_owned(),
            rtt_ms,
            assets_sent: self.stats.assets_sent,
            assets_received: self.stats.assets_received,
            bytes_sent: self.stats.bytes_sent,
            bytes_received: self.stats.bytes_received,
            last_activity: self.last_activity.clone(),
        }
    }
}

/// The connection's selected path ("direct", "relay" or "unknown") and its round-trip time.
pub(super) fn path_of(conn: &Connection) -> (&'static str, Option<f64>) {
    let paths = conn.paths();
    let selected = paths.iter().find(|path| path.is_selected());
    match selected {
        Some(s) if s.is_ip() => ("direct", Some(s.rtt().as_secs_f64() * 1000.0)),
        Some(s) if s.is_relay() => ("relay", Some(s.rtt().as_secs_f64() * 1000.0)),
        _ => ("unknown", None),
    }
}

/// The store's totals (trash bytes and counts) for the status: read after each deletion or
/// restore here and when a status asks for them older than [`TOTALS_MAX_AGE`] (the store's
/// trash expiry sends no event). At most one read runs at a time: a thousand deletions in a
/// row cost two reads of the store's totals, not a thousand.
#[derive(Default)]
pub(super) struct TotalsCache {
    value: Option<(Instant, can_proto::sync_api::Totals)>,
    reading: bool,
    /// Something changed while a read ran: read again when it ends.
    stale: bool,
}

/// A status request reads the totals again when they are older than this.
pub(super) const TOTALS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);

impl TotalsCache {
    pub fn get(&self) -> can_proto::sync_api::Totals {
        self.value.as_ref().map(|(_, t)| *t).unwrap_or_default()
    }

    /// Whether to start a read now: `changed` (a deletion or restore happened) or the value
    /// is missing or old.
    pub fn wants_read(&mut self, changed: bool) -> bool {
        let old = self
            .value
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() > TOTALS_MAX_AGE);
        if !(changed || old) {
            return false;
        }
        if self.reading {
            self.stale = true;
            return false;
        }
        self.reading = true;
        true
    }

    /// A read ended; whether to read again (a change came meanwhile).
    pub fn read(&mut self, totals: Option<can_proto::sync_api::Totals>) -> bool {
        self.reading = false;
        if let Some(t) = totals {
            self.value = Some((Instant::now(), t));
        }
        std::mem::take(&mut self.stale) && self.wants_read(true)
    }
}

#[cfg(test)]
mod totals_tests {
    use super::*;

    #[test]
    fn one_read_at_a_time_and_one_more_after_changes_meanwhile() {
        let mut c = TotalsCache::default();
        assert!(c.wants_read(false), "nothing read yet");
        assert!(!c.wants_read(true) && !c.wants_read(true), "a read runs");
        assert!(c.read(Some(Default::default())), "changes came: read again");
        assert!(!c.read(Some(Default::default())));
        assert!(!c.wants_read(false), "fresh");
        assert!(c.wants_read(true));
        // A failed read clears the flag too.
        assert!(!c.read(None));
        assert!(c.wants_read(true));
    }
}
