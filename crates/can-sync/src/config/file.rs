//! The headless agent's `config.yaml`: parsed, checked field by field, turned into an
//! [`EngineConfig`] and the agent's own settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Congestion, EngineConfig, ReconcileMode, default_data_dir};
use crate::secret::Secret;

pub(super) const DEFAULT_POLL_SECS: u64 = 3;
pub(super) const DEFAULT_RENDEZVOUS_SECS: u64 = 60;
/// Longest value of the interval and timeout keys: a day. Nothing here means anything
/// longer, and a timer far enough out overflows the clock (a panic, not an error).
const MAX_INTERVAL_SECS: u64 = 86_400;
/// Longest rendezvous interval: half the time a rendezvous record stays fresh (5 min).
const MAX_RENDEZVOUS_SECS: u64 = crate::discovery::info::FRESH_FOR.as_secs() / 2;
/// Longest mass-deletion window: a week.
const MAX_WINDOW_SECS: u64 = 7 * 86_400;

/// `config.yaml` as written by a person. Unknown keys are rejected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    can_service_url: Option<String>,
    sync_api_key: Option<Secret>,
    sync_passphrase: Option<Secret>,
    #[serde(default = "default_poll")]
    poll_interval_secs: u64,
    #[serde(default = "default_rendezvous")]
    rendezvous_interval_secs: u64,
    ticket_file: Option<PathBuf>,
    connect_ticket_file: Option<OneOrMany>,
    data_dir: Option<PathBuf>,
    bind_addr: Option<SocketAddr>,
    relay_urls: Option<Vec<String>>,
    pkarr_relays: Option<Vec<String>>,
    #[serde(default = "default_true")]
    local_discovery: bool,
    #[serde(default)]
    relay_only: bool,
    relay_ca_file: Option<PathBuf>,
    #[serde(default)]
    reconcile: ReconcileMode,
    device_name: Option<String>,
    #[serde(default = "default_idle_timeout")]
    transfer_idle_timeout_secs: u64,
    #[serde(default)]
    allow_weak_passphrase: bool,
    control_socket: Option<PathBuf>,
    metrics_addr: Option<SocketAddr>,
    upload_limit: Option<RateText>,
    download_limit: Option<RateText>,
    #[serde(default)]
    limit_lan: bool,
    #[serde(default)]
    congestion_controller: Congestion,
    #[serde(default = "default_max_delete_share")]
    max_delete_share: f64,
    #[serde(default = "default_mass_delete_min")]
    mass_delete_min_assets: usize,
    #[serde(default = "default_mass_delete_window")]
    mass_delete_window_secs: u64,
    #[serde(default = "default_max_peers")]
    max_peers: usize,
    #[serde(default = "default_rotation")]
    rotation_interval_secs: u64,
    #[serde(default = "default_true")]
    swarm_transfers: bool,
}

fn default_rotation() -> u64 {
    crate::fanout::DEFAULT_ROTATION_INTERVAL.as_secs()
}

fn default_max_peers() -> usize {
    crate::fanout::DEFAULT_MAX_PEERS
}

fn default_max_delete_share() -> f64 {
    crate::guard::DEFAULT_MAX_SHARE
}

fn default_mass_delete_min() -> usize {
    crate::guard::DEFAULT_MIN_ASSETS
}

fn default_mass_delete_window() -> u64 {
    crate::guard::DEFAULT_WINDOW.as_secs()
}

/// A rate as written in YAML: "5 MB/s", "off", or a plain number of bytes per second.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RateText {
    Text(String),
    Number(u64),
}

impl RateText {
    fn parse(self) -> Result<Option<u64>, String> {
        match self {
            RateText::Text(t) => crate::bandwidth::parse_rate(&t),
            RateText::Number(n) => crate::bandwidth::parse_rate(&n.to_string()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

fn default_poll() -> u64 {
    DEFAULT_POLL_SECS
}

fn default_rendezvous() -> u64 {
    DEFAULT_RENDEZVOUS_SECS
}

fn default_idle_timeout() -> u64 {
    crate::transfer::DEFAULT_IDLE_TIMEOUT.as_secs()
}

fn default_true() -> bool {
    true
}

/// The headless agent's whole config: the engine's settings and the agent's own.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub engine: EngineConfig,
    /// The local control socket `can-sync status|pause|resume` talk to (default
    /// `<data_dir>/control.sock`).
    pub control_socket: PathBuf,
    /// Where Prometheus metrics are served (opt-in; loopback only).
    pub metrics_addr: Option<SocketAddr>,
}

/// The control socket of an agent whose config does not name one.
pub fn default_control_socket(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

impl AgentConfig {
    /// Reads the agent's YAML config; relative paths are taken relative to the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: FileConfig = serde_norway::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let field = |field, message: &str| ConfigError::Field {
            path: path.to_owned(),
            field,
            message: message.to_owned(),
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        let url = file
            .can_service_url
            .ok_or_else(|| field("can_service_url", "is required"))?;
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || reqwest::Url::parse(&url).is_err()
        {
            return Err(field(
                "can_service_url",
                "must be an http:// or https:// URL",
            ));
        }
        let key = file
            .sync_api_key
            .ok_or_else(|| field("sync_api_key", "is required"))?;
        if key.expose().is_empty() {
            return Err(field("sync_api_key", "must not be empty"));
        }
        let passphrase = file
            .sync_passphrase
            .ok_or_else(|| field("sync_passphrase", "is required"))?;
        if passphrase.expose().trim().is_empty() {
            return Err(field("sync_passphrase", "must not be empty"));
        }
        // One dictionary pass over the published rendezvous slots tests a guess against
        // every group at once (docs/threat-model.md), so weak passphrases are refused
        // unless the operator says otherwise.
        let bits = crate::keys::strength_bits(passphrase.expose());
        if bits < crate::keys::MIN_BITS && !file.allow_weak_passphrase {
            return Err(field(
                "sync_passphrase",
                &format!(
                    "is too weak (about {} bits; at least {} needed): use 7 or more random words, or set allow_weak_passphrase: true",
                    bits.round(),
                    crate::keys::MIN_BITS
                ),
            ));
        }
        // Every `*_secs` key, bounded (0 means "off" only for the rotation).
        let secs = |name: &'static str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(Duration::from_secs(value))
            } else {
                Err(field(name, &format!("must be between {min} and {max}")))
            }
        };
        let idle_timeout = secs(
            "transfer_idle_timeout_secs",
            file.transfer_idle_timeout_secs,
            1,
            MAX_INTERVAL_SECS,
        )?;
        let poll = secs(
            "poll_interval_secs",
            file.poll_interval_secs,
            1,
            MAX_INTERVAL_SECS,
        )?;
        // Rewritten at least this often (jitter included), our slot never goes stale for
        // readers, who drop records older than FRESH_FOR.
        let rendezvous = secs(
            "rendezvous_interval_secs",
            file.rendezvous_interval_secs,
            1,
            MAX_RENDEZVOUS_SECS,
        )?;
        let window = secs(
            "mass_delete_window_secs",
            file.mass_delete_window_secs,
            1,
            MAX_WINDOW_SECS,
        )?;
        let rotation = secs(
            "rotation_interval_secs",
            file.rotation_interval_secs,
            0,
            crate::fanout::MAX_ROTATION_INTERVAL.as_secs(),
        )?;
        if !(0.0..=1.0).contains(&file.max_delete_share) {
            return Err(field("max_delete_share", "must be between 0 and 1"));
        }
        for (name, list) in [
            ("relay_urls", &file.relay_urls),
            ("pkarr_relays", &file.pkarr_relays),
        ] {
            for u in list.iter().flatten() {
                if reqwest::Url::parse(u).is_err() {
                    return Err(field(name, &format!("contains an invalid URL: {u}")));
                }
            }
        }
        if let Some(addr) = file.metrics_addr
            && !addr.ip().is_loopback()
        {
            return Err(field(
                "metrics_addr",
                "must be a loopback address (127.0.0.1 or [::1]): metrics are not authenticated",
            ));
        }
        let rate = |name, value: Option<RateText>| match value {
            None => Ok(None),
            Some(v) => v.parse().map_err(|e| field(name, &e)),
        };
        let bandwidth = crate::bandwidth::BandwidthLimits {
            upload_bytes_per_sec: rate("upload_limit", file.upload_limit)?,
            download_bytes_per_sec: rate("download_limit", file.download_limit)?,
            limit_lan: file.limit_lan,
        };
        let data_dir = file.data_dir.map(resolve).unwrap_or_else(default_data_dir);
        let control_socket = file
            .control_socket
            .map(resolve)
            .unwrap_or_else(|| default_control_socket(&data_dir));
        let connect = match file.connect_ticket_file {
            None => Vec::new(),
            Some(OneOrMany::One(p)) => vec![resolve(p)],
            Some(OneOrMany::Many(v)) => v.into_iter().map(resolve).collect(),
        };
        let defaults = EngineConfig::new(url.trim_end_matches('/'), key, passphrase, data_dir);
        let engine = EngineConfig {
            device_name: file.device_name.unwrap_or(defaults.device_name.clone()),
            bind_addr: file.bind_addr.unwrap_or(defaults.bind_addr),
            relay_urls: file.relay_urls,
            poll_interval: poll,
            rendezvous_interval: rendezvous,
            ticket_file: file.ticket_file.map(resolve),
            connect_ticket_files: connect,
            pkarr_relays: file.pkarr_relays,
            local_discovery: file.local_discovery,
            relay_only: file.relay_only,
            relay_ca_file: file.relay_ca_file.map(resolve),
            reconcile: file.reconcile,
            transfer_idle_timeout: idle_timeout,
            bandwidth,
            congestion: file.congestion_controller,
            max_peers: file.max_peers,
            rotation_interval: (!rotation.is_zero()).then_some(rotation),
            swarm: file.swarm_transfers,
            delete_guard: crate::guard::GuardConfig {
                max_share: file.max_delete_share,
                min_assets: file.mass_delete_min_assets,
                window,
            },
            ..defaults
        };
        Ok(Self {
            engine,
            control_socket,
            metrics_addr: file.metrics_addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "can_service_url: http://127.0.0.1:3210\nsync_api_key: k\nsync_passphrase: correct horse battery staple\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = EngineConfig::parse(BASE, Path::new("/etc/can/config.yaml")).unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(3));
        assert!(c.local_discovery);
        assert!(c.relay_urls.is_none());
        assert_eq!(c.bind_addr.port(), 0);
        assert!(c.connect_ticket_files.is_empty());
        assert_eq!(c.reconcile, ReconcileMode::Riblt);
        assert!(c.swarm);
        let c = EngineConfig::parse(
            &format!("{BASE}swarm_transfers: false\n"),
            Path::new("/c.yaml"),
        )
        .unwrap();
        assert!(!c.swarm);
        let c =
            EngineConfig::parse(&format!("{BASE}reconcile: full\n"), Path::new("/c.yaml")).unwrap();
        assert_eq!(c.reconcile, ReconcileMode::Full);
        assert!(
            EngineConfig::parse(&format!("{BASE}reconcile: fast\n"), Path::new("/c.yaml")).is_err()
        );
    }

    #[test]
    fn rotation_interval_is_bounded_and_zero_turns_it_off() {
        let p = Path::new("/c.yaml");
        let c = EngineConfig::parse(BASE, p).unwrap();
        assert_eq!(c.rotation_interval, Some(Duration::from_secs(120)));
        let c = EngineConfig::parse(&format!("{BASE}rotation_interval_secs: 0\n"), p).unwrap();
        assert_eq!(c.rotation_interval, None);
        let e = EngineConfig::parse(&format!("{BASE}rotation_interval_secs: 86401\n"), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("rotation_interval_secs"), "{e}");
    }

    #[test]
    fn every_secs_key_is_bounded_with_an_error_naming_it() {
        let p = Path::new("/c.yaml");
        for (key, max) in [
            ("transfer_idle_timeout_secs", MAX_INTERVAL_SECS),
            ("poll_interval_secs", MAX_INTERVAL_SECS),
            ("rendezvous_interval_secs", MAX_RENDEZVOUS_SECS),
            ("mass_delete_window_secs", MAX_WINDOW_SECS),
        ] {
            assert!(
                EngineConfig::parse(&format!("{BASE}{key}: {max}\n"), p).is_ok(),
                "{key}"
            );
            // u64::MAX seconds overflowed the timer (a panic) before the bound.
            for bad in [0, max + 1, u64::MAX] {
                let e = EngineConfig::parse(&format!("{BASE}{key}: {bad}\n"), p)
                    .unwrap_err()
                    .to_string();
                assert!(
                    e.contains(key) && e.contains("must be between 1 and"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn agent_keys_control_socket_and_loopback_metrics() {
        let p = Path::new("/srv/a/config.yaml");
        let c = AgentConfig::parse(&format!("{BASE}data_dir: state\n"), p).unwrap();
        assert_eq!(c.control_socket, PathBuf::from("/srv/a/state/control.sock"));
        assert_eq!(c.metrics_addr, None);
        let c = AgentConfig::parse(
            &format!("{BASE}control_socket: ctl.sock\nmetrics_addr: 127.0.0.1:9464\n"),
            p,
        )
        .unwrap();
        assert_eq!(c.control_socket, PathBuf::from("/srv/a/ctl.sock"));
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        let e = AgentConfig::parse(&format!("{BASE}metrics_addr: 0.0.0.0:9464\n"), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics_addr") && e.contains("loopback"), "{e}");
    }

    #[test]
    fn bandwidth_keys() {
        let p = Path::new("/c.yaml");
        let c = EngineConfig::parse(
            &format!("{BASE}upload_limit: 5 MB/s\ndownload_limit: 250000\nlimit_lan: true\n"),
            p,
        )
        .unwrap();
        assert_eq!(c.bandwidth.upload_bytes_per_sec, Some(5_000_000));
        assert_eq!(c.bandwidth.download_bytes_per_sec, Some(250_000));
        assert!(c.bandwidth.limit_lan);
        let c = EngineConfig::parse(BASE, p).unwrap();
        assert_eq!(c.bandwidth, crate::bandwidth::BandwidthLimits::default());
        let e = EngineConfig::parse(&format!("{BASE}upload_limit: fast\n"), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("upload_limit"), "{e}");
    }

    #[test]
    fn tickets_one_or_many_relative_to_file() {
        let c = EngineConfig::parse(
            &format!(
                "{BASE}connect_ticket_file: peer.ticket\nticket_file: me.ticket\nrelay_urls: []\n"
            ),
            Path::new("/srv/a/config.yaml"),
        )
        .unwrap();
        assert_eq!(
            c.connect_ticket_files,
            vec![PathBuf::from("/srv/a/peer.ticket")]
        );
        assert_eq!(c.ticket_file, Some(PathBuf::from("/srv/a/me.ticket")));
        assert_eq!(c.relay_urls, Some(vec![]));
        let c = EngineConfig::parse(
            &format!("{BASE}connect_ticket_file: [a, /b]\n"),
            Path::new("/x/c.yaml"),
        )
        .unwrap();
        assert_eq!(
            c.connect_ticket_files,
            vec![PathBuf::from("/x/a"), PathBuf::from("/b")]
        );
    }

    #[test]
    fn errors_name_field_and_file_but_not_secrets() {
        let p = Path::new("/x/agent.yaml");
        let cases = [
            (
                "sync_api_key: k\nsync_passphrase: hunter2hunter2\n",
                "can_service_url",
            ),
            (
                "can_service_url: ftp://x\nsync_api_key: k\nsync_passphrase: hunter2hunter2\n",
                "can_service_url",
            ),
            (
                "can_service_url: http://x\nsync_passphrase: hunter2hunter2\n",
                "sync_api_key",
            ),
            (
                "can_service_url: http://x\nsync_api_key: k\n",
                "sync_passphrase",
            ),
            (
                &format!("{BASE}poll_interval_secs: 0\n"),
                "poll_interval_secs",
            ),
            (
                &format!("{BASE}poll_intervall_secs: 2\n"),
                "poll_intervall_secs",
            ),
            (&format!("{BASE}bind_addr: nowhere\n"), "bind_addr"),
        ];
        for (text, needle) in cases {
            let e = EngineConfig::parse(text, p).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
            assert!(e.contains("/x/agent.yaml"), "{e}");
            assert!(
                !e.contains("hunter2") && !e.contains("horse"),
                "secret leaked: {e}"
            );
        }
        let c = EngineConfig::parse(BASE, p).unwrap();
        assert!(!format!("{c:?}").contains("horse"));
    }
}
