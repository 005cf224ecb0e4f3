//! The actor's peer table: a connection coming up or going, what it is told, the rounds
//! of O(N) work it is asked for, and what its lists and reconciliations taught us.

use std::time::Instant;

use iroh::EndpointId;
use tokio::sync::mpsc;

use super::{Actor, MIN_ROUND_GAP};
use crate::context::PeerCmd;
use crate::discovery::{info, remembered};
use crate::engine::status::{ListProgress, PeerEntry, Stats};
use crate::events::EngineEvent;
use crate::peer::{close, close_conn};
use crate::plan::Hash;
use crate::reconcile::Summary;

impl Actor {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn peer_up(
        &mut self,
        id: EndpointId,
        conn_id: usize,
        dialer: EndpointId,
        instance: u64,
        device_name: String,
        (rbsr, tombs, swarm): (bool, bool, bool),
        conn: iroh::endpoint::Connection,
        peer: mpsc::Sender<PeerCmd>,
    ) {
        tracing::info!(peer = %id.fmt_short(), device = %device_name, "peer connected");
        self.planner.peer_connected(id);
        if let Ok(mut c) = self.ctx.connected.lock() {
            c.insert(id);
        }
        // A candidate from now on (if it was not one: it dialled us), so that we redial it
        // when the connection drops, however long it stays away.
        self.ctx.discover(
            iroh::EndpointAddr::new(id),
            crate::candidates::Source::Proven,
        );
        if let Ok(mut c) = self.ctx.candidates.lock() {
            c.admitted(id);
        }
        let path = crate::engine::status::path_of(&conn).0;
        self.peers.insert(
            id,
            PeerEntry {
                conn,
                conn_id,
                dialer,
                instance,
                device_name: device_name.clone(),
                peer,
                stats: Stats::default(),
                last_activity: crate::now_rfc3339(),
                rbsr,
                tombs,
                swarm,
                list_in: ListProgress::default(),
                last_round: None,
                round_due: false,
            },
        );
        self.remember(id, &device_name);
        self.join_gossip_when_useful();
        self.emit(EngineEvent::PeerUp {
            peer: id.to_string(),
            device_name,
            path: path.to_owned(),
        });
        // One RBSR session per connection is enough (both sides learn the whole difference);
        // the dialer starts it, so exactly one side does. Without RBSR both send their list.
        let me = self.ctx.endpoint.id();
        let cmd = if !rbsr {
            Some(PeerCmd::SendList {
                reply_wanted: !self.ctx.is_paused(),
            })
        } else if dialer == me {
            Some(PeerCmd::Reconcile)
        } else {
            None
        };
        if let Some(cmd) = cmd {
            if let Some(p) = self.peers.get_mut(&id) {
                p.last_round = Some(Instant::now());
            }
            self.tell(id, cmd);
        }
    }

    /// Queues a command for a peer's connection; one that cannot take it (its peer has not
    /// read for a long time) is cut off rather than buffered.
    pub(super) fn tell(&mut self, id: EndpointId, cmd: PeerCmd) {
        let Some(p) = self.peers.get(&id) else {
            return;
        };
        match p.peer.try_send(cmd) {
            Ok(()) => {}
            // An announcement that does not fit is not lost: the next round (a
            // reconciliation or a full list) tells the peer everything it lacks.
            Err(mpsc::error::TrySendError::Full(PeerCmd::Announce(_) | PeerCmd::Records(_))) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.round_due = true;
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                close_conn(&p.conn, close::NOT_READING, "not reading");
                self.emit(EngineEvent::PeerMisbehaved {
                    peer: id.to_string(),
                    reason: "not reading what we send".into(),
                });
                self.drop_peer(id, "not reading what we send");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.drop_peer(id, "connection ended"),
        }
    }

    /// Starts the rounds that are due and allowed by [`MIN_ROUND_GAP`].
    pub(super) fn due_rounds(&mut self) {
        if self.ctx.is_paused() {
            return;
        }
        let now = Instant::now();
        let due: Vec<(EndpointId, bool)> = self
            .peers
            .iter_mut()
            .filter(|(_, p)| {
                p.round_due
                    && p.last_round
                        .is_none_or(|t| now.duration_since(t) >= MIN_ROUND_GAP)
            })
            .map(|(id, p)| {
                p.round_due = false;
                p.last_round = Some(now);
                (*id, p.rbsr)
            })
            .collect();
        for (id, rbsr) in due {
            let cmd = if rbsr {
                PeerCmd::Reconcile
            } else {
                PeerCmd::SendList { reply_wanted: true }
            };
            self.tell(id, cmd);
        }
    }

    /// Writes the peer's current address to the remembered list, for the next start.
    pub(super) fn remember(&self, id: EndpointId, device_name: &str) {
        let Some(p) = self.peers.get(&id) else { return };
        let mut info = can_proto::peer::PeerInfo {
            endpoint_id: id.as_bytes().to_vec(),
            device_name: device_name.chars().take(32).collect(),
            timestamp_ms: info::now_ms(),
            ..Default::default()
        };
        for path in p.conn.paths().iter() {
            match path.remote_addr() {
                iroh::TransportAddr::Ip(sock) => info.direct_addrs.push(sock.to_string()),
                iroh::TransportAddr::Relay(url) => info.relay_url = url.to_string(),
                _ => {}
            }
        }
        if let Err(e) = remembered::remember(&self.ctx.data_dir, &self.remembered_key, info) {
            tracing::debug!(error = %e, "cannot write the remembered peers");
        }
    }

    /// Makes the connected peers gossip neighbours once there are two or more. Gossip
    /// tells peers of each other; with one peer there is no one to tell about, and its own
    /// QUIC connection would wake both ends every few seconds for nothing (issue #14). A peer
    /// with other peers still joins us from its side, so we hear of them. Only peers that
    /// passed admission are ever joined, so no stranger learns the topic from us.
    fn join_gossip_when_useful(&mut self) {
        if self.peers.len() < 2 {
            return;
        }
        for id in self.peers.keys() {
            if self.gossip_joined.insert(*id) {
                self.ctx.gossip_join(*id);
            }
        }
    }

    pub(super) fn drop_peer(&mut self, id: EndpointId, reason: &str) {
        if self.peers.remove(&id).is_none() {
            return;
        }
        self.planner.peer_disconnected(id);
        self.ctx.swarm.forget_peer(&id);
        self.gossip_joined.remove(&id);
        if let Ok(mut c) = self.ctx.connected.lock() {
            c.remove(&id);
        }
        tracing::info!(peer = %id.fmt_short(), %reason, "peer disconnected");
        self.emit(EngineEvent::PeerDown {
            peer: id.to_string(),
            reason: reason.to_owned(),
        });
    }

    /// Counts a page of the peer's hash list; the last page reports the round.
    pub(super) fn list_page(
        &mut self,
        id: EndpointId,
        round: u64,
        last: bool,
        bytes: u64,
        bytes_sent: u64,
        hashes: &[Hash],
    ) {
        let missing = hashes.iter().filter(|h| !self.planner.has_local(h)).count();
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.list_in.round != round {
            p.list_in = ListProgress {
                round,
                ..ListProgress::default()
            };
        }
        p.list_in.missing_here += missing;
        p.list_in.bytes += bytes;
        if last {
            let (missing_here, bytes_received) = (p.list_in.missing_here, p.list_in.bytes);
            tracing::info!(peer = %id.fmt_short(), method = "full", missing_here, bytes_received, "reconciled");
            self.emit(EngineEvent::Reconciled {
                peer: id.to_string(),
                method: "full".into(),
                missing_here,
                missing_there: None,
                turns: 1,
                bytes_sent,
                bytes_received,
            });
        }
    }

    pub(super) fn reconciled(&self, id: EndpointId, s: Summary) {
        tracing::info!(
            peer = %id.fmt_short(),
            method = s.method,
            initiated = s.initiated,
            missing_here = s.need,
            missing_there = s.have,
            turns = s.turns,
            bytes_sent = s.bytes_sent,
            bytes_received = s.bytes_received,
            "reconciled"
        );
        self.emit(EngineEvent::Reconciled {
            peer: id.to_string(),
            method: s.method.into(),
            missing_here: s.need,
            missing_there: Some(s.have),
            turns: s.turns,
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
        });
    }
}

impl Actor {
    /// The fan-out's rotation ([`crate::fanout::pick_rotation`]): when we dial all we aim for
    /// and other candidates wait, let one dialled session go (not a pinned, best or busy
    /// one) and let that peer rest a full interval, so the dial loops take another.
    pub(super) fn rotate(&mut self) {
        let Some(every) = self.ctx.rotation else {
            return;
        };
        if self.ctx.is_paused() {
            return;
        }
        let waiting = self.ctx.waiting_candidates();
        if waiting == 0 {
            return;
        }
        let me = self.ctx.endpoint.id();
        let dialled: Vec<crate::fanout::Dialled<EndpointId>> = self
            .peers
            .iter()
            .filter(|(_, p)| p.dialer == me)
            .map(|(id, p)| crate::fanout::Dialled {
                id: *id,
                pinned: self.ctx.is_pinned(id),
                lan: crate::bandwidth::is_lan_conn(&p.conn),
                rtt: crate::flow::selected_rtt(&p.conn),
                busy: self.planner.fetching_from(id) || self.ctx.transfers.involves(id),
            })
            .collect();
        let Some(id) = crate::fanout::pick_rotation(&dialled, self.ctx.max_peers, waiting, |n| {
            rand::random_range(0..n)
        }) else {
            return;
        };
        let Some(p) = self.peers.get(&id) else {
            return;
        };
        tracing::info!(peer = %id.fmt_short(), waiting, "rotating: letting a dialled peer go to try another");
        self.ctx.rest(id, every);
        close_conn(&p.conn, close::ROTATED, "rotating: trying another peer");
    }
}
