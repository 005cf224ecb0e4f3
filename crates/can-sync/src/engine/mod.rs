//! The engine: lifecycle and the handle the app and the agent use ([`Engine`]).
//!
//! - [`actor`]: the one owner of sync state (planner, peers, counters);
//! - [`dialer`]: candidates from discovery and tickets, and their bounded dial loops;
//! - [`endpoint`]: the iroh endpoint and the protocol handler that accepts connections;
//! - [`local`]: following the local CAN Service (event stream, fallback poll);
//!
//! Peer connections and discovery talk to all of it through the narrow
//! [`Context`](crate::context::Context).

mod actor;
mod dialer;
mod endpoint;
mod local;
mod status;

pub use endpoint::{mdns_service_name, transport_config};

use std::path::PathBuf;
use std::sync::Arc;

use iroh::EndpointAddr;
use iroh::address_lookup::MemoryLookup;
use iroh::protocol::Router;
use iroh_tickets::endpoint::EndpointTicket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::admission::ALPN;
use crate::can_client::CanClient;
use crate::candidates::Source;
use crate::config::{EngineConfig, ReconcileMode};
use crate::context::{Cmd, Context, ContextParts};
use crate::discovery::{self, info, remembered, rendezvous::Rendezvous};
use crate::events::{EngineEvent, Status};
use crate::keys;
use crate::reconcile;
use crate::store_link::StoreLink;

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

/// A running sync engine.
pub struct Engine {
    ctx: Arc<Context>,
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
        crate::swarm::clean(&config.data_dir);
        let lookup = MemoryLookup::new();
        let (endpoint, mdns_events) =
            endpoint::bind(&config, secret, &lookup, &keys.gossip_topic).await?;
        let can = StoreLink::Http(
            CanClient::new(&config.can_service_url, &config.sync_api_key)
                .map_err(|e| EngineError::Config(e.to_string()))?,
        );
        #[cfg(feature = "builtin-store")]
        let can = match &config.builtin_store {
            Some(store) => StoreLink::Builtin(store.clone()),
            None => can,
        };
        let (cmd, cmd_rx) = mpsc::channel(1024);
        let (discovered, discovered_rx) = mpsc::channel(1024);
        let (events, _) = broadcast::channel(4096);
        let gossip_topic = keys.gossip_topic;
        let remembered_key = remembered::file_key(&keys.admission);
        let ctx = Arc::new(Context::new(ContextParts {
            keys,
            endpoint: endpoint.clone(),
            can,
            device_name: config.device_name.clone(),
            features: match config.reconcile {
                ReconcileMode::Riblt | ReconcileMode::Rbsr => {
                    let mut f = vec![
                        reconcile::FEATURE.to_owned(),
                        crate::tombs::FEATURE.to_owned(),
                    ];
                    if config.reconcile == ReconcileMode::Riblt {
                        f.push(reconcile::riblt::FEATURE.to_owned());
                    }
                    if config.swarm {
                        f.push(crate::swarm::FEATURE.to_owned());
                    }
                    f
                }
                ReconcileMode::Full => Vec::new(),
            },
            cmd,
            events,
            data_dir: config.data_dir.clone(),
            idle_timeout: config.transfer_idle_timeout,
            bandwidth: config.bandwidth,
            paused: config.start_paused,
            max_peers: config.max_peers,
            rotation: config.rotation_interval,
            lookup,
            discovered,
        }));
        let gossip = crate::discovery::gossip::spawn(&endpoint);
        let router = Router::builder(endpoint.clone())
            .accept(ALPN, endpoint::SyncProtocol { ctx: ctx.clone() })
            .accept(iroh_gossip::ALPN, gossip.clone())
            .spawn();
        let addr = endpoint::current_addr(&endpoint).await;
        let ticket = EndpointTicket::new(addr).to_string();
        if let Some(path) = &config.ticket_file {
            crate::util::write_atomic(path, ticket.as_bytes()).map_err(|source| {
                EngineError::Ticket {
                    path: path.clone(),
                    source,
                }
            })?;
        }
        let mut tasks = Vec::new();
        let actor = actor::Actor::new(ctx.clone(), remembered_key, config.delete_guard);
        tasks.push(tokio::spawn(actor.run(cmd_rx, config.poll_interval)));
        tasks.push(tokio::spawn(dialer::run(ctx.clone(), discovered_rx)));
        for file in &config.connect_ticket_files {
            tasks.push(tokio::spawn(dialer::follow_ticket_file(
                ctx.clone(),
                file.clone(),
            )));
        }
        // Peers from earlier runs of this passphrase: candidates like any other, with more
        // patience (they proved the passphrase before). Gossip is joined only with peers
        // that pass admission, so the list bootstraps nothing by itself.
        for info in remembered::load(&config.data_dir, &remembered_key) {
            if let Some(addr) = info::to_addr(&info) {
                ctx.discover(addr, Source::Proven);
            }
        }
        tasks.push(tokio::spawn(discovery::gossip::run(
            ctx.clone(),
            gossip,
            gossip_topic,
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
                &ctx.keys.rendezvous,
                ctx.keys.rendezvous_seal,
                pkarr_relays,
                endpoint.id(),
            );
            tasks.push(tokio::spawn(discovery::rendezvous::run(
                ctx.clone(),
                rv,
                config.rendezvous_interval,
            )));
        }
        if let Some(events) = mdns_events {
            tasks.push(tokio::spawn(discovery::lan::run(ctx.clone(), events)));
        }
        ctx.emit(EngineEvent::Started {
            endpoint_id: endpoint.id().to_string(),
            ticket: ticket.clone(),
        });
        tracing::info!(endpoint_id = %endpoint.id(), device = %config.device_name, "engine started");
        Ok(Self {
            ctx,
            ticket,
            tasks,
            router,
        })
    }

    pub fn endpoint_id(&self) -> String {
        self.ctx.endpoint.id().to_string()
    }

    /// This node's address, to paste into another device (advanced direct connect).
    pub fn ticket(&self) -> &str {
        &self.ticket
    }

    /// Connects to a peer by its ticket and keeps the connection up, like a ticket file.
    /// The same peer given twice keeps one dial loop.
    pub fn connect_ticket(&self, ticket: &str) -> Result<(), EngineError> {
        let addr: EndpointAddr = ticket
            .trim()
            .parse::<EndpointTicket>()
            .map_err(|e| EngineError::Config(format!("invalid ticket: {e}")))?
            .into();
        if addr.id == self.ctx.endpoint.id() {
            return Err(EngineError::Config(
                "that ticket is this device's own".into(),
            ));
        }
        let ctx = self.ctx.clone();
        tokio::spawn(async move { ctx.discover_ticket(addr).await });
        Ok(())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.ctx.events.subscribe()
    }

    /// A cloneable handle for status, pause and resume (the agent's control socket and
    /// metrics use it); it does not keep the engine running.
    pub fn handle(&self) -> EngineHandle {
        EngineHandle {
            ctx: self.ctx.clone(),
        }
    }

    pub async fn status(&self) -> Result<Status, EngineError> {
        self.handle().status().await
    }

    /// Paused: no transfer starts in either direction; running ones finish.
    pub async fn pause(&self) -> Result<(), EngineError> {
        self.handle().pause().await
    }

    pub async fn resume(&self) -> Result<(), EngineError> {
        self.handle().resume().await
    }

    pub fn is_paused(&self) -> bool {
        self.ctx.is_paused()
    }

    /// See [`EngineHandle::release_deletions`].
    pub async fn release_deletions(&self, apply: bool) -> Result<usize, EngineError> {
        self.handle().release_deletions(apply).await
    }

    /// New upload/download limits; running transfers follow them from their next chunk.
    pub fn set_bandwidth(&self, limits: crate::bandwidth::BandwidthLimits) {
        self.handle().set_bandwidth(limits);
    }

    /// Closes every connection and the endpoint, and stops all tasks.
    pub async fn shutdown(self) {
        self.ctx.cancel.cancel();
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        if let Ok(mut c) = self.ctx.connected.lock() {
            c.clear();
        }
        let _ = self.router.shutdown().await;
        self.ctx.endpoint.close().await;
    }
}

/// What the agent's local interfaces may do with a running engine.
#[derive(Clone)]
pub struct EngineHandle {
    ctx: Arc<Context>,
}

impl EngineHandle {
    pub async fn status(&self) -> Result<Status, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.ctx
            .cmd
            .send(Cmd::Status(tx))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Paused: no transfer starts in either direction; running ones finish.
    pub async fn pause(&self) -> Result<(), EngineError> {
        self.ctx
            .cmd
            .send(Cmd::Pause(true))
            .await
            .map_err(|_| EngineError::Stopped)
    }

    pub async fn resume(&self) -> Result<(), EngineError> {
        self.ctx
            .cmd
            .send(Cmd::Pause(false))
            .await
            .map_err(|_| EngineError::Stopped)
    }

    pub fn is_paused(&self) -> bool {
        self.ctx.is_paused()
    }

    /// Answers deletions held by the mass-deletion guard: `apply` them, or keep our assets
    /// (the deletions are undone on every device). Returns how many were held.
    pub async fn release_deletions(&self, apply: bool) -> Result<usize, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.ctx
            .cmd
            .send(Cmd::ReleaseDeletions { apply, reply })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.ctx.events.subscribe()
    }

    /// New upload/download limits; running transfers follow them from their next chunk.
    pub fn set_bandwidth(&self, limits: crate::bandwidth::BandwidthLimits) {
        tracing::info!(?limits, "bandwidth limits");
        self.ctx.shaper.set(limits);
    }

    pub fn bandwidth(&self) -> crate::bandwidth::BandwidthLimits {
        self.ctx.shaper.limits()
    }
}
