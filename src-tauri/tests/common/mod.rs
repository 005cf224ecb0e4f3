//! Shared by the app's integration tests: a real notification server on a private bus.

#![allow(dead_code)]

pub mod feed;
pub mod sni;
pub mod system;
pub mod webdriver;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One `Notify` call as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub app_name: String,
    pub summary: String,
    pub body: String,
}

struct Server {
    received: Arc<Mutex<Vec<Received>>>,
    capabilities: Arc<Mutex<Vec<String>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Server {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, zbus::OwnedVariant>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut r = self.received.lock().unwrap();
        r.push(Received {
            app_name,
            summary,
            body,
        });
        r.len() as u32
    }

    fn get_capabilities(&self) -> Vec<String> {
        self.capabilities.lock().unwrap().clone()
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "test-server".into(),
            "can-sync tests".into(),
            "1.0".into(),
            "1.2".into(),
        )
    }

    fn close_notification(&self, _id: u32) {}
}

/// An `org.freedesktop.Notifications` server on the bus at `address`, recording every call.
/// It parses body markup, as GNOME Shell, Plasma, dunst, mako and xfce4-notifyd do.
pub struct NotificationServer {
    _conn: zbus::Connection,
    received: Arc<Mutex<Vec<Received>>>,
    capabilities: Arc<Mutex<Vec<String>>>,
}

impl NotificationServer {
    pub async fn start(address: &str) -> NotificationServer {
        let received = Arc::new(Mutex::new(Vec::new()));
        let capabilities = Arc::new(Mutex::new(vec!["body".into(), "body-markup".into()]));
        let conn = zbus::connection::Builder::address(address)
            .name("org.freedesktop.Notifications")
            .serve_at(
                "/org/freedesktop/Notifications",
                Server {
                    received: received.clone(),
                    capabilities: capabilities.clone(),
                },
            )
            .build()
            .await
            .expect("notification server on the test bus");
        NotificationServer {
            _conn: conn,
            received,
            capabilities,
        }
    }

    /// What `GetCapabilities` answers from now on.
    pub fn set_capabilities(&self, caps: &[&str]) {
        *self.capabilities.lock().unwrap() = caps.iter().map(|c| c.to_string()).collect();
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (bounded) until at least `n` notifications arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let r = self.received();
            if r.len() >= n {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.received()
    }
}

/// Points this test process at the private bus and home (call first, before any thread
/// that reads the environment is started).
pub fn use_bus(bus: &can_testkit::desktop::SessionBus) {
    for (k, v) in bus.env() {
        // SAFETY: called at the start of a test binary's only test, before other threads
        // of ours read the environment.
        unsafe { std::env::set_var(k, v) };
    }
}

/// Settings for a test app: loopback only (no public relays, no pkarr, no mDNS), the
/// built-in store on `builtin_listen`, any free engine port.
pub fn loopback_settings(builtin_listen: &str) -> can_sync_app::backend::settings::Settings {
    use can_sync_app::backend::settings::{Advanced, Settings};
    Settings {
        advanced: Advanced {
            relay_urls: Some(vec![]),
            pkarr_relays: Some(vec![]),
            local_discovery: Some(false),
            builtin_listen: Some(builtin_listen.into()),
            bind_addr: Some("127.0.0.1:0".into()),
        },
        ..Settings::default()
    }
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Asserts that no file under `dir` contains `secret`.
pub fn assert_in_no_file(dir: &std::path::Path, secret: &str, skip: Option<&std::path::Path>) {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    for f in files {
        if skip.is_some_and(|s| f.starts_with(s)) {
            continue;
        }
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "secret found in {}",
            f.display()
        );
    }
}
