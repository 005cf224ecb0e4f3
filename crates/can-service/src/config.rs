//! `config.yaml` of the CAN Service.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::Secret;
use crate::web::{HostPolicy, OriginPolicy};

/// Default HTTP listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3210";
/// Default largest asset: 16 GiB.
pub const DEFAULT_MAX_ASSET_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// The service's settings. Unknown keys are rejected so a typo never passes silently.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where content files and the SQLite index live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Bearer key for `/sync/v1/`; without it those routes answer 404.
    #[serde(default)]
    pub sync_api_key: Option<Secret>,
    /// Largest asset accepted, in bytes.
    #[serde(default = "default_max_asset_bytes")]
    pub max_asset_bytes: u64,
    /// Web origins (`scheme://host[:port]`) besides the store's own whose requests are
    /// served; a request with any other `Origin` is refused (403). Default: none.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Host names (`name` or `name:port`) besides IP literals and `localhost` that requests
    /// may be addressed to; any other `Host` is refused (421). Default: none.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Bearer key for `/api/`; without it the public API is open to whoever can connect.
    #[serde(default)]
    pub public_api_key: Option<Secret>,
    /// Bytes every upload must leave free on `data_dir`'s filesystem; an upload that would
    /// eat into them is refused (507). Default (`None`): the smaller of 1 GiB and 5 % of the
    /// filesystem's size. 0: no reserve (the disk may fill up completely).
    #[serde(default)]
    pub free_space_reserve_bytes: Option<u64>,
    /// Seconds an interrupted sync upload is kept for a resume after its last byte arrived
    /// (`data_dir/partial`). Default: 7 days.
    #[serde(default = "default_partial_max_age_secs")]
    pub partial_max_age_secs: u64,
    /// Days a deleted asset's content is kept in the trash (`data_dir/trash`), restorable,
    /// before it is deleted for good. Fractions allowed. Default: 30.
    #[serde(default = "default_trash_days")]
    pub trash_days: f64,
    /// Days a deletion is remembered (its tombstone), so that devices that were offline
    /// learn it instead of bringing the asset back. Fractions allowed. Default: 180.
    #[serde(default = "default_tombstone_retention_days")]
    pub tombstone_retention_days: f64,
}

fn default_trash_days() -> f64 {
    30.0
}

fn default_tombstone_retention_days() -> f64 {
    180.0
}

/// Most days either period may be (a hundred years; beyond, a Duration is pointless).
const MAX_DAYS: f64 = 36_500.0;

impl Config {
    /// How long the trash and tombstones keep deletions.
    pub fn trash_policy(&self) -> crate::store::TrashPolicy {
        let days = |d: f64| std::time::Duration::from_secs_f64(d.clamp(0.0, MAX_DAYS) * 86_400.0);
        crate::store::TrashPolicy {
            trash_for: days(self.trash_days),
            tombstones_for: days(self.tombstone_retention_days),
        }
    }
}

fn default_partial_max_age_secs() -> u64 {
    7 * 24 * 3600
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("constant address parses")
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./can-data")
}

fn default_max_asset_bytes() -> u64 {
    DEFAULT_MAX_ASSET_BYTES
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            data_dir: default_data_dir(),
            sync_api_key: None,
            max_asset_bytes: default_max_asset_bytes(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            public_api_key: None,
            free_space_reserve_bytes: None,
            partial_max_age_secs: default_partial_max_age_secs(),
            trash_days: default_trash_days(),
            tombstone_retention_days: default_tombstone_retention_days(),
        }
    }
}

/// A config that cannot be used. The message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config{}: `{key}` {message}", in_file(.path))]
    Value {
        path: Option<PathBuf>,
        key: &'static str,
        message: String,
    },
}

fn in_file(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" file {}", p.display()))
        .unwrap_or_default()
}

impl Config {
    /// Reads and validates a YAML config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        config.validate(Some(path))?;
        Ok(config)
    }

    /// Parses YAML text; an empty document means all defaults.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        // serde errors name the offending key and position; they never echo values of
        // fields that parsed, so the sync key cannot leak through them.
        serde_norway::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self, path: Option<&Path>) -> Result<(), ConfigError> {
        let err = |key, message: &str| ConfigError::Value {
            path: path.map(Path::to_owned),
            key,
            message: message.to_owned(),
        };
        if self.partial_max_age_secs == 0 {
            return Err(err("partial_max_age_secs", "must be at least 1"));
        }
        for (key, days) in [
            ("trash_days", self.trash_days),
            ("tombstone_retention_days", self.tombstone_retention_days),
        ] {
            if !(days > 0.0 && days <= MAX_DAYS) {
                return Err(err(key, "must be more than 0 and at most 36500"));
            }
        }
        if self.max_asset_bytes == 0 {
            return Err(err("max_asset_bytes", "must be greater than 0"));
        }
        for (name, key) in [
            ("sync_api_key", &self.sync_api_key),
            ("public_api_key", &self.public_api_key),
        ] {
            let Some(key) = key else { continue };
            let k = key.expose();
            if k.is_empty() {
                return Err(err(name, "must not be empty"));
            }
            if k.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(err(name, "must not contain spaces or control characters"));
            }
        }
        OriginPolicy::new(&self.allowed_origins, self.listen)
            .map_err(|m| err("allowed_origins", &m))?;
        HostPolicy::new(&self.allowed_hosts).map_err(|m| err("allowed_hosts", &m))?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(err("data_dir", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.max_asset_bytes, DEFAULT_MAX_ASSET_BYTES);
        let c = Config::parse("listen: 127.0.0.1:9000\nsync_api_key: k123\nmax_asset_bytes: 10\n")
            .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.sync_api_key.unwrap().expose(), "k123");
        assert_eq!(c.max_asset_bytes, 10);
        assert_eq!(c.free_space_reserve_bytes, None);
        let c = Config::parse("free_space_reserve_bytes: 0\n").unwrap();
        assert_eq!(c.free_space_reserve_bytes, Some(0));
        let e = Config::parse("free_space_reserve_bytes: -1\n").unwrap_err();
        assert!(e.contains("free_space_reserve_bytes"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::parse("lisen: 1\n").unwrap_err();
        assert!(e.contains("lisen"), "{e}");
        let e = Config::parse("max_asset_bytes: lots\n").unwrap_err();
        assert!(e.contains("max_asset_bytes"), "{e}");
        let e = Config::parse("listen: nowhere\n").unwrap_err();
        assert!(e.contains("listen"), "{e}");
        let c = Config::parse("max_asset_bytes: 0\n").unwrap();
        let e = c
            .validate(Some(Path::new("x.yaml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_asset_bytes") && e.contains("x.yaml"), "{e}");
    }

    #[test]
    fn web_settings() {
        let c = Config::parse(
            "allowed_origins: [\"https://app.example\", \"http://localhost:5173\"]\n\
             allowed_hosts:\n  - nas.example\n  - box.example:8080\npublic_api_key: pk-1\n",
        )
        .unwrap();
        c.validate(None).unwrap();
        assert_eq!(c.allowed_origins.len(), 2);
        assert_eq!(c.allowed_hosts, ["nas.example", "box.example:8080"]);
        assert_eq!(c.public_api_key.as_ref().unwrap().expose(), "pk-1");
        let d = Config::default();
        assert!(d.allowed_origins.is_empty() && d.allowed_hosts.is_empty());
        assert!(d.public_api_key.is_none());
        for (text, key, shown) in [
            (
                "allowed_origins: [\"https://a.example/\"]\n",
                "allowed_origins",
                "https://a.example/",
            ),
            ("allowed_origins: [\"*\"]\n", "allowed_origins", "*"),
            ("allowed_origins: [\"null\"]\n", "allowed_origins", "null"),
            (
                "allowed_hosts: [\"http://nas\"]\n",
                "allowed_hosts",
                "http://nas",
            ),
            (
                "allowed_hosts: [\"nas:http\"]\n",
                "allowed_hosts",
                "nas:http",
            ),
        ] {
            let e = Config::parse(text)
                .unwrap()
                .validate(None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(key) && e.contains(shown), "{e}");
        }
        let e = Config::parse("allowed_hosts: nas\n").unwrap_err();
        assert!(e.contains("allowed_hosts"), "{e}");
        let e = Config::parse("alowed_origins: []\n").unwrap_err();
        assert!(e.contains("alowed_origins"), "{e}");
    }

    #[test]
    fn secret_never_printed() {
        let c = Config::parse("public_api_key: hunter3-secret\n").unwrap();
        assert!(!format!("{c:?}").contains("hunter3"));
        let c = Config::parse("public_api_key: \"a b\"\n").unwrap();
        let e = c.validate(None).unwrap_err().to_string();
        assert!(!e.contains("a b") && e.contains("public_api_key"), "{e}");
        let c = Config::parse("sync_api_key: hunter2-secret\n").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = Config::parse("sync_api_key: \"a b\"\n").unwrap();
        let e = c.validate(None).unwrap_err().to_string();
        assert!(!e.contains("a b") && e.contains("sync_api_key"), "{e}");
    }
}
