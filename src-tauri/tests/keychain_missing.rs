//! With no Secret Service reachable, the user gets a clear error with a remedy, the setup
//! does not complete, and the passphrase is written nowhere.

mod common;

use can_sync_app::backend::secrets::{Keychain, SecretKind};
use can_sync_app::backend::wizard::{Input, StoreChoice};
use can_sync_app::backend::{Backend, ErrorCode, Paths, Phase};

#[tokio::test(flavor = "multi_thread")]
async fn no_keychain_is_a_clear_error_and_no_plaintext_fallback() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: the only test in this binary; set before anything reads the environment.
    unsafe {
        std::env::set_var(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}", dir.path().join("no-bus").display()),
        )
    };
    let kc = Keychain::new("net.cansync.test");
    let e = tokio::task::spawn_blocking(move || kc.get(SecretKind::Passphrase))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::KeychainUnavailable, "{e:?}");
    assert!(e.message.contains("Secret Service"), "remedy missing: {e}");

    let paths = Paths {
        config_dir: dir.path().join("config"),
        data_dir: dir.path().join("data"),
    };
    let backend = Backend::new(paths.clone(), "net.cansync.test").unwrap();
    backend
        .wizard_submit(Input::Store {
            store: StoreChoice::Builtin,
        })
        .await
        .unwrap();
    let pass = "quartz lantern obelisk mango thimble crevice";
    backend
        .wizard_submit(Input::Passphrase {
            passphrase: pass.into(),
            generated: false,
        })
        .await
        .unwrap();
    let e = backend
        .wizard_submit(Input::Device {
            device_name: "Laptop".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::KeychainUnavailable);
    assert!(!e.message.contains(pass));
    let state = backend.app_state().await;
    assert_eq!(
        state.phase,
        Phase::Setup,
        "setup must not complete: {state:?}"
    );
    // The passphrase is in no file the app wrote.
    common::assert_in_no_file(dir.path(), pass, None);
}
