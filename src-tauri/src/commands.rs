//! The UI's commands: thin wrappers over [`Backend`]; docs/app-ipc.md is the contract.

use std::path::PathBuf;
use std::sync::Arc;

use can_sync::Status;
use tauri::{AppHandle, State};
use tauri_plugin_dialog::DialogExt;
use tauri_plugin_opener::OpenerExt;

use crate::backend::history::{Page, Query};
use crate::backend::passphrase::{Check, Generated};
use crate::backend::settings::SettingsPatch;
use crate::backend::wizard::{Input, StoreChoice};
use crate::backend::{AppError, AppState, Backend, Pairing, SettingsView, WizardView};

type B<'a> = State<'a, Arc<Backend>>;
type R<T> = Result<T, AppError>;

#[tauri::command]
pub async fn app_state(b: B<'_>) -> R<AppState> {
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

#[tauri::command]
pub async fn reveal_passphrase(b: B<'_>) -> R<String> {
    b.reveal_passphrase().await
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

#[tauri::command]
pub async fn set_store(b: B<'_>, store: StoreChoice) -> R<SettingsView> {
    b.set_store(store).await
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
    Ok(())
}

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
    b.add_files(&paths).await
}

#[tauri::command]
pub async fn open_asset(app: AppHandle, b: B<'_>, hash: String) -> R<()> {
    let path = b.asset_for_opening(&hash).await?;
    app.opener()
        .open_path(path.to_string_lossy(), None::<&str>)
        .map_err(|e| AppError::io("cannot open the asset", e))
}

#[tauri::command]
pub async fn save_asset(app: AppHandle, b: B<'_>, hash: String) -> R<bool> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.dialog()
        .file()
        .set_title("Save asset")
        .set_file_name(b.asset_file_name(&hash))
        .save_file(move |file| {
            let _ = tx.send(file);
        });
    let Some(dest) = rx.await.ok().flatten().and_then(|f| f.into_path().ok()) else {
        return Ok(false);
    };
    b.save_asset(&hash, &dest).await?;
    Ok(true)
}
