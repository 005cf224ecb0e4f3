//! The engine: lifecycle, the central actor that owns the sync state, and the tasks around
//! it (accepting, dialling, watching the local store). The app and the agent use [`Engine`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use can_proto::peer::{Announce, Control, HashList, control};
use futures_util::StreamExt;
use iroh::address_lookup::MemoryLookup;
use iroh::endpoint::{Connection, presets};
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use iroh::{Endpoint, EndpointAddr, EndpointId, RelayMode, RelayUrl, Watcher as _};
use iroh_gossip::Gossip;
use iroh_gossip::api::GossipSender;
use iroh_tickets::endpoint::EndpointTicket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admission::{ALPN, Role};
use crate::can_client::CanClient;
use crate::config::{EngineConfig, ReconcileMode};
use crate::discovery::{self, info, remembered, rendezvous::Rendezvous};
use crate::events::{EngineEvent, PeerStatus, Status};
use crate::keys::{self, Keys};
use crate::peer::{self, FetchError, close, close_conn};
use crate::plan::{Hash, Outcome, Planner};
use crate::reconcile::{self, Reconciliations};
use crate::wire::{HASHES_PER_FRAME, join_hashes, split_hashes};

/// Transfers from one peer at a time, and in all.
const PER_PEER_TRANSFERS: usize = 8;
const TOTAL_TRANSFERS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid setting: {0}")]
    Config(String),
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error("cannot open the network endpoint: {0}")]
    Bind(String),
    #[error("cannot write the ticket file {path}: {source}")]
    Ticket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the engine has stopped")]
    Stopped,
}

/// What the tasks share.
pub(crate) struct Shared {
    pub keys: Keys,
    pub endpoint: Endpoint,
    pub can: CanClient,
    pub device_name: String,
    /// Features offered in our Hello (docs/protocol.md, "2. Hello").
    pub features: Vec<String>,
    pub cmd: mpsc::Sender<Cmd>,
    pub events: broadcast::Sender<EngineEvent>,
    paused: AtomicBool,
    connected: Mutex<HashSet<EndpointId>>,
    /// Addresses learnt from discovery, for dialling by id.
    lookup: MemoryLookup,
    /// Peers that have a dial loop already.
    dialing: Mutex<HashSet<EndpointId>>,
    gossip_tx: Mutex<Option<GossipSender>>,
    data_dir: PathBuf,
    failures: Mutex<HashMap<EndpointId, (u32, Instant)>>,
    cancel: CancellationToken,
}

impl Shared {
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    pub fn set_gossip_sender(&self, tx: GossipSender) {
        if let Ok(mut g) = self.gossip_tx.lock() {
            *g = Some(tx);
        }
    }

    /// A peer was discovered (gossip, rendezvous, LAN, memory, ticket): make its address
    /// known, tell gossip about it, and keep a connection to it.
    pub fn learn(self: &Arc<Self>, addr: EndpointAddr) {
        let id = addr.id;
        if id == self.endpoint.id() {
            return;
        }
        if !addr.is_empty() {
            self.lookup.add_endpoint_info(addr);
        }
        let new = self
            .dialing
            .lock()
            .map(|mut d| d.insert(id))
            .unwrap_or(false);
        if !new {
            return;
        }
        tracing::info!(peer = %id.fmt_short(), "discovered a peer");
        if let Some(tx) = self.gossip_tx.lock().ok().and_then(|g| g.clone()) {
            tokio::spawn(async move {
                let _ = tx.join_peers(vec![id]).await;
            });
        }
        // Both ends learn of each other: the smaller id dials first, the other a little
        // later if still not connected, so most pairs make one connection, not two.
        let defer = self.endpoint.id() > id;
        tokio::spawn(keep_connected(self.clone(), defer, move || {
            Some(EndpointAddr::new(id))
        }));
    }

    fn is_connected(&self, id: &EndpointId) -> bool {
        self.connected
            .lock()
            .map(|c| c.contains(id))
            .unwrap_or(false)
    }

    /// Records a failed admission; later attempts from that endpoint wait exponentially longer.
    pub fn admission_failed(&self, id: EndpointId) {
        if let Ok(mut f) = self.failures.lock() {
            let entry = f.entry(id).or_insert((0, Instant::now()));
            entry.0 = entry.0.saturating_add(1);
            let wait = Duration::from_secs(1u64 << entry.0.min(8)).min(Duration::from_secs(300));
            entry.1 = Instant::now() + wait;
            // Bounded: forget the oldest when an attacker cycles through many ids.
            if f.len() > 10_000 {
                let now = Instant::now();
                f.retain(|_, (_, until)| *until > now);
            }
        }
    }

    fn rate_limited(&self, id: &EndpointId) -> bool {
        self.failures
            .lock()
            .map(|f| f.get(id).is_some_and(|(_, until)| *until > Instant::now()))
            .unwrap_or(false)
    }
}

/// Messages to the engine's actor.
pub(crate) enum Cmd {
    PeerUp {
        id: EndpointId,
        conn_id: usize,
        dialer: EndpointId,
        device_name: String,
        /// Both Hellos offered "rbsr-v1".
        rbsr: bool,
        conn: Connection,
        control: mpsc::UnboundedSender<Control>,
        reply: oneshot::Sender<bool>,
    },
    PeerDown {
        id: EndpointId,
        conn_id: usize,
        reason: String,
    },
    Control {
        id: EndpointId,
        conn_id: usize,
        msg: Control,
    },
    Local {
        hash: Hash,
        origin: Option<String>,
    },
    StoreState(Result<(), String>),
    Fetched {
        id: EndpointId,
        hash: Hash,
        result: Result<peer::Fetched, FetchError>,
    },
    Served {
        id: EndpointId,
        hash: Hash,
        name: String,
        size: u64,
    },
    Pause(bool),
    Status(oneshot::Sender<Status>),
}

/// A running sync engine.
pub struct Engine {
    shared: Arc<Shared>,
    ticket: String,
    tasks: Vec<JoinHandle<()>>,
    router: Router,
}

impl Engine {
    /// Derives the keys, binds the endpoint, writes the ticket and starts syncing.
    pub async fn start(config: EngineConfig) -> Result<Self, EngineError> {
        let passphrase = config.passphrase.clone();
        let keys = tokio::task::spawn_blocking(move || keys::derive(passphrase.expose()))
            .await
            .map_err(|e| EngineError::Config(e.to_string()))??;
        let secret = crate::identity::load_or_create(&config.data_dir)?;
        let lookup = MemoryLookup::new();
        let (endpoint, mdns_events) = bind_endpoint(&config, secret, &lookup, &keys).await?;
        let can = CanClient::new(&config.can_service_url, &config.sync_api_key)
            .map_err(|e| EngineError::Config(e.to_string()))?;
        let (cmd, cmd_rx) = mpsc::channel(1024);
        let (events, _) = broadcast::channel(4096);
        let gossip_topic = keys.gossip_topic;
        let shared = Arc::new(Shared {
            keys,
            endpoint: endpoint.clone(),
            can,
            device_name: config.device_name.clone(),
            features: match config.reconcile {
                ReconcileMode::Rbsr => vec![reconcile::FEATURE.to_owned()],
                ReconcileMode::Full => Vec::new(),
            },
            cmd,
            events,
            paused: AtomicBool::new(config.start_paused),
            connected: Mutex::new(HashSet::new()),
            lookup,
            dialing: Mutex::new(HashSet::new()),
            gossip_tx: Mutex::new(None),
            data_dir: config.data_dir.clone(),
            failures: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
        });
        let gossip = Gossip::builder().spawn(endpoint.clone());
        let router = Router::builder(endpoint.clone())
            .accept(
                ALPN,
                SyncProtocol {
                    shared: shared.clone(),
                },
            )
            .accept(iroh_gossip::ALPN, gossip.clone())
            .spawn();
        let addr = current_addr(&endpoint).await;
        let ticket = EndpointTicket::new(addr).to_string();
        if let Some(path) = &config.ticket_file {
            write_atomic(path, ticket.as_bytes()).map_err(|source| EngineError::Ticket {
                path: path.clone(),
                source,
            })?;
        }
        let mut tasks = Vec::new();
        let actor = Actor::new(shared.clone());
        tasks.push(tokio::spawn(actor.run(cmd_rx, config.poll_interval)));
        for file in &config.connect_ticket_files {
            tasks.push(tokio::spawn(dial_loop(shared.clone(), file.clone())));
        }
        // Peers from earlier runs first: they also bootstrap gossip.
        let mut bootstrap = Vec::new();
        for info in remembered::load(&config.data_dir) {
            if let Some(addr) = info::to_addr(&info) {
                bootstrap.push(addr.id);
                shared.learn(addr);
            }
        }
        tasks.push(tokio::spawn(discovery::gossip::run(
            shared.clone(),
            gossip,
            gossip_topic,
            bootstrap,
        )));
        let pkarr_relays = match &config.pkarr_relays {
            None => discovery::rendezvous::DEFAULT_RELAYS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Some(list) => list.clone(),
        };
        if !pkarr_relays.is_empty() {
            let rv = Rendezvous::new(
                &shared.keys.rendezvous,
                shared.keys.rendezvous_seal,
                pkarr_relays,
                endpoint.id(),
            );
            tasks.push(tokio::spawn(rendezvous_loop(
                shared.clone(),
                rv,
                config.rendezvous_interval,
            )));
        }
        if let Some(mut events) = mdns_events {
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                use iroh_mdns_address_lookup::DiscoveryEvent;
                loop {
                    let ev = tokio::select! {
                        ev = events.next() => ev,
                        _ = shared.cancelled() => return,
                    };
                    match ev {
                        Some(DiscoveryEvent::Discovered { endpoint_info, .. }) => {
                            shared.learn(endpoint_info.into_endpoint_addr());
                        }
                        Some(_) => {}
                        None => return,
                    }
                }
            }));
        }
        let _ = shared.events.send(EngineEvent::Started {
            endpoint_id: endpoint.id().to_string(),
            ticket: ticket.clone(),
        });
        tracing::info!(endpoint_id = %endpoint.id(), device = %config.device_name, "engine started");
        Ok(Self {
            shared,
            ticket,
            tasks,
            router,
        })
    }

    pub fn endpoint_id(&self) -> String {
        self.shared.endpoint.id().to_string()
    }

    /// This node's address, to paste into another device (advanced direct connect).
    pub fn ticket(&self) -> &str {
        &self.ticket
    }

    /// Connects to a peer by its ticket, keeping the connection up like a ticket file does.
    pub fn connect_ticket(&self, ticket: &str) -> Result<(), EngineError> {
        let addr: EndpointAddr = ticket
            .trim()
            .parse::<EndpointTicket>()
            .map_err(|e| EngineError::Config(format!("invalid ticket: {e}")))?
            .into();
        tokio::spawn(keep_connected(self.shared.clone(), false, move || {
            Some(addr.clone())
        }));
        Ok(())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.shared.events.subscribe()
    }

    pub async fn status(&self) -> Result<Status, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .cmd
            .send(Cmd::Status(tx))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Paused: no transfer starts in either direction; running ones finish.
    pub async fn pause(&self) -> Result<(), EngineError> {
        self.shared
            .cmd
            .send(Cmd::Pause(true))
            .await
            .map_err(|_| EngineError::Stopped)
    }

    pub async fn resume(&self) -> Result<(), EngineError> {
        self.shared
            .cmd
            .send(Cmd::Pause(false))
            .await
            .map_err(|_| EngineError::Stopped)
    }

    pub fn is_paused(&self) -> bool {
        self.shared.is_paused()
    }

    /// Closes every connection and the endpoint, and stops all tasks.
    pub async fn shutdown(self) {
        self.shared.cancel.cancel();
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        if let Ok(mut c) = self.shared.connected.lock() {
            c.clear();
        }
        let _ = self.router.shutdown().await;
        self.shared.endpoint.close().await;
    }
}

type MdnsEvents = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = iroh_mdns_address_lookup::DiscoveryEvent> + Send>,
>;

async fn bind_endpoint(
    config: &EngineConfig,
    secret: iroh::SecretKey,
    lookup: &MemoryLookup,
    keys: &Keys,
) -> Result<(Endpoint, Option<MdnsEvents>), EngineError> {
    let relay_mode = match &config.relay_urls {
        None => RelayMode::Default,
        Some(urls) if urls.is_empty() => RelayMode::Disabled,
        Some(urls) => {
            let parsed = urls
                .iter()
                .map(|u| {
                    u.parse::<RelayUrl>()
                        .map_err(|e| EngineError::Config(format!("relay_urls: {u}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            RelayMode::custom(parsed)
        }
    };
    let offline = matches!(relay_mode, RelayMode::Disabled);
    let public = secret.public();
    let mut builder = Endpoint::builder(presets::Minimal)
        .secret_key(secret)
        .alpns(vec![ALPN.to_vec()])
        .relay_mode(relay_mode)
        .address_lookup(lookup.clone());
    let mut mdns_events = None;
    if config.local_discovery {
        // Only agents of the same passphrase use this service name, so the LAN lookup
        // reports just them.
        let group = blake3::derive_key("can-sync v1 mdns service", &keys.gossip_topic);
        let service = format!("cansync-{}", &hex::encode(group)[..12]);
        match iroh_mdns_address_lookup::MdnsAddressLookup::builder()
            .service_name(&service)
            .build(public)
        {
            Ok(mdns) => {
                // Subscribe before the lookup starts, so no early discovery is missed.
                mdns_events = Some(Box::pin(mdns.subscribe().await) as MdnsEvents);
                builder = builder.address_lookup(mdns);
            }
            Err(e) => tracing::warn!(error = %e, "LAN discovery unavailable"),
        }
    }
    if config.relay_only {
        if offline {
            return Err(EngineError::Config(
                "relay_only needs relay_urls (it is [] here)".into(),
            ));
        }
        // No UDP sockets at all: peers never learn our IP addresses and every connection
        // goes through the relay.
        builder = builder
            .clear_ip_transports()
            .portmapper_config(iroh::endpoint::PortmapperConfig::Disabled);
    } else if !config.bind_addr.ip().is_unspecified() {
        builder = builder
            .clear_ip_transports()
            .bind_addr(config.bind_addr)
            .map_err(|e| EngineError::Bind(e.to_string()))?;
    } else if config.bind_addr.port() != 0 {
        builder = builder
            .bind_addr(config.bind_addr)
            .map_err(|e| EngineError::Bind(e.to_string()))?;
    }
    if offline {
        // With relays off this node is on a LAN or a test bed: no UPnP/NAT-PMP probes.
        builder = builder.portmapper_config(iroh::endpoint::PortmapperConfig::Disabled);
    }
    let endpoint = builder
        .bind()
        .await
        .map_err(|e| EngineError::Bind(e.to_string()))?;
    Ok((endpoint, mdns_events))
}

/// Our ALPN on the router: rate limit, then the peer session.
#[derive(Debug, Clone)]
struct SyncProtocol {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("endpoint", &self.endpoint.id())
            .finish()
    }
}

impl ProtocolHandler for SyncProtocol {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let remote = conn.remote_id();
        if self.shared.rate_limited(&remote) {
            close_conn(
                &conn,
                close::RATE_LIMITED,
                "too many failed admissions; try later",
            );
            return Ok(());
        }
        peer::run(self.shared.clone(), conn, Role::Listener).await;
        Ok(())
    }
}

/// Rendezvous rounds every `interval` (± 25 % jitter).
async fn rendezvous_loop(shared: Arc<Shared>, rv: Rendezvous, interval: Duration) {
    loop {
        let me = info::own_info(&shared.endpoint, &shared.device_name);
        for peer in rv.round(me).await {
            if let Some(addr) = info::to_addr(&peer) {
                shared.learn(addr);
            }
        }
        sleep_or_cancel(&shared, jitter(interval)).await;
        if shared.cancel.is_cancelled() {
            return;
        }
    }
}

/// The endpoint's address once it knows at least one way to reach it (bounded wait).
async fn current_addr(endpoint: &Endpoint) -> EndpointAddr {
    let mut watcher = endpoint.watch_addr();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let addr = watcher.get();
        if !addr.is_empty() {
            return addr;
        }
        if tokio::time::timeout_at(deadline, watcher.updated())
            .await
            .is_err()
        {
            let mut addr = EndpointAddr::new(endpoint.id());
            for sock in endpoint.bound_sockets() {
                addr = addr.with_ip_addr(sock);
            }
            return addr;
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Keeps a connection to the peer in a ticket file: waits for the file, dials, redials
/// with backoff when the connection drops.
async fn dial_loop(shared: Arc<Shared>, ticket_file: PathBuf) {
    keep_connected(shared, false, move || {
        let text = std::fs::read_to_string(&ticket_file).ok()?;
        text.trim().parse::<EndpointTicket>().ok().map(Into::into)
    })
    .await
}

async fn keep_connected(
    shared: Arc<Shared>,
    defer: bool,
    target: impl Fn() -> Option<EndpointAddr>,
) {
    let mut backoff = Duration::from_millis(250);
    if defer {
        sleep_or_cancel(&shared, jitter(Duration::from_secs(2))).await;
    }
    loop {
        if shared.cancel.is_cancelled() {
            return;
        }
        let Some(addr) = target() else {
            sleep_or_cancel(&shared, Duration::from_millis(300)).await;
            continue;
        };
        if addr.id == shared.endpoint.id() {
            tracing::error!("a connect ticket names this node itself; ignoring it");
            return;
        }
        if shared.is_connected(&addr.id) {
            sleep_or_cancel(&shared, Duration::from_millis(500)).await;
            continue;
        }
        let started = Instant::now();
        match tokio::time::timeout(
            Duration::from_secs(15),
            shared.endpoint.connect(addr.clone(), ALPN),
        )
        .await
        {
            Ok(Ok(conn)) => {
                peer::run(shared.clone(), conn, Role::Dialer).await;
                if started.elapsed() > Duration::from_secs(10) {
                    backoff = Duration::from_millis(250);
                }
            }
            Ok(Err(e)) => tracing::debug!(peer = %addr.id.fmt_short(), error = %e, "dial failed"),
            Err(_) => tracing::debug!(peer = %addr.id.fmt_short(), "dial timed out"),
        }
        sleep_or_cancel(&shared, jitter(backoff)).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// `d` ± 25 %, so agents that started together do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.75..=1.25))
}

async fn sleep_or_cancel(shared: &Shared, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shared.cancel.cancelled() => {}
    }
}

/// Follows the local CAN Service: SSE for new assets, a periodic poll as the safety net.
async fn watch_local(shared: Arc<Shared>, mut cursor: u64, poll_interval: Duration) {
    let mut backoff = Duration::from_millis(250);
    let mut poll = tokio::time::interval(poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if shared.cancel.is_cancelled() {
            return;
        }
        match shared.can.events(cursor).await {
            Ok(mut stream) => {
                let _ = shared.cmd.send(Cmd::StoreState(Ok(()))).await;
                backoff = Duration::from_millis(250);
                loop {
                    tokio::select! {
                        ev = stream.next() => match ev {
                            Some(Ok(ev)) => {
                                cursor = cursor.max(ev.seq);
                                if let Ok(hash) = <[u8; 32]>::try_from(ev.hash.as_slice()) {
                                    let _ = shared.cmd.send(Cmd::Local { hash, origin: Some(ev.origin) }).await;
                                }
                            }
                            Some(Err(e)) => {
                                tracing::debug!(error = %e, "event stream broke off");
                                break;
                            }
                            None => break,
                        },
                        _ = poll.tick() => poll_once(&shared, &mut cursor).await,
                        _ = shared.cancel.cancelled() => return,
                    }
                }
            }
            Err(e) => {
                let _ = shared.cmd.send(Cmd::StoreState(Err(e.to_string()))).await;
                sleep_or_cancel(&shared, jitter(backoff)).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn poll_once(shared: &Shared, cursor: &mut u64) {
    match shared.can.all_hashes(*cursor).await {
        Ok((entries, last)) => {
            for e in entries {
                if let Ok(hash) = <[u8; 32]>::try_from(e.hash.as_slice()) {
                    let _ = shared.cmd.send(Cmd::Local { hash, origin: None }).await;
                }
            }
            *cursor = (*cursor).max(last);
        }
        Err(e) => tracing::debug!(error = %e, "poll of the CAN Service failed"),
    }
}

struct PeerEntry {
    conn: Connection,
    conn_id: usize,
    dialer: EndpointId,
    device_name: String,
    control: mpsc::UnboundedSender<Control>,
    stats: Stats,
    last_activity: String,
    /// Reconcile with RBSR (both offered it); else full hash lists.
    rbsr: bool,
    recon: Reconciliations,
    /// The hash list the peer is sending (full mode), for the `reconciled` event.
    list_in: ListProgress,
    /// Bytes of the last hash list we sent it.
    list_bytes_sent: u64,
}

#[derive(Default)]
struct ListProgress {
    round: u64,
    missing_here: usize,
    bytes: u64,
}

#[derive(Default, Clone, Copy)]
struct Stats {
    assets_sent: u64,
    assets_received: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

/// The actor: the only owner of sync state.
struct Actor {
    shared: Arc<Shared>,
    planner: Planner<EndpointId>,
    peers: HashMap<EndpointId, PeerEntry>,
    totals: Stats,
    round: u64,
    store_online: bool,
    loaded: bool,
    hold_until: Option<Instant>,
    last_error: Option<String>,
    /// Our hashes sorted for reconciliation, and the planner's local version they reflect.
    snapshot: Option<(u64, Arc<[Hash]>)>,
}

/// Our hashes, sorted (what a reconciliation session works on), rebuilt only when the set
/// has grown since the last call. A free function so it can borrow beside `peers`.
fn snapshot(cache: &mut Option<(u64, Arc<[Hash]>)>, planner: &Planner<EndpointId>) -> Arc<[Hash]> {
    let version = planner.local_version();
    if let Some((v, items)) = cache
        && *v == version
    {
        return items.clone();
    }
    let mut items: Vec<Hash> = planner.local_hashes().copied().collect();
    items.sort_unstable();
    let items: Arc<[Hash]> = items.into();
    *cache = Some((version, items.clone()));
    items
}

impl Actor {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            planner: Planner::new(PER_PEER_TRANSFERS, TOTAL_TRANSFERS),
            peers: HashMap::new(),
            totals: Stats::default(),
            round: 0,
            store_online: false,
            loaded: false,
            hold_until: None,
            last_error: None,
            snapshot: None,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>, poll_interval: Duration) {
        // Learn what the local store has before talking to anyone.
        let mut backoff = Duration::from_millis(250);
        let cursor = loop {
            match self.shared.can.all_hashes(0).await {
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
                    // Still answer status requests while waiting for the store.
                    tokio::select! {
                        _ = tokio::time::sleep(jitter(backoff)) => {}
                        Some(Cmd::Status(tx)) = rx.recv() => { let _ = tx.send(self.status()); }
                        _ = self.shared.cancel.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        self.loaded = true;
        tokio::spawn(watch_local(self.shared.clone(), cursor, poll_interval));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    None => return,
                },
                _ = tick.tick() => self.pump(),
                _ = self.shared.cancel.cancelled() => {
                    for p in self.peers.values() {
                        close_conn(&p.conn, close::SHUTDOWN, "shutting down");
                    }
                    return;
                }
            }
        }
    }

    fn emit(&self, event: EngineEvent) {
        let _ = self.shared.events.send(event);
    }

    fn set_store(&mut self, state: Result<(), String>) {
        match state {
            Ok(()) if !self.store_online => {
                self.store_online = true;
                tracing::info!(url = %self.shared.can.base_url(), "CAN Service online");
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

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::PeerUp {
                id,
                conn_id,
                dialer,
                device_name,
                rbsr,
                conn,
                control,
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
                tracing::info!(peer = %id.fmt_short(), device = %device_name, "peer connected");
                self.planner.peer_connected(id);
                if let Ok(mut c) = self.shared.connected.lock() {
                    c.insert(id);
                }
                self.peers.insert(
                    id,
                    PeerEntry {
                        conn,
                        conn_id,
                        dialer,
                        device_name: device_name.clone(),
                        control,
                        stats: Stats::default(),
                        last_activity: crate::now_rfc3339(),
                        rbsr,
                        recon: Reconciliations::default(),
                        list_in: ListProgress::default(),
                        list_bytes_sent: 0,
                    },
                );
                self.remember(id, &device_name);
                let path = self
                    .peers
                    .get(&id)
                    .map_or("unknown", |p| path_of(&p.conn).0);
                self.emit(EngineEvent::PeerUp {
                    peer: id.to_string(),
                    device_name,
                    path: path.to_owned(),
                });
                if rbsr {
                    // One session per connection is enough (both sides learn the whole
                    // difference); the dialer starts it, so exactly one side does.
                    if dialer == self.shared.endpoint.id() {
                        self.start_reconcile(id);
                    }
                } else {
                    self.send_hash_list(id, !self.shared.is_paused());
                }
            }
            Cmd::PeerDown {
                id,
                conn_id,
                reason,
            } => {
                if self.peers.get(&id).is_some_and(|p| p.conn_id == conn_id) {
                    self.drop_peer(id, &reason);
                }
            }
            Cmd::Control { id, conn_id, msg } => {
                if self.peers.get(&id).is_none_or(|p| p.conn_id != conn_id) {
                    return;
                }
                self.on_control(id, msg);
                self.pump();
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
                self.totals.assets_sent += 1;
                self.totals.bytes_sent += size;
                if let Some(p) = self.peers.get_mut(&id) {
                    p.stats.assets_sent += 1;
                    p.stats.bytes_sent += size;
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
                let was = self.shared.paused.swap(paused, Ordering::Relaxed);
                if was == paused {
                    return;
                }
                if paused {
                    tracing::info!("sync paused");
                    self.emit(EngineEvent::Paused);
                } else {
                    tracing::info!("sync resumed");
                    self.emit(EngineEvent::Resumed);
                    // Catch up: a fresh round in both directions with every peer (a new RBSR
                    // session teaches both sides what each lacks, like two hash lists).
                    let ids: Vec<_> = self.peers.keys().copied().collect();
                    for id in ids {
                        if self.peers.get(&id).is_some_and(|p| p.rbsr) {
                            self.start_reconcile(id);
                        } else {
                            self.send_hash_list(id, true);
                        }
                    }
                    self.pump();
                }
            }
            Cmd::Status(tx) => {
                let _ = tx.send(self.status());
            }
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
        if let Err(e) = remembered::remember(&self.shared.data_dir, info) {
            tracing::debug!(error = %e, "cannot write the remembered peers");
        }
    }

    fn drop_peer(&mut self, id: EndpointId, reason: &str) {
        self.peers.remove(&id);
        self.planner.peer_disconnected(id);
        if let Ok(mut c) = self.shared.connected.lock() {
            c.remove(&id);
        }
        tracing::info!(peer = %id.fmt_short(), %reason, "peer disconnected");
        self.emit(EngineEvent::PeerDown {
            peer: id.to_string(),
            reason: reason.to_owned(),
        });
    }

    fn on_control(&mut self, id: EndpointId, msg: Control) {
        let hashes = match msg.kind {
            Some(control::Kind::HashList(list)) => {
                if list.reply_wanted && list.last {
                    self.send_hash_list(id, false);
                }
                let hashes = match split_hashes(&list.hashes) {
                    Ok(hashes) => hashes,
                    Err(e) => return self.misbehaved(id, close::MISBEHAVING, &e.to_string()),
                };
                self.list_page(id, &list, &hashes);
                self.planner.peer_has(id, hashes);
                return;
            }
            Some(control::Kind::Announce(a)) => a.hashes,
            Some(control::Kind::Reconcile(r)) => {
                self.on_reconcile(id, &r);
                return;
            }
            Some(control::Kind::Hello(_)) | None => return,
        };
        match split_hashes(&hashes) {
            Ok(hashes) => self.planner.peer_has(id, hashes),
            Err(e) => self.misbehaved(id, close::MISBEHAVING, &e.to_string()),
        }
    }

    /// Counts a page of the peer's hash list; the last page reports the round.
    fn list_page(&mut self, id: EndpointId, list: &HashList, hashes: &[Hash]) {
        let missing = hashes.iter().filter(|h| !self.planner.has_local(h)).count();
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.list_in.round != list.round {
            p.list_in = ListProgress {
                round: list.round,
                ..ListProgress::default()
            };
        }
        p.list_in.missing_here += missing;
        p.list_in.bytes += hash_list_wire_len(list);
        if list.last {
            let (missing_here, bytes_received) = (p.list_in.missing_here, p.list_in.bytes);
            let bytes_sent = p.list_bytes_sent;
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

    /// Starts a new RBSR session with the peer (replacing one we started earlier).
    fn start_reconcile(&mut self, id: EndpointId) {
        let items = snapshot(&mut self.snapshot, &self.planner);
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        for msg in peer.recon.start(items) {
            let _ = peer.control.send(Control {
                kind: Some(control::Kind::Reconcile(msg)),
            });
        }
    }

    /// One RBSR frame from the peer: answer it, fetch what we lack. What the peer lacks it
    /// learns from our answers and fetches itself (pull), so nothing needs announcing.
    fn on_reconcile(&mut self, id: EndpointId, msg: &can_proto::peer::Reconcile) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if !peer.rbsr {
            self.misbehaved(
                id,
                close::PROTOCOL_ERROR,
                "reconcile message without rbsr-v1 negotiated",
            );
            return;
        }
        let (cache, planner) = (&mut self.snapshot, &self.planner);
        let progress = match peer.recon.receive(msg, || snapshot(cache, planner)) {
            Ok(p) => p,
            Err(e) => {
                self.misbehaved(id, close::PROTOCOL_ERROR, &e.to_string());
                return;
            }
        };
        for out in progress.out {
            let _ = peer.control.send(Control {
                kind: Some(control::Kind::Reconcile(out)),
            });
        }
        self.planner.peer_has(id, progress.need);
        if let Some(s) = progress.finished {
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

    /// Sends our full hash list to one peer, in pages.
    fn send_hash_list(&mut self, id: EndpointId, reply_wanted: bool) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        self.round += 1;
        let all: Vec<&Hash> = self.planner.local_hashes().collect();
        let mut pages = all.chunks(HASHES_PER_FRAME).peekable();
        let mut bytes = 0;
        let mut send = |msg: Control| {
            if let Some(control::Kind::HashList(l)) = &msg.kind {
                bytes += hash_list_wire_len(l);
            }
            let _ = peer.control.send(msg);
        };
        if pages.peek().is_none() {
            send(hash_list(self.round, &[], true, reply_wanted));
        }
        while let Some(page) = pages.next() {
            let last = pages.peek().is_none();
            send(hash_list(self.round, page, last, reply_wanted));
        }
        peer.list_bytes_sent = bytes;
    }

    fn announce(&self, hash: Hash, targets: Vec<EndpointId>) {
        for id in targets {
            if let Some(p) = self.peers.get(&id) {
                let _ = p.control.send(Control {
                    kind: Some(control::Kind::Announce(Announce {
                        hashes: hash.to_vec(),
                    })),
                });
            }
        }
    }

    /// Starts the transfers the planner allows.
    fn pump(&mut self) {
        if self.shared.is_paused() || !self.loaded {
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
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let result = peer::fetch(shared.clone(), conn, hash).await;
                let _ = shared.cmd.send(Cmd::Fetched { id, hash, result }).await;
            });
        }
    }

    fn on_fetched(
        &mut self,
        id: EndpointId,
        hash: Hash,
        result: Result<peer::Fetched, FetchError>,
    ) {
        match result {
            Ok(fetched) => {
                self.set_store(Ok(()));
                self.totals.assets_received += 1;
                self.totals.bytes_received += fetched.size;
                if let Some(p) = self.peers.get_mut(&id) {
                    p.stats.assets_received += 1;
                    p.stats.bytes_received += fetched.size;
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
            Err(FetchError::Refused(reason)) => {
                if reason == "paused" {
                    // Ask it again once it sends a fresh hash list (it does on resume).
                    self.planner.forget_sources(id);
                    self.planner.finished(id, hash, Outcome::Retry);
                } else {
                    self.planner.finished(id, hash, Outcome::Drop);
                }
            }
            Err(FetchError::Store(e)) => {
                tracing::warn!(error = %e, "storing a received asset failed; retrying shortly");
                if e.is_unavailable() {
                    self.set_store(Err(e.to_string()));
                }
                self.last_error = Some(e.to_string());
                self.hold_until = Some(Instant::now() + Duration::from_secs(1));
                self.planner.finished(id, hash, Outcome::Retry);
            }
            Err(FetchError::Transport(e)) => {
                tracing::debug!(peer = %id.fmt_short(), error = %e, "transfer failed; retrying");
                self.planner.finished(id, hash, Outcome::Retry);
            }
        }
        self.pump();
    }

    fn status(&self) -> Status {
        let peers = self
            .peers
            .iter()
            .map(|(id, p)| {
                let (path, rtt_ms) = path_of(&p.conn);
                PeerStatus {
                    endpoint_id: id.to_string(),
                    device_name: p.device_name.clone(),
                    path: path.to_owned(),
                    rtt_ms,
                    assets_sent: p.stats.assets_sent,
                    assets_received: p.stats.assets_received,
                    bytes_sent: p.stats.bytes_sent,
                    bytes_received: p.stats.bytes_received,
                    last_activity: p.last_activity.clone(),
                }
            })
            .collect();
        Status {
            endpoint_id: self.shared.endpoint.id().to_string(),
            device_name: self.shared.device_name.clone(),
            paused: self.shared.is_paused(),
            store_online: self.store_online,
            local_assets: self.planner.local_count(),
            pending: self.planner.wanted(),
            in_flight: self.planner.in_flight(),
            peers,
            assets_sent: self.totals.assets_sent,
            assets_received: self.totals.assets_received,
            bytes_sent: self.totals.bytes_sent,
            bytes_received: self.totals.bytes_received,
            last_error: self.last_error.clone(),
        }
    }
}

/// The connection's selected path ("direct", "relay" or "unknown") and its round-trip time.
fn path_of(conn: &Connection) -> (&'static str, Option<f64>) {
    let paths = conn.paths();
    let selected = paths.iter().find(|path| path.is_selected());
    match selected {
        Some(s) if s.is_ip() => ("direct", Some(s.rtt().as_secs_f64() * 1000.0)),
        Some(s) if s.is_relay() => ("relay", Some(s.rtt().as_secs_f64() * 1000.0)),
        _ => ("unknown", None),
    }
}

/// Bytes a hash-list page takes on the control stream (length prefix included).
fn hash_list_wire_len(list: &HashList) -> u64 {
    use prost::Message;
    let inner = list.encoded_len();
    let control = 1 + prost::encoding::encoded_len_varint(inner as u64) + inner;
    (control + prost::encoding::encoded_len_varint(control as u64)) as u64
}

fn hash_list(round: u64, page: &[&Hash], last: bool, reply_wanted: bool) -> Control {
    Control {
        kind: Some(control::Kind::HashList(HashList {
            round,
            hashes: join_hashes(page.iter().copied()),
            last,
            reply_wanted,
        })),
    }
}
