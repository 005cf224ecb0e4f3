//! App updates (tauri-plugin-updater), driven from Rust: the UI only sees our own commands
//! and the `update-available` event (docs/app-ipc.md), never the plugin's JS API.
//!
//! Which builds update themselves is decided by how the app was installed, which the Tauri
//! bundler writes into the binary (`tauri::utils::platform::bundle_type`):
//! - the AppImage, the Windows installers (NSIS, MSI) and the macOS app check the feed the
//!   release workflow publishes (`plugins.updater` in tauri.conf.json) at start and every
//!   24 hours, and install a release only if its minisign signature verifies against the
//!   public key built into the app, for the very version the feed announces;
//! - `.deb` and `.rpm` installs leave updates to the package manager: no check, no prompt;
//! - a binary no installer produced (`cargo build`, `scripts/run`) does not update itself.
//!
//! Tests need a feed and key of their own. [`Channel::Custom`] takes them explicitly; the
//! built app takes them from the environment only when compiled with debug assertions (see
//! [`Channel::for_this_build`]), which every build the installers ship lacks.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tauri::utils::config::BundleType;
use tauri::{AppHandle, Emitter, Runtime, Url};
use tauri_plugin_updater::{Update, Updater, UpdaterExt};

use crate::backend::{AppError, ErrorCode};

/// The event the UI follows (docs/app-ipc.md).
pub const EVENT: &str = "update-available";
/// How often a running app looks again.
pub const CHECK_EVERY: Duration = Duration::from_secs(24 * 60 * 60);
/// After a failed check (offline, say), the next try comes sooner.
const RETRY_AFTER: Duration = Duration::from_secs(60 * 60);
/// The feed is a small JSON file: a check that takes longer has failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// A download that receives nothing for this long has failed. (Not a total timeout: a slow
/// link may take many minutes for a whole bundle, and that is fine while bytes arrive.)
pub const DOWNLOAD_STALL: Duration = Duration::from_secs(60);
/// The plugin buffers the whole bundle in memory; a feed pointing at something far larger
/// than any CAN Sync bundle must not be able to exhaust it.
pub const DOWNLOAD_MAX_BYTES: u64 = 512 * 1024 * 1024;
/// Release notes longer than this are cut (the feed is not trusted to be small; Settings
/// shows them as text).
const NOTES_MAX_CHARS: usize = 4000;

/// Where updates come from, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// No updates; the reason is for people (the log, Settings).
    Off(String),
    /// The feed and public key in tauri.conf.json; installs over the running app.
    Release,
    /// A feed and key given explicitly (tests).
    Custom(Feed),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// The `latest.json` URL.
    pub endpoint: Url,
    /// The minisign public key, as tauri.conf.json has it (base64 of the `.pub` file).
    pub pubkey: String,
    /// What an install replaces instead of the running app (an AppImage stand-in); `None`
    /// refuses to install, so a test build can never overwrite itself.
    pub install_path: Option<PathBuf>,
}

/// The environment variables a debug build takes a test feed from.
pub const ENV_ENDPOINT: &str = "CAN_SYNC_UPDATER_ENDPOINT";
pub const ENV_PUBKEY: &str = "CAN_SYNC_UPDATER_PUBKEY";
pub const ENV_INSTALL_PATH: &str = "CAN_SYNC_UPDATER_INSTALL_PATH";

impl Channel {
    /// This build's channel. Debug builds (tests, `cargo run`) take a feed and key from
    /// [`ENV_ENDPOINT`] and [`ENV_PUBKEY`] when both are set; the override is compiled out of
    /// release builds, so an installed app's feed and key come from its config only:
    /// whoever can set its environment cannot point it at another feed or key.
    /// (A Cargo feature would do the same, but can be switched on by feature unification or
    /// `--all-features`; no installer is built with debug assertions.)
    pub fn for_this_build() -> Self {
        #[cfg(debug_assertions)]
        if let Some(feed) = Self::test_feed_from_env() {
            return Channel::Custom(feed);
        }
        Self::for_bundle(tauri::utils::platform::bundle_type())
    }

    /// The channel for an app installed from `bundle` (`None`: no installer made it).
    pub fn for_bundle(bundle: Option<BundleType>) -> Self {
        match bundle {
            Some(BundleType::Deb) => Channel::Off(
                "CAN Sync was installed from a .deb package: your package manager (apt) keeps it up to date."
                    .into(),
            ),
            Some(BundleType::Rpm) => Channel::Off(
                "CAN Sync was installed from an .rpm package: your package manager (dnf, zypper) keeps it up to date."
                    .into(),
            ),
            Some(
                BundleType::AppImage
                | BundleType::Nsis
                | BundleType::Msi
                | BundleType::App
                | BundleType::Dmg,
            ) => Channel::Release,
            None => Channel::Off(
                "This copy of CAN Sync was not installed from a CAN Sync installer (a development build): it does not update itself."
                    .into(),
            ),
        }
    }

    #[cfg(debug_assertions)]
    fn test_feed_from_env() -> Option<Feed> {
        let endpoint = std::env::var(ENV_ENDPOINT).ok()?;
        let Ok(pubkey) = std::env::var(ENV_PUBKEY) else {
            tracing::warn!("{ENV_ENDPOINT} is set without {ENV_PUBKEY}: ignored");
            return None;
        };
        let endpoint = match endpoint.parse() {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!("{ENV_ENDPOINT}: {e}: ignored");
                return None;
            }
        };
        Some(Feed {
            endpoint,
            pubkey,
            install_path: std::env::var_os(ENV_INSTALL_PATH).map(PathBuf::from),
        })
    }
}

/// An update the feed offers (the `update-available` event's payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateInfo {
    pub version: String,
    /// Release notes as the feed has them (plain text or Markdown; shown as text).
    pub notes: Option<String>,
    /// Publication date, RFC 3339.
    pub date: Option<String>,
}

/// What Settings shows (the `update_state` command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateState {
    /// This build checks for updates.
    pub enabled: bool,
    /// Why not, when it does not.
    pub reason: Option<String>,
    pub current_version: String,
    /// The update found by the last check, if any.
    pub available: Option<UpdateInfo>,
}

pub struct Updates<R: Runtime = tauri::Wry> {
    app: AppHandle<R>,
    channel: Channel,
    /// The last check's find, kept for `install`.
    pending: Mutex<Option<Update>>,
    installing: AtomicBool,
    limits: DownloadLimits,
}

/// When a download is given up: no byte for `stall`, or more than `max_bytes` announced or
/// received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadLimits {
    pub stall: Duration,
    pub max_bytes: u64,
}

impl Default for DownloadLimits {
    fn default() -> Self {
        Self {
            stall: DOWNLOAD_STALL,
            max_bytes: DOWNLOAD_MAX_BYTES,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn info_of(u: &Update) -> UpdateInfo {
    UpdateInfo {
        version: u.version.clone(),
        notes: u
            .body
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .map(|n| truncate_chars(n, NOTES_MAX_CHARS)),
        date: u.date.and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        }),
    }
}

/// `s` cut to at most `max` characters (an ellipsis marks the cut).
fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((at, _)) => format!("{}…", &s[..at]),
    }
}

/// The plugin's errors as the UI's: a signature that does not verify (or was made for
/// another version than the feed announces) gets its own code.
fn update_error(doing: &str, e: tauri_plugin_updater::Error) -> AppError {
    use tauri_plugin_updater::Error as E;
    match e {
        E::Minisign(_)
        | E::Base64(_)
        | E::SignatureUtf8(_)
        | E::SignedVersionMismatch { .. }
        | E::MissingSignedVersion => AppError::new(
            ErrorCode::UpdateSignature,
            format!(
                "The update was not installed: its signature does not match CAN Sync's signing key ({e})."
            ),
        ),
        e => AppError::new(ErrorCode::Update, format!("{doing}: {e}")),
    }
}

impl<R: Runtime> Updates<R> {
    /// Needs tauri-plugin-updater registered on `app`.
    pub fn new(app: AppHandle<R>, channel: Channel) -> Arc<Self> {
        Self::with_limits(app, channel, DownloadLimits::default())
    }

    /// [`Self::new`] with other download limits (tests: a stall or cap reached in seconds).
    pub fn with_limits(app: AppHandle<R>, channel: Channel, limits: DownloadLimits) -> Arc<Self> {
        Arc::new(Self {
            app,
            channel,
            pending: Mutex::new(None),
            installing: AtomicBool::new(false),
            limits,
        })
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    pub fn state(&self) -> UpdateState {
        let reason = match &self.channel {
            Channel::Off(reason) => Some(reason.clone()),
            _ => None,
        };
        UpdateState {
            enabled: reason.is_none(),
            reason,
            current_version: self.app.package_info().version.to_string(),
            available: lock(&self.pending).as_ref().map(info_of),
        }
    }

    fn updater(&self) -> Result<Updater, AppError> {
        let mut b = self.app.updater_builder().timeout(CHECK_TIMEOUT);
        match &self.channel {
            Channel::Off(reason) => return Err(AppError::invalid(reason.clone())),
            Channel::Release => {}
            Channel::Custom(feed) => {
                b = b
                    .endpoints(vec![feed.endpoint.clone()])
                    .map_err(|e| update_error("Update feed", e))?
                    .pubkey(feed.pubkey.clone());
                if let Some(p) = &feed.install_path {
                    b = b.executable_path(p);
                }
            }
        }
        b.build()
            .map_err(|e| update_error("Cannot check for updates", e))
    }

    /// Asks the feed; an update newer than this version is kept for [`Self::install`] and
    /// announced with the `update-available` event.
    pub async fn check(&self) -> Result<Option<UpdateInfo>, AppError> {
        let found = self
            .updater()?
            .check()
            .await
            .map_err(|e| update_error("Could not check for updates", e))?;
        let info = found.as_ref().map(info_of);
        *lock(&self.pending) = found;
        match &info {
            Some(i) => {
                tracing::info!(version = %i.version, "an update is available");
                let _ = self.app.emit(EVENT, i);
            }
            None => tracing::info!("no update: CAN Sync is up to date"),
        }
        Ok(info)
    }

    /// Downloads the update the last check found, verifies its signature and installs it.
    /// Nothing is written unless the signature verifies. `before_install` runs between the
    /// verified download and the install (Windows: the installer takes over and this process
    /// exits inside the install, so syncing must stop first). After `Ok` the caller restarts
    /// the app (macOS, Linux: the new version is in place, this process still runs the old one).
    pub async fn install(
        &self,
        before_install: impl Future<Output = ()> + Send,
    ) -> Result<(), AppError> {
        if let Channel::Off(reason) = &self.channel {
            return Err(AppError::invalid(reason.clone()));
        }
        if matches!(&self.channel, Channel::Custom(f) if f.install_path.is_none()) {
            return Err(AppError::invalid(format!(
                "This test build installs updates only into {ENV_INSTALL_PATH}, which is not set."
            )));
        }
        let update = lock(&self.pending).clone().ok_or_else(|| {
            AppError::new(ErrorCode::NotFound, "No update is available to install.")
        })?;
        if self.installing.swap(true, Ordering::SeqCst) {
            return Err(AppError::invalid("The update is already being installed."));
        }
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::SeqCst);
            }
        }
        let _done = Done(&self.installing);

        tracing::info!(version = %update.version, "downloading the update");
        let bytes = match download(&update, self.limits).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(code = ?e.code, "update refused: {}", e.message);
                return Err(e);
            }
        };
        before_install.await;
        tracing::info!(version = %update.version, "installing the update");
        // Writes a whole app (or starts an installer): off the async workers. `install`
        // verifies the bytes once more.
        let installed = tokio::task::spawn_blocking(move || update.install(bytes))
            .await
            .map_err(|e| AppError::io("update install task", e))?;
        installed.map_err(|e| {
            let e = update_error("Could not install the update", e);
            tracing::warn!(code = ?e.code, "update not installed: {}", e.message);
            e
        })
    }

    /// Logs the channel, then (unless off) checks now and every [`CHECK_EVERY`].
    pub fn spawn_checks(self: &Arc<Self>) {
        match &self.channel {
            Channel::Off(reason) => {
                tracing::info!("updater off: {reason}");
                return;
            }
            Channel::Release => tracing::info!("updater on: the release feed in tauri.conf.json"),
            Channel::Custom(f) => tracing::info!(endpoint = %f.endpoint, "updater on: a test feed"),
        }
        let this = self.clone();
        tauri::async_runtime::spawn(async move {
            loop {
                let next = match this.check().await {
                    Ok(_) => CHECK_EVERY,
                    Err(e) => {
                        tracing::warn!("update check failed: {}", e.message);
                        RETRY_AFTER
                    }
                };
                tokio::time::sleep(next).await;
            }
        });
    }
}

/// `update`'s bundle, verified, within `limits`. The plugin has no limit of its own (its
/// `Update` carries no timeout and buffers the whole body), so the download races a
/// watchdog fed by its progress callback; losing the race drops (cancels) the download.
async fn download(update: &Update, limits: DownloadLimits) -> Result<Vec<u8>, AppError> {
    // (bytes received, bytes announced by Content-Length)
    let (progress, mut seen) = tokio::sync::watch::channel((0u64, None::<u64>));
    let on_chunk = move |n: usize, total: Option<u64>| {
        progress.send_modify(|(bytes, announced)| {
            *bytes += n as u64;
            *announced = total;
        });
    };
    let too_large = |bytes: u64| {
        AppError::new(
            ErrorCode::Update,
            format!(
                "Could not download the update: it is larger than {} MiB ({bytes} bytes), which no CAN Sync release is.",
                limits.max_bytes / (1024 * 1024)
            ),
        )
    };
    let watchdog = async {
        loop {
            match tokio::time::timeout(limits.stall, seen.changed()).await {
                Err(_) => {
                    return AppError::new(
                        ErrorCode::Update,
                        format!(
                            "Could not download the update: nothing was received for {} seconds.",
                            limits.stall.as_secs()
                        ),
                    );
                }
                // The callback is gone with the download, which has finished: its own
                // branch answers.
                Ok(Err(_)) => std::future::pending::<()>().await,
                Ok(Ok(())) => {
                    let (bytes, announced) = *seen.borrow_and_update();
                    if let Some(over) = [Some(bytes), announced]
                        .into_iter()
                        .flatten()
                        .find(|&b| b > limits.max_bytes)
                    {
                        return too_large(over);
                    }
                }
            }
        }
    };
    tokio::select! {
        // `download` verifies the signature (and the signed version) before returning.
        done = update.download(on_chunk, || {}) => {
            let bytes = done.map_err(|e| update_error("Could not download the update", e))?;
            // A body that arrived in one go finishes before the watchdog sees its size.
            match u64::try_from(bytes.len()) {
                Ok(n) if n <= limits.max_bytes => Ok(bytes),
                _ => Err(too_large(bytes.len() as u64)),
            }
        }
        e = watchdog => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb_and_rpm_installs_leave_updates_to_the_package_manager() {
        for b in [BundleType::Deb, BundleType::Rpm] {
            match Channel::for_bundle(Some(b.clone())) {
                Channel::Off(reason) => assert!(reason.contains("package manager"), "{reason}"),
                c => panic!("{b:?}: {c:?}"),
            }
        }
        assert!(matches!(Channel::for_bundle(None), Channel::Off(_)));
        for b in [
            BundleType::AppImage,
            BundleType::Nsis,
            BundleType::Msi,
            BundleType::App,
            BundleType::Dmg,
        ] {
            assert_eq!(Channel::for_bundle(Some(b)), Channel::Release);
        }
    }

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate_chars("short", 10), "short");
        assert_eq!(truncate_chars("ééééé", 5), "ééééé");
        assert_eq!(truncate_chars("éééééé", 5), "ééééé…");
        let long = "ü".repeat(NOTES_MAX_CHARS * 3);
        assert_eq!(
            truncate_chars(&long, NOTES_MAX_CHARS).chars().count(),
            NOTES_MAX_CHARS + 1
        );
    }

    /// The shipped config: the documented feed, a minisign public key, and signatures that
    /// must name the version the feed announces.
    #[test]
    fn the_release_config_has_the_feed_and_key() {
        let conf: serde_json::Value =
            serde_json::from_str(include_str!("../../tauri.conf.json")).unwrap();
        let u = &conf["plugins"]["updater"];
        assert_eq!(
            u["endpoints"],
            serde_json::json!([
                "https://github.com/cansync/can-sync/releases/latest/download/latest.json"
            ])
        );
        assert_eq!(u["requireSignedVersion"], true);
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD
            .decode(u["pubkey"].as_str().unwrap())
            .unwrap();
        let key = String::from_utf8(key).unwrap();
        assert!(
            key.starts_with("untrusted comment: minisign public key"),
            "{key}"
        );
        // Updater artifacts need the private key at build time: only the release workflow,
        // which has it, turns them on (scripts/package builds without it).
        assert!(conf["bundle"].get("createUpdaterArtifacts").is_none());
    }
}
