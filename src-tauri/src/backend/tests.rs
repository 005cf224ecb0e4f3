//! The backend's guards against an untrusted webview, without a keychain, store or engine:
//! each refusal here happens before any of those would be touched.

use super::*;

/// A device that finished setup but is not syncing (nothing started it), with a keychain
/// service no one uses: starting would fail on the keychain, whatever this machine has.
fn set_up_but_stopped(dir: &std::path::Path) -> Arc<Backend> {
    let paths = Paths {
        config_dir: dir.join("config"),
        data_dir: dir.join("data"),
    };
    Settings {
        setup_complete: true,
        device_name: "Unit".into(),
        ..Settings::default()
    }
    .save(&paths.config_dir)
    .unwrap();
    Backend::new(paths, "net.cansync.unit-test.unused").unwrap()
}

pub(crate) fn backend_for_tests() -> (tempfile::TempDir, Arc<Backend>) {
    let dir = tempfile::tempdir().unwrap();
    let b = set_up_but_stopped(dir.path());
    (dir, b)
}

#[tokio::test]
async fn reading_the_state_never_starts_syncing() {
    let (_dir, b) = backend_for_tests();
    for _ in 0..3 {
        let s = b.app_state().await;
        assert_eq!(s.phase, Phase::Error);
        assert_eq!(s.error.map(|e| e.code), Some(ErrorCode::NotReady));
    }
    assert!(b.running.lock().await.is_none());
    // Retry is what tries (and here fails on the keychain, with its own error).
    let s = b.retry().await;
    assert_eq!(s.phase, Phase::Error);
    assert_ne!(s.error.map(|e| e.code), Some(ErrorCode::NotReady));
}

#[tokio::test]
async fn add_files_takes_only_what_the_user_handed_over() {
    let (dir, b) = backend_for_tests();
    let secret = dir.path().join("id_ed25519");
    std::fs::write(&secret, b"private").unwrap();
    let e = b
        .add_files(std::slice::from_ref(&secret))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput);
    assert!(e.message.contains("id_ed25519"), "{e}");
    assert!(e.message.contains("was not dropped"), "{e}");
    assert_eq!(b.add_files(&[]).await.unwrap(), 0);

    // Dropped on the window (recorded by the shell): accepted, then only the store is
    // missing (not running in this test).
    let dropped = dir.path().join("photo.jpg");
    b.allow_paths(std::slice::from_ref(&dropped));
    let e = b
        .add_files(std::slice::from_ref(&dropped))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotReady, "{e}");
    // Each grant is good for one add.
    let e = b.add_files(&[dropped]).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput, "{e}");
}

#[tokio::test]
async fn asset_commands_check_the_hash_before_anything_else() {
    let (dir, b) = backend_for_tests();
    for bad in [
        "",
        "../../etc/passwd",
        "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789",
        "0123456789abcdef",
    ] {
        // Not running: a hash that passed would fail with not_ready instead.
        let e = b.prepare_open(bad).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput, "{bad}: {e}");
        let e = b.save_asset(bad, &dir.path().join("x")).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput, "{bad}: {e}");
        let e = b.asset_file_name(bad).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput, "{bad}: {e}");
    }
    assert!(!dir.path().join("data/open").exists());
    let good = "ab".repeat(32);
    assert_eq!(b.asset_file_name(&good).unwrap(), &good[..16]);
    let e = b.prepare_open(&good).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotReady);
}

#[tokio::test]
async fn deletion_commands_check_the_hash_and_need_a_running_store() {
    let (_dir, b) = backend_for_tests();
    for bad in ["", "../../api/trash", &"AB".repeat(32), "0123"] {
        // Not running: a hash that passed would fail with not_ready instead.
        let e = b.delete_asset(bad).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput, "{bad}: {e}");
        let e = b.restore_asset(bad).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput, "{bad}: {e}");
    }
    let good = "ab".repeat(32);
    assert_eq!(
        b.delete_asset(&good).await.unwrap_err().code,
        ErrorCode::NotReady
    );
    assert_eq!(
        b.restore_asset(&good).await.unwrap_err().code,
        ErrorCode::NotReady
    );
    assert_eq!(b.trash().await.unwrap_err().code, ErrorCode::NotReady);
    assert_eq!(b.empty_trash().await.unwrap_err().code, ErrorCode::NotReady);
    for apply in [true, false] {
        assert_eq!(
            b.release_deletions(apply).await.unwrap_err().code,
            ErrorCode::NotReady
        );
    }
}

#[tokio::test]
async fn the_passphrase_needs_the_backends_confirmation() {
    let (_dir, b) = backend_for_tests();
    // Declined: no keychain access at all (there is none here: it would be an error).
    assert_eq!(b.reveal_passphrase(async { false }).await.unwrap(), None);
    // One confirmation at a time: a page cannot stack dialogs.
    let (tx, rx) = tokio::sync::oneshot::channel::<bool>();
    let first = tokio::spawn({
        let b = b.clone();
        async move {
            b.reveal_passphrase(async { rx.await.unwrap_or(false) })
                .await
        }
    });
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while !b.revealing.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    let e = b.reveal_passphrase(async { true }).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput);
    tx.send(false).unwrap();
    assert_eq!(first.await.unwrap().unwrap(), None);
    assert_eq!(b.reveal_passphrase(async { false }).await.unwrap(), None);
}

#[tokio::test]
async fn the_window_flag_wakes_the_status_reader_on_changes_only() {
    let (_dir, b) = backend_for_tests();
    let mut seen = b.window_open.subscribe();
    assert!(!*seen.borrow(), "no window until the shell says so");
    b.set_window_open(false);
    assert!(!seen.has_changed().unwrap(), "no change, no wake-up");
    b.set_window_open(true);
    assert!(seen.has_changed().unwrap());
    assert!(*seen.borrow_and_update());
    b.set_window_open(true);
    assert!(!seen.has_changed().unwrap());
    b.set_window_open(false);
    assert!(!*seen.borrow_and_update());
}
