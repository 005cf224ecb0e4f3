//! The app's backend, headless, against real parts: GNOME Keyring and a notification server
//! on a private session bus, the built-in store in-process, and a peer made of a real
//! `can-service` + `can-sync` agent linked by ticket.
//!
//! Wizard → syncing both ways → history + one notification per remote asset (none for a
//! local one) → pause (persisted; nothing moves) → restart (still paused, history kept) →
//! resume (catches up, one notification for the backlog). The passphrase is in no file.

mod common;

use std::path::Path;
use std::time::Duration;

use can_sync_app::backend::assets::OpenAction;
use can_sync_app::backend::history::{Direction, DirectionFilter, Query};
use can_sync_app::backend::settings::Settings;
use can_sync_app::backend::wizard::{Input, Step, StoreChoice};
use can_sync_app::backend::{AppEvent, Backend, ErrorCode, Paths, Phase};
use can_testkit::desktop::{Keyring, SessionBus};
use can_testkit::{
    Agent, KEY, Service, b3, client, eventually, eventually_async, has_asset, percent_encode,
    upload,
};
use common::NotificationServer;
use tokio::sync::broadcast;

const PASS: &str = "harbor quill meteor saffron tundra lilac ember";
const SERVICE: &str = "net.cansync.test";

fn paths(dir: &Path) -> Paths {
    Paths {
        config_dir: dir.join("config"),
        data_dir: dir.join("data"),
    }
}

/// Loopback only: no public relays, no pkarr, no mDNS; any free ports.
fn write_test_settings(p: &Paths) {
    common::loopback_settings("127.0.0.1:0")
        .save(&p.config_dir)
        .unwrap();
}

async fn next_history(
    events: &mut broadcast::Receiver<AppEvent>,
    name: &str,
) -> can_sync_app::backend::history::HistoryItem {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no history row for {name} within 60 s"));
        match ev {
            Ok(AppEvent::HistoryAdded(item)) if item.name == name => return item,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => panic!("backend events closed: {e}"),
        }
    }
}

async fn wait_for_peer(events: &mut broadcast::Receiver<AppEvent>, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("{name} never showed up in status"));
        if let Ok(AppEvent::Status(s)) = ev
            && s.peers.iter().any(|p| p.device_name == name)
        {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_end_to_end() {
    let bus = SessionBus::start();
    common::use_bus(&bus);
    let _keyring = Keyring::start(&bus);
    let notes = NotificationServer::start(&bus.address).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client();

    // The peer: another machine with the same passphrase.
    let peer_svc = Service::with_key(&dir.path().join("peer-svc"));
    let peer = Agent::start(
        &dir.path().join("peer-agent"),
        &peer_svc.url(""),
        KEY,
        PASS,
        "device_name: Beta\n",
    );
    assert!(eventually(60, || peer.ticket_path().exists()).await);

    // First run: the wizard.
    let p = paths(dir.path());
    write_test_settings(&p);
    let backend = Backend::new(p.clone(), SERVICE).unwrap();
    backend.boot().await;
    assert_eq!(backend.app_state().await.phase, Phase::Setup);
    let mut events = backend.subscribe();
    backend
        .wizard_submit(Input::Store {
            store: StoreChoice::Builtin,
        })
        .await
        .unwrap();
    backend
        .wizard_submit(Input::Passphrase {
            passphrase: PASS.into(),
            generated: false,
        })
        .await
        .unwrap();
    let view = backend
        .wizard_submit(Input::Device {
            device_name: "Alpha".into(),
        })
        .await
        .unwrap();
    assert_eq!(view.step, Step::Done);
    let state = backend.app_state().await;
    assert_eq!(state.phase, Phase::Running, "{state:?}");
    let ticket = std::fs::read_to_string(peer.ticket_path()).unwrap();
    backend.connect_ticket(&ticket).await.unwrap();
    wait_for_peer(&mut events, "Beta").await;

    // A remote asset: history row + one notification naming the device and the asset.
    let (status, _) = upload(&c, &peer_svc, "from-beta.txt", b"hello from beta".to_vec()).await;
    assert_eq!(status, 201);
    let row = next_history(&mut events, "from-beta.txt").await;
    assert_eq!(row.direction, Direction::Received);
    assert_eq!(row.peer_name, "Beta");
    let got = notes.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].summary, "New asset from Beta");
    assert_eq!(got[0].body, "from-beta.txt");

    // A local asset (added through the app): sent, no notification.
    let local = dir.path().join("local note.txt");
    std::fs::write(&local, b"written on alpha").unwrap();
    // Only files the user handed over (dropped on the window, picked in the dialog: the
    // shell records them) are added; a path the page makes up is refused.
    let made_up = dir.path().join("peer-svc");
    let e = backend
        .add_files(std::slice::from_ref(&made_up))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput, "{e}");
    backend.allow_paths(std::slice::from_ref(&local));
    assert_eq!(backend.add_files(&[local]).await.unwrap(), 1);
    let row = next_history(&mut events, "local note.txt").await;
    assert_eq!(row.direction, Direction::Sent);
    let sent = b3(b"written on alpha");
    let peer_url = peer_svc.url("");
    assert!(eventually_async(20, || has_asset(&c, &peer_url, &sent)).await);

    // Pause: persisted at once, nothing moves.
    backend.set_paused(true).await.unwrap();
    let on_disk = Settings::load(&p.config_dir).unwrap();
    assert!(on_disk.paused, "pause must be persisted");
    let (status, _) = upload(&c, &peer_svc, "while-paused.txt", b"paused data".to_vec()).await;
    assert_eq!(status, 201);
    let paused_hash = b3(b"paused data");
    let store_url = match backend.app_state().await.store {
        Some(can_sync_app::backend::StoreView::Builtin { url }) => url,
        other => panic!("built-in store expected: {other:?}"),
    };
    // Bounded check of an absence: the agent polls every 2 s, so 5 s is plenty to see a leak.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !has_asset(&c, &store_url, &paused_hash).await,
        "paused, yet synced"
    );

    // Restart the app: still paused, history still there.
    backend.shutdown().await;
    drop(events);
    drop(backend);
    let backend = Backend::new(p.clone(), SERVICE).unwrap();
    let mut events = backend.subscribe();
    backend.boot().await;
    let state = backend.app_state().await;
    assert_eq!(state.phase, Phase::Running, "{state:?}");
    assert!(state.paused, "pause must survive a restart");
    assert!(backend.status().await.unwrap().paused);
    let page = backend
        .history(&Query {
            text: String::new(),
            direction: DirectionFilter::All,
            offset: 0,
            limit: 50,
        })
        .unwrap();
    assert_eq!(page.total, 2, "{page:?}");
    // The peer remembers the app's node: give them time to reconnect, still nothing moves.
    wait_for_peer(&mut events, "Beta").await;
    let store_url = match backend.app_state().await.store {
        Some(can_sync_app::backend::StoreView::Builtin { url }) => url,
        other => panic!("built-in store expected: {other:?}"),
    };
    assert!(!has_asset(&c, &store_url, &paused_hash).await);

    // Resume: the backlog arrives, with one notification at most.
    backend.set_paused(false).await.unwrap();
    let row = next_history(&mut events, "while-paused.txt").await;
    assert_eq!(row.direction, Direction::Received);
    let got = notes.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].body, "while-paused.txt");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(notes.received().len(), 2, "no notification replayed");

    // Turning notifications off is respected.
    backend
        .update_settings(&can_sync_app::backend::settings::SettingsPatch {
            notifications: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    upload(&c, &peer_svc, "quiet.txt", b"quiet".to_vec()).await;
    next_history(&mut events, "quiet.txt").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(notes.received().len(), 2, "notifications are off");

    // Open: a text file is opened as one; a program whose name reads as a PDF (U+202E) and
    // that its sender declares a PDF is only revealed, under an honest name.
    let quiet = backend.prepare_open(&b3(b"quiet")).await.unwrap();
    assert_eq!(quiet.action, OpenAction::Open, "{quiet:?}");
    assert_eq!(quiet.file_name, "quiet.txt");
    assert_eq!(std::fs::read(&quiet.path).unwrap(), b"quiet");
    let disguised = "invoice\u{202E}fdp.exe";
    let program = b"MZ\x90\0\x03\0\0\0 not really a program".to_vec();
    let r = c
        .post(peer_svc.url("/api/assets"))
        .header("X-Filename", percent_encode(disguised))
        .header("Content-Type", "application/pdf")
        .body(program.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // The peer's CAN Service already drops the U+202E at ingest, so the row carries the
    // cleaned name; the app cleans names again itself (unit tests in backend::filetype).
    let row = next_history(&mut events, "invoicefdp.exe").await;
    let opening = backend.prepare_open(&row.hash).await.unwrap();
    assert_eq!(opening.action, OpenAction::Reveal, "{opening:?}");
    assert_eq!(opening.file_name, "invoicefdp.exe");
    assert_eq!(opening.kind, "a Windows program");
    assert_eq!(std::fs::read(&opening.path).unwrap(), program);
    // Again: the cached file is reused, same decision.
    let again = backend.prepare_open(&row.hash).await.unwrap();
    assert_eq!(again.path, opening.path);
    // A hash the page made up never reaches the store.
    let e = backend.prepare_open("../../etc/passwd").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput);

    backend.shutdown().await;
    // The passphrase is in the keychain only: in no file the app or the engine wrote.
    // (The headless agent's own config.yaml holds it by design.)
    common::assert_in_no_file(dir.path(), PASS, Some(&dir.path().join("peer-agent")));
}
