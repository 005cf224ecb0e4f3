//! The main window: created on demand (tray, second launch, start-up unless started
//! hidden) and destroyed when the user closes it, webview and all, so that a tray app that
//! runs all day does not keep WebKit's processes (hundreds of MiB) alive behind a hidden
//! window. The backend keeps every state the UI shows; the UI reads it again when the
//! window is recreated (docs/app-ipc.md, `ui_view`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tauri::{AppHandle, Manager, WebviewWindowBuilder};

use crate::backend::Backend;

pub const MAIN: &str = "main";

/// WebKitGTK's UI-process memory-pressure monitor: a thread that, once the first window has
/// been made, reads /proc/meminfo every 5 s for as long as the app runs, window or not —
/// a third of the app's idle CPU in the tray (bench/README, app-idle). Its only use is to
/// tell web processes to drop caches under system memory pressure; our single small page
/// is destroyed with its window anyway. A value the user set is left alone.
const WEBKIT_PRESSURE_MONITOR: &str = "WEBKIT_DISABLE_MEMORY_PRESSURE_MONITOR";

/// Environment WebKit reads when it starts. Must run before any other thread exists (the
/// first thing `run` does): the environment is process-wide and not thread-safe to change.
pub fn prepare_webkit_env() {
    if cfg!(target_os = "linux") && std::env::var_os(WEBKIT_PRESSURE_MONITOR).is_none() {
        // SAFETY: called at the start of `run`, before the app starts any thread.
        unsafe { std::env::set_var(WEBKIT_PRESSURE_MONITOR, "1") };
    }
}

/// Bumped whenever the main window is created or destroyed, so that clean-up scheduled
/// after one close does not run once the window came back (or closed again later), nor
/// while a new one is being built (the build runs on the main thread after the bump).
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Shows the main window, creating it from its entry in tauri.conf.json if it does not
/// exist (it has `"create": false`, so Tauri never makes it by itself).
///
/// Callable from anywhere: the work happens on an async task, because building a webview
/// from a synchronous handler (the tray's menu and click, single-instance, setup)
/// deadlocks on Windows (wry#583, Tauri's window docs).
pub fn show_main(app: &AppHandle) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move { show_main_now(&app) });
}

fn show_main_now(app: &AppHandle) {
    #[cfg(target_os = "macos")]
    let _ = app.set_activation_policy(tauri::ActivationPolicy::Regular);
    if let Some(w) = app.get_webview_window(MAIN) {
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
        return;
    }
    let Some(config) = app.config().app.windows.iter().find(|w| w.label == MAIN) else {
        tracing::error!("tauri.conf.json has no window labelled {MAIN:?}");
        return;
    };
    GENERATION.fetch_add(1, Ordering::SeqCst);
    let built = WebviewWindowBuilder::from_config(app, config).and_then(|b| b.build());
    match built {
        Ok(w) => {
            tell_backend(app, true);
            // The config keeps it invisible until built (no flash of an unplaced window).
            let _ = w.show();
            let _ = w.set_focus();
        }
        Err(e) => tracing::error!(error = %e, "cannot create the main window"),
    }
}

/// Whether the main window exists, for the backend: it reads the engine's status
/// periodically only for a window (backend/runner.rs).
fn tell_backend(app: &AppHandle, open: bool) {
    if let Some(b) = app.try_state::<Arc<Backend>>() {
        b.set_window_open(open);
    }
}

/// The main window was closed and destroyed: the app lives on in the tray.
#[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
pub fn closed(app: &AppHandle) {
    let generation = GENERATION.fetch_add(1, Ordering::SeqCst) + 1;
    tell_backend(app, false);
    // macOS: with no window the app lives in the menu bar only (no Dock icon).
    #[cfg(target_os = "macos")]
    let _ = app.set_activation_policy(tauri::ActivationPolicy::Accessory);
    #[cfg(target_os = "linux")]
    when_still_closed(app, generation, webkit::NETWORK_PROCESS_GRACE, || {
        webkit::after_last_webview();
        release_memory();
    });
}

/// Started hidden (at login): once start-up is over, the tray app gives back what it
/// mapped only to start (GTK loads Mesa's GL driver at start, window or not), unless a
/// window was opened meanwhile.
#[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
pub fn started_hidden(app: &AppHandle) {
    #[cfg(target_os = "linux")]
    {
        const SETTLE: std::time::Duration = std::time::Duration::from_secs(20);
        let generation = GENERATION.load(Ordering::SeqCst);
        when_still_closed(app, generation, SETTLE, release_memory);
    }
}

/// Runs `f` on the main thread after `delay` if no window was created or destroyed since
/// `generation` and none exists. On the main thread, where windows are created: no window
/// can appear between the check and `f`.
#[cfg(target_os = "linux")]
fn when_still_closed(
    app: &AppHandle,
    generation: u64,
    delay: std::time::Duration,
    f: impl FnOnce() + Send + 'static,
) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        tokio::time::sleep(delay).await;
        let handle = app.clone();
        let _ = app.run_on_main_thread(move || {
            if GENERATION.load(Ordering::SeqCst) == generation
                && handle.get_webview_window(MAIN).is_none()
            {
                f();
            }
        });
    });
}

/// No window, and WebKit's processes gone: hand back the webview's heap and the pages of
/// libraries only the window used (src/trim.rs). They come back if a window opens again.
#[cfg(target_os = "linux")]
fn release_memory() {
    let t = crate::trim::release_unused();
    tracing::info!(
        objects = t.objects,
        released_mib = t.bytes / (1024 * 1024),
        rss_before_mib = t.rss_before_kib / 1024,
        rss_after_mib = t.rss_after_kib / 1024,
        "no window: memory given back"
    );
}

/// WebKitGTK's processes once no webview is left.
///
/// The web process of a destroyed webview exits with it. The network process does not:
/// WebKit keeps it for as long as its web context lives, and Tauri keeps the web context
/// for the app's whole life on Linux (tauri-apps/tauri#14626, fixed by #14628 that way so
/// that each new window does not start yet another network process). WebKitGTK has no
/// public call to end it, so we end it ourselves: it is our child, it serves no page now,
/// and WebKit starts a new one for the next webview (checked on WebKitGTK 2.50). The grace
/// period lets a quick reopen reuse it and lets it finish writing localStorage.
///
/// Not under WebDriver (`TAURI_WEBVIEW_AUTOMATION=true`, set by tauri-driver, the same
/// test tauri-runtime-wry makes): WebKitWebDriver takes the network process ending for a
/// crash and deletes its session ("session deleted because of page crash or hang").
#[cfg(target_os = "linux")]
mod webkit {
    use std::time::Duration;

    pub const NETWORK_PROCESS_GRACE: Duration = Duration::from_secs(15);

    /// /proc/<pid>/comm is cut at 15 bytes.
    const NETWORK_PROCESS_COMM: &str = "WebKitNetworkPr";

    pub fn after_last_webview() {
        let automation = std::env::var("TAURI_WEBVIEW_AUTOMATION").as_deref() == Ok("true");
        let me = std::process::id();
        for pid in children(me) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim_end() != NETWORK_PROCESS_COMM {
                continue;
            }
            if automation {
                tracing::info!(
                    pid,
                    "no webview left; WebKit's network process kept for WebDriver"
                );
                continue;
            }
            let Ok(raw) = i32::try_from(pid) else {
                continue;
            };
            // SAFETY: kill(2) on a pid that /proc just listed as our own child; WebKit reaps
            // it (its child watch), so the pid cannot have been reused yet.
            let rc = unsafe { libc::kill(raw, libc::SIGTERM) };
            if rc == 0 {
                tracing::info!(pid, "no webview left: ended WebKit's network process");
            }
        }
    }

    fn children(parent: u32) -> Vec<u32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| ppid(pid) == Some(parent))
            .collect()
    }

    fn ppid(pid: u32) -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}
