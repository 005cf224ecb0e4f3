//! The app's settings file (`settings.json` in the app's config dir). Secrets never live
//! here: the passphrase and an external store's sync API key are in the OS keychain.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::AppError;

/// Where assets live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreSetting {
    /// The reference CAN Service, run in-process on a data dir under the app's data dir.
    Builtin,
    /// A CAN Service the user runs; its sync API key is in the keychain.
    External { url: String },
}

/// Knobs for tests and unusual networks. Not shown in the UI; documented in
/// docs/architecture.md. `None` means the engine's defaults (public relays, public pkarr
/// relays).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advanced {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkarr_relays: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_discovery: Option<bool>,
    /// Where the built-in store listens (default 127.0.0.1:3210, or any free port if taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin_listen: Option<String>,
    /// Engine bind address (default: all interfaces, any port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_addr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Set once the wizard finished; until then the app shows the wizard.
    #[serde(default)]
    pub setup_complete: bool,
    #[serde(default)]
    pub store: Option<StoreSetting>,
    #[serde(default)]
    pub device_name: String,
    #[serde(default = "yes")]
    pub notifications: bool,
    #[serde(default)]
    pub launch_at_login: bool,
    #[serde(default)]
    pub start_hidden: bool,
    /// Sync paused by the user; survives restarts.
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub advanced: Advanced,
}

fn yes() -> bool {
    true
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            setup_complete: false,
            store: None,
            device_name: String::new(),
            notifications: true,
            launch_at_login: false,
            start_hidden: false,
            paused: false,
            advanced: Advanced::default(),
        }
    }
}

/// What the UI may change directly.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub notifications: Option<bool>,
    pub launch_at_login: Option<bool>,
    pub start_hidden: Option<bool>,
}

impl Settings {
    pub fn path(config_dir: &Path) -> PathBuf {
        config_dir.join("settings.json")
    }

    /// Reads the settings; a missing file is a first run. A broken file is an error that
    /// names it (we never silently reset a person's setup).
    pub fn load(config_dir: &Path) -> Result<Self, AppError> {
        let path = Self::path(config_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                AppError::io(&format!("settings file {} is not valid", path.display()), e)
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(AppError::io(&format!("cannot read {}", path.display()), e)),
        }
    }

    /// Writes atomically (temp file, fsync, rename) so a crash never leaves half a file.
    pub fn save(&self, config_dir: &Path) -> Result<(), AppError> {
        use std::io::Write;
        let path = Self::path(config_dir);
        let fail = |e: std::io::Error| AppError::io(&format!("cannot write {}", path.display()), e);
        std::fs::create_dir_all(config_dir).map_err(fail)?;
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| AppError::io("settings", e))?;
        let mut f = std::fs::File::create(&tmp).map_err(fail)?;
        f.write_all(&bytes).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)?;
        Ok(())
    }

    pub fn apply(&mut self, patch: &SettingsPatch) {
        if let Some(v) = patch.notifications {
            self.notifications = v;
        }
        if let Some(v) = patch.launch_at_login {
            self.launch_at_login = v;
        }
        if let Some(v) = patch.start_hidden {
            self.start_hidden = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_first_run_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::load(dir.path()).unwrap();
        assert!(!s.setup_complete);
        assert!(s.notifications);
        let mut s = s;
        s.paused = true;
        s.store = Some(StoreSetting::External {
            url: "http://127.0.0.1:3210".into(),
        });
        s.save(dir.path()).unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), s);
    }

    #[test]
    fn broken_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(Settings::path(dir.path()), b"{not json").unwrap();
        let e = Settings::load(dir.path()).unwrap_err();
        assert!(e.message.contains("settings.json"), "{e}");
    }

    #[test]
    fn patch_changes_only_what_it_names() {
        let mut s = Settings::default();
        s.apply(&SettingsPatch {
            notifications: Some(false),
            ..Default::default()
        });
        assert!(!s.notifications);
        assert!(!s.start_hidden);
    }
}
