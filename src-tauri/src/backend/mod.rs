//! Everything the app does, without a window: settings, keychain, the built-in store, the
//! engine's lifecycle, history, notifications. The Tauri shell (`crate::commands`,
//! `crate::tray`) is a thin layer over [`Backend`], so all of this is testable headless.

pub mod assets;
pub mod coalesce;
pub mod conditions;
pub mod error;
pub mod filetype;
pub mod grants;
pub mod history;
pub mod notifier;
pub mod passphrase;
pub mod secrets;
pub mod settings;
pub mod store;
pub mod throughput;
pub mod trash;
pub mod ui_view;
pub mod untrusted;
pub mod wizard;

mod pausing;
mod runner;
mod settings_ops;
#[cfg(test)]
pub(crate) mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use can_sync::{EngineEvent, Secret, Status};
use conditions::{Conditions, Overrides, PausedReason};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

pub use error::{AppError, ErrorCode};
use history::{History, HistoryItem};
use runner::Running;
use secrets::{Keychain, SecretKind};
use settings::{RateLimit, Settings, StoreSetting};
use wizard::{Input, Step, StoreChoice, Wizard};

/// How long the engine's start waits for the conditions watcher's first reading.
const FIRST_READING: std::time::Duration = std::time::Duration::from_secs(3);

/// The app identifier (tauri.conf.json): also the keychain's service name and, on Windows,
/// the AppUserModelID notifications need.
pub const APP_ID: &str = "net.cansync.desktop";

/// Where the app keeps things.
#[derive(Debug, Clone)]
pub struct Paths {
    /// settings.json.
    pub config_dir: PathBuf,
    /// history.sqlite, engine/ (node key, remembered peers), store/ (built-in store).
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Setup,
    Running,
    Error,
}

/// The store as the UI shows it (never with a key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreView {
    Builtin { url: String },
    External { url: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppState {
    pub phase: Phase,
    pub error: Option<AppError>,
    pub store: Option<StoreView>,
    /// Sync is paused, for whatever reason.
    pub paused: bool,
    /// Why: the user's pause, or a condition the user chose to pause for.
    pub paused_reason: Option<PausedReason>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WizardView {
    pub step: Step,
    pub store: Option<StoreView>,
    pub device_name_default: String,
    pub passphrase_floor_bits: f64,
    pub passphrase_recommended_bits: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SettingsView {
    pub notifications: bool,
    pub launch_at_login: bool,
    pub start_hidden: bool,
    pub device_name: String,
    pub store: Option<StoreView>,
    pub upload_limit: Option<RateLimit>,
    pub download_limit: Option<RateLimit>,
    pub limit_lan: bool,
    pub pause_on_metered: bool,
    pub pause_on_battery: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pairing {
    pub device_name: String,
    pub endpoint_id: String,
    pub ticket: String,
}

/// What the shell forwards to the UI, the tray and the OS.
#[derive(Debug, Clone)]
pub enum AppEvent {
    State(AppState),
    Status(Status),
    HistoryAdded(HistoryItem),
    Engine(EngineEvent),
    /// A desktop notification was shown (summary, body).
    Notified(coalesce::Note),
    /// The engine stopped (another store, a new passphrase, reset, quit): its last status
    /// no longer holds. A restart sends its first status when it has one.
    Stopped,
}

pub struct Backend {
    paths: Paths,
    keychain: Keychain,
    settings: Mutex<Settings>,
    wizard: Mutex<Wizard>,
    history: Arc<History>,
    running: tokio::sync::Mutex<Option<Running>>,
    error: Mutex<Option<AppError>>,
    events: broadcast::Sender<AppEvent>,
    /// Files the user handed over outside the webview (see [`grants`]).
    grants: Mutex<grants::Grants>,
    /// A passphrase confirmation dialog is open: one at a time.
    revealing: AtomicBool,
    /// Metered connection and battery, as the platform watcher last said.
    conditions: watch::Sender<Conditions>,
    /// Conditions the user resumed through (see [`conditions::Overrides`]).
    overrides: Mutex<Overrides>,
    /// The conditions watcher runs (started once, when a setting first pauses for a
    /// condition).
    watching: AtomicBool,
    /// Ends the tasks that hold only a weak reference to us.
    stop: CancellationToken,
    /// The rates of the statuses sent, for a new window's chart (the `throughput` command).
    throughput: throughput::Throughput,
    /// The shell's main window exists (set by the shell, `crate::window`). Only the window
    /// shows what changes without an engine event (round-trip times), so status is read
    /// periodically only while it exists (see `runner`).
    window_open: watch::Sender<bool>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the app down with it: the data is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppError::io("background task", e))?
}

impl Backend {
    /// Loads settings and history. Starts nothing: call [`Backend::boot`].
    pub fn new(paths: Paths, keychain_service: &str) -> Result<Arc<Self>, AppError> {
        let settings = Settings::load(&paths.config_dir)?;
        let history = History::open(
            &paths.data_dir.join("history.sqlite"),
            history::DEFAULT_MAX_ROWS,
        )?;
        let (events, _) = broadcast::channel(1024);
        Ok(Arc::new(Self {
            keychain: Keychain::new(keychain_service),
            settings: Mutex::new(settings),
            wizard: Mutex::new(Wizard::default()),
            history: Arc::new(history),
            running: tokio::sync::Mutex::new(None),
            error: Mutex::new(None),
            events,
            grants: Mutex::new(grants::Grants::new()),
            revealing: AtomicBool::new(false),
            conditions: watch::Sender::new(Conditions::default()),
            overrides: Mutex::new(Overrides::default()),
            watching: AtomicBool::new(false),
            stop: CancellationToken::new(),
            throughput: throughput::Throughput::default(),
            window_open: watch::Sender::new(false),
            paths,
        }))
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AppEvent> {
        self.events.subscribe()
    }

    pub fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    fn emit(&self, e: AppEvent) {
        if let AppEvent::Status(s) = &e {
            self.throughput
                .record(throughput::now_ms(), s.download_rate, s.upload_rate);
        }
        let _ = self.events.send(e);
    }

    /// The shell says whether its main window exists. With none, the engine's status is
    /// read only when an engine event says something changed (the tray's line follows
    /// those) or while transfers move: an idle tray app then does no periodic work here.
    pub fn set_window_open(&self, open: bool) {
        self.window_open
            .send_if_modified(|o| std::mem::replace(o, open) != open);
    }

    /// The throughput chart's samples since the engine started, oldest first.
    pub fn throughput(&self) -> Vec<throughput::RateSample> {
        self.throughput.samples()
    }

    /// Starts syncing if set up; a failure (e.g. no keychain) becomes the "error" phase.
    pub async fn boot(self: &Arc<Self>) {
        if !self.settings().setup_complete {
            self.emit_state().await;
            return;
        }
        if let Err(e) = self.start_engine().await {
            tracing::warn!(error = %e, "could not start syncing");
            *lock(&self.error) = Some(e);
        }
        self.emit_state().await;
    }

    pub async fn app_state(&self) -> AppState {
        let running = self.running.lock().await;
        let settings = self.settings();
        let error = lock(&self.error).clone();
        let phase = if running.is_some() {
            Phase::Running
        } else if error.is_some() {
            Phase::Error
        } else if settings.setup_complete {
            // Set up but not started (yet): report the reason if there is one.
            Phase::Error
        } else {
            Phase::Setup
        };
        let error = if phase == Phase::Error && error.is_none() {
            Some(AppError::new(ErrorCode::NotReady, "CAN Sync is starting…"))
        } else if phase == Phase::Error {
            error
        } else {
            None
        };
        let paused_reason = self.paused_reason();
        AppState {
            phase,
            error,
            store: store_view(&settings, running.as_ref()),
            paused: paused_reason.is_some(),
            paused_reason,
        }
    }

    async fn emit_state(&self) {
        let s = self.app_state().await;
        self.emit(AppEvent::State(s));
    }

    /// Retries starting (the UI's Retry on the error panel, the `retry` command). The only
    /// way besides [`Backend::boot`] and setup to start syncing: reading the state
    /// ([`Backend::app_state`]) never does.
    pub async fn retry(self: &Arc<Self>) -> AppState {
        if self.running.lock().await.is_none() {
            *lock(&self.error) = None;
            self.boot().await;
        }
        self.app_state().await
    }

    // ---- wizard ----

    pub fn wizard_view(&self) -> WizardView {
        let w = lock(&self.wizard);
        WizardView {
            step: if self.settings().setup_complete {
                Step::Done
            } else {
                w.step()
            },
            store: w.store().map(|s| match s {
                StoreChoice::Builtin => StoreView::Builtin { url: String::new() },
                StoreChoice::External { url, .. } => StoreView::External { url: url.clone() },
            }),
            device_name_default: can_sync::config::default_device_name(),
            passphrase_floor_bits: can_sync::keys::MIN_BITS,
            passphrase_recommended_bits: can_sync::keys::RECOMMENDED_BITS,
        }
    }

    pub async fn wizard_submit(self: &Arc<Self>, input: Input) -> Result<WizardView, AppError> {
        if self.settings().setup_complete {
            return Err(AppError::invalid("CAN Sync is already set up"));
        }
        // An external store must answer before we move on: a typo found now saves a
        // confusing "store offline" later.
        if let Input::Store {
            store: StoreChoice::External { url, api_key },
        } = &input
        {
            StoreChoice::External {
                url: url.clone(),
                api_key: api_key.clone(),
            }
            .validate()?;
            store::test(url, &Secret::new(api_key.clone())).await?;
        }
        let answers = lock(&self.wizard).apply(input)?;
        if let Some(answers) = answers
            && let Err(e) = self.finish_setup(answers).await
        {
            lock(&self.wizard).reopen(Step::Device);
            return Err(e);
        }
        Ok(self.wizard_view())
    }

    async fn finish_setup(self: &Arc<Self>, answers: wizard::Answers) -> Result<(), AppError> {
        let keychain = self.keychain.clone();
        let passphrase = answers.passphrase.clone();
        let api_key = match &answers.store {
            StoreChoice::External { api_key, .. } => Some(Secret::new(api_key.clone())),
            StoreChoice::Builtin => None,
        };
        blocking(move || {
            keychain.set(SecretKind::Passphrase, &passphrase)?;
            match api_key {
                Some(key) => keychain.set(SecretKind::SyncApiKey, &key),
                None => keychain.delete(SecretKind::SyncApiKey),
            }
        })
        .await?;
        {
            let mut s = lock(&self.settings);
            s.store = Some(match answers.store {
                StoreChoice::Builtin => StoreSetting::Builtin,
                StoreChoice::External { url, .. } => StoreSetting::External {
                    url: url.trim_end_matches('/').to_owned(),
                },
            });
            s.device_name = answers.device_name;
            s.paused = false;
            s.setup_complete = true;
            s.save(&self.paths.config_dir)?;
        }
        *lock(&self.error) = None;
        let started = self.start_engine().await;
        if let Err(e) = &started {
            *lock(&self.error) = Some(e.clone());
        }
        self.emit_state().await;
        started
    }

    pub async fn test_store(&self, url: &str, api_key: &str) -> Result<u64, AppError> {
        if api_key.trim().is_empty() {
            return Err(AppError::invalid(
                "Sync API key: enter the key from the CAN Service's configuration.",
            ));
        }
        store::test(url.trim(), &Secret::new(api_key.trim())).await
    }

    pub fn generate_passphrase(&self) -> passphrase::Generated {
        let g = passphrase::generate();
        lock(&self.wizard).remember_generated(&g.passphrase);
        g
    }

    pub fn check_passphrase(&self, p: &str) -> passphrase::Check {
        let generated = lock(&self.wizard).is_generated(p);
        passphrase::check(p, generated)
    }

    // ---- running ----

    async fn start_engine(self: &Arc<Self>) -> Result<(), AppError> {
        // Before the engine's lock: the wait for a first reading must not hold up
        // everything else that takes it (the state, Settings).
        self.watch_conditions_if_needed().await;
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Ok(());
        }
        let settings = self.settings();
        let keychain = self.keychain.clone();
        let external = matches!(settings.store, Some(StoreSetting::External { .. }));
        let (passphrase, api_key) = blocking(move || {
            let p = keychain.get(SecretKind::Passphrase)?;
            let k = if external {
                keychain.get(SecretKind::SyncApiKey)?
            } else {
                None
            };
            Ok((p, k))
        })
        .await?;
        let passphrase = passphrase.ok_or_else(|| {
            AppError::new(
                ErrorCode::KeychainUnavailable,
                "The passphrase is missing from the keychain. Reset this device in Settings and set it up again.",
            )
        })?;
        let start_paused = self.paused_reason().is_some();
        let r = runner::start(self.clone(), &settings, passphrase, api_key, start_paused).await?;
        *running = Some(r);
        Ok(())
    }

    async fn stop_engine(&self) {
        let r = self.running.lock().await.take();
        if let Some(r) = r {
            r.stop().await;
            // The next engine (another store, another group) starts its chart and the
            // tray's line anew.
            self.throughput.clear();
            self.emit(AppEvent::Stopped);
        }
    }

    async fn restart_engine(self: &Arc<Self>) -> Result<(), AppError> {
        self.stop_engine().await;
        let started = self.start_engine().await;
        *lock(&self.error) = started.as_ref().err().cloned();
        self.emit_state().await;
        started
    }

    /// Stops the engine and the built-in store cleanly (Quit).
    pub async fn shutdown(&self) {
        self.stop_engine().await;
    }

    pub async fn status(&self) -> Result<Status, AppError> {
        let running = self.running.lock().await;
        let r = running.as_ref().ok_or_else(AppError::not_ready)?;
        Ok(r.engine.status().await?)
    }

    pub async fn pairing(&self) -> Result<Pairing, AppError> {
        let running = self.running.lock().await;
        let r = running.as_ref().ok_or_else(AppError::not_ready)?;
        Ok(Pairing {
            device_name: self.settings().device_name,
            endpoint_id: r.engine.endpoint_id(),
            ticket: r.engine.ticket().to_owned(),
        })
    }

    /// The passphrase, for the Pairing page, once `confirm` said yes; `None` if it said no.
    /// `confirm` is the shell's native dialog, not the webview: a script in the page cannot
    /// read the passphrase without the user's click outside it. One confirmation at a time.
    pub async fn reveal_passphrase(
        &self,
        confirm: impl Future<Output = bool>,
    ) -> Result<Option<String>, AppError> {
        if self.revealing.swap(true, Ordering::SeqCst) {
            return Err(AppError::invalid(
                "A confirmation to show the passphrase is already open.",
            ));
        }
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::SeqCst);
            }
        }
        let _done = Done(&self.revealing);
        if !confirm.await {
            return Ok(None);
        }
        let keychain = self.keychain.clone();
        let p = blocking(move || keychain.get(SecretKind::Passphrase)).await?;
        p.map(|s| Some(s.expose().to_owned()))
            .ok_or_else(|| AppError::new(ErrorCode::NotFound, "No passphrase is stored."))
    }

    pub async fn connect_ticket(&self, ticket: &str) -> Result<(), AppError> {
        let running = self.running.lock().await;
        let r = running.as_ref().ok_or_else(AppError::not_ready)?;
        r.engine
            .connect_ticket(ticket)
            .map_err(|e| AppError::invalid(format!("Ticket: {e}")))
    }

    pub fn history(&self, q: &history::Query) -> Result<history::Page, AppError> {
        self.history.query(q)
    }
}

fn store_view(settings: &Settings, running: Option<&Running>) -> Option<StoreView> {
    match settings.store.as_ref()? {
        StoreSetting::Builtin => Some(StoreView::Builtin {
            url: running.map(|r| r.store_url.clone()).unwrap_or_default(),
        }),
        StoreSetting::External { url } => Some(StoreView::External { url: url.clone() }),
    }
}
