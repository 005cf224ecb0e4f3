//! Shows desktop notifications (freedesktop Notifications on Linux, the Action Center on
//! Windows, Notification Center on macOS) through notify-rust.

use super::coalesce::Note;
use super::error::AppError;

pub const APP_NAME: &str = "CAN Sync";
/// The app's identifier: on Windows, the AppUserModelID the installer registers, without
/// which toasts are not shown.
pub const APP_ID: &str = "net.cansync.app";

/// Blocking (D-Bus / OS call): run it off the async runtime.
pub fn show(note: &Note) -> Result<(), AppError> {
    let mut n = notify_rust::Notification::new();
    n.appname(APP_NAME).summary(&note.summary).body(&note.body);
    #[cfg(target_os = "windows")]
    n.app_id(APP_ID);
    #[cfg(all(unix, not(target_os = "macos")))]
    n.icon("can-sync-app");
    n.show()
        .map(|_| ())
        .map_err(|e| AppError::io("cannot show a notification", e))
}
