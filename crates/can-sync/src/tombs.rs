//! The deletions our store holds (tombstones), as the engine reconciles them with peers.
//!
//! Pure: the actor feeds it what the store reports, and hands sessions a sorted snapshot.
//! A tombstone enters range-based set reconciliation as a 32-byte id derived from its hash
//! and stamp, in a set of its own beside the asset hashes (`Reconcile.set = 1`): two peers
//! holding the same deletion hold the same id, and any difference (a deletion one side
//! lacks, or a later one) shows up as differing ids. Whoever holds an id the other lacks
//! sends the deletion itself (`Records`); the receiver's store decides by last writer wins.

use std::collections::HashMap;
use std::sync::Arc;

use crate::plan::Hash;

/// The feature name in `Hello.features`: `Records` and tombstone reconciliation.
pub const FEATURE: &str = "tombstones-v1";
/// `Reconcile.set` of tombstone sessions.
pub const SET: u32 = 1;
/// Most records in one `Records` message, sent or accepted.
pub const RECORDS_PER_FRAME: usize = 1024;
/// The largest stamp a record may carry (stores keep stamps in signed 64-bit integers).
pub const MAX_STAMP: u64 = i64::MAX as u64;
/// Longest name a record may carry, in bytes (as the store's).
pub const MAX_NAME_BYTES: usize = 4096;

/// One deletion: the asset's hash and the stamp of the deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tomb {
    pub hash: Hash,
    pub stamp: u64,
    pub size: u64,
    /// The asset's name where known (for the receiver's mass-deletion guard).
    pub name: String,
}

impl Tomb {
    /// The deletion as a record for a peer (origin empty: the receiver knows the sender).
    pub fn record(&self) -> can_proto::sync_api::Record {
        can_proto::sync_api::Record {
            hash: self.hash.to_vec(),
            stamp: self.stamp,
            deleted: true,
            origin: String::new(),
            size: self.size,
            name: self.name.clone(),
        }
    }
}

/// The reconciliation id of a deletion.
pub fn tomb_id(hash: &Hash, stamp: u64) -> Hash {
    let mut h = blake3::Hasher::new_derive_key("can-sync 2026 tombstone id v1");
    h.update(hash);
    h.update(&stamp.to_le_bytes());
    *h.finalize().as_bytes()
}

/// Our tombstones, sorted by id, and each id's deletion.
#[derive(Debug, Default)]
pub struct TombSnapshot {
    pub ids: Arc<[Hash]>,
    pub by_id: HashMap<Hash, Tomb>,
}

#[derive(Debug, Default)]
pub struct Tombs {
    by_hash: HashMap<Hash, Tomb>,
    snapshot: Option<Arc<TombSnapshot>>,
}

impl Tombs {
    /// Records a deletion (replacing an earlier one of the same hash); whether it changed.
    pub fn insert(&mut self, tomb: Tomb) -> bool {
        if self
            .by_hash
            .get(&tomb.hash)
            .is_some_and(|t| t.stamp == tomb.stamp)
        {
            return false;
        }
        self.by_hash.insert(tomb.hash, tomb);
        self.snapshot = None;
        true
    }

    /// The hash is live again (or forgotten); whether it had a tombstone.
    pub fn remove(&mut self, hash: &Hash) -> bool {
        let had = self.by_hash.remove(hash).is_some();
        if had {
            self.snapshot = None;
        }
        had
    }

    /// Sorted ids for a reconciliation session (cached until the set changes).
    pub fn snapshot(&mut self) -> Arc<TombSnapshot> {
        if let Some(s) = &self.snapshot {
            return s.clone();
        }
        let by_id: HashMap<Hash, Tomb> = self
            .by_hash
            .values()
            .map(|t| (tomb_id(&t.hash, t.stamp), t.clone()))
            .collect();
        let mut ids: Vec<Hash> = by_id.keys().copied().collect();
        ids.sort_unstable();
        let snap = Arc::new(TombSnapshot {
            ids: ids.into(),
            by_id,
        });
        self.snapshot = Some(snap.clone());
        snap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_deletion_of_the_same_hash_is_another_id() {
        let mut tombs = Tombs::default();
        let t = Tomb {
            hash: [1; 32],
            stamp: 5,
            size: 3,
            name: "n".into(),
        };
        assert!(tombs.insert(t.clone()));
        assert!(!tombs.insert(t.clone()));
        let first = tombs.snapshot();
        assert_eq!(first.ids.len(), 1);
        assert_eq!(first.by_id[&first.ids[0]], t);
        assert!(tombs.insert(Tomb {
            stamp: 6,
            ..t.clone()
        }));
        let second = tombs.snapshot();
        assert_eq!(second.ids.len(), 1);
        assert_ne!(first.ids[0], second.ids[0]);
        assert!(tombs.remove(&[1; 32]));
        assert!(tombs.snapshot().ids.is_empty());
    }
}
