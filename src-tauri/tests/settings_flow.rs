//! Setup with an existing CAN Service (the wizard's Test, a wrong key, the right one), then
//! the Settings actions: change passphrase, switch to the built-in store, reset this
//! device. Real GNOME Keyring on a private bus; a real `can-service` as the external store.

mod common;

use can_sync::Secret;
use can_sync_app::backend::secrets::{Keychain, SecretKind};
use can_sync_app::backend::settings::{Settings, StoreSetting};
use can_sync_app::backend::wizard::{Input, Step, StoreChoice};
use can_sync_app::backend::{Backend, ErrorCode, Paths, Phase, StoreView};
use can_testkit::desktop::{Keyring, SessionBus};
use can_testkit::{KEY, Service, client, upload};

const SERVICE: &str = "net.cansync.test";
const PASS: &str = "cobalt meadow lantern quiver sprocket tundra ember";
const NEW_PASS: &str = "saffron glacier obelisk marrow pewter quill harbor";

fn external(url: &str, key: &str) -> StoreChoice {
    StoreChoice::External {
        url: url.into(),
        api_key: key.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn external_store_then_settings_actions() {
    let bus = SessionBus::start();
    common::use_bus(&bus);
    let _keyring = Keyring::start(&bus);
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(&dir.path().join("svc"));
    let c = client();
    upload(&c, &svc, "one.txt", b"one".to_vec()).await;
    upload(&c, &svc, "two.txt", b"two".to_vec()).await;

    let paths = Paths {
        config_dir: dir.path().join("config"),
        data_dir: dir.path().join("data"),
    };
    common::loopback_settings("127.0.0.1:0")
        .save(&paths.config_dir)
        .unwrap();
    let backend = Backend::new(paths.clone(), SERVICE).unwrap();
    backend.boot().await;

    // The Test button: the asset count, or the exact error.
    let url = svc.url("");
    assert_eq!(backend.test_store(&url, KEY).await.unwrap(), 2);
    let e = backend.test_store(&url, "wrong-key").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::StoreAuth, "{e:?}");
    assert!(!e.message.contains("wrong-key"), "{e}");
    let e = backend
        .test_store("http://127.0.0.1:9", KEY)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::StoreUnreachable, "{e:?}");
    assert!(e.message.contains("127.0.0.1:9"), "{e}");

    // Next with a wrong key stays on the store step.
    let e = backend
        .wizard_submit(Input::Store {
            store: external(&url, "wrong-key"),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::StoreAuth);
    assert_eq!(backend.wizard_view().step, Step::Store);
    backend
        .wizard_submit(Input::Store {
            store: external(&url, KEY),
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
            device_name: "Server room".into(),
        })
        .await
        .unwrap();
    let state = backend.app_state().await;
    assert_eq!(state.phase, Phase::Running, "{state:?}");
    assert_eq!(state.store, Some(StoreView::External { url: url.clone() }));
    assert_eq!(backend.status().await.unwrap().local_assets, 2);
    let kc = Keychain::new(SERVICE);
    let key = {
        let kc = kc.clone();
        tokio::task::spawn_blocking(move || kc.get(SecretKind::SyncApiKey))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(key.as_ref().map(Secret::expose), Some(KEY));
    // The key is in the keychain, not in settings.json.
    let on_disk = std::fs::read_to_string(Settings::path(&paths.config_dir)).unwrap();
    assert!(!on_disk.contains(KEY), "{on_disk}");
    assert_eq!(
        Settings::load(&paths.config_dir).unwrap().store,
        Some(StoreSetting::External { url: url.clone() })
    );

    // Change passphrase: a weak one is refused, a good one is stored and the engine restarts.
    let e = backend.change_passphrase("letmein").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::WeakPassphrase);
    // A member the old passphrase knew: after the change it must never be dialled again, so
    // the remembered-peers file (sealed under the old passphrase) is discarded.
    let engine_dir = paths.data_dir.join("engine");
    let old_key =
        can_sync::discovery::remembered::file_key(&can_sync::keys::derive(PASS).unwrap().admission);
    can_sync::discovery::remembered::remember(
        &engine_dir,
        &old_key,
        can_proto::peer::PeerInfo {
            endpoint_id: iroh::SecretKey::generate().public().as_bytes().to_vec(),
            device_name: "removed member".into(),
            direct_addrs: vec!["127.0.0.1:9".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert!(engine_dir.join("peers.pb").exists());
    // The running engine's rates are on the chart; the restart starts it anew, and tells
    // the tray its last status is gone.
    assert!(
        can_testkit::eventually(20, || !backend.throughput().is_empty()).await,
        "no status recorded for the chart"
    );
    let mut events = backend.subscribe();
    let restarted_at = can_sync_app::backend::throughput::now_ms();
    backend.change_passphrase(NEW_PASS).await.unwrap();
    assert!(
        backend.throughput().iter().all(|s| s.t >= restarted_at),
        "samples from before the restart: {:?}",
        backend.throughput()
    );
    let stopped = std::iter::from_fn(|| events.try_recv().ok())
        .any(|e| matches!(e, can_sync_app::backend::AppEvent::Stopped));
    assert!(stopped, "no Stopped event on restart");
    assert!(
        can_testkit::eventually(20, || !engine_dir.join("peers.pb").exists()).await,
        "the old passphrase's remembered peers survived the change"
    );
    assert_eq!(
        backend.status().await.unwrap().candidates,
        0,
        "the removed member is being dialled"
    );
    // Shown only after the backend's own confirmation (the native dialog in the app).
    assert_eq!(
        backend.reveal_passphrase(async { false }).await.unwrap(),
        None
    );
    assert_eq!(
        backend.reveal_passphrase(async { true }).await.unwrap(),
        Some(NEW_PASS.to_owned())
    );
    assert_eq!(backend.app_state().await.phase, Phase::Running);

    // Switch to the built-in store: the external key leaves the keychain.
    let view = backend
        .set_store(StoreChoice::Builtin, async { true })
        .await
        .unwrap()
        .expect("no confirmation needed for the built-in store");
    assert!(
        matches!(view.store, Some(StoreView::Builtin { .. })),
        "{view:?}"
    );
    assert_eq!(backend.status().await.unwrap().local_assets, 0);
    let key = {
        let kc = kc.clone();
        tokio::task::spawn_blocking(move || kc.get(SecretKind::SyncApiKey))
            .await
            .unwrap()
            .unwrap()
    };
    assert!(key.is_none());

    // Back to the external store, declined in the (native) confirmation: nothing changes,
    // the key does not enter the keychain.
    let declined = backend
        .set_store(external(&url, KEY), async { false })
        .await
        .unwrap();
    assert!(declined.is_none());
    assert!(matches!(
        backend.app_state().await.store,
        Some(StoreView::Builtin { .. })
    ));
    let key = {
        let kc = kc.clone();
        tokio::task::spawn_blocking(move || kc.get(SecretKind::SyncApiKey))
            .await
            .unwrap()
            .unwrap()
    };
    assert!(key.is_none());

    // Reset: back to the wizard, secrets and identity gone, advanced settings kept.
    backend.reset_device().await.unwrap();
    let state = backend.app_state().await;
    assert_eq!(state.phase, Phase::Setup, "{state:?}");
    assert_eq!(backend.wizard_view().step, Step::Store);
    let pass = tokio::task::spawn_blocking(move || kc.get(SecretKind::Passphrase))
        .await
        .unwrap()
        .unwrap();
    assert!(pass.is_none());
    assert!(!paths.data_dir.join("engine").exists());
    let s = Settings::load(&paths.config_dir).unwrap();
    assert!(!s.setup_complete);
    assert_eq!(s.advanced.relay_urls, Some(vec![]));
    backend.shutdown().await;
}
