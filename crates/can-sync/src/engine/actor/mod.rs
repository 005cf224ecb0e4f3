//! The actor: the only owner of sync state (this file: its state, loop and status;
//! [`peers`]: the peer table and rounds; [`transfers`]: starting transfers and their
//! outcomes; [`sorted`]: our hashes sorted for reconciliation). It takes one [`Cmd`] at a
//! time and does a bounded slice of work for each; everything that costs O(N) per peer
//! (answering a reconciliation, writing a full list) runs in that peer's own task
//! (`peer::control`). Sorting our hashes for those sessions runs on the blocking pool, at
//! most once per change of our own set, whoever asks; the actor only copies the ids out.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use iroh::EndpointId;
use tokio::sync::mpsc;

use super::local;
use super::status::{PeerEntry, Stats};
use crate::context::{Cmd, Context};
use crate::events::{EngineEvent, Status};
use crate::peer::{close, close_conn};
use crate::plan::Planner;
use crate::util::jitter;

mod deletions;
mod peers;
mod sorted;
mod transfers;

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
/// Transfers listed in a status or progress event (all count in `bytes_left`).
const MAX_LISTED_TRANSFERS: usize = 64;

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
    /// Our hashes sorted for reconciliation ([`sorted`]).
    sorted: sorted::Sorted,
    /// Transfers were in flight at the last progress report.
    was_moving: bool,
    /// Our store's deletions, as reconciled with peers.
    tombs: crate::tombs::Tombs,
    guard: crate::guard::DeleteGuard<EndpointId>,
    /// What the store holds (trash bytes for the status).
    store_totals: super::status::TotalsCache,
    /// The queue of the task that applies changes to our store (started on first use).
    records_tx: Option<mpsc::Sender<deletions::RecordBatch>>,
    /// Connected peers we have asked to be gossip neighbours.
    gossip_joined: std::collections::HashSet<EndpointId>,
}

impl Actor {
    pub fn new(
        ctx: Arc<Context>,
        remembered_key: [u8; 32],
        guard: crate::guard::GuardConfig,
    ) -> Self {
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
            sorted: Default::default(),
            was_moving: false,
            tombs: crate::tombs::Tombs::default(),
            guard: crate::guard::DeleteGuard::new(guard),
            store_totals: Default::default(),
            records_tx: None,
            gossip_joined: Default::default(),
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
                    self.load(&entries);
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
                                Some(Cmd::ReleaseDeletions { reply, .. }) => { let _ = reply.send(0); }
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
        self.refresh_totals(false);
        tokio::spawn(local::watch(self.ctx.clone(), cursor, poll_interval));
        for cmd in early {
            self.handle(cmd);
        }
        // The tick runs only while there is work it may be needed for; an idle engine
        // sleeps until a command, a transfer or the shutdown wakes it.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The fan-out's rotation: one wake-up per interval (jittered so agents do not rotate
        // in step), and only with a bound.
        let rotation = self.ctx.rotation.filter(|_| self.ctx.max_peers > 0);
        let every = rotation.unwrap_or(crate::fanout::MAX_ROTATION_INTERVAL);
        let rotate = tokio::time::sleep(jitter(every));
        tokio::pin!(rotate);
        loop {
            let busy = self.needs_tick();
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    None => return,
                },
                _ = tick.tick(), if busy => {
                    self.due_rounds();
                    self.pump();
                    self.report_progress();
                }
                _ = self.ctx.transfers.first_started(), if !busy => {
                    self.report_progress();
                }
                _ = &mut rotate, if rotation.is_some() => {
                    self.rotate();
                    rotate.as_mut().reset(tokio::time::Instant::now() + jitter(every));
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

    /// What the store listed at start: assets and deletions.
    fn load(&mut self, entries: &[can_proto::sync_api::HashEntry]) {
        let hash =
            |e: &can_proto::sync_api::HashEntry| <[u8; 32]>::try_from(e.hash.as_slice()).ok();
        self.planner
            .load_local(entries.iter().filter(|e| !e.deleted).filter_map(hash));
        for e in entries.iter().filter(|e| e.deleted) {
            if let Some(h) = hash(e) {
                self.planner.load_deleted([h]);
                self.tombs.insert(crate::tombs::Tomb {
                    hash: h,
                    stamp: e.stamp,
                    size: e.size,
                    name: String::new(),
                });
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
                instance,
                device_name,
                rbsr,
                tombs,
                swarm,
                conn,
                peer,
                reply,
            } => {
                if let Some(existing) = self.peers.get(&id) {
                    // Both ends dialled: keep the connection dialled by the smaller id, which
                    // both ends compute the same way. The same end dialling again, or the
                    // peer coming back as another instance (it restarted, whoever dialled),
                    // means the old connection is dead, though QUIC would take its idle
                    // timeout to notice: the new one wins.
                    let restarted = existing.instance != instance;
                    if !restarted && existing.dialer < dialer {
                        let _ = reply.send(false);
                        return;
                    }
                    close_conn(&existing.conn, close::DUPLICATE, "duplicate connection");
                    self.drop_peer(id, "replaced by a newer connection");
                }
                let _ = reply.send(true);
                self.peer_up(
                    id,
                    conn_id,
                    dialer,
                    instance,
                    device_name,
                    (rbsr, tombs, swarm),
                    conn,
                    peer,
                );
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
            Cmd::Snapshot(tx) => self.want_sorted(tx),
            Cmd::Sorted { version, items } => self.sorted_done(version, items),
            Cmd::Local {
                hash,
                origin,
                change,
            } => self.on_local(hash, origin, change),
            Cmd::TombSnapshot(tx) => {
                let _ = tx.send(self.tombs.snapshot());
            }
            Cmd::PeerRecords {
                id,
                conn_id,
                records,
            } => {
                if self.is_current(&id, conn_id) {
                    self.on_peer_records(id, records);
                }
            }
            Cmd::NeedContent { id, conn_id, hash } => {
                if self.is_current(&id, conn_id) {
                    self.on_need_content(id, hash);
                }
            }
            Cmd::ReleaseDeletions { apply, reply } => {
                let _ = reply.send(self.release_deletions(apply));
            }
            Cmd::StoreTotals(t) => {
                if self.store_totals.read(t) {
                    self.read_totals();
                }
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
                bytes,
            } => {
                self.totals.sent(bytes);
                if let Some(p) = self.peers.get_mut(&id) {
                    p.stats.sent(bytes);
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
            Cmd::ServedRange { id, bytes } => {
                self.totals.sent_bytes(bytes);
                if let Some(p) = self.peers.get_mut(&id) {
                    p.stats.sent_bytes(bytes);
                    p.last_activity = crate::now_rfc3339();
                }
            }
            Cmd::SwarmHave(have) => {
                for p in self.peers.values().filter(|p| p.swarm) {
                    // Dropped when the peer's queue is full: the next Have says it all again.
                    let _ = p.peer.try_send(crate::context::PeerCmd::Have(have.clone()));
                }
            }
            Cmd::SwarmSources { hash, reply } => {
                let sources = self
                    .peers
                    .iter()
                    .filter(|(_, p)| p.swarm)
                    .map(|(id, p)| crate::swarm::registry::SourcePeer {
                        id: *id,
                        conn: p.conn.clone(),
                        full: self.planner.peer_holds(id, &hash),
                    })
                    .collect();
                let _ = reply.send(sources);
            }
            Cmd::PieceMisbehaved { id, reason } => {
                self.misbehaved(id, close::MISBEHAVING, &reason);
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
                self.refresh_totals(false);
            }
        }
    }

    fn is_current(&self, id: &EndpointId, conn_id: usize) -> bool {
        self.peers.get(id).is_some_and(|p| p.conn_id == conn_id)
    }

    /// Transfers and rates as of now, with the peers' device names.
    fn progress(&self) -> crate::progress::Snapshot {
        let mut snap = self
            .ctx
            .transfers
            .snapshot(Instant::now(), MAX_LISTED_TRANSFERS);
        for t in &mut snap.transfers {
            if let Some(p) = t
                .peer
                .parse::<EndpointId>()
                .ok()
                .and_then(|id| self.peers.get(&id))
            {
                t.device_name = p.device_name.clone();
            }
        }
        snap
    }

    /// Whether the 1 s tick has anything to do: a round or a held transfer waiting for its
    /// time, transfers to start or to report on.
    fn needs_tick(&self) -> bool {
        let active = !self.ctx.is_paused() && self.loaded;
        self.was_moving
            || !self.ctx.transfers.is_empty()
            || active
                && (self.hold_until.is_some()
                    || self.planner.wanted() > 0
                    || self.peers.values().any(|p| p.round_due))
    }

    /// The `progress` event while anything moves, and once more when it stopped.
    fn report_progress(&mut self) {
        let moving = !self.ctx.transfers.is_empty();
        if !moving && !self.was_moving {
            self.ctx.transfers.sample_rates(Instant::now());
            return;
        }
        self.was_moving = moving;
        let snap = self.progress();
        self.emit(EngineEvent::Progress {
            transfers: snap.transfers,
            bytes_left: snap.bytes_left,
            download_rate: snap.download_rate,
            upload_rate: snap.upload_rate,
        });
    }

    fn status(&self) -> Status {
        let (candidates, dialing) = self.dial_counts();
        let progress = self.progress();
        let (moved_down, moved_up) = self.ctx.transfers.moved();
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
            transfer_bytes_sent: moved_up,
            transfer_bytes_received: moved_down,
            last_error: self.last_error.clone(),
            candidates,
            dialing,
            transfers: progress.transfers,
            bytes_left: progress.bytes_left,
            download_rate: progress.download_rate,
            upload_rate: progress.upload_rate,
            trash_assets: self.store_totals.get().trash_assets,
            trash_bytes: self.store_totals.get().trash_bytes,
            tombstones: self.store_totals.get().tombstones,
            mass_delete_held: self.guard.is_holding().then(|| self.held()),
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
