//! The actor: the only owner of sync state. It takes one [`Cmd`] at a time and does a
//! bounded slice of work for each; everything that costs O(N) per peer (answering a
//! reconciliation, writing a full list) runs in that peer's own task (`peer::control`).
//! The one O(N) step here, sorting our hashes into a snapshot, happens at most once per
//! change of our own set, whoever asks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use iroh::EndpointId;
use tokio::sync::mpsc;

use super::local;
use super::status::{ListProgress, PeerEntry, Stats};
use crate::context::{Cmd, Context, PeerCmd};
use crate::discovery::{info, remembered};
use crate::events::{EngineEvent, Status};
use crate::peer::{close, close_conn, fetch};
use crate::plan::{Hash, Outcome, Planner};
use crate::reconcile::Summary;
use crate::transfer::{FetchError, Fetched};
use crate::util::jitter;

/// Transfers from one peer at a time, and in all.
const PER_PEER_TRANSFERS: usize = 8;
const TOTAL_TRANSFERS: usize = 16;
/// We ask a peer for O(N) work (a reconciliation, a full list) at most this often, well
/// inside the budget every peer applies to us (`limits::BUDGET_*`).
const MIN_ROUND_GAP: Duration = Duration::from_secs(10);
/// Commands held while the store is still loading at start (more wait in the channel).
const EARLY_CMDS: usize = 1024;
/// How long transfers wait after the store said it is out of space.
const STORE_FULL_HOLD: Duration = Duration::from_secs(30);

pub(super) struct Actor {
    ctx: Arc<Context>,
    remembered_key: [u8; 32],
    planner: Planner<EndpointId>,
    peers: HashMap<EndpointId, PeerEntry>,
    totals: Stats,
    store_online: bool,
    loaded: bool,
    hold_until: Option<Instant>,
    /// Store failures in a row, for the retry backoff.
    store_failures: u32,
    store_full: bool,
    last_error: Option<String>,
    /// Our hashes sorted for reconciliation, and the planner's local version they reflect.
    snapshot: Option<(u64, Arc<[Hash]>)>,
}

impl Actor {
    pub fn new(ctx: Arc<Context>, remembered_key: [u8; 32]) -> Self {
        Self {
            ctx,
            remembered_key,
            planner: Planner::new(PER_PEER_TRANSFERS, TOTAL_TRANSFERS),
            peers: HashMap::new(),
            totals: Stats::default(),
            store_online: false,
            loaded: false,
            hold_until: None,
            store_failures: 0,
            store_full: false,
            last_error: None,
            snapshot: None,
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Cmd>, poll_interval: Duration) {
        // Learn what the local store has before talking to anyone. Meanwhile status and
        // pause are answered at once and everything else waits its turn, in order.
        let mut early = VecDeque::new();
        let mut backoff = Duration::from_millis(250);
        let cursor = loop {
            match self.ctx.can.all_hashes(0).await {
                Ok((entries, last)) => {
                    self.planner.load_local(
                        entries
                            .iter()
                            .filter_map(|e| <[u8; 32]>::try_from(e.hash.as_slice()).ok()),
                    );
                    self.set_store(Ok(()));
                    break last;
                }
                Err(e) => {
                    self.set_store(Err(e.to_string()));
                    let wait = tokio::time::sleep(jitter(backoff));
                    tokio::pin!(wait);
                    loop {
                        tokio::select! {
                            _ = &mut wait => break,
                            cmd = rx.recv() => match cmd {
                                Some(Cmd::Status(tx)) => { let _ = tx.send(self.status()); }
                                Some(Cmd::Pause(p)) => { self.set_paused(p); }
                                // Too many waiting: refuse the connection (the peer redials).
                                Some(Cmd::PeerUp { reply, .. }) if early.len() >= EARLY_CMDS => {
                                    let _ = reply.send(false);
                                }
                                Some(other) if early.len() < EARLY_CMDS => early.push_back(other),
                                Some(_) => {}
                                None => return,
                            },
                            _ = self.ctx.cancelled() => return,
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        self.loaded = true;
        tokio::spawn(local::watch(self.ctx.clone(), cursor, poll_interval));
        for cmd in early {
            self.handle(cmd);
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    None => return,
                },
                _ = tick.tick() => {
                    self.due_rounds();
                    self.pump();
                }
                _ = self.ctx.cancelled() => {
                    for p in self.peers.values() {
                        close_conn(&p.conn, close::SHUTDOWN, "shutting down");
                    }
                    return;
                }
            }
        }
    }

    fn emit(&self, event: EngineEvent) {
        self.ctx.emit(event);
    }

    fn set_store(&mut self, state: Result<(), String>) {
        match state {
            Ok(()) if !self.store_online => {
                self.store_online = true;
                tracing::info!(url = %self.ctx.can.base_url(), "CAN Service online");
                self.emit(EngineEvent::StoreOnline);
            }
            Err(error) if self.store_online || self.last_error.as_deref() != Some(&error) => {
                self.store_online = false;
                tracing::warn!(%error, "CAN Service unavailable; retrying");
                self.last_error = Some(error.clone());
                self.emit(EngineEvent::StoreOffline { error });
            }
            _ => {}
        }
    }

    fn set_paused(&mut self, paused: bool) -> bool {
        let was = self.ctx.paused.swap(paused, Ordering::Relaxed);
        if was == paused {
            return false;
        }
        if paused {
            tracing::info!("sync paused");
            self.emit(EngineEvent::Paused);
        } else {
            tracing::info!("sync resumed");
            self.emit(EngineEvent::Resumed);
        }
        true
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::PeerUp {
                id,
                conn_id,
                dialer,
                device_name,
                rbsr,
                conn,
                peer,
                reply,
            } => {
                if let Some(existing) = self.peers.get(&id) {
                    // Both ends dialled: keep the connection dialled by the smaller id, which
                    // both ends compute the same way. The same end dialling again means its
                    // old connection is dead (it restarted): the new one wins.
                    if existing.dialer < dialer {
                        let _ = reply.send(false);
                        return;
                    }
                    close_conn(&existing.conn, close::DUPLICATE, "duplicate connection");
                    self.drop_peer(id, "replaced by a newer connection");
                }
                let _ = reply.send(true);
                self.peer_up(id, conn_id, dialer, device_name, rbsr, conn, peer);
            }
            Cmd::PeerDown {
                id,
                conn_id,
                reason,
            } => {
                if self.is_current(&id, conn_id) {
                    self.drop_peer(id, &reason);
                }
            }
            Cmd::PeerHas {
                id,
                conn_id,
                hashes,
            } => {
                if self.is_current(&id, conn_id) {
                    self.planner.peer_has(id, hashes);
                    self.pump();
                }
            }
            Cmd::ListPage {
                id,
                conn_id,
                round,
                last,
                bytes,
                bytes_sent,
                hashes,
            } => {
                if self.is_current(&id, conn_id) {
                    self.list_page(id, round, last, bytes, bytes_sent, &hashes);
                    self.planner.peer_has(id, hashes);
                    self.pump();
                }
            }
            Cmd::Reconciled {
                id,
                conn_id,
                summary,
            } => {
                if self.is_current(&id, conn_id) {
                    self.reconciled(id, summary);
                }
            }
            Cmd::Snapshot(tx) => {
                let _ = tx.send(self.snapshot());
            }
            Cmd::Local { hash, origin } => {
                let from = origin
                    .as_deref()
                    .and_then(|o| o.strip_prefix("peer:"))
                    .and_then(|id| id.parse::<EndpointId>().ok());
                let targets = self.planner.add_local(hash, from);
                self.announce(hash, targets);
            }
            Cmd::StoreState(state) => {
                if state.is_ok() {
                    self.hold_until = None;
                }
                self.set_store(state);
            }
            Cmd::Fetched { id, hash, result } => self.on_fetched(id, hash, result),
            Cmd::Served {
                id,
                hash,
                name,
                size,
            } => {
                self.totals.sent(size);
                if let Some(p) = self.peers.get_mut(&id) {
                    p.stats.sent(size);
                    p.last_activity = crate::now_rfc3339();
                }
                // The peer has it now.
                self.planner.peer_has(id, [hash]);
                self.emit(EngineEvent::AssetSent {
                    peer: id.to_string(),
                    hash: hex::encode(hash),
                    name,
                    size,
                });
            }
            Cmd::Pause(paused) => {
                if self.set_paused(paused) && !paused {
                    // Catch up: a fresh round in both directions with every peer (a new RBSR
                    // session teaches both sides what each lacks, like two hash lists).
                    for p in self.peers.values_mut() {
                        p.round_due = true;
                    }
                    self.due_rounds();
                    self.pump();
                }
            }
            Cmd::Status(tx) => {
                let _ = tx.send(self.status());
            }
        }
    }

    fn is_current(&self, id: &EndpointId, conn_id: usize) -> bool {
        self.peers.get(id).is_some_and(|p| p.conn_id == conn_id)
    }

    #[allow(clippy::too_many_arguments)]
    fn peer_up(
        &mut self,
        id: EndpointId,
        conn_id: usize,
        dialer: EndpointId,
        device_name: String,
        rbsr: bool,
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
        // Only now, after admission, does the peer become a gossip neighbour.
        self.ctx.gossip_join(id);
        let path = super::status::path_of(&conn).0;
        self.peers.insert(
            id,
            PeerEntry {
                conn,
                conn_id,
                dialer,
                device_name: device_name.clone(),
                peer,
                stats: Stats::default(),
                last_activity: crate::now_rfc3339(),
                rbsr,
                list_in: ListProgress::default(),
                last_round: None,
                round_due: false,
            },
        );
        self.remember(id, &device_name);
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
    fn tell(&mut self, id: EndpointId, cmd: PeerCmd) {
        let Some(p) = self.peers.get(&id) else {
            return;
        };
        match p.peer.try_send(cmd) {
            Ok(()) => {}
            // An announcement that does not fit is not lost: the next round (a
            // reconciliation or a full list) tells the peer everything it lacks.
            Err(mpsc::error::TrySendError::Full(PeerCmd::Announce(_))) => {
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
    fn due_rounds(&mut self) {
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
    fn remember(&self, id: EndpointId, device_name: &str) {
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

    fn drop_peer(&mut self, id: EndpointId, reason: &str) {
        if self.peers.remove(&id).is_none() {
            return;
        }
        self.planner.peer_disconnected(id);
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
    fn list_page(
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

    fn reconciled(&self, id: EndpointId, s: Summary) {
        tracing::info!(
            peer = %id.fmt_short(),
            method = "rbsr",
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
            method: "rbsr".into(),
            missing_here: s.need,
            missing_there: Some(s.have),
            turns: s.turns,
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
        });
    }

    /// Our hashes, sorted (what a reconciliation session works on), rebuilt only when the
    /// set has grown since the last call.
    fn snapshot(&mut self) -> Arc<[Hash]> {
        let version = self.planner.local_version();
        if let Some((v, items)) = &self.snapshot
            && *v == version
        {
            return items.clone();
        }
        let mut items: Vec<Hash> = self.planner.local_hashes().copied().collect();
        items.sort_unstable();
        let items: Arc<[Hash]> = items.into();
        self.snapshot = Some((version, items.clone()));
        items
    }

    fn misbehaved(&mut self, id: EndpointId, code: u32, reason: &str) {
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

    fn announce(&mut self, hash: Hash, targets: Vec<EndpointId>) {
        for id in targets {
            self.tell(id, PeerCmd::Announce(hash));
        }
    }

    /// Starts the transfers the planner allows.
    fn pump(&mut self) {
        if self.ctx.is_paused() || !self.loaded {
            return;
        }
        if let Some(until) = self.hold_until {
            if Instant::now() < until {
                return;
            }
            self.hold_until = None;
        }
        for (id, hash) in self.planner.next_requests() {
            let Some(p) = self.peers.get(&id) else {
                self.planner.finished(id, hash, Outcome::Retry);
                continue;
            };
            let conn = p.conn.clone();
            let ctx = self.ctx.clone();
            tokio::spawn(async move {
                let result = fetch::fetch(ctx.clone(), conn, hash).await;
                let _ = ctx.cmd.send(Cmd::Fetched { id, hash, result }).await;
            });
        }
    }

    fn hold(&mut self, d: Duration) {
        self.hold_until = Some(Instant::now() + d);
    }

    fn on_fetched(&mut self, id: EndpointId, hash: Hash, result: Result<Fetched, FetchError>) {
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

    fn status(&self) -> Status {
        let (candidates, dialing) = self.dial_counts();
        Status {
            endpoint_id: self.ctx.endpoint.id().to_string(),
            device_name: self.ctx.device_name.clone(),
            paused: self.ctx.is_paused(),
            store_online: self.store_online,
            local_assets: self.planner.local_count(),
            pending: self.planner.wanted(),
            in_flight: self.planner.in_flight(),
            peers: self.peers.iter().map(|(id, p)| p.status(id)).collect(),
            assets_sent: self.totals.assets_sent,
            assets_received: self.totals.assets_received,
            bytes_sent: self.totals.bytes_sent,
            bytes_received: self.totals.bytes_received,
            last_error: self.last_error.clone(),
            candidates,
            dialing,
        }
    }

    /// Candidates known to the dialer, and dial attempts in flight.
    fn dial_counts(&self) -> (usize, usize) {
        let known = self.ctx.candidates.lock().map(|c| c.len()).unwrap_or(0);
        let dialing =
            crate::candidates::MAX_CONCURRENT_DIALS - self.ctx.dial_permits.available_permits();
        (known, dialing)
    }
}
