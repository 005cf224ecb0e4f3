//! The engine's settings ([`EngineConfig`]), and the headless agent's `config.yaml` that
//! turns into them ([`file`]).

mod file;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

pub use file::{AgentConfig, default_control_socket};

/// Everything the engine needs to run. The app builds one from its settings and keychain;
/// the agent from `config.yaml`.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub can_service_url: String,
    pub sync_api_key: Secret,
    pub passphrase: Secret,
    pub device_name: String,
    pub data_dir: PathBuf,
    pub bind_addr: SocketAddr,
    /// `None`: iroh's public relays. `Some([])`: no relays.
    pub relay_urls: Option<Vec<String>>,
    pub poll_interval: Duration,
    /// How often rendezvous slots are read and ours rewritten.
    pub rendezvous_interval: Duration,
    pub ticket_file: Option<PathBuf>,
    pub connect_ticket_files: Vec<PathBuf>,
    /// Accepted now, used by discovery.
    pub pkarr_relays: Option<Vec<String>>,
    pub local_discovery: bool,
    /// Never use direct paths: no UDP sockets, every connection through `relay_urls`.
    pub relay_only: bool,
    /// Extra root certificates (PEM) trusted for relays, beside the public web roots: a
    /// self-hosted relay with a private CA (its QUIC address discovery, which NAT traversal
    /// needs, is verified against them).
    pub relay_ca_file: Option<PathBuf>,
    /// Start paused (the app persists the user's pause across restarts); nothing moves
    /// until `Engine::resume`.
    pub start_paused: bool,
    /// How to find what differs when a peer connects (docs/protocol.md, "3. Reconciliation").
    pub reconcile: ReconcileMode,
    /// A transfer with no bytes for this long is aborted and planned again.
    pub transfer_idle_timeout: Duration,
    /// Upload and download limits (default: none).
    pub bandwidth: crate::bandwidth::BandwidthLimits,
    /// QUIC congestion control.
    pub congestion: Congestion,
    /// When deletions from peers are held for the user (docs/protocol.md, "Deletion").
    pub delete_guard: crate::guard::GuardConfig,
    /// Sessions this agent holds at most (both directions; it dials a third of them); 0 = no
    /// limit. See [`crate::fanout`].
    pub max_peers: usize,
    /// How often the agent may let one dialled session go to dial another candidate
    /// (jittered); `None`: never. See [`crate::fanout::pick_rotation`].
    pub rotation_interval: Option<Duration>,
    /// Fetch large assets in verified pieces from every peer that has them, and serve
    /// pieces of our own fetches (docs/protocol.md, "Swarm transfers"); offered in Hello as
    /// "swarm-v1".
    pub swarm: bool,
    /// Reach the store through its library in this process instead of `can_service_url`
    /// (the desktop app's built-in store).
    #[cfg(feature = "builtin-store")]
    pub builtin_store: Option<crate::builtin_store::BuiltinStore>,
}

/// QUIC congestion controllers (docs/protocol.md, "Transport").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Congestion {
    /// CUBIC on a path with a LAN's round trip, BBRv3 on the others ([`crate::congestion`]).
    #[default]
    Auto,
    /// BBRv3: paces by measured bandwidth and RTT; random loss does not collapse it.
    Bbr,
    /// CUBIC, QUIC's usual default: loss-based.
    Cubic,
}

/// How an agent reconciles with a peer at connection start and on resume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReconcileMode {
    /// Offer rateless IBLT reconciliation of asset hashes ("riblt-v2") beside "rbsr-v1":
    /// RIBLT when the peer offers it too, else RBSR, else full hash lists. RBSR still
    /// reconciles tombstones and is RIBLT's fallback for sets beyond its limits.
    #[default]
    Riblt,
    /// Offer range-based set reconciliation ("rbsr-v1" in Hello) only; used when the peer
    /// offers it too, else full hash lists.
    Rbsr,
    /// Offer nothing: always full hash lists, exactly as agents before RBSR do. For
    /// compatibility tests and as a way out should RBSR misbehave.
    Full,
}

/// A config that cannot be used; names the file and the field, never a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config file {path}: `{field}` {message}")]
    Field {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
}

/// The default data directory: the OS data dir's `can-sync`.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("can-sync")
}

/// The default device name: the host name.
pub fn default_device_name() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "CAN Sync device".to_owned())
}

impl EngineConfig {
    /// The settings a minimal `config.yaml` gets: these four, everything else at its
    /// default (the table in README). The app and tests start from here.
    pub fn new(
        can_service_url: impl Into<String>,
        sync_api_key: Secret,
        passphrase: Secret,
        data_dir: PathBuf,
    ) -> Self {
        Self {
            can_service_url: can_service_url.into(),
            sync_api_key,
            passphrase,
            device_name: default_device_name(),
            data_dir,
            bind_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            relay_urls: None,
            poll_interval: Duration::from_secs(file::DEFAULT_POLL_SECS),
            rendezvous_interval: Duration::from_secs(file::DEFAULT_RENDEZVOUS_SECS),
            ticket_file: None,
            connect_ticket_files: Vec::new(),
            pkarr_relays: None,
            local_discovery: true,
            relay_only: false,
            relay_ca_file: None,
            start_paused: false,
            reconcile: ReconcileMode::default(),
            transfer_idle_timeout: crate::transfer::DEFAULT_IDLE_TIMEOUT,
            bandwidth: crate::bandwidth::BandwidthLimits::default(),
            congestion: Congestion::default(),
            delete_guard: crate::guard::GuardConfig::default(),
            max_peers: crate::fanout::DEFAULT_MAX_PEERS,
            rotation_interval: Some(crate::fanout::DEFAULT_ROTATION_INTERVAL),
            swarm: true,
            #[cfg(feature = "builtin-store")]
            builtin_store: None,
        }
    }

    /// Reads the agent's YAML config; relative paths are taken relative to the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        AgentConfig::load(path).map(|c| c.engine)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        AgentConfig::parse(text, path).map(|c| c.engine)
    }
}
