//! The real app, end to end: the built binary under Xvfb with a private session bus (GNOME
//! Keyring, a notification server, a StatusNotifierWatcher stand-in for the tray), driven
//! through tauri-driver + WebKitWebDriver, syncing with a peer made of a real `can-service`
//! and `can-sync` agent, and offered an update by a local feed whose bundle is signed with
//! the wrong key. An asset is deleted everywhere, found in the trash and restored. Screenshots
//! of each page are written to `$CAN_SYNC_SCREENSHOTS` (default: `<target>/tmp/screenshots`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use can_sync_app::backend::settings::Settings;
use can_testkit::desktop::{Keyring, SessionBus, Xvfb};
use can_testkit::window::{close_windows_of, webkit_processes};
use can_testkit::{
    Agent, KEY, Service, b3, client, eventually, eventually_async, has_asset, meta_status, upload,
};
use common::feed::{FeedServer, Signer, fake_appimage, latest_json};
use common::sni::SniWatcher;
use common::webdriver::Session;
use common::{NotificationServer, free_port};

const PASS: &str = "velvet atlas copper lagoon thistle orbit quarry";

fn tauri_driver() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    let cargo_bin = Path::new(&home).join(".cargo/bin/tauri-driver");
    if cargo_bin.exists() {
        return cargo_bin;
    }
    let found = Command::new("sh")
        .args(["-c", "command -v tauri-driver"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    assert!(
        !found.is_empty(),
        "tauri-driver is not installed: `cargo install tauri-driver --locked` (scripts/setup does it)"
    );
    PathBuf::from(found)
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn shots_dir() -> PathBuf {
    std::env::var_os("CAN_SYNC_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_app_end_to_end() {
    let bus = SessionBus::start();
    let _keyring = Keyring::start(&bus);
    let notes = NotificationServer::start(&bus.address).await;
    let tray = SniWatcher::start(&bus.address).await;
    let x = Xvfb::start();
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let shots = shots_dir();

    // The other machine.
    let peer_svc = Service::with_key(&dir.path().join("peer-svc"));
    let peer = Agent::start(
        &dir.path().join("peer-agent"),
        &peer_svc.url(""),
        KEY,
        PASS,
        "device_name: Beta\n",
    );
    assert!(eventually(60, || peer.ticket_path().exists()).await);
    let peer_ticket = std::fs::read_to_string(peer.ticket_path()).unwrap();

    // The app's environment: private home, loopback-only advanced settings.
    let env = bus.env();
    let home_config = env
        .iter()
        .find(|(k, _)| k == "XDG_CONFIG_HOME")
        .map(|(_, v)| PathBuf::from(v))
        .unwrap();
    let store_port = free_port();
    let store_url = format!("http://127.0.0.1:{store_port}");
    let config_dir = home_config.join("net.cansync.desktop");
    common::loopback_settings(&format!("127.0.0.1:{store_port}"))
        .save(&config_dir)
        .unwrap();

    // The update feed: 9.9.9, its bundle signed with a key that is not the app's.
    let ours = Signer::generate(dir.path(), "ours");
    let theirs = Signer::generate(dir.path(), "theirs");
    let bundle = dir.path().join("CAN-Sync_9.9.9_amd64.AppImage");
    std::fs::write(&bundle, fake_appimage("CAN Sync 9.9.9")).unwrap();
    let feed = FeedServer::start().await;
    let bundle_url = format!("{}/CAN-Sync_9.9.9_amd64.AppImage", feed.url);
    feed.put(
        "/CAN-Sync_9.9.9_amd64.AppImage",
        std::fs::read(&bundle).unwrap(),
    );
    let release_notes = "Faster sync.\nFixes the tray on KDE.";
    let sig = theirs.sign(&bundle, "9.9.9");
    feed.put(
        "/latest.json",
        latest_json("9.9.9", release_notes, &bundle_url, &sig),
    );
    // What an install would replace (never the test's own binary).
    let installed = dir.path().join("CAN-Sync.AppImage");
    let installed_before = fake_appimage("CAN Sync 0.1.0");
    std::fs::write(&installed, &installed_before).unwrap();

    let port = free_port();
    let _driver = Killed(
        Command::new(tauri_driver())
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &free_port().to_string(),
            ])
            .envs(env.iter().cloned())
            .env("DISPLAY", &x.display)
            .env("RUST_LOG", "info,iroh=warn")
            // Read by debug builds only (src-tauri/src/updates.rs).
            .env(
                "CAN_SYNC_UPDATER_ENDPOINT",
                format!("{}/latest.json", feed.url),
            )
            .env("CAN_SYNC_UPDATER_PUBKEY", &ours.pubkey)
            .env("CAN_SYNC_UPDATER_INSTALL_PATH", &installed)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tauri-driver"),
    );
    let s = Session::start(port, env!("CARGO_BIN_EXE_can-sync-app")).await;

    // ---- wizard: built-in store, a refused weak passphrase, then a good one
    s.find("[data-testid=wizard-step-store]", 60).await;
    s.wait_text("[data-testid=wizard-step-store] h2", 20, |t| !t.is_empty())
        .await;
    // Records each wizard screen as it appears, to check that setup takes exactly three.
    s.execute(
        "const seen = (window.__wizardScreens = []);
         const note = (el) => {
           const id = el.getAttribute('data-testid');
           if (seen[seen.length - 1] !== id) seen.push(id);
         };
         const scan = (node) => {
           if (node.nodeType !== 1) return;
           if (node.matches('[data-testid^=wizard-step-]')) note(node);
           node.querySelectorAll('[data-testid^=wizard-step-]').forEach(note);
         };
         scan(document.body);
         new MutationObserver((ms) => ms.forEach((m) => m.addedNodes.forEach(scan)))
           .observe(document.body, { childList: true, subtree: true });
         return null;",
    )
    .await;
    // The window was just mapped: let WebKit paint it before the screenshot (cosmetic).
    tokio::time::sleep(Duration::from_millis(800)).await;
    s.screenshot(&shots.join("1-wizard-store.png")).await;
    s.click("[data-testid=store-builtin]").await;
    s.click("[data-testid=wizard-next]").await;
    s.find("[data-testid=wizard-step-passphrase]", 20).await;
    s.click("[data-testid=passphrase-mode-join]").await;
    s.type_into("[data-testid=join-passphrase]", "password")
        .await;
    s.wait_text("[data-testid=strength-message]", 10, |t| {
        t.contains("too easy")
    })
    .await;
    assert_eq!(
        s.execute("return document.querySelector('[data-testid=wizard-next]').disabled")
            .await,
        serde_json::Value::Bool(true),
        "Next must be disabled for a refused passphrase"
    );
    s.type_into("[data-testid=join-passphrase]", PASS).await;
    s.wait_text("[data-testid=strength-message]", 10, |t| {
        t.contains("strong")
    })
    .await;
    s.screenshot(&shots.join("2-wizard-passphrase.png")).await;
    s.click("[data-testid=wizard-next]").await;
    s.find("[data-testid=wizard-step-device]", 20).await;
    s.type_into("[data-testid=device-name]", "Alpha").await;
    s.click("[data-testid=wizard-finish]").await;
    // Finish is the last click of setup: the main window follows, no fourth screen.
    s.find("[data-testid=shell]", 60).await;
    assert_eq!(
        s.execute("return window.__wizardScreens").await,
        serde_json::json!([
            "wizard-step-store",
            "wizard-step-passphrase",
            "wizard-step-device"
        ]),
        "setup must take exactly three screens"
    );

    // ---- the update the feed offers (checked at start): version and notes; Install refuses
    // the wrong key's signature and writes nothing; Later hides the banner
    let banner = "[data-testid=update-banner]";
    s.wait_text(&format!("{banner} [data-testid=update-version]"), 60, |t| {
        t == "Version 9.9.9 is available"
    })
    .await;
    assert_eq!(
        s.text(&format!("{banner} [data-testid=update-notes]"))
            .await,
        release_notes
    );
    s.screenshot(&shots.join("update-available.png")).await;
    s.click(&format!("{banner} [data-testid=update-install]"))
        .await;
    s.wait_text(&format!("{banner} [data-testid=update-error]"), 60, |t| {
        t.contains("signature does not match")
    })
    .await;
    assert_eq!(std::fs::read(&installed).unwrap(), installed_before);
    assert!(
        feed.hits().iter().any(|p| p.ends_with(".AppImage")),
        "the bundle was never downloaded"
    );
    s.click(&format!("{banner} [data-testid=update-later]"))
        .await;
    let left = "return document.querySelectorAll('[data-testid=update-banner]').length";
    assert!(
        poll_number(&s, left, 10, |n| n == 0.0).await.is_some(),
        "Later leaves the banner"
    );

    // The one-time "add another computer" banner; dismissed so the screenshots show the pages
    // (after the update banner above it is gone, so nothing moves under the click).
    s.find("[data-testid=setup-banner]", 10).await;
    s.click("[data-testid=setup-banner-dismiss]").await;
    let left = "return document.querySelectorAll('[data-testid=setup-banner]').length";
    assert!(
        poll_number(&s, left, 10, |n| n == 0.0).await.is_some(),
        "the setup banner stays"
    );

    // ---- pairing: link to the peer by its ticket (advanced direct connect)
    s.click("[data-testid=nav-pairing]").await;
    s.wait_text("[data-testid=pairing-device-name]", 20, |t| {
        t.contains("Alpha")
    })
    .await;
    s.click("[data-testid=direct-connect] summary").await;
    s.type_into("[data-testid=peer-ticket]", peer_ticket.trim())
        .await;
    s.click("[data-testid=connect-ticket]").await;
    s.wait_text("[data-testid=connect-result]", 20, |t| !t.is_empty())
        .await;
    s.screenshot(&shots.join("3-pairing.png")).await;

    // ---- peers: Beta appears, live
    s.click("[data-testid=nav-peers]").await;
    s.wait_text("[data-testid=peer-name]", 60, |t| t.contains("Beta"))
        .await;
    s.screenshot(&shots.join("4-peers.png")).await;

    // ---- an asset uploaded on the peer: history row + notification
    let (status, _) = upload(
        &c,
        &peer_svc,
        "postcard.txt",
        b"greetings from beta".to_vec(),
    )
    .await;
    assert_eq!(status, 201);
    s.click("[data-testid=nav-history]").await;
    s.wait_text("[data-testid=history-name]", 60, |t| {
        t.contains("postcard.txt")
    })
    .await;
    let got = notes.wait_for(1, Duration::from_secs(30)).await;
    assert!(
        got.iter()
            .any(|n| n.summary == "New asset from Beta" && n.body == "postcard.txt"),
        "{got:?}"
    );
    s.screenshot(&shots.join("5-history.png")).await;

    // ---- delete everywhere → trash → restore, in the app and on the peer
    let postcard = b3(b"greetings from beta");
    let peer_url = peer_svc.url("");
    let received = "[data-testid=history-row][data-direction=received]";
    s.click(&format!("{received} [data-testid=history-delete]"))
        .await;
    // The confirmation names the devices that lose it: this one and the connected peer.
    s.wait_text("[data-testid=delete-devices]", 10, |t| t == "2 devices")
        .await;
    assert_eq!(
        s.text("[data-testid=delete-device-names]").await,
        "this computer and Beta"
    );
    s.screenshot(&shots.join("9-delete-confirm.png")).await;
    s.click("[data-testid=delete-confirm-yes]").await;
    assert!(
        eventually_async(20, || async {
            meta_status(&c, &peer_url, &postcard).await == 410
        })
        .await,
        "the deletion did not reach Beta"
    );
    assert_eq!(meta_status(&c, &store_url, &postcard).await, 410);
    // History shows the deletion, made on this device.
    let deleted = "[data-testid=history-row][data-direction=deleted]";
    s.wait_text(
        &format!("{deleted} [data-testid=history-device]"),
        20,
        |t| t == "Alpha",
    )
    .await;
    // The trash lists it, with its size; Restore brings it back here and on Beta.
    s.click("[data-testid=nav-trash]").await;
    s.wait_text("[data-testid=trash-name]", 20, |t| t == "postcard.txt")
        .await;
    s.wait_text("[data-testid=trash-summary]", 10, |t| {
        t == "1 asset · 19 B in the trash on this computer."
    })
    .await;
    assert_eq!(s.text("[data-testid=trash-device]").await, "This computer");
    s.screenshot(&shots.join("10-trash.png")).await;
    s.click("[data-testid=trash-restore]").await;
    s.find("[data-testid=trash-none]", 20).await;
    assert!(
        eventually_async(20, || async {
            meta_status(&c, &peer_url, &postcard).await == 200
        })
        .await,
        "the restore did not reach Beta"
    );
    assert_eq!(meta_status(&c, &store_url, &postcard).await, 200);
    s.click("[data-testid=nav-history]").await;
    let restored = "[data-testid=history-row][data-direction=restored]";
    s.wait_text(&format!("{restored} [data-testid=history-name]"), 20, |t| {
        t == "postcard.txt"
    })
    .await;

    // ---- the page is not trusted on its own: a script in it can neither add a file the
    // user did not drop or pick, nor reach a path through a made-up asset hash.
    let refused = s
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const invoke = window.__TAURI_INTERNALS__.invoke;
             Promise.allSettled([
               invoke('add_files', { paths: ['/etc/passwd'] }),
               invoke('open_asset', { hash: '../../../etc/passwd' }),
               invoke('save_asset', { hash: 'ABC' }),
               invoke('delete_asset', { hash: '../trash' }),
               invoke('restore_asset', { hash: 'x'.repeat(64) }),
             ]).then((r) => done(r.map((x) => (x.status === 'rejected' ? x.reason.code : 'resolved'))));",
        )
        .await;
    assert_eq!(
        refused,
        serde_json::json!([
            "invalid_input",
            "invalid_input",
            "invalid_input",
            "invalid_input",
            "invalid_input"
        ])
    );

    // ---- the tray: status line, then Pause clicked over D-Bus stops transfers
    let (item_bus, item_path) = tray.item(30).await;
    let menu = tray.menu(&item_bus, &item_path).await;
    assert!(
        menu.iter()
            .any(|e| e.label.starts_with("Up to date") || e.label.starts_with("Syncing")),
        "{menu:?}"
    );
    tray.click(&item_bus, &item_path, "Pause sync").await;
    s.wait_text("[data-testid=status-line]", 10, |t| t.contains("Paused"))
        .await;
    assert!(
        Settings::load(&config_dir).unwrap().paused,
        "pause is persisted"
    );
    let (status, _) = upload(&c, &peer_svc, "while-paused.txt", b"held back".to_vec()).await;
    assert_eq!(status, 201);
    tokio::time::sleep(Duration::from_secs(5)).await; // bounded check of an absence
    assert!(
        !has_asset(&c, &store_url, &b3(b"held back")).await,
        "transfer while paused"
    );
    let menu = tray.menu(&item_bus, &item_path).await;
    assert!(
        menu.iter()
            .any(|e| e.label.replace('_', "") == "Resume sync"),
        "{menu:?}"
    );

    s.click("[data-testid=nav-settings]").await;
    s.find("[data-testid=page-settings]", 10).await;
    s.screenshot(&shots.join("6-settings.png")).await;

    // ---- resume from the tray: the held-back asset arrives
    tray.click(&item_bus, &item_path, "Resume sync").await;
    let held = b3(b"held back");
    assert!(
        eventually_async(60, || has_asset(&c, &store_url, &held)).await,
        "resumed, yet nothing arrived"
    );

    // ---- closed to the tray, the window takes its webview with it: WebKit's processes
    // end; Open CAN Sync in the tray menu brings a new one, on the same page and filter.
    s.click("[data-testid=nav-history]").await;
    s.type_into("[data-testid=history-filter]", "postcard")
        .await;
    // Received, deleted, restored.
    s.wait_text("[data-testid=history-range]", 20, |t| t.ends_with("of 3"))
        .await;
    let app_pid = tray.pid_of(&item_bus).await;
    assert!(
        !webkit_processes(app_pid).is_empty(),
        "no WebKit processes under the app (pid {app_pid}) while its window is open"
    );
    let handles = s.window_handles().await;
    assert_eq!(
        close_windows_of(&x.display, app_pid),
        1,
        "one window to close"
    );
    // The web process goes with the webview. (The network process is ended 15 s later,
    // except under WebDriver, whose session would not survive it: tests/tray_window.rs
    // checks that part without WebDriver.)
    assert!(
        eventually(30, || !webkit_processes(app_pid)
            .iter()
            .any(|(_, name)| name.starts_with("WebKitWebProc")))
        .await,
        "the web process outlived its window: {:?}",
        webkit_processes(app_pid)
    );
    assert!(
        c.get(format!("{store_url}/healthz")).send().await.is_ok(),
        "the app must keep running in the tray"
    );
    tray.click(&item_bus, &item_path, "Open CAN Sync").await;
    s.switch_to_new_window(&handles, 30).await;
    s.find("[data-testid=page-history]", 30).await;
    s.wait_text("[data-testid=history-name]", 20, |t| {
        t.contains("postcard.txt")
    })
    .await;
    assert_eq!(
        s.execute("return document.querySelector('[data-testid=history-filter]').value")
            .await,
        serde_json::json!("postcard"),
        "the filter is back"
    );
    assert_eq!(
        s.count("[data-testid=setup-banner]").await,
        0,
        "the dismissed banner stays dismissed (localStorage is on disk, not in the webview)"
    );
    // The rest comes from the backend as well: the engine's status, the peer.
    s.wait_text("[data-testid=status-line]", 20, |t| {
        t.starts_with("Up to date")
    })
    .await;
    // As at the start: a window just mapped needs a moment before its screenshot shows
    // what the page already has (cosmetic).
    tokio::time::sleep(Duration::from_millis(800)).await;
    s.screenshot(&shots.join("8-reopened.png")).await;

    // ---- a 2 GiB asset from the peer: Peers shows it moving, with rate and time left,
    // and the throughput chart has points
    s.click("[data-testid=nav-peers]").await;
    s.find("[data-testid=page-peers]", 10).await;
    let big = tokio::spawn(upload_big(peer_svc.url("/api/assets"), 2 << 30));
    let progress = "return (() => { const p = document.querySelector('[data-testid=transfer-progress]'); return p && p.value > 0 ? p.value : 0; })()";
    let first = poll_number(&s, progress, 120, |v| v > 0.0)
        .await
        .expect("no transfer progress shown");
    let later = poll_number(&s, progress, 60, |v| v > first).await;
    assert!(
        later.is_some(),
        "the progress bar does not move from {first}"
    );
    s.wait_text("[data-testid=transfer-rate]", 20, |t| {
        t.ends_with("/s") && t != "0 B/s"
    })
    .await;
    s.wait_text("[data-testid=transfer-eta]", 20, |t| !t.is_empty())
        .await;
    s.wait_text("[data-testid=status-line]", 20, |t| t.contains("left"))
        .await;
    let points = "return document.querySelector('[data-testid=throughput-down]').getAttribute('points').trim().split(/\\s+/).length";
    assert!(
        poll_number(&s, points, 30, |n| n > 1.0).await.is_some(),
        "the throughput chart has no line"
    );
    s.screenshot(&shots.join("7-progress.png")).await;
    assert_eq!(big.await.unwrap(), 201);
    s.find("[data-testid=transfers-empty]", 300).await;

    // ---- a second launch brings the window back too (single instance), then exits
    let handles = s.window_handles().await;
    assert_eq!(close_windows_of(&x.display, app_pid), 1);
    assert!(
        eventually(30, || !webkit_processes(app_pid)
            .iter()
            .any(|(_, n)| n.starts_with("WebKitWebProc")))
        .await,
        "the web process outlived its window"
    );
    let mut second = Command::new(env!("CARGO_BIN_EXE_can-sync-app"))
        .envs(env.iter().cloned())
        .env("DISPLAY", &x.display)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("second launch");
    assert!(
        eventually(20, || matches!(second.try_wait(), Ok(Some(_)))).await,
        "a second instance kept running"
    );
    s.switch_to_new_window(&handles, 30).await;
    s.find("[data-testid=page-peers]", 30).await;
    assert!(
        c.get(format!("{store_url}/healthz")).send().await.is_ok(),
        "the first instance must keep running"
    );

    // ---- Quit from the tray stops the engine and the built-in store
    tray.click(&item_bus, &item_path, "Quit").await;
    assert!(
        eventually_async(30, || async {
            c.get(format!("{store_url}/healthz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_err()
        })
        .await,
        "the built-in store still answers after Quit"
    );
    s.close().await;
    eprintln!("screenshots in {}", shots.display());
}

/// Uploads `len` bytes of distinct content without holding them in memory (1 MiB chunks,
/// each stamped with its index); returns the HTTP status.
async fn upload_big(url: String, len: usize) -> u16 {
    const CHUNK: usize = 1 << 20;
    let base = can_testkit::pseudo_random(CHUNK, 2026);
    let chunks = (0..len.div_ceil(CHUNK)).map(move |i| {
        let mut chunk = base.clone();
        chunk[..8].copy_from_slice(&(i as u64).to_le_bytes());
        chunk.truncate(CHUNK.min(len - i * CHUNK));
        Ok::<_, std::io::Error>(chunk)
    });
    client()
        .post(url)
        .header("X-Filename", "big.bin")
        .header("Content-Length", len.to_string())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Runs `script` (which returns a number) until `ok` holds or `secs` pass.
async fn poll_number(
    s: &Session,
    script: &str,
    secs: u64,
    ok: impl Fn(f64) -> bool,
) -> Option<f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if let Some(v) = s.execute(script).await.as_f64()
            && ok(v)
        {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
