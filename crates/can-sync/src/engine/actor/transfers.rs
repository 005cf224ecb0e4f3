//! The actor's transfers: starting what the planner allows, and what each outcome means.

use std::time::{Duration, Instant};

use iroh::EndpointId;

use super::{Actor, STORE_FULL_HOLD};
use crate::context::{Cmd, PeerCmd};
use crate::events::EngineEvent;
use crate::peer::{close, close_conn, fetch};
use crate::plan::{Hash, Outcome};
use crate::transfer::{FetchError, Fetched};
use crate::util::jitter;

impl Actor {
    pub(super) fn misbehaved(&mut self, id: EndpointId, code: u32, reason: &str) {
        tracing::warn!(peer = %id.fmt_short(), %reason, "peer misbehaved; disconnecting");
        if let Some(p) = self.peers.get(&id) {
            close_conn(&p.conn, code, reason);
        }
        self.emit(EngineEvent::PeerMisbehaved {
            peer: id.to_string(),
            reason: reason.to_owned(),
        });
        self.drop_peer(id, reason);
    }

    pub(super) fn announce(&mut self, hash: Hash, targets: Vec<EndpointId>) {
        for id in targets {
            self.tell(id, PeerCmd::Announce(hash));
        }
    }

    /// Starts the transfers the planner allows.
    pub(super) fn pump(&mut self) {
        if self.ctx.is_paused() || !self.loaded {
            return;
        }
        if let Some(until) = self.hold_until {
            if Instant::now() < until {
                return;
            }
            self.hold_until = None;
        }
        // Pieces from several peers only help when another peer could send some: with one
        // peer, a large asset streams whole (and resumes through the store's partial).
        let swarm_peers = self.peers.values().filter(|p| p.swarm).count();
        for (id, hash) in self.planner.next_requests() {
            let Some(p) = self.peers.get(&id) else {
                self.planner.finished(id, hash, Outcome::Retry);
                continue;
            };
            let (conn, swarm, ranges) = (p.conn.clone(), p.swarm && swarm_peers >= 2, p.swarm);
            let ctx = self.ctx.clone();
            tokio::spawn(async move {
                let result = fetch::fetch(ctx.clone(), conn, hash, swarm, ranges).await;
                let _ = ctx.cmd.send(Cmd::Fetched { id, hash, result }).await;
            });
        }
    }

    pub(super) fn hold(&mut self, d: Duration) {
        self.hold_until = Some(Instant::now() + d);
    }

    pub(super) fn on_fetched(
        &mut self,
        id: EndpointId,
        hash: Hash,
        result: Result<Fetched, FetchError>,
    ) {
        match result {
            Ok(fetched) => {
                self.set_store(Ok(()));
                self.store_failures = 0;
                self.store_full = false;
                self.totals.received(fetched.size);
                if let Some(p) = self.peers.get_mut(&id) {
                    p.stats.received(fetched.size);
                    p.last_activity = crate::now_rfc3339();
                }
                if fetched.created {
                    self.emit(EngineEvent::AssetReceived {
                        peer: id.to_string(),
                        hash: hex::encode(hash),
                        name: fetched.name,
                        size: fetched.size,
                    });
                }
                let targets = self.planner.finished(id, hash, Outcome::Stored);
                self.announce(hash, targets);
            }
            Err(FetchError::Misbehaved(reason)) => {
                self.planner.finished(id, hash, Outcome::Drop);
                self.misbehaved(id, close::MISBEHAVING, &reason);
            }
            Err(FetchError::Refused(reason)) if reason == "busy" => {
                self.planner.finished(id, hash, Outcome::Stalled);
            }
            Err(FetchError::Refused(reason)) => {
                if reason == "paused" {
                    // Ask it again once it sends a fresh round (it does on resume).
                    self.planner.forget_sources(id);
                    self.planner.finished(id, hash, Outcome::Retry);
                } else {
                    self.planner.finished(id, hash, Outcome::Drop);
                }
            }
            Err(FetchError::StoreRefused { status, message }) => {
                // The store's rules against this peer's description of the asset (its size,
                // name, type): asking this peer again would be refused again.
                tracing::warn!(peer = %id.fmt_short(), hash = %hex::encode(hash), status, %message, "the CAN Service refuses a received asset; not asking this peer for it again");
                self.planner.finished(id, hash, Outcome::Refused);
                self.emit(EngineEvent::AssetRefused {
                    peer: id.to_string(),
                    hash: hex::encode(hash),
                    status,
                    reason: message,
                });
            }
            Err(FetchError::Deleted(_)) => {
                // Our store's deletion outranks the peer's copy; its event follows (or came).
                self.planner.finished(id, hash, Outcome::Retry);
                self.planner.remove_local(hash);
            }
            Err(FetchError::StoreFull(message)) => {
                self.planner.finished(id, hash, Outcome::Retry);
                self.hold(STORE_FULL_HOLD);
                if !self.store_full {
                    self.store_full = true;
                    tracing::warn!(%message, "the CAN Service is out of space; transfers wait");
                    self.last_error = Some(format!("store full: {message}"));
                    self.emit(EngineEvent::StoreFull { error: message });
                }
            }
            Err(FetchError::Store(e)) => {
                tracing::warn!(error = %e, "storing a received asset failed; retrying shortly");
                if e.is_unavailable() {
                    self.set_store(Err(e.to_string()));
                }
                self.last_error = Some(e.to_string());
                self.store_failures = self.store_failures.saturating_add(1);
                let wait = Duration::from_secs(1u64 << self.store_failures.min(5));
                self.hold(jitter(wait));
                self.planner.finished(id, hash, Outcome::Retry);
            }
            Err(FetchError::Transport(e)) => {
                tracing::debug!(peer = %id.fmt_short(), error = %e, "transfer failed; retrying");
                self.planner.finished(id, hash, Outcome::Retry);
            }
            Err(FetchError::Stalled(after)) => {
                tracing::info!(peer = %id.fmt_short(), hash = %hex::encode(hash), ?after, "transfer stalled; trying another source");
                self.planner.finished(id, hash, Outcome::Stalled);
            }
        }
        self.pump();
    }
}
