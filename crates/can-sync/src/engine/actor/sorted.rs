//! Our hashes sorted, for reconciliation sessions: built on the blocking pool, one sort at
//! a time, shared by every session that asks meanwhile, and kept until our set changes.
//!
//! At a million ids the sort takes a few hundred milliseconds on a slow machine; done in
//! the actor, as it was, every peer, transfer and status request waited behind it, and
//! every session that asked meanwhile queued for the same answer one after another.
//!
//! One sort at a time bounds the memory (the kept snapshot and at most one being built)
//! and the wait: a session that asks while our set changes gets the next sort, started
//! when the running one ends, at most two sorts after it asked.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::Actor;
use crate::context::Cmd;
use crate::plan::Hash;

/// Where the sorted view of our set stands.
#[derive(Default)]
pub(super) struct Sorted {
    /// The last sort, and the planner's local version it reflects.
    ready: Option<(u64, Arc<[Hash]>)>,
    /// The version a running sort reflects.
    building: Option<u64>,
    /// Who waits, with the version our set had when they asked.
    waiters: Vec<(u64, oneshot::Sender<Arc<[Hash]>>)>,
}

impl Actor {
    /// Answers `tx` with our sorted hashes: at once if they are current, else when a sort
    /// of the set as it is now (or later) is done.
    pub(super) fn want_sorted(&mut self, tx: oneshot::Sender<Arc<[Hash]>>) {
        let version = self.planner.local_version();
        if let Some((v, items)) = &self.sorted.ready
            && *v == version
        {
            let _ = tx.send(items.clone());
            return;
        }
        self.sorted.waiters.push((version, tx));
        if self.sorted.building.is_none() {
            self.start_sort();
        }
    }

    /// A sort is done: answer who asked at or before its version and keep it; if anyone
    /// asked since our set changed again, sort once more for all of them.
    pub(super) fn sorted_done(&mut self, version: u64, items: Arc<[Hash]>) {
        self.sorted.building = None;
        let (answered, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sorted.waiters)
            .into_iter()
            .partition(|(asked, _)| *asked <= version);
        for (_, tx) in answered {
            let _ = tx.send(items.clone());
        }
        self.sorted.waiters = waiting;
        self.sorted.ready = Some((version, items));
        if !self.sorted.waiters.is_empty() {
            self.start_sort();
        }
    }

    fn start_sort(&mut self) {
        let version = self.planner.local_version();
        let mut items: Vec<Hash> = self.planner.local_hashes().copied().collect();
        let cmd = self.ctx.cmd.clone();
        self.sorted.building = Some(version);
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            crate::reconcile::sort_ids(&mut items);
            tracing::debug!(items = items.len(), took = ?started.elapsed(), "sorted our hashes");
            // The actor is gone only at shutdown, when nobody waits any more (its waiters'
            // senders drop with it).
            let _ = cmd.blocking_send(Cmd::Sorted {
                version,
                items: items.into(),
            });
        });
    }
}
