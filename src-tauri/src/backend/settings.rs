//! The app's settings file (`settings.json` in the app's config dir). Secrets never live
//! here: the passphrase and an external store's sync API key are in the OS keychain.

use std::path::{Path, PathBuf};

use can_sync::BandwidthLimits;
use can_sync::bandwidth::{MAX_RATE, MIN_RATE};
use serde::{Deserialize, Deserializer, Serialize};

use super::conditions::PauseWhen;
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

/// A bandwidth limit as the user set it: a whole number of KB/s or MB/s (decimal: 1 KB =
/// 1000 bytes, as the app writes sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub amount: u32,
    pub unit: RateUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RateUnit {
    #[serde(rename = "KB/s")]
    KiloBytes,
    #[serde(rename = "MB/s")]
    MegaBytes,
}

impl RateUnit {
    fn bytes(self) -> u64 {
        match self {
            RateUnit::KiloBytes => 1_000,
            RateUnit::MegaBytes => 1_000_000,
        }
    }

    fn label(self) -> &'static str {
        match self {
            RateUnit::KiloBytes => "KB/s",
            RateUnit::MegaBytes => "MB/s",
        }
    }
}

impl RateLimit {
    /// Bytes per second, within what the engine takes (a hand-edited file may say more).
    pub fn bytes_per_sec(self) -> u64 {
        (u64::from(self.amount) * self.unit.bytes()).clamp(MIN_RATE, MAX_RATE)
    }
}

/// A limit as the UI sends it. The amount is any JSON number so that a fraction or a huge
/// value is refused with a sentence naming the field (`invalid_input`), not a parse error.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitInput {
    pub amount: f64,
    pub unit: RateUnit,
}

impl RateLimitInput {
    fn validate(self, field: &str) -> Result<RateLimit, AppError> {
        let max = MAX_RATE / self.unit.bytes();
        let unit = self.unit.label();
        let a = self.amount;
        if !(a.is_finite() && a.fract() == 0.0 && a >= 1.0 && a <= max as f64) {
            return Err(AppError::invalid(format!(
                "{field}: enter a whole number of {unit} from 1 to {max}, or turn the limit off."
            )));
        }
        Ok(RateLimit {
            amount: a as u32,
            unit: self.unit,
        })
    }
}

/// `Some(None)` for an explicit `null` (limit off), `None` when the field is absent.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
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
    /// Bandwidth limits for all transfers; `None`: unlimited.
    #[serde(default)]
    pub upload_limit: Option<RateLimit>,
    #[serde(default)]
    pub download_limit: Option<RateLimit>,
    /// Also limit peers on the LAN (exempt by default).
    #[serde(default)]
    pub limit_lan: bool,
    /// Pause while the OS says the connection is metered / the computer runs on battery.
    #[serde(default)]
    pub pause_on_metered: bool,
    #[serde(default)]
    pub pause_on_battery: bool,
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
            upload_limit: None,
            download_limit: None,
            limit_lan: false,
            pause_on_metered: false,
            pause_on_battery: false,
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
    /// Absent: unchanged; `null`: off; `{ amount, unit }`: that limit.
    #[serde(default, deserialize_with = "present")]
    pub upload_limit: Option<Option<RateLimitInput>>,
    #[serde(default, deserialize_with = "present")]
    pub download_limit: Option<Option<RateLimitInput>>,
    pub limit_lan: Option<bool>,
    pub pause_on_metered: Option<bool>,
    pub pause_on_battery: Option<bool>,
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

    /// The engine's limits.
    pub fn bandwidth(&self) -> BandwidthLimits {
        BandwidthLimits {
            upload_bytes_per_sec: self.upload_limit.map(RateLimit::bytes_per_sec),
            download_bytes_per_sec: self.download_limit.map(RateLimit::bytes_per_sec),
            limit_lan: self.limit_lan,
        }
    }

    pub fn pause_when(&self) -> PauseWhen {
        PauseWhen {
            metered: self.pause_on_metered,
            battery: self.pause_on_battery,
        }
    }

    /// Applies a patch from the UI; nothing changes if any field is invalid.
    pub fn apply(&mut self, patch: &SettingsPatch) -> Result<(), AppError> {
        let upload = patch
            .upload_limit
            .map(|l| l.map(|l| l.validate("Upload limit")).transpose())
            .transpose()?;
        let download = patch
            .download_limit
            .map(|l| l.map(|l| l.validate("Download limit")).transpose())
            .transpose()?;
        if let Some(v) = upload {
            self.upload_limit = v;
        }
        if let Some(v) = download {
            self.download_limit = v;
        }
        if let Some(v) = patch.limit_lan {
            self.limit_lan = v;
        }
        if let Some(v) = patch.pause_on_metered {
            self.pause_on_metered = v;
        }
        if let Some(v) = patch.pause_on_battery {
            self.pause_on_battery = v;
        }
        if let Some(v) = patch.notifications {
            self.notifications = v;
        }
        if let Some(v) = patch.launch_at_login {
            self.launch_at_login = v;
        }
        if let Some(v) = patch.start_hidden {
            self.start_hidden = v;
        }
        Ok(())
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
        })
        .unwrap();
        assert!(!s.notifications);
        assert!(!s.start_hidden);
    }

    fn patch(json: &str) -> SettingsPatch {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn limits_set_clear_and_reach_the_engine() {
        let mut s = Settings::default();
        assert_eq!(s.bandwidth(), BandwidthLimits::default());
        s.apply(&patch(
            r#"{"upload_limit": {"amount": 500, "unit": "KB/s"},
                "download_limit": {"amount": 2, "unit": "MB/s"}, "limit_lan": true}"#,
        ))
        .unwrap();
        assert_eq!(
            s.bandwidth(),
            BandwidthLimits {
                upload_bytes_per_sec: Some(500_000),
                download_bytes_per_sec: Some(2_000_000),
                limit_lan: true,
            }
        );
        // Absent: unchanged; null: off.
        s.apply(&patch(r#"{"download_limit": null}"#)).unwrap();
        assert_eq!(s.bandwidth().upload_bytes_per_sec, Some(500_000));
        assert_eq!(s.bandwidth().download_bytes_per_sec, None);
        // As the file holds them, and back.
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["upload_limit"],
            serde_json::json!({"amount": 500, "unit": "KB/s"})
        );
        assert_eq!(serde_json::from_value::<Settings>(json).unwrap(), s);
        // An older file without these keys: unlimited, nothing pauses.
        let old: Settings = serde_json::from_str(r#"{"setup_complete": true}"#).unwrap();
        assert_eq!(old.bandwidth(), BandwidthLimits::default());
        assert_eq!(old.pause_when(), PauseWhen::default());
    }

    #[test]
    fn hostile_limits_are_refused_whole() {
        let mut s = Settings::default();
        for (json, says) in [
            (
                r#"{"upload_limit": {"amount": 0, "unit": "KB/s"}}"#,
                "Upload limit",
            ),
            (
                r#"{"upload_limit": {"amount": -5, "unit": "MB/s"}}"#,
                "from 1 to 4294",
            ),
            (
                r#"{"download_limit": {"amount": 1.5, "unit": "MB/s"}}"#,
                "Download limit",
            ),
            (
                r#"{"download_limit": {"amount": 1e300, "unit": "KB/s"}}"#,
                "from 1 to 4294967",
            ),
            (
                r#"{"download_limit": {"amount": 4295, "unit": "MB/s"}}"#,
                "whole number of MB/s",
            ),
        ] {
            let before = s.clone();
            let e = s
                .apply(&SettingsPatch {
                    pause_on_metered: Some(true),
                    ..patch(json)
                })
                .unwrap_err();
            assert_eq!(e.code, super::super::ErrorCode::InvalidInput, "{json}");
            assert!(e.message.contains(says), "{json}: {e}");
            assert_eq!(s, before, "{json}: a refused patch changes nothing");
        }
        // Shapes serde refuses before we see them: unknown units and fields.
        for json in [
            r#"{"upload_limit": {"amount": 5, "unit": "GB/s"}}"#,
            r#"{"upload_limit": {"amount": 5, "unit": "KB/s", "x": 1}}"#,
            r#"{"upload_limit": "5 MB/s"}"#,
            r#"{"pause_on_metered": "yes"}"#,
            r#"{"paused": true}"#,
        ] {
            assert!(
                serde_json::from_str::<SettingsPatch>(json).is_err(),
                "{json}"
            );
        }
        // The largest limits the engine takes.
        s.apply(&patch(
            r#"{"upload_limit": {"amount": 4294967, "unit": "KB/s"},
                "download_limit": {"amount": 4294, "unit": "MB/s"}}"#,
        ))
        .unwrap();
        assert!(s.bandwidth().upload_bytes_per_sec.unwrap() <= MAX_RATE);
    }
}
