//! Our hashes sorted, for reconciliation sessions: built on the blocking pool, shared by
//! every session that asks while it is built, and kept until our set changes.
//!
//! At a million ids the sort takes a few hundred milliseconds on a slow machine; done in
//! the actor, as it was, every peer, transfer and status request waited behind it, and
//! every session that asked meanwhile queued for the same answer one after another.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::Actor;
use crate::context::Cmd;
use crate::plan::Hash;

/// Where the sorted view of our set stands.
#[derive(Default)]
pub(super) enum Sorted {
    #[default]
    None,
    /// A sort of the set at `version` runs; `waiters` get it when it is done.
    Building {
        version: u64,
        waiters: Vec<oneshot::Sender<Arc<[Hash]>>>,
    },
    Ready {
        version: u64,
        items: Arc<[Hash]>,
    },
}

impl Actor {
    /// Answers `tx` with our sorted hashes: at once if they are current, else when the
    /// sort under way (or one started now) is done.
    pub(super) fn want_sorted(&mut self, tx: oneshot::Sender<Arc<[Hash]>>) {
        let version = self.planner.local_version();
        match &mut self.sorted {
            Sorted::Ready { version: v, items } if *v == version => {
                let _ = tx.send(items.clone());
            }
            Sorted::Building {
                version: v,
                waiters,
            } if *v == version => waiters.push(tx),
            _ => {
                // A build of an older set still runs: its waiters take this newer one.
                let mut waiters = match std::mem::take(&mut self.sorted) {
                    Sorted::Building { waiters, .. } => waiters,
                    _ => Vec::new(),
                };
                waiters.push(tx);
                let mut items: Vec<Hash> = self.planner.local_hashes().copied().collect();
                let cmd = self.ctx.cmd.clone();
                tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    crate::reconcile::sort_ids(&mut items);
                    tracing::debug!(items = items.len(), took = ?started.elapsed(), "sorted our hashes");
                    // The actor is gone only at shutdown, when nobody waits any more.
                    let _ = cmd.blocking_send(Cmd::Sorted {
                        version,
                        items: items.into(),
                    });
                });
                self.sorted = Sorted::Building { version, waiters };
            }
        }
    }

    /// A sort is done: answer who waits for it and keep it, unless a newer one runs.
    pub(super) fn sorted_done(&mut self, version: u64, items: Arc<[Hash]>) {
        match std::mem::take(&mut self.sorted) {
            Sorted::Building {
                version: v,
                waiters,
            } if v == version => {
                for tx in waiters {
                    let _ = tx.send(items.clone());
                }
                self.sorted = Sorted::Ready { version, items };
            }
            // A stale build: the newer one answers everyone.
            other => self.sorted = other,
        }
    }
}
