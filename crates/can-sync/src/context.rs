//! What the engine's tasks share, and the messages they send each other.
//!
//! Peer connections ([`crate::peer`]) and discovery ([`crate::discovery`]) depend on this
//! narrow context, never on the engine itself: they report to the actor with [`Cmd`], hand
//! candidates to the dialer with [`Context::discover`], and read a few shared facts.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iroh::address_lookup::MemoryLookup;
use iroh::endpoint::Connection;
use iroh::{Endpoint, EndpointAddr, EndpointId};
use iroh_gossip::api::GossipSender;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::candidates::{Candidates, Source};
use crate::events::{EngineEvent, Status};
use crate::keys::Keys;
use crate::limits::{AdmissionLimiter, Refusal};
use crate::plan::Hash;
use crate::reconcile::Summary;
use crate::store_link::StoreLink;
use crate::transfer::{FetchError, Fetched};

/// Messages to the engine's actor.
pub(crate) enum Cmd {
    /// A connection passed admission and Hello; `reply` says whether to keep it.
    PeerUp {
        id: EndpointId,
        conn_id: usize,
        dialer: EndpointId,
        /// The peer's Hello.instance: another one than its current connection's means it
        /// restarted.
        instance: u64,
        device_name: String,
        /// Both Hellos offered "rbsr-v1".
        rbsr: bool,
        /// Both Hellos offered "tombstones-v1".
        tombs: bool,
        /// Both Hellos offered "swarm-v1".
        swarm: bool,
        conn: Connection,
        peer: mpsc::Sender<PeerCmd>,
        reply: oneshot::Sender<bool>,
    },
    PeerDown {
        id: EndpointId,
        conn_id: usize,
        reason: String,
    },
    /// The peer has these (an announcement, or what a reconciliation found we lack).
    PeerHas {
        id: EndpointId,
        conn_id: usize,
        hashes: Vec<Hash>,
    },
    /// A page of the peer's full hash list.
    ListPage {
        id: EndpointId,
        conn_id: usize,
        round: u64,
        last: bool,
        /// Bytes of this page on the wire.
        bytes: u64,
        /// Bytes of the last full list we sent this peer.
        bytes_sent: u64,
        hashes: Vec<Hash>,
    },
    Reconciled {
        id: EndpointId,
        conn_id: usize,
        summary: Summary,
    },
    /// Our hashes, sorted (cached until our set changes).
    Snapshot(oneshot::Sender<Arc<[Hash]>>),
    /// A sort of our hashes at the planner's local `version` is done.
    Sorted {
        version: u64,
        items: Arc<[Hash]>,
    },
    /// Our store has a new asset, or deleted one (its event stream or the fallback poll).
    Local {
        hash: Hash,
        origin: Option<String>,
        change: LocalChange,
    },
    /// Our tombstones, sorted by reconciliation id (cached until they change).
    TombSnapshot(oneshot::Sender<Arc<crate::tombs::TombSnapshot>>),
    /// A peer sent changes of single hashes (deletions, restores).
    PeerRecords {
        id: EndpointId,
        conn_id: usize,
        records: Vec<can_proto::sync_api::Record>,
    },
    /// A peer's record made an asset live that our store lacks: fetch it from that peer.
    NeedContent {
        id: EndpointId,
        conn_id: usize,
        hash: Hash,
    },
    /// The user's answer to held deletions: apply them, or keep our assets (everywhere).
    ReleaseDeletions {
        apply: bool,
        reply: oneshot::Sender<usize>,
    },
    /// What the store holds (for the status), read after deletions.
    StoreTotals(Option<can_proto::sync_api::Totals>),
    StoreState(Result<(), String>),
    Fetched {
        id: EndpointId,
        hash: Hash,
        result: Result<Fetched, FetchError>,
    },
    Served {
        id: EndpointId,
        hash: Hash,
        name: String,
        size: u64,
        /// Bytes this stream carried: `size` less a resume's offset, or less what a split
        /// transfer took as ranges (those count as `ServedRange`).
        bytes: u64,
    },
    /// We sent a peer one range of an asset (a swarm fetch of its).
    ServedRange {
        id: EndpointId,
        bytes: u64,
    },
    /// Tell our swarm peers what we hold of a fetch in progress.
    SwarmHave(can_proto::peer::Have),
    /// The connected swarm peers, and whether each has `hash`.
    SwarmSources {
        hash: Hash,
        reply: oneshot::Sender<Vec<crate::swarm::registry::SourcePeer>>,
    },
    /// A peer sent a piece that is not what the piece map says.
    PieceMisbehaved {
        id: EndpointId,
        reason: String,
    },
    Pause(bool),
    Status(oneshot::Sender<Status>),
}

/// One session counted by the bounded fan-out, until dropped.
pub(crate) struct FanSlot(Arc<std::sync::atomic::AtomicUsize>);

impl FanSlot {
    /// Takes a slot if `allowed(sessions now)`; checked and counted in one step, so dial
    /// loops racing each other cannot overshoot the limit.
    fn take(
        count: &Arc<std::sync::atomic::AtomicUsize>,
        allowed: impl Fn(usize) -> bool,
    ) -> Option<FanSlot> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                allowed(n).then_some(n + 1)
            })
            .ok()
            .map(|_| FanSlot(count.clone()))
    }
}

impl Drop for FanSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What our store reported about one hash.
#[derive(Debug, Clone, Default)]
pub(crate) struct LocalChange {
    /// Deleted (else stored, or restored).
    pub deleted: bool,
    pub stamp: u64,
    pub size: u64,
    pub name: String,
}

/// Messages from the actor to one peer connection's control task.
#[derive(Debug, Clone)]
pub(crate) enum PeerCmd {
    Announce(Hash),
    /// What we hold of a swarm fetch in progress (swarm peers).
    Have(can_proto::peer::Have),
    /// Send these changes of single hashes (at most [`crate::tombs::RECORDS_PER_FRAME`]).
    Records(Vec<can_proto::sync_api::Record>),
    /// Start a reconciliation session (RBSR peers).
    Reconcile,
    /// Send our full hash list (peers without RBSR).
    SendList {
        reply_wanted: bool,
    },
}

/// An endpoint some discovery source told us about.
#[derive(Debug, Clone)]
pub(crate) struct Discovered {
    pub addr: EndpointAddr,
    pub source: Source,
}

/// What the engine's tasks share.
pub(crate) struct Context {
    pub keys: Keys,
    pub endpoint: Endpoint,
    pub can: StoreLink,
    pub device_name: String,
    /// Features offered in our Hello (docs/protocol.md, "2. Hello").
    pub features: Vec<String>,
    /// Drawn at start, sent in Hello: peers tell our restart from a second connection.
    pub instance: u64,
    pub cmd: mpsc::Sender<Cmd>,
    pub events: broadcast::Sender<EngineEvent>,
    pub data_dir: PathBuf,
    /// A transfer with no bytes for this long is aborted.
    pub idle_timeout: Duration,
    /// Transfers in flight (both directions), for progress and rates.
    pub transfers: Arc<crate::progress::Transfers>,
    /// Upload and download limits, applied to every transfer.
    pub(crate) shaper: crate::bandwidth::Shaper,
    /// Swarm fetches in progress, ours and our peers'.
    pub(crate) swarm: crate::swarm::Registry,
    pub cancel: CancellationToken,
    pub(crate) paused: AtomicBool,
    /// Addresses learnt from discovery, for dialling by id.
    pub(crate) lookup: MemoryLookup,
    pub(crate) connected: Mutex<HashSet<EndpointId>>,
    /// Sessions held (dialled: connecting or connected; or accepted), for the bounded
    /// fan-out ([`crate::fanout`]); each is held by a [`FanSlot`].
    sessions: Arc<std::sync::atomic::AtomicUsize>,
    /// Of those, the sessions we dialled.
    outbound: Arc<std::sync::atomic::AtomicUsize>,
    /// `max_peers` (0 = no limit).
    pub max_peers: usize,
    pub(crate) candidates: Mutex<Candidates<EndpointId>>,
    /// Peers we let go by rotation, and until when we do not dial them again.
    resting: Mutex<HashMap<EndpointId, Instant>>,
    /// How often we may rotate a dialled session (`None`: never).
    pub rotation: Option<Duration>,
    pub(crate) dial_permits: Semaphore,
    discovered: mpsc::Sender<Discovered>,
    gossip: Mutex<Option<GossipSender>>,
    admission: Mutex<AdmissionLimiter<EndpointId>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("endpoint", &self.endpoint.id())
            .finish()
    }
}

/// The parts of a [`Context`] that the engine creates before it.
pub(crate) struct ContextParts {
    pub keys: Keys,
    pub endpoint: Endpoint,
    pub can: StoreLink,
    pub device_name: String,
    pub features: Vec<String>,
    pub cmd: mpsc::Sender<Cmd>,
    pub events: broadcast::Sender<EngineEvent>,
    pub data_dir: PathBuf,
    pub idle_timeout: Duration,
    pub bandwidth: crate::bandwidth::BandwidthLimits,
    pub paused: bool,
    pub lookup: MemoryLookup,
    pub discovered: mpsc::Sender<Discovered>,
    pub max_peers: usize,
    pub rotation: Option<Duration>,
}

impl Context {
    pub fn new(p: ContextParts) -> Self {
        Self {
            keys: p.keys,
            endpoint: p.endpoint,
            can: p.can,
            device_name: p.device_name,
            features: p.features,
            instance: rand::random(),
            cmd: p.cmd,
            events: p.events,
            data_dir: p.data_dir,
            idle_timeout: p.idle_timeout,
            transfers: Arc::default(),
            shaper: crate::bandwidth::Shaper::new(p.bandwidth),
            swarm: crate::swarm::Registry::default(),
            cancel: CancellationToken::new(),
            paused: AtomicBool::new(p.paused),
            lookup: p.lookup,
            connected: Mutex::new(HashSet::new()),
            sessions: Arc::default(),
            outbound: Arc::default(),
            max_peers: p.max_peers,
            candidates: Mutex::new(Candidates::default()),
            resting: Mutex::new(HashMap::new()),
            rotation: p.rotation,
            dial_permits: Semaphore::new(crate::candidates::MAX_CONCURRENT_DIALS),
            discovered: p.discovered,
            gossip: Mutex::new(None),
            admission: Mutex::new(AdmissionLimiter::default()),
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    pub fn emit(&self, event: EngineEvent) {
        let _ = self.events.send(event);
    }

    /// A discovery source found `addr`: hand it to the dialer as a candidate. Never blocks;
    /// when the dialer is swamped the offer is dropped (sources repeat themselves).
    pub fn discover(&self, addr: EndpointAddr, source: Source) {
        if addr.id == self.endpoint.id() {
            return;
        }
        let _ = self.discovered.try_send(Discovered { addr, source });
    }

    /// A ticket the user gave: unlike discovery, never dropped when the dialer is busy.
    /// `false` once the dialer has stopped.
    pub async fn discover_ticket(&self, addr: EndpointAddr) -> bool {
        if addr.id == self.endpoint.id() {
            return true;
        }
        let source = Source::Ticket;
        self.discovered
            .send(Discovered { addr, source })
            .await
            .is_ok()
    }

    /// Whether any peer is connected now.
    pub fn any_connected(&self) -> bool {
        self.connected
            .lock()
            .map(|c| !c.is_empty())
            .unwrap_or(false)
    }

    /// Whether the fan-out would allow a session dialled to `id` now (nothing is taken: the
    /// slot is taken once the connection is up, see [`Context::outbound_slot`]).
    pub fn dial_allowed(&self, id: &EndpointId) -> bool {
        crate::fanout::may_dial(
            self.outbound.load(Ordering::Acquire),
            self.sessions.load(Ordering::Acquire),
            self.max_peers,
            self.is_pinned(id),
        )
    }

    /// A slot for a session we dial to `id`, if the fan-out allows one now.
    pub fn outbound_slot(&self, id: &EndpointId) -> Option<(FanSlot, FanSlot)> {
        let pinned = self.is_pinned(id);
        let sessions = self.sessions.load(Ordering::Acquire);
        let out = FanSlot::take(&self.outbound, |n| {
            crate::fanout::may_dial(n, sessions, self.max_peers, pinned)
        })?;
        // The total is checked again as it is counted (an incoming session may have come).
        let all = FanSlot::take(&self.sessions, |n| {
            pinned || self.max_peers == 0 || n < self.max_peers
        })?;
        Some((out, all))
    }

    /// A slot for a session `id` dialled, if the fan-out allows one now.
    pub fn inbound_slot(&self, id: &EndpointId) -> Option<FanSlot> {
        let pinned = self.is_pinned(id) || self.is_connected(id);
        FanSlot::take(&self.sessions, |n| {
            crate::fanout::may_accept(n, self.max_peers, pinned)
        })
    }

    /// Let `id` rest: the dialer does not dial it again for `wait` (it was rotated away).
    pub fn rest(&self, id: EndpointId, wait: Duration) {
        let now = Instant::now();
        if let Ok(mut r) = self.resting.lock() {
            r.retain(|_, until| *until > now);
            r.insert(id, now + wait);
        }
    }

    pub fn is_resting(&self, id: &EndpointId) -> bool {
        self.resting
            .lock()
            .map(|r| r.get(id).is_some_and(|until| *until > Instant::now()))
            .unwrap_or(false)
    }

    /// Candidates worth dialling that we are not connected to and that do not rest: what a
    /// rotation would give a chance.
    pub fn waiting_candidates(&self) -> usize {
        let hopeful: Vec<EndpointId> = self
            .candidates
            .lock()
            .map(|c| c.hopeful().copied().collect())
            .unwrap_or_default();
        hopeful
            .iter()
            .filter(|id| !self.is_connected(id) && !self.is_resting(id))
            .count()
    }

    /// Whether the user named this peer (a ticket): always dialled and accepted.
    pub fn is_pinned(&self, id: &EndpointId) -> bool {
        self.candidates
            .lock()
            .map(|c| c.source(id) == Some(Source::Ticket))
            .unwrap_or(false)
    }

    pub fn is_connected(&self, id: &EndpointId) -> bool {
        self.connected
            .lock()
            .map(|c| c.contains(id))
            .unwrap_or(false)
    }

    pub fn set_gossip_sender(&self, tx: GossipSender) {
        if let Ok(mut g) = self.gossip.lock() {
            *g = Some(tx);
        }
    }

    /// Adds an admitted peer to our gossip neighbours. Only peers that proved the passphrase
    /// are ever joined, so no stranger learns the topic from us.
    pub fn gossip_join(&self, id: EndpointId) {
        if let Some(tx) = self.gossip.lock().ok().and_then(|g| g.clone()) {
            tokio::spawn(async move {
                let _ = tx.join_peers(vec![id]).await;
            });
        }
    }

    /// Starts an admission with `id` (either direction), or says why not.
    pub fn admission_begin(self: &Arc<Self>, id: EndpointId) -> Result<AdmissionSlot, Refusal> {
        self.admission
            .lock()
            .map_err(|_| Refusal::Backoff)?
            .begin(id, Instant::now())?;
        Ok(AdmissionSlot {
            ctx: self.clone(),
            id,
            done: false,
        })
    }

    /// Whether an admission with `id` would be refused now (dialers skip such peers).
    pub fn admission_limited(&self, id: &EndpointId) -> bool {
        self.admission
            .lock()
            .map(|l| l.is_limited(id, Instant::now()))
            .unwrap_or(true)
    }

    /// Refuses `id` in both directions for `wait` (it went over its budget).
    pub fn penalise(&self, id: EndpointId, wait: Duration) {
        if let Ok(mut l) = self.admission.lock() {
            l.penalise(id, wait, Instant::now());
        }
    }
}

/// One admission in progress with a remote endpoint. Dropped without a verdict (a timeout,
/// a lost connection), it frees the slot without forgetting earlier failures.
pub(crate) struct AdmissionSlot {
    ctx: Arc<Context>,
    id: EndpointId,
    done: bool,
}

impl AdmissionSlot {
    pub fn finish(mut self, failed: bool) {
        self.done = true;
        if let Ok(mut l) = self.ctx.admission.lock() {
            l.finish(self.id, failed, Instant::now());
        }
    }
}

impl Drop for AdmissionSlot {
    fn drop(&mut self) {
        if !self.done
            && let Ok(mut l) = self.ctx.admission.lock()
        {
            l.release(self.id, Instant::now());
        }
    }
}
