//! Stand-ins for NetworkManager and UPower, each on its own connection to a private bus the
//! app uses as its system bus (`DBUS_SYSTEM_BUS_ADDRESS`): the object paths, interfaces and
//! property names of the real services. Dropping one removes it from the bus.

const NM_PATH: &str = "/org/freedesktop/NetworkManager";
const UPOWER_PATH: &str = "/org/freedesktop/UPower";

struct Nm {
    metered: u32,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager")]
impl Nm {
    /// NMMetered: 0 unknown, 1 yes, 2 no, 3 guess-yes, 4 guess-no.
    #[zbus(property)]
    fn metered(&self) -> u32 {
        self.metered
    }
}

struct Up {
    on_battery: bool,
}

#[zbus::interface(name = "org.freedesktop.UPower")]
impl Up {
    #[zbus(property)]
    fn on_battery(&self) -> bool {
        self.on_battery
    }
}

pub struct NetworkManager {
    conn: zbus::Connection,
}

impl NetworkManager {
    pub async fn start(address: &str, metered: u32) -> NetworkManager {
        let conn = zbus::connection::Builder::address(address)
            .name("org.freedesktop.NetworkManager")
            .serve_at(NM_PATH, Nm { metered })
            .build()
            .await
            .expect("NetworkManager stand-in on the test system bus");
        NetworkManager { conn }
    }

    /// Changes `Metered` and emits `PropertiesChanged`, as NetworkManager does.
    pub async fn set_metered(&self, metered: u32) {
        let iface = self
            .conn
            .object_server()
            .interface::<_, Nm>(NM_PATH)
            .await
            .expect("our object");
        let mut nm = iface.get_mut().await;
        nm.metered = metered;
        nm.metered_changed(iface.signal_emitter())
            .await
            .expect("PropertiesChanged");
    }
}

pub struct UPower {
    conn: zbus::Connection,
}

impl UPower {
    pub async fn start(address: &str, on_battery: bool) -> UPower {
        let conn = zbus::connection::Builder::address(address)
            .name("org.freedesktop.UPower")
            .serve_at(UPOWER_PATH, Up { on_battery })
            .build()
            .await
            .expect("UPower stand-in on the test system bus");
        UPower { conn }
    }

    pub async fn set_on_battery(&self, on_battery: bool) {
        let iface = self
            .conn
            .object_server()
            .interface::<_, Up>(UPOWER_PATH)
            .await
            .expect("our object");
        let mut up = iface.get_mut().await;
        up.on_battery = on_battery;
        up.on_battery_changed(iface.signal_emitter())
            .await
            .expect("PropertiesChanged");
    }
}
