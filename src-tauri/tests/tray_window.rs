//! The real app closed to the tray, without WebDriver: WebKitWebDriver takes WebKit's
//! network process ending for a crash and drops its session, so the end-to-end test
//! (e2e.rs) can only watch the web process go. Here nothing drives the page: the built
//! binary under Xvfb with a private session bus and a StatusNotifierWatcher stand-in, its
//! window closed as a window manager's close button does; every WebKit process must end,
//! the app must stay in the tray and give back the pages of libraries the window used, and
//! Open CAN Sync must bring back a window that draws.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use can_testkit::desktop::{Keyring, SessionBus, Xvfb};
use can_testkit::eventually;
use can_testkit::window::{close_windows_of, painted_windows_of, webkit_processes};
use common::free_port;
use common::sni::SniWatcher;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// RssFile from /proc/<pid>/status: pages of mapped files (libraries, the binary), in KiB.
fn rss_file_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("RssFile:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn has(pid: u32, prefix: &str) -> bool {
    webkit_processes(pid)
        .iter()
        .any(|(_, name)| name.starts_with(prefix))
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_to_the_tray_no_webkit_process_is_left_and_open_brings_the_window_back() {
    let bus = SessionBus::start();
    let _keyring = Keyring::start(&bus);
    let tray = SniWatcher::start(&bus.address).await;
    let x = Xvfb::start();
    let env = bus.env();
    let config_home = env
        .iter()
        .find(|(k, _)| k == "XDG_CONFIG_HOME")
        .map(|(_, v)| PathBuf::from(v))
        .unwrap();
    // Not set up yet: the app opens its window (the wizard) at start.
    common::loopback_settings(&format!("127.0.0.1:{}", free_port()))
        .save(&config_home.join(can_sync_app::APP_ID))
        .unwrap();

    let mut app = Killed(
        Command::new(env!("CARGO_BIN_EXE_can-sync-app"))
            .envs(env.iter().cloned())
            .env("DISPLAY", &x.display)
            .env("RUST_LOG", "info,iroh=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the app"),
    );
    let pid = app.0.id();
    let (item_bus, item_path) = tray.item(60).await;
    assert!(
        eventually(60, || has(pid, "WebKitWebProc")
            && has(pid, "WebKitNetwork"))
        .await,
        "the window's WebKit processes never started: {:?}",
        webkit_processes(pid)
    );
    assert!(
        eventually(60, || painted_windows_of(&x.display, pid) == 1).await,
        "the window never showed its page"
    );

    // ---- closed: the web process goes with the webview, the network process after the
    // app's grace period (15 s, src-tauri/src/window.rs); the app lives on in the tray.
    let files_open = rss_file_kib(pid);
    assert_eq!(close_windows_of(&x.display, pid), 1);
    assert!(
        eventually(60, || webkit_processes(pid).is_empty()).await,
        "WebKit processes left a minute after the window closed: {:?}",
        webkit_processes(pid)
    );
    // Then the app drops the pages of libraries it mapped for the window from its resident
    // set (src-tauri/src/trim.rs): what it still runs comes back, the rest stays out.
    assert!(
        eventually(20, || rss_file_kib(pid) < files_open / 2).await,
        "file-backed RSS {} KiB with the window closed, {files_open} KiB with it open",
        rss_file_kib(pid)
    );
    eprintln!(
        "file-backed RSS: {files_open} KiB with the window open, {} KiB closed",
        rss_file_kib(pid)
    );
    assert!(
        matches!(app.0.try_wait(), Ok(None)),
        "the app must keep running in the tray"
    );
    let menu = tray.menu(&item_bus, &item_path).await;
    assert!(
        menu.iter()
            .any(|e| e.label.replace('_', "") == "Open CAN Sync"),
        "{menu:?}"
    );

    // ---- Open CAN Sync: a new webview (WebKit starts a new network process for it) that
    // draws its page.
    tray.click(&item_bus, &item_path, "Open CAN Sync").await;
    assert!(
        eventually(60, || has(pid, "WebKitWebProc")
            && has(pid, "WebKitNetwork"))
        .await,
        "no WebKit processes for the reopened window: {:?}",
        webkit_processes(pid)
    );
    assert!(
        eventually(60, || painted_windows_of(&x.display, pid) == 1).await,
        "the reopened window never showed its page"
    );

    // ---- Quit still quits.
    tray.click(&item_bus, &item_path, "Quit").await;
    assert!(
        eventually(30, || matches!(app.0.try_wait(), Ok(Some(_)))).await,
        "Quit did not end the app"
    );
}
