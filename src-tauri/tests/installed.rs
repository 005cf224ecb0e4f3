//! The installed app (from the .deb) starts and reaches the setup wizard, with its updater
//! off: a .deb install leaves updates to the package manager, so it never asks the feed and
//! never shows an update notice. Run by `scripts/test-installers` after `apt-get install`,
//! with `CAN_SYNC_INSTALLED_APP` set to the installed binary; without it there is nothing
//! installed to test and it says so.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use can_testkit::desktop::{Keyring, SessionBus, Xvfb};
use common::free_port;
use common::webdriver::Session;

/// tauri-driver ends with the test, also when an assertion fails.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_installed_app_reaches_the_setup_wizard() {
    let Ok(app) = std::env::var("CAN_SYNC_INSTALLED_APP") else {
        eprintln!("CAN_SYNC_INSTALLED_APP is not set: run scripts/test-installers");
        return;
    };
    let bus = SessionBus::start();
    let _keyring = Keyring::start(&bus);
    let x = Xvfb::start();
    let port = free_port();
    let mut driver = Command::new("tauri-driver")
        .args([
            "--port",
            &port.to_string(),
            "--native-port",
            &free_port().to_string(),
        ])
        .envs(bus.env())
        .env("DISPLAY", &x.display)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        // The app's log reaches us through the drivers (they pass their stderr on to it).
        .stderr(Stdio::piped())
        .spawn()
        .expect("tauri-driver");
    let stderr = driver.stderr.take().unwrap();
    let _driver = Killed(driver);
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let _ = lines_tx.send(line);
        }
    });

    let s = Session::start(port, &app).await;
    s.wait_text("[data-testid=wizard-step-store] h2", 60, |t| {
        t.contains("Choose the store")
    })
    .await;
    if let Some(dir) = std::env::var_os("CAN_SYNC_SCREENSHOTS") {
        s.screenshot(&std::path::Path::new(&dir).join("installed-wizard.png"))
            .await;
    }

    // ---- updates: off, and why (the binary says it came from a .deb)
    let off = "updater off: CAN Sync was installed from a .deb package";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.recv())
            .await
            .unwrap_or_else(|_| panic!("the app never logged '{off}'"))
            .expect("the driver's stderr closed before the app logged its updater state");
        assert!(
            !line.contains("updater on") && !line.contains("an update is available"),
            "a .deb install checks for updates: {line}"
        );
        if line.contains(off) {
            break;
        }
    }
    let state = s
        .execute_async(
            "const done = arguments[arguments.length - 1];
             window.__TAURI_INTERNALS__.invoke('update_state').then(done, (e) => done({ failed: e }));",
        )
        .await;
    assert_eq!(state["enabled"], false, "{state}");
    assert!(
        state["reason"]
            .as_str()
            .is_some_and(|r| r.contains(".deb") && r.contains("package manager")),
        "{state}"
    );
    assert_eq!(state["available"], serde_json::Value::Null, "{state}");
    // Asking anyway is refused: the app has no feed to ask.
    let checked = s
        .execute_async(
            "const done = arguments[arguments.length - 1];
             window.__TAURI_INTERNALS__.invoke('check_update').then(() => done('checked'), (e) => done(e.code));",
        )
        .await;
    assert_eq!(checked, "invalid_input");
    // Nor can the page reach the updater plugin's own commands (no capability grants them).
    let plugin = s
        .execute_async(
            "const done = arguments[arguments.length - 1];
             window.__TAURI_INTERNALS__.invoke('plugin:updater|check', {}).then(() => done('allowed'), (e) => done(String(e)));",
        )
        .await;
    assert!(
        plugin.as_str().is_some_and(|e| e.contains("not allowed")),
        "{plugin}"
    );
    assert_eq!(s.count("[data-testid=update-banner]").await, 0);

    s.close().await;
}
