//! NetworkManager's `Metered` and UPower's `OnBattery` on the system D-Bus
//! (`DBUS_SYSTEM_BUS_ADDRESS` if set, which is how the tests bring their own).
//!
//! Each property is read once, then followed through `PropertiesChanged`; the service's
//! bus name is followed too, so a service that is missing at start, restarts or goes away
//! is noticed (gone: unknown). The signal streams are opened before the first read, so a
//! change in between is not lost.

use futures_util::StreamExt;
use tokio::sync::watch;
use zbus::names::InterfaceName;
use zbus::proxy::CacheProperties;
use zbus::{Connection, Variant};

use super::Conditions;

/// One boolean-ish property of one object on the system bus.
struct Source {
    service: &'static str,
    path: &'static str,
    interface: &'static str,
    property: &'static str,
    parse: fn(&Variant<'_>) -> Option<bool>,
    set: fn(&mut Conditions, Option<bool>),
}

const NETWORK_MANAGER: Source = Source {
    service: "org.freedesktop.NetworkManager",
    path: "/org/freedesktop/NetworkManager",
    interface: "org.freedesktop.NetworkManager",
    property: "Metered",
    parse: |v| u32::try_from(v).ok().map(super::nm_metered),
    set: Conditions::set_metered,
};

const UPOWER: Source = Source {
    service: "org.freedesktop.UPower",
    path: "/org/freedesktop/UPower",
    interface: "org.freedesktop.UPower",
    property: "OnBattery",
    parse: |v| bool::try_from(v).ok(),
    set: Conditions::set_on_battery,
};

pub(super) async fn run(tx: &watch::Sender<Conditions>) {
    let conn = match Connection::system().await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(error = %e, "no system D-Bus: metered connection and battery are unknown");
            tx.send_modify(|c| c.read = true);
            return;
        }
    };
    let (nm, upower) = tokio::join!(
        Followed::open(&conn, &NETWORK_MANAGER),
        Followed::open(&conn, &UPOWER)
    );
    tx.send_modify(|c| {
        for f in [&nm, &upower].into_iter().flatten() {
            (f.source.set)(c, f.first);
        }
        c.read = true;
    });
    let follow = |f: Option<Followed>| async move {
        if let Some(f) = f {
            f.follow(tx).await
        }
    };
    tokio::join!(follow(nm), follow(upower));
}

struct Followed {
    source: &'static Source,
    props: zbus::fdo::PropertiesProxy<'static>,
    owners: zbus::proxy::OwnerChangedStream<'static>,
    changes: zbus::fdo::PropertiesChangedStream,
    /// The value read right after the streams were opened.
    first: Option<bool>,
}

impl Followed {
    async fn open(conn: &Connection, source: &'static Source) -> Option<Followed> {
        let opened = async {
            let props = zbus::fdo::PropertiesProxy::builder(conn)
                .destination(source.service)
                .path(source.path)
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            let owners = props.inner().receive_owner_changed().await?;
            let changes = props.receive_properties_changed().await?;
            zbus::Result::Ok((props, owners, changes))
        }
        .await;
        match opened {
            Ok((props, owners, changes)) => {
                let first = read(&props, source).await;
                Some(Followed {
                    source,
                    props,
                    owners,
                    changes,
                    first,
                })
            }
            Err(e) => {
                tracing::warn!(service = source.service, error = %e, "cannot follow it; its condition stays unknown");
                None
            }
        }
    }

    async fn follow(mut self, tx: &watch::Sender<Conditions>) {
        let s = self.source;
        let publish = |v: Option<bool>| {
            tx.send_if_modified(|c| {
                let before = *c;
                (s.set)(c, v);
                *c != before
            });
        };
        loop {
            tokio::select! {
                owner = self.owners.next() => match owner {
                    // Appeared or restarted: ask again.
                    Some(Some(_)) => publish(read(&self.props, s).await),
                    Some(None) => publish(None),
                    None => return,
                },
                change = self.changes.next() => {
                    let Some(signal) = change else { return };
                    let Ok(args) = signal.args() else { continue };
                    if args.interface_name().as_str() != s.interface {
                        continue;
                    }
                    if let Some(v) = args.changed_properties().get(s.property) {
                        publish((s.parse)(v));
                    } else if args.invalidated_properties().contains(&s.property) {
                        publish(read(&self.props, s).await);
                    }
                }
            }
        }
    }
}

/// The property now; unknown if the service is not there or answers something else.
async fn read(props: &zbus::fdo::PropertiesProxy<'_>, s: &Source) -> Option<bool> {
    let Ok(interface) = InterfaceName::try_from(s.interface) else {
        return None;
    };
    match props.get(interface, s.property).await {
        Ok(v) => (s.parse)(&v),
        Err(e) => {
            tracing::debug!(service = s.service, error = %e, "not readable; unknown");
            None
        }
    }
}
