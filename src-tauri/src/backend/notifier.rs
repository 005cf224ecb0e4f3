//! Shows desktop notifications (freedesktop Notifications on Linux, the Action Center on
//! Windows, Notification Center on macOS) through notify-rust.
//!
//! Notes carry peer-chosen device and asset names, so what reaches the notification server
//! is cleaned here, at the edge: format characters (U+202E and friends) and line breaks go
//! everywhere; on freedesktop the body is markup (`<b>`, `<a href>`, `<img src>`, entities),
//! so it is escaped when the server says it parses markup (capability `body-markup`, which
//! GNOME, KDE, dunst, mako and xfce4-notifyd all have). The summary is plain text by the
//! specification, and those servers show it literally: it is cleaned, not escaped, or a
//! device called "Tom & Jerry" would read "Tom &amp; Jerry".

use super::coalesce::Note;
use super::error::AppError;
use super::untrusted::{markup_escape, one_line};

pub const APP_NAME: &str = "CAN Sync";

/// The summary and body as sent to a server that parses body markup or not.
pub fn render(note: &Note, body_markup: bool) -> (String, String) {
    let summary = one_line(&note.summary);
    let body = one_line(&note.body);
    let body = if body_markup {
        markup_escape(&body)
    } else {
        body
    };
    (summary, body)
}

/// Does the freedesktop notification server parse markup in the body? Unknown → yes, so
/// a failed query errs towards escaping (at worst an `&amp;` shows).
#[cfg(all(unix, not(target_os = "macos")))]
fn body_markup() -> bool {
    notify_rust::get_capabilities()
        .map(|caps| caps.iter().any(|c| c == "body-markup"))
        .unwrap_or(true)
}

/// Windows toasts and macOS notifications show text as it is.
#[cfg(not(all(unix, not(target_os = "macos"))))]
fn body_markup() -> bool {
    false
}

/// Blocking (D-Bus / OS call): run it off the async runtime.
pub fn show(note: &Note) -> Result<(), AppError> {
    let (summary, body) = render(note, body_markup());
    let mut n = notify_rust::Notification::new();
    n.appname(APP_NAME).summary(&summary).body(&body);
    #[cfg(target_os = "windows")]
    // The AppUserModelID the installer registers; without it Windows shows no toast.
    n.app_id(super::APP_ID);
    #[cfg(all(unix, not(target_os = "macos")))]
    n.icon("can-sync-app");
    n.show()
        .map(|_| ())
        .map_err(|e| AppError::io("cannot show a notification", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(summary: &str, body: &str) -> Note {
        Note {
            summary: summary.into(),
            body: body.into(),
        }
    }

    #[test]
    fn peer_names_cannot_mark_up_or_reorder_a_notification() {
        let n = note(
            "New asset from <b>Eve</b>\u{202E}",
            "<a href=\"file:///etc\">x</a> & <img src=\"/tmp/p.png\"/>\u{202E}gpj.exe\nline2",
        );
        let (summary, body) = render(&n, true);
        assert_eq!(summary, "New asset from <b>Eve</b>");
        assert_eq!(
            body,
            "&lt;a href=&quot;file:///etc&quot;&gt;x&lt;/a&gt; &amp; \
             &lt;img src=&quot;/tmp/p.png&quot;/&gt;gpj.exe line2"
        );
        // A server without body markup shows text literally: cleaned, not escaped.
        let (_, body) = render(&n, false);
        assert_eq!(
            body,
            "<a href=\"file:///etc\">x</a> & <img src=\"/tmp/p.png\"/>gpj.exe line2"
        );
    }

    #[test]
    fn ordinary_names_are_unchanged() {
        let n = note("3 new assets from Laptop", "a.jpg, b.jpg and 1 more");
        assert_eq!(
            render(&n, true),
            (
                "3 new assets from Laptop".into(),
                "a.jpg, b.jpg and 1 more".into()
            )
        );
    }
}
