//! `config.yaml` of the CAN Service.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::Secret;

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
        if self.max_asset_bytes == 0 {
            return Err(err("max_asset_bytes", "must be greater than 0"));
        }
        if let Some(key) = &self.sync_api_key {
            let k = key.expose();
            if k.is_empty() {
                return Err(err("sync_api_key", "must not be empty"));
            }
            if k.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(err(
                    "sync_api_key",
                    "must not contain spaces or control characters",
                ));
            }
        }
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
    fn secret_never_printed() {
        let c = Config::parse("sync_api_key: hunter2-secret\n").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = Config::parse("sync_api_key: \"a b\"\n").unwrap();
        let e = c.validate(None).unwrap_err().to_string();
        assert!(!e.contains("a b") && e.contains("sync_api_key"), "{e}");
    }
}
