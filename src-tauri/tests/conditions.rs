//! "Pause while on a metered connection / on battery" against stand-ins of NetworkManager
//! and UPower on a private bus the app takes for its system bus: the services appear after
//! the app started, flip `Metered` and `OnBattery`, and go away; the engine pauses and
//! resumes, and the state (and so the tray line) says why. Resume while paused by a
//! condition syncs through it until it clears. Bandwidth limits from Settings reach the
//! running engine at once and at its next start.

mod common;

use std::time::Duration;

use can_sync::Secret;
use can_sync_app::backend::conditions::PausedReason;
use can_sync_app::backend::secrets::{Keychain, SecretKind};
use can_sync_app::backend::settings::{SettingsPatch, StoreSetting};
use can_sync_app::backend::{AppEvent, AppState, Backend, Paths, Phase};
use can_sync_app::tray;
use can_testkit::desktop::{Keyring, SessionBus};
use common::system::{NetworkManager, UPower};
use tokio::sync::broadcast;

const SERVICE: &str = "net.cansync.test";
const PASS: &str = "tundra pewter saffron lantern quiver obelisk meadow";

/// Waits (bounded) for an `app-state` whose reason is `want`; checks the engine agrees.
async fn expect(
    backend: &Backend,
    events: &mut broadcast::Receiver<AppEvent>,
    want: Option<PausedReason>,
    why: &str,
) -> AppState {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("{why}: no state with paused_reason {want:?} within 20 s"));
        match ev {
            Ok(AppEvent::State(s)) if s.paused_reason == want => {
                assert_eq!(s.paused, want.is_some(), "{why}: {s:?}");
                assert_eq!(s.phase, Phase::Running, "{why}: {s:?}");
                let engine = backend.status().await.unwrap();
                assert_eq!(engine.paused, want.is_some(), "{why}: the engine disagrees");
                return s;
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => panic!("backend events closed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metered_and_battery_pause_and_resume_the_engine() {
    let bus = SessionBus::start();
    let system = SessionBus::start();
    common::use_bus(&bus);
    // SAFETY: this binary's only test, before any thread of ours reads the environment.
    unsafe { std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", &system.address) };
    let _keyring = Keyring::start(&bus);
    let dir = tempfile::tempdir().unwrap();

    // Set up as the wizard leaves it, with both conditions chosen.
    let paths = Paths {
        config_dir: dir.path().join("config"),
        data_dir: dir.path().join("data"),
    };
    let mut settings = common::loopback_settings("127.0.0.1:0");
    settings.setup_complete = true;
    settings.store = Some(StoreSetting::Builtin);
    settings.device_name = "Laptop".into();
    settings.pause_on_metered = true;
    settings.pause_on_battery = true;
    settings.save(&paths.config_dir).unwrap();
    Keychain::new(SERVICE)
        .set(SecretKind::Passphrase, &Secret::new(PASS))
        .unwrap();

    // No NetworkManager, no UPower yet: unknown, so syncing.
    let backend = Backend::new(paths.clone(), SERVICE).unwrap();
    let mut events = backend.subscribe();
    backend.boot().await;
    let s = backend.app_state().await;
    assert_eq!(
        (s.phase, s.paused, s.paused_reason),
        (Phase::Running, false, None)
    );
    assert!(!backend.status().await.unwrap().paused);

    // They appear later (not metered, on AC) and are followed from then on.
    let nm = NetworkManager::start(&system.address, 2).await;
    let upower = UPower::start(&system.address, false).await;
    nm.set_metered(1).await;
    let s = expect(
        &backend,
        &mut events,
        Some(PausedReason::Metered),
        "metered",
    )
    .await;
    assert_eq!(tray::view(&s, None).line, "Paused (metered)");
    assert_eq!(tray::view(&s, None).pause_label, "Resume sync");
    // The user's own pause is untouched (and so is the file).
    assert!(!backend.settings().paused);
    nm.set_metered(2).await;
    expect(&backend, &mut events, None, "no longer metered").await;
    // "Guess yes" counts as metered, "guess no" does not.
    nm.set_metered(3).await;
    expect(
        &backend,
        &mut events,
        Some(PausedReason::Metered),
        "guess-yes",
    )
    .await;
    nm.set_metered(4).await;
    expect(&backend, &mut events, None, "guess-no").await;

    upower.set_on_battery(true).await;
    let s = expect(
        &backend,
        &mut events,
        Some(PausedReason::Battery),
        "battery",
    )
    .await;
    assert_eq!(tray::view(&s, None).line, "Paused (on battery)");
    upower.set_on_battery(false).await;
    expect(&backend, &mut events, None, "plugged in").await;

    // Resume while metered: syncs through it until it clears; then it pauses again.
    nm.set_metered(1).await;
    expect(
        &backend,
        &mut events,
        Some(PausedReason::Metered),
        "metered again",
    )
    .await;
    backend.toggle_paused().await.unwrap();
    expect(&backend, &mut events, None, "resumed through metered").await;
    upower.set_on_battery(true).await;
    expect(
        &backend,
        &mut events,
        Some(PausedReason::Battery),
        "battery is not overridden",
    )
    .await;
    backend.set_paused(false).await.unwrap();
    expect(&backend, &mut events, None, "resumed through both").await;
    nm.set_metered(2).await;
    upower.set_on_battery(false).await;
    nm.set_metered(1).await;
    expect(
        &backend,
        &mut events,
        Some(PausedReason::Metered),
        "a new metered spell",
    )
    .await;

    // The user's pause comes first and is persisted; resuming it also resumes through the
    // condition (one click, as the tray offers).
    backend.set_paused(true).await.unwrap();
    let s = expect(&backend, &mut events, Some(PausedReason::User), "user").await;
    assert_eq!(tray::view(&s, None).line, "Paused");
    assert!(
        can_sync_app::backend::settings::Settings::load(&paths.config_dir)
            .unwrap()
            .paused
    );
    backend.toggle_paused().await.unwrap();
    expect(&backend, &mut events, None, "user resumed").await;
    assert!(
        !can_sync_app::backend::settings::Settings::load(&paths.config_dir)
            .unwrap()
            .paused
    );

    // Turning the setting off resumes at once; on again (still metered) pauses.
    nm.set_metered(2).await;
    nm.set_metered(1).await;
    expect(
        &backend,
        &mut events,
        Some(PausedReason::Metered),
        "metered once more",
    )
    .await;
    backend
        .update_settings(&SettingsPatch {
            pause_on_metered: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    expect(&backend, &mut events, None, "setting off").await;
    backend
        .update_settings(&SettingsPatch {
            pause_on_metered: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    expect(
        &backend,
        &mut events,
        Some(PausedReason::Metered),
        "setting on",
    )
    .await;

    // NetworkManager goes away: unknown, so syncing; back (still metered): paused.
    drop(nm);
    expect(&backend, &mut events, None, "NetworkManager gone").await;
    let nm = NetworkManager::start(&system.address, 1).await;
    expect(
        &backend,
        &mut events,
        Some(PausedReason::Metered),
        "NetworkManager back",
    )
    .await;

    // Limits reach the running engine at once, and the next start.
    let limits = can_sync::BandwidthLimits {
        upload_bytes_per_sec: Some(750_000),
        download_bytes_per_sec: Some(3_000_000),
        limit_lan: true,
    };
    let patch: SettingsPatch = serde_json::from_str(
        r#"{"upload_limit": {"amount": 750, "unit": "KB/s"},
            "download_limit": {"amount": 3, "unit": "MB/s"}, "limit_lan": true}"#,
    )
    .unwrap();
    backend.update_settings(&patch).await.unwrap();
    assert_eq!(backend.bandwidth_in_force().await, Some(limits));

    // A restart while metered starts paused: no burst first, so no Paused event either.
    backend.shutdown().await;
    drop(events);
    drop(backend);
    let backend = Backend::new(paths, SERVICE).unwrap();
    let mut events = backend.subscribe();
    backend.boot().await;
    let s = backend.app_state().await;
    assert_eq!(s.paused_reason, Some(PausedReason::Metered), "{s:?}");
    assert!(backend.status().await.unwrap().paused);
    nm.set_metered(2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => panic!("not resumed within 20 s after the restart"),
            Ok(Ok(AppEvent::Engine(can_sync::EngineEvent::Paused))) => {
                panic!("the engine started unpaused while metered")
            }
            Ok(Ok(AppEvent::State(s))) if s.paused_reason.is_none() => break,
            Ok(_) => {}
        }
    }
    assert!(!backend.status().await.unwrap().paused);
    assert_eq!(backend.bandwidth_in_force().await, Some(limits));
    // Off again: unlimited at once.
    let patch: SettingsPatch =
        serde_json::from_str(r#"{"upload_limit": null, "download_limit": null}"#).unwrap();
    backend.update_settings(&patch).await.unwrap();
    assert_eq!(
        backend.bandwidth_in_force().await,
        Some(can_sync::BandwidthLimits {
            limit_lan: true,
            ..Default::default()
        })
    );
    backend.shutdown().await;
}
