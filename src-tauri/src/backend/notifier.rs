//! Shows desktop notifications (freedesktop Notifications on Linux, the Action Center on
//! Windows, Notification Center on macOS) through notify-rust.

use super::coalesce::Note;
use super::error::AppError;

pub const APP_NAME: &str = "CAN Sync";

/// Blocking (D-Bus / OS call): run it off the async runtime.
pub fn show(note: &Note) -> Result<(), AppError> {
    let mut n = notify_rust::Notification::new();
    n.appname(APP_NAME).summary(&note.summary).body(&note.body);
    #[cfg(target_os = "windows")]
    // The AppUserModelID the installer registers; without it Windows shows no toast.
    n.app_id(super::APP_ID);
    #[cfg(all(unix, not(target_os = "macos")))]
    n.icon("can-sync-app");
    n.show()
        .map(|_| ())
        .map_err(|e| AppError::io("cannot show a notification", e))
}
