//! Launch at login (tauri-plugin-autostart: a desktop entry in ~/.config/autostart on
//! Linux, a LaunchAgent on macOS, the Run registry key on Windows). The app starts hidden
//! in the tray when launched that way (`--hidden`).

use tauri::AppHandle;
use tauri_plugin_autostart::ManagerExt;

use crate::backend::AppError;

pub const HIDDEN_ARG: &str = "--hidden";

pub fn set(app: &AppHandle, on: bool) -> Result<(), AppError> {
    let manager = app.autolaunch();
    if manager.is_enabled().unwrap_or(false) == on {
        return Ok(());
    }
    let result = if on {
        manager.enable()
    } else {
        manager.disable()
    };
    result.map_err(|e| AppError::io("cannot change launch at login", e))
}
