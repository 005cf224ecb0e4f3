//! The real app, hidden in the tray: stand-ins of NetworkManager and UPower on a private
//! bus it takes for its system bus flip `Metered` and `OnBattery`, and the tray's status
//! line (read over D-Bus as a desktop panel would) says "Paused (metered)" / "Paused (on
//! battery)"; "Resume sync" in the tray syncs through the condition.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use can_sync::Secret;
use can_sync_app::APP_ID;
use can_sync_app::backend::secrets::{Keychain, SecretKind};
use can_sync_app::backend::settings::StoreSetting;
use can_testkit::desktop::{Keyring, SessionBus, Xvfb};
use common::sni::{MenuEntry, SniWatcher};
use common::system::{NetworkManager, UPower};

const PASS: &str = "marrow glacier ember quill tundra harbor lantern";

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Tray<'a> {
    watcher: &'a SniWatcher,
    bus: String,
    path: String,
}

impl Tray<'_> {
    /// Waits (bounded) until the menu's status line (its first entry) satisfies `ok`; the
    /// menu is read as a panel reads it, so this polls.
    /// Waits until the menu's first line passes `ok` and the menu offers `action` ("Pause
    /// sync" or "Resume sync"). Both: the tray updates its items one at a time, so a read
    /// can fall between the line and the action.
    async fn wait_line(&self, why: &str, ok: impl Fn(&str) -> bool, action: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let menu = self.watcher.menu(&self.bus, &self.path).await;
            if menu.first().is_some_and(|e| ok(&e.label)) && has(&menu, action) {
                return;
            }
            assert!(Instant::now() < deadline, "{why}: the tray shows {menu:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, label: &str) {
        self.watcher.click(&self.bus, &self.path, label).await;
    }
}

fn has(menu: &[MenuEntry], label: &str) -> bool {
    menu.iter().any(|e| e.label.replace('_', "") == label)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tray_says_why_sync_paused() {
    let bus = SessionBus::start();
    let system = SessionBus::start();
    common::use_bus(&bus);
    let _keyring = Keyring::start(&bus);
    let watcher = SniWatcher::start(&bus.address).await;
    let x = Xvfb::start();

    // Set up as the wizard leaves it, both conditions chosen; not metered, on AC.
    let env = bus.env();
    let config_home = env
        .iter()
        .find(|(k, _)| k == "XDG_CONFIG_HOME")
        .map(|(_, v)| std::path::PathBuf::from(v))
        .unwrap();
    let mut settings = common::loopback_settings("127.0.0.1:0");
    settings.setup_complete = true;
    settings.store = Some(StoreSetting::Builtin);
    settings.device_name = "Laptop".into();
    settings.pause_on_metered = true;
    settings.pause_on_battery = true;
    settings.save(&config_home.join(APP_ID)).unwrap();
    Keychain::new(APP_ID)
        .set(SecretKind::Passphrase, &Secret::new(PASS))
        .unwrap();
    let nm = NetworkManager::start(&system.address, 2).await;
    let upower = UPower::start(&system.address, false).await;

    let _app = Killed(
        Command::new(env!("CARGO_BIN_EXE_can-sync-app"))
            .arg(can_sync_app::autostart::HIDDEN_ARG)
            .envs(env.iter().cloned())
            .env("DBUS_SYSTEM_BUS_ADDRESS", &system.address)
            .env("DISPLAY", &x.display)
            .env("RUST_LOG", "info,iroh=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("can-sync-app"),
    );
    let (item_bus, item_path) = watcher.item(60).await;
    let tray = Tray {
        watcher: &watcher,
        bus: item_bus,
        path: item_path,
    };
    let running = |l: &str| l == "No peers connected";
    let (pause, resume) = ("Pause sync", "Resume sync");
    tray.wait_line("started", running, pause).await;

    nm.set_metered(1).await;
    tray.wait_line("metered", |l| l == "Paused (metered)", resume)
        .await;
    // Resume from the tray: syncs through the metered connection.
    tray.click(resume).await;
    tray.wait_line("resumed through metered", running, pause)
        .await;
    nm.set_metered(2).await;

    upower.set_on_battery(true).await;
    tray.wait_line("on battery", |l| l == "Paused (on battery)", resume)
        .await;
    upower.set_on_battery(false).await;
    tray.wait_line("plugged in", running, pause).await;

    // The user's own pause says just "Paused".
    tray.click(pause).await;
    tray.wait_line("user pause", |l| l == "Paused", resume)
        .await;
    tray.click(resume).await;
    tray.wait_line("user resume", running, pause).await;
}
