//! The UI's commands: thin wrappers over [`Backend`]; docs/app-ipc.md is the contract.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use can_sync::Status;
use tauri::{AppHandle, Manager, State};
use tauri_plugin_dialog::{DialogExt, MessageDialogButtons, MessageDialogKind};
use tauri_plugin_opener::OpenerExt;

use crate::backend::assets::{OpenAction, Opening};
use crate::backend::history::{Page, Query};
use crate::backend::passphrase::{Check, Generated};
use crate::backend::settings::SettingsPatch;
use crate::backend::store::check_hash;
use crate::backend::throughput::RateSample;
use crate::backend::trash::TrashView;
use crate::backend::ui_view::{UiView, UiViews};
use crate::backend::wizard::{Input, StoreChoice};
use crate::backend::{AppError, AppState, Backend, Pairing, SettingsView, WizardView};
use crate::updates::{UpdateState, Updates};

type B<'a> = State<'a, Arc<Backend>>;
type U<'a> = State<'a, Arc<Updates>>;
type R<T> = Result<T, AppError>;

/// A getter, nothing more: the UI reads it at start and whenever it likes.
#[tauri::command]
pub async fn app_state(b: B<'_>) -> R<AppState> {
    Ok(b.app_state().await)
}

/// The error panel's Retry: tries to start syncing again.
#[tauri::command]
pub async fn retry(b: B<'_>) -> R<AppState> {
    Ok(b.retry().await)
}

#[tauri::command]
pub fn wizard_view(b: B<'_>) -> WizardView {
    b.wizard_view()
}

#[tauri::command]
pub async fn wizard_submit(b: B<'_>, input: Input) -> R<WizardView> {
    b.wizard_submit(input).await
}

#[derive(serde::Serialize)]
pub struct StoreTest {
    asset_count: u64,
}

#[tauri::command]
pub async fn test_store(b: B<'_>, url: String, api_key: String) -> R<StoreTest> {
    let asset_count = b.test_store(&url, &api_key).await?;
    Ok(StoreTest { asset_count })
}

#[tauri::command]
pub fn generate_passphrase(b: B<'_>) -> Generated {
    b.generate_passphrase()
}

#[tauri::command]
pub fn check_passphrase(b: B<'_>, passphrase: String) -> Check {
    b.check_passphrase(&passphrase)
}

#[tauri::command]
pub async fn status(b: B<'_>) -> R<Status> {
    b.status().await
}

#[tauri::command]
pub async fn pause(b: B<'_>) -> R<()> {
    b.set_paused(true).await
}

#[tauri::command]
pub async fn resume(b: B<'_>) -> R<()> {
    b.set_paused(false).await
}

#[tauri::command]
pub async fn pairing(b: B<'_>) -> R<Pairing> {
    b.pairing().await
}

/// Asks the user in a native dialog the backend shows, modal to the main window: the page
/// can neither see nor click it. Closed or failed → no.
async fn confirm_natively(app: AppHandle, title: &str, message: String, ok: &str) -> bool {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut dialog = app
        .dialog()
        .message(message)
        .title(title)
        .kind(MessageDialogKind::Warning)
        .buttons(MessageDialogButtons::OkCancelCustom(
            ok.to_owned(),
            "Cancel".to_owned(),
        ));
    if let Some(w) = app.get_webview_window(crate::window::MAIN) {
        dialog = dialog.parent(&w);
    }
    dialog.show(move |yes| {
        let _ = tx.send(yes);
    });
    rx.await.unwrap_or(false)
}

/// The passphrase after the user confirmed in a native dialog; `null` if they cancelled.
#[tauri::command]
pub async fn reveal_passphrase(app: AppHandle, b: B<'_>) -> R<Option<String>> {
    let confirm = confirm_natively(
        app,
        "Show the passphrase?",
        "Anyone who sees the passphrase can join their computers to your store. \
         Make sure nobody is looking at your screen."
            .to_owned(),
        "Show passphrase",
    );
    b.reveal_passphrase(confirm).await
}

#[tauri::command]
pub async fn connect_ticket(b: B<'_>, ticket: String) -> R<()> {
    b.connect_ticket(&ticket).await
}

#[tauri::command]
pub fn history(b: B<'_>, query: Query) -> R<Page> {
    b.history(&query)
}

#[tauri::command]
pub async fn settings(b: B<'_>) -> R<SettingsView> {
    Ok(b.settings_view().await)
}

#[tauri::command]
pub async fn update_settings(app: AppHandle, b: B<'_>, patch: SettingsPatch) -> R<SettingsView> {
    if let Some(on) = patch.launch_at_login {
        crate::autostart::set(&app, on)?;
    }
    b.update_settings(&patch).await
}

/// Switching to an external store is confirmed in a native dialog naming it (it would
/// receive every asset); `null` if the user cancelled.
#[tauri::command]
pub async fn set_store(app: AppHandle, b: B<'_>, store: StoreChoice) -> R<Option<SettingsView>> {
    let url = match &store {
        StoreChoice::External { url, .. } => url.trim().to_owned(),
        StoreChoice::Builtin => String::new(),
    };
    // Lazy: only awaited (and so shown) for an external store that answered the test.
    let confirm = confirm_natively(
        app,
        "Sync with this CAN Service?",
        format!(
            "CAN Sync will mirror every asset of your computers to and from the CAN Service at \
             {url}. Use it only if you trust whoever runs it."
        ),
        "Use this store",
    );
    b.set_store(store, confirm).await
}

#[tauri::command]
pub async fn change_passphrase(b: B<'_>, passphrase: String) -> R<()> {
    b.change_passphrase(&passphrase).await
}

#[tauri::command]
pub async fn reset_device(app: AppHandle, b: B<'_>) -> R<()> {
    b.reset_device().await?;
    // Launch at login belongs to the setup that was just forgotten.
    let _ = crate::autostart::set(&app, false);
    app.state::<UiViews>().clear();
    Ok(())
}

/// The page and History filter the last main window showed (it was destroyed when closed).
#[tauri::command]
pub fn ui_view(views: State<'_, UiViews>) -> Option<UiView> {
    views.get()
}

/// The throughput chart's samples from before this window (docs/app-ipc.md).
#[tauri::command]
pub fn throughput(b: State<'_, Arc<Backend>>) -> Vec<RateSample> {
    b.throughput()
}

#[tauri::command]
pub fn set_ui_view(views: State<'_, UiViews>, view: UiView) -> R<()> {
    views.set(view)
}

/// Paths from the webview's drop event; the backend accepts only those it saw dropped
/// itself (see `crate::record_drop`).
#[tauri::command]
pub async fn add_files(b: B<'_>, paths: Vec<PathBuf>) -> R<usize> {
    b.add_files(&paths).await
}

#[tauri::command]
pub async fn pick_files(app: AppHandle, b: B<'_>) -> R<usize> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.dialog()
        .file()
        .set_title("Add files to CAN Sync")
        .pick_files(move |files| {
            let _ = tx.send(files);
        });
    let Some(files) = rx.await.ok().flatten() else {
        return Ok(0);
    };
    let paths: Vec<PathBuf> = files
        .into_iter()
        .filter_map(|f| f.into_path().ok())
        .collect();
    // Chosen in our own dialog: handed over by the user.
    b.allow_paths(&paths);
    b.add_files(&paths).await
}

/// Opens an asset with the OS default app if its content is on the allow-list
/// (`backend::filetype`), otherwise shows it in its folder; says which and why.
#[tauri::command]
pub async fn open_asset(app: AppHandle, b: B<'_>, hash: String) -> R<Opening> {
    check_hash(&hash)?;
    let o = b.prepare_open(&hash).await?;
    let opener = app.opener();
    let done = match o.action {
        OpenAction::Open => opener.open_path(o.path.to_string_lossy(), None::<&str>),
        OpenAction::Reveal => opener.reveal_item_in_dir(&o.path),
    };
    done.map_err(|e| AppError::io("cannot open the asset", e))?;
    Ok(o)
}

#[tauri::command]
pub async fn save_asset(app: AppHandle, b: B<'_>, hash: String) -> R<bool> {
    check_hash(&hash)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.dialog()
        .file()
        .set_title("Save asset")
        .set_file_name(b.asset_file_name(&hash)?)
        .save_file(move |file| {
            let _ = tx.send(file);
        });
    let Some(dest) = rx.await.ok().flatten().and_then(|f| f.into_path().ok()) else {
        return Ok(false);
    };
    b.save_asset(&hash, &dest).await?;
    Ok(true)
}

/// Deletes an asset everywhere (this store's trash now, every other device's as the
/// deletion reaches it). The page confirmed it with the user.
#[tauri::command]
pub async fn delete_asset(b: B<'_>, hash: String) -> R<()> {
    b.delete_asset(&hash).await
}

/// This device's trash: the newest deletions and its totals.
#[tauri::command]
pub async fn trash(b: B<'_>) -> R<TrashView> {
    b.trash().await
}

/// Brings a trashed asset back, here and on every device.
#[tauri::command]
pub async fn restore_asset(b: B<'_>, hash: String) -> R<()> {
    b.restore_asset(&hash).await
}

/// Empties this device's trash for good; how many assets went.
#[tauri::command]
pub async fn empty_trash(b: B<'_>) -> R<u64> {
    b.empty_trash().await
}

/// The banner's Apply (`apply: true`) or Keep mine (`false`) for deletions the
/// mass-deletion guard holds; how many were held.
#[tauri::command]
pub async fn release_deletions(b: B<'_>, apply: bool) -> R<usize> {
    b.release_deletions(apply).await
}

/// Whether this build updates itself, and the update the last check found. No network.
#[tauri::command]
pub fn update_state(u: U<'_>) -> UpdateState {
    u.state()
}

/// Checks the feed now (Settings' "Check for updates").
#[tauri::command]
pub async fn check_update(u: U<'_>) -> R<UpdateState> {
    u.check().await?;
    Ok(u.state())
}

/// Downloads, verifies and installs the update found, then restarts into it. A signature
/// that does not verify is refused before anything is written.
#[tauri::command]
pub async fn install_update(app: AppHandle, u: U<'_>, b: B<'_>) -> R<()> {
    let backend = b.inner().clone();
    let stopped = Arc::new(AtomicBool::new(false));
    let stop = {
        let stopped = stopped.clone();
        async move {
            // Windows: the installer replaces the app and this process exits inside the
            // install, past RunEvent::Exit: stop syncing cleanly first. Elsewhere the app
            // restarts afterwards and RunEvent::Exit stops it.
            if cfg!(windows) {
                backend.shutdown().await;
                stopped.store(true, Ordering::SeqCst);
            }
        }
    };
    if let Err(e) = u.install(stop).await {
        if stopped.load(Ordering::SeqCst) {
            b.retry().await;
        }
        return Err(e);
    }
    app.request_restart();
    Ok(())
}

#[cfg(test)]
mod tests;
