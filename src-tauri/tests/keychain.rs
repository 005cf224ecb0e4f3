//! The passphrase round-trips through a real Secret Service (GNOME Keyring on a private
//! session bus), and nothing else.

mod common;

use can_sync::Secret;
use can_sync_app::backend::secrets::{Keychain, SecretKind};
use can_testkit::desktop::{Keyring, SessionBus};

#[test]
fn secrets_round_trip_through_the_secret_service() {
    let bus = SessionBus::start();
    common::use_bus(&bus);
    let _keyring = Keyring::start(&bus);
    let kc = Keychain::new("net.cansync.test");
    assert_eq!(kc.get(SecretKind::Passphrase).unwrap(), None);
    kc.set(
        SecretKind::Passphrase,
        &Secret::new("quartz lantern obelisk"),
    )
    .unwrap();
    kc.set(SecretKind::SyncApiKey, &Secret::new("key-1"))
        .unwrap();
    assert_eq!(
        kc.get(SecretKind::Passphrase).unwrap().unwrap().expose(),
        "quartz lantern obelisk"
    );
    // Overwrite, not a second entry.
    kc.set(SecretKind::Passphrase, &Secret::new("another one"))
        .unwrap();
    assert_eq!(
        kc.get(SecretKind::Passphrase).unwrap().unwrap().expose(),
        "another one"
    );
    // Another service name (another app, or a test) does not see ours.
    assert_eq!(
        Keychain::new("net.cansync.other")
            .get(SecretKind::Passphrase)
            .unwrap(),
        None
    );
    // The Secret Service itself holds it: libsecret's CLI finds it by our attributes.
    let out = std::process::Command::new("secret-tool")
        .args([
            "lookup",
            "service",
            "net.cansync.test",
            "username",
            "sync-passphrase",
        ])
        .envs(bus.env())
        .output()
        .expect("secret-tool (libsecret-tools)");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "another one");
    kc.delete(SecretKind::Passphrase).unwrap();
    kc.delete(SecretKind::Passphrase).unwrap(); // deleting twice is fine
    assert_eq!(kc.get(SecretKind::Passphrase).unwrap(), None);
    assert_eq!(
        kc.get(SecretKind::SyncApiKey).unwrap().unwrap().expose(),
        "key-1"
    );
}
