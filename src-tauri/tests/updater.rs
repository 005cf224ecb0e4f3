//! App updates against a local feed, through the real tauri-plugin-updater in Tauri's mock
//! runtime (no window system): keys and signatures come from the Tauri CLI the release
//! workflow signs with, the feed from an in-process HTTP server.
//!
//! - a newer version → `update-available` with its version and notes;
//! - a bundle signed with another key, or signed for another version than the feed
//!   announces → install refused with `update_signature`, the installed app untouched;
//! - the right signature → the installed app replaced (the AppImage path);
//! - a .deb install → updates off: no request to the feed at all.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use can_sync_app::backend::ErrorCode;
use can_sync_app::updates::{Channel, DownloadLimits, EVENT, Feed, Updates};
use common::feed::{FeedServer, Signer, fake_appimage, latest_json};
use tauri::Listener;
use tauri::test::{MockRuntime, mock_builder, mock_context, noop_assets};
use tauri::utils::config::BundleType;
use tokio::sync::mpsc;

const NEW: &str = "9.9.9";
const NOTES: &str = "Faster sync.\nFixes the tray on KDE.";

/// A mock app with the updater plugin, configured like tauri.conf.json but pointing at
/// `endpoint` with `pubkey`.
fn app(endpoint: &str, pubkey: &str) -> tauri::App<MockRuntime> {
    let mut ctx = mock_context(noop_assets());
    ctx.config_mut().plugins.0.insert(
        "updater".into(),
        serde_json::json!({
            "pubkey": pubkey,
            "endpoints": [endpoint],
            "requireSignedVersion": true,
        }),
    );
    mock_builder()
        .plugin(tauri_plugin_updater::Builder::new().build())
        .build(ctx)
        .expect("mock app")
}

/// Every `update-available` payload, as JSON.
fn events(app: &tauri::App<MockRuntime>) -> mpsc::UnboundedReceiver<serde_json::Value> {
    let (tx, rx) = mpsc::unbounded_channel();
    app.listen(EVENT, move |e| {
        let _ = tx.send(serde_json::from_str(e.payload()).expect("json payload"));
    });
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<serde_json::Value>) -> serde_json::Value {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no update-available event within 10 s")
        .expect("event channel closed")
}

fn custom(server: &FeedServer, feed: &str, pubkey: &str, install: &Path) -> Channel {
    Channel::Custom(Feed {
        endpoint: format!("{}/{feed}/latest.json", server.url)
            .parse()
            .unwrap(),
        pubkey: pubkey.to_owned(),
        install_path: Some(install.to_owned()),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_from_a_local_feed() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Signer::generate(dir.path(), "ours");
    let theirs = Signer::generate(dir.path(), "theirs");

    // The release: an AppImage stand-in, signed three ways.
    let bundle = fake_appimage("CAN Sync 9.9.9");
    let bundle_file = dir.path().join("CAN-Sync_9.9.9_amd64.AppImage");
    std::fs::write(&bundle_file, &bundle).unwrap();
    let good = ours.sign(&bundle_file, NEW);
    let foreign = theirs.sign(&bundle_file, NEW);
    // Our key, but for another version: a feed pairing a new version number with another
    // release's signature.
    let other_version = ours.sign(&bundle_file, "9.9.8");

    let server = FeedServer::start().await;
    let bundle_url = format!("{}/download/CAN-Sync_9.9.9_amd64.AppImage", server.url);
    server.put("/download/CAN-Sync_9.9.9_amd64.AppImage", bundle.clone());
    server.put(
        "/good/latest.json",
        latest_json(NEW, NOTES, &bundle_url, &good),
    );
    server.put(
        "/foreign/latest.json",
        latest_json(NEW, NOTES, &bundle_url, &foreign),
    );
    server.put(
        "/replayed/latest.json",
        latest_json(NEW, NOTES, &bundle_url, &other_version),
    );
    server.put(
        "/current/latest.json",
        latest_json("0.1.0", "", &bundle_url, &good),
    );

    // The installed app an update replaces.
    let installed = dir.path().join("CAN-Sync.AppImage");
    let old = fake_appimage("CAN Sync 0.1.0");
    std::fs::write(&installed, &old).unwrap();
    std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755)).unwrap();

    let app = app(&format!("{}/good/latest.json", server.url), &ours.pubkey);
    let mut rx = events(&app);
    let handle = app.handle().clone();
    let updates = |channel| Updates::new(handle.clone(), channel);

    // ---- the feed offers this very version: nothing to do, nothing announced
    let u = updates(custom(&server, "current", &ours.pubkey, &installed));
    assert_eq!(u.state().current_version, "0.1.0");
    assert_eq!(u.check().await.unwrap(), None);
    assert!(u.state().enabled);
    assert_eq!(u.state().available, None);
    let e = u.install(async {}).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{e:?}");

    // ---- the release config's path (plugins.updater from the config): the update is
    // announced with its version and notes. (Not installed: that would replace this test.)
    let u = updates(Channel::Release);
    let info = u.check().await.unwrap().expect("an update");
    assert_eq!(info.version, NEW);
    let ev = next(&mut rx).await;
    assert_eq!(ev["version"], NEW, "{ev}");
    assert_eq!(ev["notes"], NOTES, "{ev}");
    assert_eq!(ev["date"], "2026-03-01T12:00:00Z", "{ev}");
    assert_eq!(u.state().available.map(|a| a.version).as_deref(), Some(NEW));

    // ---- signed with another key: announced, but refused at install; nothing replaced
    for feed in ["foreign", "replayed"] {
        let u = updates(custom(&server, feed, &ours.pubkey, &installed));
        assert_eq!(u.check().await.unwrap().unwrap().version, NEW);
        assert_eq!(next(&mut rx).await["version"], NEW);
        let downloads = count(&server, "/download/");
        let e = u.install(async {}).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::UpdateSignature, "{feed}: {e:?}");
        assert!(e.message.contains("not installed"), "{e}");
        assert_eq!(
            count(&server, "/download/"),
            downloads + 1,
            "{feed}: downloaded"
        );
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            old,
            "{feed}: app replaced"
        );
    }

    // ---- our key, the announced version: installed in place, still executable
    let u = updates(custom(&server, "good", &ours.pubkey, &installed));
    assert_eq!(u.check().await.unwrap().unwrap().version, NEW);
    assert_eq!(next(&mut rx).await["notes"], NOTES);
    let ran_before_install = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran_before_install.clone();
    u.install(async move { flag.store(true, std::sync::atomic::Ordering::SeqCst) })
        .await
        .unwrap();
    assert!(ran_before_install.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(std::fs::read(&installed).unwrap(), bundle);
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
}

/// A download that stops arriving, or is larger than the cap, fails with `update` and
/// leaves the app as it was; the next install may start (nothing is left "installing").
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_or_oversized_download_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Signer::generate(dir.path(), "ours");
    let server = FeedServer::start().await;

    // Larger than the cap below, and correctly signed: only the size refuses it.
    let mut big = fake_appimage("CAN Sync 9.9.9");
    big.resize(256 * 1024, 0);
    let big_file = dir.path().join("big.AppImage");
    std::fs::write(&big_file, &big).unwrap();
    let big_url = format!("{}/download/big.AppImage", server.url);
    server.put("/download/big.AppImage", big.clone());
    server.put(
        "/big/latest.json",
        latest_json(NEW, NOTES, &big_url, &ours.sign(&big_file, NEW)),
    );
    let stalled_url = format!("{}/download/stalled.AppImage", server.url);
    server.put_stalled("/download/stalled.AppImage", big[..1024].to_vec());
    server.put(
        "/stalled/latest.json",
        latest_json(NEW, NOTES, &stalled_url, &ours.sign(&big_file, NEW)),
    );

    let installed = dir.path().join("CAN-Sync.AppImage");
    let old = fake_appimage("CAN Sync 0.1.0");
    std::fs::write(&installed, &old).unwrap();
    let app = app(&format!("{}/big/latest.json", server.url), &ours.pubkey);
    let limits = DownloadLimits {
        stall: Duration::from_secs(1),
        max_bytes: 64 * 1024,
    };
    for (feed, says) in [("big", "larger than"), ("stalled", "nothing was received")] {
        let u = Updates::with_limits(
            app.handle().clone(),
            custom(&server, feed, &ours.pubkey, &installed),
            limits,
        );
        assert_eq!(u.check().await.unwrap().unwrap().version, NEW);
        for attempt in 0..2 {
            let e = tokio::time::timeout(Duration::from_secs(20), u.install(async {}))
                .await
                .expect("install did not give up")
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::Update, "{feed} #{attempt}: {e:?}");
            assert!(e.message.contains(says), "{feed} #{attempt}: {e}");
        }
        assert_eq!(std::fs::read(&installed).unwrap(), old, "{feed}: replaced");
    }
}

/// Feed notes are not trusted to be short.
#[tokio::test(flavor = "multi_thread")]
async fn long_notes_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Signer::generate(dir.path(), "ours");
    let server = FeedServer::start().await;
    let notes = "n".repeat(100_000);
    server.put(
        "/long/latest.json",
        latest_json(NEW, &notes, "http://127.0.0.1:9/x", "x"),
    );
    let app = app(&format!("{}/long/latest.json", server.url), &ours.pubkey);
    let installed = dir.path().join("CAN-Sync.AppImage");
    let u = Updates::new(
        app.handle().clone(),
        custom(&server, "long", &ours.pubkey, &installed),
    );
    let shown = u.check().await.unwrap().unwrap().notes.unwrap();
    assert!(shown.len() < 10_000, "{} chars", shown.len());
    assert!(notes.starts_with(shown.trim_end_matches('…')));
}

fn count(server: &FeedServer, prefix: &str) -> usize {
    server
        .hits()
        .iter()
        .filter(|p| p.starts_with(prefix))
        .count()
}

/// A .deb (or .rpm) install never asks the feed, even with one configured, and offers
/// nothing to install.
#[tokio::test(flavor = "multi_thread")]
async fn deb_and_rpm_installs_never_check() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Signer::generate(dir.path(), "ours");
    let server = FeedServer::start().await;
    server.put(
        "/good/latest.json",
        latest_json(NEW, NOTES, "http://127.0.0.1:9/x", "x"),
    );
    let app = app(&format!("{}/good/latest.json", server.url), &ours.pubkey);
    let mut rx = events(&app);
    for (bundle, manager) in [(BundleType::Deb, "apt"), (BundleType::Rpm, "dnf")] {
        let u = Updates::new(app.handle().clone(), Channel::for_bundle(Some(bundle)));
        let s = u.state();
        assert!(!s.enabled);
        assert!(s.reason.as_deref().unwrap().contains(manager), "{s:?}");
        u.spawn_checks();
        let e = u.check().await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput, "{e:?}");
        let e = u.install(async {}).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput, "{e:?}");
    }
    assert_eq!(server.hits(), Vec::<String>::new(), "the feed was asked");
    assert!(rx.try_recv().is_err(), "update-available sent");
}
