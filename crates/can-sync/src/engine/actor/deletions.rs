//! Deletions and restores: what our store reports, what peers send (`Records`), the
//! mass-deletion guard, and the user's answer to it (docs/protocol.md, "Deletion").
//!
//! The store decides every change by last writer wins; the engine carries changes between
//! stores. A change our store reports is sent to every peer that speaks "tombstones-v1"
//! except the one it came from (a peer's change applied here reaches our store's event
//! stream with that peer as origin, so it floods onwards without echoing back, and stops
//! where it changes nothing). A peer's change our store outranks is answered with ours.

use std::sync::Arc;
use std::time::Instant;

use can_proto::sync_api::{self as pb, record_response::Outcome};
use iroh::EndpointId;

use super::Actor;
use crate::context::{Cmd, Context, LocalChange, PeerCmd};
use crate::events::{EngineEvent, HeldDeletions};
use crate::guard::Deletion;
use crate::plan::Hash;
use crate::tombs::{RECORDS_PER_FRAME, Tomb};

impl Actor {
    /// Our store reported a change of `hash`.
    pub(super) fn on_local(&mut self, hash: Hash, origin: Option<String>, change: LocalChange) {
        let from = origin
            .as_deref()
            .and_then(|o| o.strip_prefix("peer:"))
            .and_then(|id| id.parse::<EndpointId>().ok());
        let peer = from.map(|id| id.to_string());
        if change.deleted {
            let had = self.planner.has_local(&hash);
            self.planner.remove_local(hash);
            let tomb = Tomb {
                hash,
                stamp: change.stamp,
                size: change.size,
                name: change.name.clone(),
            };
            if self.tombs.insert(tomb.clone()) {
                self.push_records(vec![tomb.record()], from);
                self.refresh_totals(true);
            }
            if had {
                tracing::info!(hash = %hex::encode(hash), peer = ?peer, "asset deleted");
                self.emit(EngineEvent::AssetDeleted {
                    peer,
                    hash: hex::encode(hash),
                    name: change.name,
                    size: change.size,
                });
            }
            return;
        }
        if self.tombs.remove(&hash) {
            // Live again after a deletion: peers that hold the deletion learn that this
            // change outranks it (those without it just fetch the asset as usual).
            self.planner.undelete(&hash);
            let record = pb::Record {
                hash: hash.to_vec(),
                stamp: change.stamp,
                deleted: false,
                origin: String::new(),
                size: change.size,
                name: String::new(),
            };
            self.push_records(vec![record], from);
            self.refresh_totals(true);
            self.emit(EngineEvent::AssetRestored {
                peer,
                hash: hex::encode(hash),
                name: change.name,
                size: change.size,
            });
        }
        let targets = self.planner.add_local(hash, from);
        self.announce(hash, targets);
    }

    /// Sends `records` to every peer that speaks tombstones, except `except`.
    pub(super) fn push_records(&mut self, records: Vec<pb::Record>, except: Option<EndpointId>) {
        let targets: Vec<EndpointId> = self
            .peers
            .iter()
            .filter(|(id, p)| p.tombs && Some(**id) != except)
            .map(|(id, _)| *id)
            .collect();
        for chunk in records.chunks(RECORDS_PER_FRAME) {
            for id in &targets {
                self.tell(*id, PeerCmd::Records(chunk.to_vec()));
            }
        }
    }

    /// A peer sent changes: deletions of assets we hold go past the guard; the rest, and
    /// what the guard lets through, go to our store.
    pub(super) fn on_peer_records(&mut self, id: EndpointId, records: Vec<pb::Record>) {
        let mut pass = Vec::new();
        let mut deletions = Vec::new();
        for r in records {
            let Ok(hash) = <Hash>::try_from(r.hash.as_slice()) else {
                continue;
            };
            if r.deleted && self.planner.has_local(&hash) {
                deletions.push(Deletion {
                    peer: id,
                    hash,
                    stamp: r.stamp,
                    name: r.name,
                });
            } else {
                pass.push((id, r));
            }
        }
        let local = self.planner.local_count();
        let planner = &self.planner;
        let verdict = self
            .guard
            .admit(Instant::now(), local, deletions, |h| planner.has_local(h));
        if verdict.tripped {
            let held = self.held();
            tracing::warn!(
                count = held.count,
                sample = ?held.sample,
                "mass deletion held: waiting for `can-sync deletions apply` or `keep`"
            );
            self.emit(EngineEvent::MassDeleteHeld {
                count: held.count,
                sample: held.sample,
            });
        }
        pass.extend(verdict.apply.into_iter().map(deletion_record));
        self.apply_records(pass, false);
    }

    /// What the guard holds, for the status.
    pub(super) fn held(&self) -> HeldDeletions {
        HeldDeletions {
            count: self.guard.held_count(),
            sample: self.guard.sample(),
            applied: self.guard.applied_count(),
        }
    }

    /// Applies changes to our store, in order, on one worker task (the store serialises
    /// them anyway); answers each sender whose change our store outranks with ours. A
    /// peer's batch that finds the worker's queue full is dropped and that peer gets a new
    /// round instead (its reconciliation brings the changes again): what peers make us do
    /// stays bounded. The user's own batches (`from_user`) always wait their turn.
    fn apply_records(&mut self, records: Vec<(EndpointId, pb::Record)>, from_user: bool) {
        if records.is_empty() {
            return;
        }
        let batch = RecordBatch {
            senders: self
                .peers
                .iter()
                .map(|(id, p)| (*id, (p.conn_id, p.peer.clone())))
                .collect(),
            records,
        };
        let tx = self
            .records_tx
            .get_or_insert_with(|| {
                let (tx, rx) = tokio::sync::mpsc::channel(RECORD_BATCHES);
                tokio::spawn(apply_worker(self.ctx.clone(), rx));
                tx
            })
            .clone();
        if from_user {
            tokio::spawn(async move {
                let _ = tx.send(batch).await;
            });
            return;
        }
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(batch)) = tx.try_send(batch) {
            let from: std::collections::HashSet<EndpointId> =
                batch.records.iter().map(|(id, _)| *id).collect();
            tracing::warn!(
                records = batch.records.len(),
                "peers send changes faster than our store applies them; dropped, a new round brings them again"
            );
            for id in from {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.round_due = true;
                }
            }
        }
    }

    /// A peer's record made an asset live that our store lacks.
    pub(super) fn on_need_content(&mut self, id: EndpointId, hash: Hash) {
        self.planner.undelete(&hash);
        self.planner.peer_has(id, [hash]);
        self.pump();
    }

    /// The user's answer to held deletions. `apply`: carry them out. Otherwise keep our
    /// assets: every held deletion, and those applied in the window before the guard
    /// tripped, is outranked by a change of ours (the asset live with a later stamp), which
    /// restores it on every device. Returns how many were held.
    pub(super) fn release_deletions(&mut self, apply: bool) -> usize {
        let (held, recent) = self.guard.release();
        let count = held.len();
        if count == 0 {
            return 0;
        }
        tracing::info!(count, apply, "held deletions released");
        self.emit(EngineEvent::MassDeleteReleased {
            applied: apply,
            count,
        });
        let ours = self.ctx.endpoint.id();
        let records: Vec<(EndpointId, pb::Record)> = if apply {
            held.into_iter().map(deletion_record).collect()
        } else {
            held.into_iter()
                .chain(recent)
                .map(|d| {
                    // A live record one tick after the deletion, as if uploaded here again:
                    // our store takes its stamp (or restores from its trash), and the change
                    // reaches every peer from its event stream.
                    let record = pb::Record {
                        hash: d.hash.to_vec(),
                        stamp: d.stamp.saturating_add(1),
                        deleted: false,
                        origin: String::new(),
                        size: 0,
                        name: String::new(),
                    };
                    (ours, record)
                })
                .collect()
        };
        if !apply {
            // Assets still live here get the later stamp without an event: tell peers.
            let live: Vec<pb::Record> = records
                .iter()
                .filter(|(_, r)| {
                    <Hash>::try_from(r.hash.as_slice()).is_ok_and(|h| self.planner.has_local(&h))
                })
                .map(|(_, r)| r.clone())
                .collect();
            self.push_records(live, None);
        }
        self.apply_records(records, true);
        count
    }

    /// Reads the store's totals (trash bytes) for the status, off the actor, if `changed`
    /// or they are old (see [`TotalsCache`](crate::engine::status::TotalsCache)).
    pub(super) fn refresh_totals(&mut self, changed: bool) {
        if self.store_totals.wants_read(changed) {
            self.read_totals();
        }
    }

    pub(super) fn read_totals(&self) {
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let t = ctx.can.totals().await.ok();
            let _ = ctx.cmd.send(Cmd::StoreTotals(t)).await;
        });
    }
}

fn deletion_record(d: Deletion<EndpointId>) -> (EndpointId, pb::Record) {
    (
        d.peer,
        pb::Record {
            hash: d.hash.to_vec(),
            stamp: d.stamp,
            deleted: true,
            origin: String::new(),
            size: 0,
            name: d.name,
        },
    )
}

/// Batches of changes queued for the worker at most (each up to 1,024 records).
const RECORD_BATCHES: usize = 16;

/// Changes to apply, and the connections to answer on (as of when they were queued).
pub(super) struct RecordBatch {
    records: Vec<(EndpointId, pb::Record)>,
    senders: std::collections::HashMap<EndpointId, (usize, tokio::sync::mpsc::Sender<PeerCmd>)>,
}

async fn apply_worker(ctx: Arc<Context>, mut rx: tokio::sync::mpsc::Receiver<RecordBatch>) {
    loop {
        let batch = tokio::select! {
            b = rx.recv() => b,
            _ = ctx.cancelled() => None,
        };
        let Some(batch) = batch else { return };
        apply_all(&ctx, batch).await;
    }
}

/// Applies records one by one.
async fn apply_all(ctx: &Context, RecordBatch { records, senders }: RecordBatch) {
    let ours = ctx.endpoint.id();
    let mut answers: std::collections::HashMap<EndpointId, Vec<pb::Record>> = Default::default();
    for (id, mut record) in records {
        record.origin = if id == ours {
            "local".to_owned()
        } else {
            format!("peer:{id}")
        };
        let hash = record.hash.clone();
        match ctx.can.apply_record(record).await {
            Ok(resp) => match resp.outcome() {
                Outcome::Superseded => {
                    if let Some(current) = resp.current {
                        answers.entry(id).or_default().push(pb::Record {
                            hash: current.hash,
                            stamp: current.stamp,
                            deleted: current.deleted,
                            origin: String::new(),
                            size: current.size,
                            name: String::new(),
                        });
                    }
                }
                Outcome::NeedContent => {
                    if let (Ok(hash), Some((conn_id, _))) =
                        (<Hash>::try_from(hash.as_slice()), senders.get(&id))
                    {
                        let _ = ctx
                            .cmd
                            .send(Cmd::NeedContent {
                                id,
                                conn_id: *conn_id,
                                hash,
                            })
                            .await;
                    }
                }
                Outcome::Applied | Outcome::Unchanged | Outcome::Expired | Outcome::Unspecified => {
                }
            },
            Err(e) => {
                // The next reconciliation with that peer finds the difference again.
                tracing::warn!(error = %e, hash = %hex::encode(&hash), "cannot apply a peer's change");
            }
        }
    }
    for (id, records) in answers {
        if let Some((_, tx)) = senders.get(&id) {
            for chunk in records.chunks(RECORDS_PER_FRAME) {
                // Best effort: a full queue means a slow peer; the next round covers it.
                let _ = tx.try_send(PeerCmd::Records(chunk.to_vec()));
            }
        }
    }
}
