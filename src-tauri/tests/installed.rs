//! The installed app (from the .deb) starts and reaches the setup wizard. Run by
//! `scripts/test-installers` after `apt-get install`, with `CAN_SYNC_INSTALLED_APP` set to
//! the installed binary; without it there is nothing installed to test and it says so.

mod common;

use std::process::{Command, Stdio};

use can_testkit::desktop::{Keyring, SessionBus, Xvfb};
use common::free_port;
use common::webdriver::Session;

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
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tauri-driver");
    let s = Session::start(port, &app).await;
    s.wait_text("[data-testid=wizard-step-store] h2", 60, |t| {
        t.contains("Choose the store")
    })
    .await;
    if let Some(dir) = std::env::var_os("CAN_SYNC_SCREENSHOTS") {
        s.screenshot(&std::path::Path::new(&dir).join("installed-wizard.png"))
            .await;
    }
    s.close().await;
    let _ = driver.kill();
    let _ = driver.wait();
}
