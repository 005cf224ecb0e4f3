//! Deletion through the app's backend, against real parts: GNOME Keyring and a notification
//! server on a private session bus, the built-in store in-process, and a peer made of a real
//! `can-service` + `can-sync` agent linked by ticket.
//!
//! Delete everywhere (history row with this device, gone from the peer, in both trashes) →
//! restore (back on the peer) → a deletion on the peer (history row with its device, one
//! notification, in the trash with its device) → empty the trash (this device's only) →
//! a mass deletion on the peer held, then "Keep mine" (back everywhere) → held again, then
//! "Apply" (gone here).

mod common;

use std::time::Duration;

use can_sync::EngineEvent;
use can_sync_app::backend::history::{Direction, DirectionFilter, HistoryItem, Query};
use can_sync_app::backend::wizard::{Input, StoreChoice};
use can_sync_app::backend::{AppEvent, Backend, ErrorCode, Paths, StoreView};
use can_testkit::desktop::{Keyring, SessionBus};
use can_testkit::{
    Agent, KEY, Service, client, delete_asset, eventually, eventually_async, meta_status,
    trash_hashes, upload,
};
use common::NotificationServer;
use tokio::sync::broadcast;

const PASS: &str = "lantern mosaic cobalt prairie sequin walnut fjord";
const SERVICE: &str = "net.cansync.test-deletion";
/// Assets on the peer; a deletion of 50 of them in a minute trips the guard (at least 50,
/// and more than 10 % of the store).
const ASSETS: usize = 60;
const MASS: usize = 55;

/// Waits (bounded) for the backend's events until `check` holds. `check` reads the backend
/// itself (history, state), so an event missed to lag is no missed condition: every event
/// is only a cue to look again.
async fn until<T>(
    events: &mut broadcast::Receiver<AppEvent>,
    secs: u64,
    what: &str,
    mut check: impl FnMut(Option<&AppEvent>) -> Option<T>,
) -> T {
    if let Some(v) = check(None) {
        return v;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: not within {secs} s"));
        let found = match ev {
            Ok(ev) => check(Some(&ev)),
            Err(broadcast::error::RecvError::Lagged(_)) => check(None),
            Err(e) => panic!("backend events closed: {e}"),
        };
        if let Some(v) = found {
            return v;
        }
    }
}

/// The newest history row of `direction` for `name`, waiting for it.
async fn row(
    backend: &Backend,
    events: &mut broadcast::Receiver<AppEvent>,
    direction: Direction,
    name: &str,
) -> HistoryItem {
    until(
        events,
        60,
        &format!("a {direction:?} row for {name}"),
        |_| {
            backend
                .history(&Query {
                    text: name.to_owned(),
                    direction: match direction {
                        Direction::Received => DirectionFilter::Received,
                        Direction::Sent => DirectionFilter::Sent,
                        Direction::Deleted => DirectionFilter::Deleted,
                        Direction::Restored => DirectionFilter::Restored,
                    },
                    offset: 0,
                    limit: 1,
                })
                .unwrap()
                .items
                .into_iter()
                .next()
        },
    )
    .await
}

fn rows(backend: &Backend, direction: DirectionFilter) -> u64 {
    backend
        .history(&Query {
            text: String::new(),
            direction,
            offset: 0,
            limit: 1,
        })
        .unwrap()
        .total
}

/// Waits for the engine's status to satisfy `ok`: as it is now, then as pushed to the UI.
async fn status_where(
    backend: &Backend,
    events: &mut broadcast::Receiver<AppEvent>,
    what: &str,
    ok: impl Fn(&can_sync::Status) -> bool,
) -> can_sync::Status {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut look = true;
    loop {
        if look
            && let Ok(s) = backend.status().await
            && ok(&s)
        {
            return s;
        }
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: not within 60 s"));
        look = match ev {
            Ok(AppEvent::Status(s)) if ok(&s) => return s,
            Ok(_) => false,
            Err(broadcast::error::RecvError::Lagged(_)) => true,
            Err(e) => panic!("backend events closed: {e}"),
        };
    }
}

/// Waits until every deletion of `mass` has arrived: applied here (a new Deleted row since
/// `before`) until the guard tripped, held from then on. Polled (bounded), so that a
/// timeout says where every deletion went: these rounds flaked under CI load only, and the
/// numbers are what tells the cause.
async fn applied_or_held(
    backend: &Backend,
    c: &reqwest::Client,
    (here, peer_url): (&str, &str),
    mass: &[String],
    before: u64,
    what: &str,
) -> can_sync::events::HeldDeletions {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let s = backend.status().await.unwrap();
        let deleted = rows(backend, DirectionFilter::Deleted) - before;
        if let Some(held) = s.mass_delete_held.as_ref()
            && deleted + held.count as u64 == mass.len() as u64
        {
            return held.clone();
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{what}: not every deletion applied or held within 90 s; {deleted} new Deleted \
                 rows, held {:?} (of {}); here {:?}, on Beta {:?}; status {s:?}",
                s.mass_delete_held,
                mass.len(),
                statuses(c, here, mass).await,
                statuses(c, peer_url, mass).await,
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (bounded) for a notification that satisfies `ok`.
async fn notified(notes: &NotificationServer, what: &str, ok: impl Fn(&common::Received) -> bool) {
    assert!(
        eventually(20, || notes.received().iter().any(&ok)).await,
        "no notification {what}: {:?}",
        notes.received()
    );
}

async fn on_every(c: &reqwest::Client, url: &str, hashes: &[String], status: u16) -> bool {
    for h in hashes {
        if meta_status(c, url, h).await != status {
            return false;
        }
    }
    true
}

/// How many of `hashes` answer each status at `url` (for failure messages).
async fn statuses(c: &reqwest::Client, url: &str, hashes: &[String]) -> Vec<(u16, usize)> {
    let mut n = std::collections::BTreeMap::new();
    for h in hashes {
        *n.entry(meta_status(c, url, h).await).or_insert(0) += 1;
    }
    n.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_trash_restore_and_held_deletions() {
    let bus = SessionBus::start();
    common::use_bus(&bus);
    let _keyring = Keyring::start(&bus);
    let notes = NotificationServer::start(&bus.address).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client();

    // The peer: another machine with the same passphrase.
    let peer_svc = Service::with_key(&dir.path().join("peer-svc"));
    let peer_url = peer_svc.url("");
    let peer = Agent::start(
        &dir.path().join("peer-agent"),
        &peer_url,
        KEY,
        PASS,
        "device_name: Beta\n",
    );
    assert!(eventually(60, || peer.ticket_path().exists()).await);

    // This device, set up with the built-in store.
    let p = Paths {
        config_dir: dir.path().join("config"),
        data_dir: dir.path().join("data"),
    };
    common::loopback_settings("127.0.0.1:0")
        .save(&p.config_dir)
        .unwrap();
    let backend = Backend::new(p, SERVICE).unwrap();
    backend.boot().await;
    let mut events = backend.subscribe();
    setup(&backend).await;
    let here = match backend.app_state().await.store {
        Some(StoreView::Builtin { url }) => url,
        other => panic!("built-in store expected: {other:?}"),
    };
    let ticket = std::fs::read_to_string(peer.ticket_path()).unwrap();
    backend.connect_ticket(&ticket).await.unwrap();
    let me = status_where(&backend, &mut events, "Beta connected", |s| {
        s.peers.iter().any(|p| p.device_name == "Beta")
    })
    .await
    .endpoint_id;

    // Nothing is held: answering is a no-op.
    assert_eq!(backend.release_deletions(true).await.unwrap(), 0);

    let mut hashes = Vec::new();
    for i in 0..ASSETS {
        let (status, meta) = upload(
            &c,
            &peer_svc,
            &format!("photo-{i:02}.jpg"),
            format!("photo number {i}").into_bytes(),
        )
        .await;
        assert_eq!(status, 201);
        hashes.push(meta["hash"].as_str().unwrap().to_owned());
    }
    until(&mut events, 120, "every asset here", |_| {
        (rows(&backend, DirectionFilter::Received) == ASSETS as u64).then_some(())
    })
    .await;
    // The arrivals are announced (one summary for the catch-up).
    notified(&notes, "of the arrivals", |n| {
        n.summary.contains("from Beta")
    })
    .await;

    // ---- Delete everywhere, from this device.
    let h0 = &hashes[0];
    backend.delete_asset(h0).await.unwrap();
    let deleted = row(&backend, &mut events, Direction::Deleted, "photo-00.jpg").await;
    assert_eq!(
        (deleted.peer_id.as_str(), deleted.peer_name.as_str()),
        (me.as_str(), "Alpha"),
        "a deletion here is this device's"
    );
    assert_eq!(&deleted.hash, h0);
    assert!(
        eventually_async(20, || async { meta_status(&c, &peer_url, h0).await == 410 }).await,
        "the deletion did not reach Beta"
    );
    assert!(trash_hashes(&c, &peer_svc).await.contains(h0));
    let trash = backend.trash().await.unwrap();
    assert_eq!((trash.total_assets, trash.items.len()), (1, 1), "{trash:?}");
    let item = &trash.items[0];
    assert_eq!(&item.hash, h0);
    assert_eq!(item.name, "photo-00.jpg");
    assert_eq!(item.size, "photo number 0".len() as u64);
    assert!(item.this_device && item.device_name == "Alpha", "{item:?}");
    assert!(item.deleted_at_ms > 0);
    assert_eq!(trash.total_bytes, item.size);
    // The status counts the trash too (the engine reads the store's totals).
    status_where(&backend, &mut events, "the trash in the status", |s| {
        s.trash_assets == 1 && s.trash_bytes == item.size
    })
    .await;
    // Deleted already; and a deleted asset cannot be opened.
    let e = backend.delete_asset(h0).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{e}");
    assert!(e.message.contains("deleted already"), "{e}");
    let e = backend.prepare_open(h0).await.unwrap_err();
    assert!(e.message.contains("Trash"), "{e}");

    // ---- Restore from the trash: back here and on Beta.
    backend.restore_asset(h0).await.unwrap();
    let restored = row(&backend, &mut events, Direction::Restored, "photo-00.jpg").await;
    assert_eq!(restored.peer_name, "Alpha");
    assert!(
        eventually_async(20, || async { meta_status(&c, &peer_url, h0).await == 200 }).await,
        "the restore did not reach Beta"
    );
    assert_eq!(meta_status(&c, &here, h0).await, 200);
    assert_eq!(backend.trash().await.unwrap().total_assets, 0);
    assert!(backend.restore_asset(h0).await.is_err(), "not in the trash");

    // ---- A deletion on Beta: a row with its device, a notification, in the trash here.
    let h1 = &hashes[1];
    assert_eq!(delete_asset(&c, &peer_svc, h1).await, 200);
    let theirs = row(&backend, &mut events, Direction::Deleted, "photo-01.jpg").await;
    assert_eq!(theirs.peer_name, "Beta");
    notified(&notes, "of Beta's deletion", |n| {
        n.summary == "Asset deleted on Beta" && n.body == "photo-01.jpg"
    })
    .await;
    // Only that one: this device's own deletion was not announced to its user.
    let deletions = notes
        .received()
        .into_iter()
        .filter(|n| n.summary.contains("deleted"))
        .count();
    assert_eq!(deletions, 1, "{:?}", notes.received());
    let trash = backend.trash().await.unwrap();
    assert_eq!(trash.items.len(), 1, "{trash:?}");
    assert_eq!(
        (
            trash.items[0].hash.as_str(),
            trash.items[0].device_name.as_str(),
            trash.items[0].this_device
        ),
        (h1.as_str(), "Beta", false)
    );

    // ---- Empty the trash: here for good, Beta keeps its own.
    assert_eq!(backend.empty_trash().await.unwrap(), 1);
    assert_eq!(backend.trash().await.unwrap().total_assets, 0);
    assert!(trash_hashes(&c, &peer_svc).await.contains(h1));
    assert_eq!(meta_status(&c, &here, h1).await, 410, "still deleted here");

    // ---- A mass deletion on Beta: held here, then "Keep mine".
    let mass = &hashes[2..2 + MASS];
    let before = rows(&backend, DirectionFilter::Deleted);
    for h in mass {
        assert_eq!(delete_asset(&c, &peer_svc, h).await, 200);
    }
    // Every deletion has arrived: applied here (a row each) until the guard tripped, held
    // from then on. (One arriving after the answer would be a new deletion, and followed.)
    let held = applied_or_held(&backend, &c, (&here, &peer_url), mass, before, "held").await;
    assert!(held.count >= 1, "{held:?}");
    assert!(
        held.sample.iter().all(|n| n.starts_with("photo-")),
        "{held:?}"
    );
    notified(&notes, "of held deletions", |n| {
        n.summary.ends_with("from other devices held") && n.body.contains("Open CAN Sync")
    })
    .await;
    let kept = backend.release_deletions(false).await.unwrap();
    assert!(kept >= held.count, "{kept} < {held:?}");
    assert!(
        eventually_async(60, || on_every(&c, &here, mass, 200)).await,
        "kept {kept} (held {held:?}), yet not all back here: {:?}; on Beta: {:?}",
        statuses(&c, &here, mass).await,
        statuses(&c, &peer_url, mass).await,
    );
    assert!(
        eventually_async(60, || on_every(&c, &peer_url, mass, 200)).await,
        "kept, yet not all back on Beta"
    );
    until(&mut events, 30, "released", |ev| match ev {
        Some(AppEvent::Engine(EngineEvent::MassDeleteReleased { applied, .. })) => {
            assert!(!applied);
            Some(())
        }
        Some(AppEvent::Status(s)) if s.mass_delete_held.is_none() => Some(()),
        _ => None,
    })
    .await;
    assert!(rows(&backend, DirectionFilter::Restored) >= 2);

    // ---- Again, then "Apply": gone here too.
    let before = rows(&backend, DirectionFilter::Deleted);
    for h in mass {
        assert_eq!(delete_asset(&c, &peer_svc, h).await, 200);
    }
    applied_or_held(&backend, &c, (&here, &peer_url), mass, before, "held again").await;
    assert!(backend.release_deletions(true).await.unwrap() >= 1);
    assert!(
        eventually_async(60, || on_every(&c, &here, mass, 410)).await,
        "applied, yet not all deleted here"
    );
    status_where(&backend, &mut events, "nothing held", |s| {
        s.mass_delete_held.is_none()
    })
    .await;
    assert_eq!(backend.release_deletions(false).await.unwrap(), 0);
    // Untouched: the rest stays where it was.
    assert_eq!(meta_status(&c, &here, h0).await, 200);
    assert_eq!(meta_status(&c, &here, &hashes[ASSETS - 1]).await, 200);

    backend.shutdown().await;
}

async fn setup(backend: &std::sync::Arc<Backend>) {
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
    backend
        .wizard_submit(Input::Device {
            device_name: "Alpha".into(),
        })
        .await
        .unwrap();
}
