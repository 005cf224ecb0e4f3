//! A StatusNotifierWatcher stand-in on the test bus: the tray registers its item here, and
//! the test reads the item's menu (com.canonical.dbusmenu) and clicks entries, as a
//! desktop panel would.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zbus::{OwnedObjectPath, OwnedVariant, Variant};

#[derive(Default)]
struct Watcher {
    /// (sender's unique bus name, the service or path it registered)
    items: Arc<Mutex<Vec<(String, String)>>>,
}

#[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
impl Watcher {
    async fn register_status_notifier_item(
        &self,
        service: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) {
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        self.items.lock().unwrap().push((sender, service));
    }

    fn register_status_notifier_host(&self, _service: String) {}

    #[zbus(property)]
    fn registered_status_notifier_items(&self) -> Vec<String> {
        self.items
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }

    #[zbus(property)]
    fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn protocol_version(&self) -> i32 {
        0
    }
}

pub struct SniWatcher {
    conn: zbus::Connection,
    items: Arc<Mutex<Vec<(String, String)>>>,
}

/// One menu entry: dbusmenu id and label.
#[derive(Debug, Clone)]
pub struct MenuEntry {
    pub id: i32,
    pub label: String,
    pub enabled: bool,
}

impl SniWatcher {
    pub async fn start(address: &str) -> SniWatcher {
        let watcher = Watcher::default();
        let items = watcher.items.clone();
        let conn = zbus::connection::Builder::address(address)
            .name("org.kde.StatusNotifierWatcher")
            .serve_at("/StatusNotifierWatcher", watcher)
            .build()
            .await
            .expect("watcher on the test bus");
        SniWatcher { conn, items }
    }

    /// The first registered item (bus name, object path), waiting up to `secs`.
    pub async fn item(&self, secs: u64) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some((sender, service)) = self.items.lock().unwrap().first().cloned() {
                // Items register either an object path (then the sender is the bus name)
                // or a bus name (then the path is the spec's default).
                return if service.starts_with('/') {
                    (sender, service)
                } else {
                    (service, "/StatusNotifierItem".to_owned())
                };
            }
            assert!(
                Instant::now() < deadline,
                "no tray item registered within {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process behind a bus name (the tray item's: the app itself).
    pub async fn pid_of(&self, bus_name: &str) -> u32 {
        let dbus = zbus::fdo::DBusProxy::new(&self.conn)
            .await
            .expect("bus proxy");
        let name = zbus::names::BusName::try_from(bus_name.to_owned()).expect("bus name");
        dbus.get_connection_unix_process_id(name)
            .await
            .expect("GetConnectionUnixProcessID")
    }

    async fn menu_path(&self, dest: &str, item_path: &str) -> OwnedObjectPath {
        let proxy = zbus::Proxy::new(
            &self.conn,
            dest.to_owned(),
            item_path.to_owned(),
            "org.kde.StatusNotifierItem",
        )
        .await
        .expect("item proxy");
        proxy
            .get_property::<OwnedObjectPath>("Menu")
            .await
            .expect("item has a Menu")
    }

    async fn menu_proxy(&self, dest: &str, item_path: &str) -> zbus::Proxy<'static> {
        let menu = self.menu_path(dest, item_path).await;
        zbus::Proxy::new(&self.conn, dest.to_owned(), menu, "com.canonical.dbusmenu")
            .await
            .expect("menu proxy")
    }

    /// The tray item's tooltip title (or title) text, for state assertions.
    pub async fn tooltip(&self, dest: &str, item_path: &str) -> String {
        let proxy = zbus::Proxy::new(
            &self.conn,
            dest.to_owned(),
            item_path.to_owned(),
            "org.kde.StatusNotifierItem",
        )
        .await
        .expect("item proxy");
        if let Ok(t) = proxy
            .get_property::<(String, Vec<(i32, i32, Vec<u8>)>, String, String)>("ToolTip")
            .await
        {
            return format!("{} {}", t.2, t.3);
        }
        proxy
            .get_property::<String>("Title")
            .await
            .unwrap_or_default()
    }

    /// The menu's top-level entries.
    pub async fn menu(&self, dest: &str, item_path: &str) -> Vec<MenuEntry> {
        let proxy = self.menu_proxy(dest, item_path).await;
        type Layout = (
            i32,
            std::collections::HashMap<String, OwnedVariant>,
            Vec<OwnedVariant>,
        );
        let (_rev, (_, _, children)): (u32, Layout) = proxy
            .call("GetLayout", &(0i32, -1i32, Vec::<String>::new()))
            .await
            .expect("GetLayout");
        let mut out = Vec::new();
        for child in children {
            let Ok((id, props, _)) = Layout::try_from(child) else {
                continue;
            };
            let label = props
                .get("label")
                .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
                .unwrap_or_default();
            let enabled = props
                .get("enabled")
                .and_then(|v| bool::try_from(v.try_clone().ok()?).ok())
                .unwrap_or(true);
            if !label.is_empty() {
                out.push(MenuEntry { id, label, enabled });
            }
        }
        out
    }

    /// Clicks the entry whose label (mnemonic underscores removed) is `label`.
    pub async fn click(&self, dest: &str, item_path: &str, label: &str) {
        let entries = self.menu(dest, item_path).await;
        let entry = entries
            .iter()
            .find(|e| e.label.replace('_', "") == label)
            .unwrap_or_else(|| panic!("no menu entry {label:?} in {entries:?}"));
        let proxy = self.menu_proxy(dest, item_path).await;
        let _: () = proxy
            .call("Event", &(entry.id, "clicked", Variant::from(0i32), 0u32))
            .await
            .expect("menu Event");
    }
}
