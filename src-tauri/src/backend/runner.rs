//! A running sync: the engine, the built-in store if used, and the task that turns engine
//! events into history rows (transfers, deletions, restores), status pushes and
//! notifications.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use can_sync::{Engine, EngineConfig, EngineEvent, Secret};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::coalesce::{self, Coalescer, Kind, Note};
use super::error::AppError;
use super::history::{Direction, NewItem};
use super::settings::{Settings, StoreSetting};
use super::store::Builtin;
use super::{AppEvent, Backend, lock, notifier};

/// Status is read after engine events, at most every `STATUS_THROTTLE`, and besides that
/// as [`read_every`] says. It reaches the UI and the tray only when it changed.
const STATUS_THROTTLE: Duration = Duration::from_millis(300);
const MOVING_PUSH: Duration = Duration::from_millis(250);
const IDLE_PUSH: Duration = Duration::from_secs(10);

/// How often status is read when no engine event came, after `last` (the last status read,
/// if any):
/// - every `MOVING_PUSH` while transfers move: the progress bars and the tray's tooltip
///   ("Syncing 3 assets · 1.2 GB left") follow them;
/// - every `IDLE_PUSH` while the main window exists (round-trip times and the like change
///   without an event, and only the window shows them), while work is pending (the
///   notifications' catch-up waits for the engine to be idle, `Coalescer::set_busy`), or
///   before a first read succeeded;
/// - else never: with the window closed, everything the tray shows changes with an engine
///   event (a peer up or down, the store offline, an asset, pause), so an idle tray app
///   wakes for nothing (issue #14).
fn read_every(last: Option<&can_sync::Status>, window_open: bool) -> Option<Duration> {
    match last {
        Some(s) if !s.transfers.is_empty() => Some(MOVING_PUSH),
        _ if window_open => Some(IDLE_PUSH),
        None => Some(IDLE_PUSH),
        Some(s) if s.pending + s.in_flight > 0 => Some(IDLE_PUSH),
        Some(_) => None,
    }
}

/// Whether `b` shows what `a` shows. Round-trip times are shown in whole milliseconds
/// (Peers), and their sub-millisecond jitter would otherwise make every idle read a change:
/// a status push, and a re-render of Peers, every 10 s for nothing.
fn shows_the_same(a: &can_sync::Status, b: &can_sync::Status) -> bool {
    let shown = |s: &can_sync::Status| {
        let mut s = s.clone();
        for p in &mut s.peers {
            p.rtt_ms = p.rtt_ms.map(f64::round);
        }
        s
    };
    shown(a) == shown(b)
}

pub(super) struct Running {
    pub engine: Arc<Engine>,
    pub store_url: String,
    builtin: Option<Builtin>,
    forward: JoinHandle<()>,
    cancel: CancellationToken,
}

impl Running {
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.forward.await;
        match Arc::try_unwrap(self.engine) {
            Ok(engine) => engine.shutdown().await,
            Err(_) => tracing::warn!("engine still referenced at stop; dropping it"),
        }
        if let Some(b) = self.builtin {
            b.shutdown().await;
        }
    }
}

pub(super) async fn start(
    backend: Arc<Backend>,
    settings: &Settings,
    passphrase: Secret,
    api_key: Option<Secret>,
    start_paused: bool,
) -> Result<Running, AppError> {
    let (builtin, url, key) = match &settings.store {
        Some(StoreSetting::Builtin) | None => {
            let b = Builtin::start(
                &backend.paths.data_dir.join("store"),
                settings.advanced.builtin_listen.as_deref(),
            )
            .await?;
            let (url, key) = (b.url.clone(), b.sync_key.clone());
            (Some(b), url, key)
        }
        Some(StoreSetting::External { url }) => {
            let key = api_key.ok_or_else(|| {
                AppError::new(
                    super::ErrorCode::KeychainUnavailable,
                    "The CAN Service's sync API key is missing from the keychain. Enter it again in Settings → Store.",
                )
            })?;
            (None, url.clone(), key)
        }
    };
    let bind_addr: SocketAddr = match &settings.advanced.bind_addr {
        Some(a) => a
            .parse()
            .map_err(|_| AppError::invalid("advanced.bind_addr is not an address"))?,
        None => SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    let config = EngineConfig {
        device_name: settings.device_name.clone(),
        bind_addr,
        relay_urls: settings.advanced.relay_urls.clone(),
        pkarr_relays: settings.advanced.pkarr_relays.clone(),
        local_discovery: settings.advanced.local_discovery.unwrap_or(true),
        // The user's pause or a condition's (metered, battery).
        start_paused,
        bandwidth: settings.bandwidth(),
        // The built-in store is reached through its library, not its HTTP API (which stays
        // for the UI and the user's own tools).
        builtin_store: builtin
            .as_ref()
            .map(|b| can_sync::builtin_store::BuiltinStore::new(b.store().clone())),
        ..EngineConfig::new(
            url.clone(),
            key,
            passphrase,
            backend.paths.data_dir.join("engine"),
        )
    };
    let engine = match Engine::start(config).await {
        Ok(e) => Arc::new(e),
        Err(e) => {
            if let Some(b) = builtin {
                b.shutdown().await;
            }
            return Err(e.into());
        }
    };
    let cancel = CancellationToken::new();
    let forward = tokio::spawn(forward(backend, engine.clone(), cancel.clone()));
    Ok(Running {
        engine,
        store_url: url,
        builtin,
        forward,
        cancel,
    })
}

/// Engine events → history, UI events, notifications; status pushes.
async fn forward(backend: Arc<Backend>, engine: Arc<Engine>, cancel: CancellationToken) {
    let mut events = engine.subscribe();
    let mut coalescer = Coalescer::new();
    // What arrives right after start is a catch-up: one summary at most.
    coalescer.begin_backlog(Instant::now(), None);
    let mut names: HashMap<String, String> = HashMap::new();
    // This device, for the rows of its own deletions and restores (`peer` null).
    let me = Me {
        id: engine.endpoint_id(),
        name: backend.settings().device_name,
    };
    let mut dirty = true;
    let mut last_push = Instant::now() - IDLE_PUSH;
    let mut last_status: Option<can_sync::Status> = None;
    let mut window = backend.window_open.subscribe();
    // The sender lives in `backend`, which we hold: this only guards against a busy loop.
    let mut window_watch = true;
    loop {
        let now = Instant::now();
        let status_due = if dirty {
            Some(last_push + STATUS_THROTTLE)
        } else {
            read_every(last_status.as_ref(), *window.borrow()).map(|every| last_push + every)
        };
        let wake = match (coalescer.next_deadline(), status_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|w| w.max(now));
        tokio::select! {
            _ = cancel.cancelled() => return,
            ev = events.recv() => match ev {
                Ok(ev) => {
                    let urgent = handle(&backend, &mut coalescer, &mut names, &me, &ev);
                    show(&backend, urgent);
                    backend.emit(AppEvent::Engine(ev));
                    dirty = true;
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "UI fell behind the engine's events");
                    dirty = true;
                }
                Err(RecvError::Closed) => return,
            },
            changed = window.changed(), if window_watch => match changed {
                // A new window gets a fresh status at once, and the idle reads start again.
                Ok(()) => dirty |= *window.borrow_and_update(),
                Err(_) => window_watch = false,
            },
            _ = sleep_until(wake) => {}
        }
        let now = Instant::now();
        if status_due.is_some_and(|due| now >= due) {
            if let Ok(status) = engine.status().await {
                coalescer.set_busy(status.pending + status.in_flight > 0);
                if !last_status
                    .as_ref()
                    .is_some_and(|l| shows_the_same(l, &status))
                {
                    backend.emit(AppEvent::Status(status.clone()));
                    last_status = Some(status);
                }
            }
            last_push = now;
            dirty = false;
        }
        show(&backend, coalescer.poll(Instant::now()));
    }
}

/// Shows notifications (off the runtime: D-Bus or OS calls), if the user wants them.
fn show(backend: &Arc<Backend>, notes: Vec<Note>) {
    if notes.is_empty() || !backend.settings().notifications {
        return;
    }
    for note in notes {
        let b = backend.clone();
        tokio::task::spawn_blocking(move || match notifier::show(&note) {
            Ok(()) => b.emit(AppEvent::Notified(note)),
            Err(e) => tracing::warn!(error = %e, "notification not shown"),
        });
    }
}

/// This device, as its own history rows name it.
struct Me {
    id: String,
    name: String,
}

/// Sleeps until `at`, or forever (until another branch of the caller's `select!`) if none.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// One engine event: history rows, notifications to group; returns those to show at once.
fn handle(
    backend: &Backend,
    coalescer: &mut Coalescer,
    names: &mut HashMap<String, String>,
    me: &Me,
    ev: &EngineEvent,
) -> Vec<Note> {
    let now = Instant::now();
    let device = |peer: &str, names: &HashMap<String, String>| {
        names.get(peer).cloned().unwrap_or_else(|| short(peer))
    };
    let record = |direction,
                  peer: Option<&str>,
                  hash: &str,
                  name: &str,
                  size: u64,
                  names: &HashMap<String, String>| {
        let (peer_id, peer_name) = match peer {
            Some(p) => (p.to_owned(), device(p, names)),
            None => (me.id.clone(), me.name.clone()),
        };
        let item = NewItem {
            hash: hash.to_owned(),
            name: name.to_owned(),
            size,
            direction,
            peer_id,
            peer_name,
        };
        match backend.history.add(item) {
            Ok(row) => backend.emit(AppEvent::HistoryAdded(row)),
            Err(e) => tracing::warn!(error = %e, "history row not written"),
        }
    };
    match ev {
        EngineEvent::PeerUp {
            peer, device_name, ..
        } => {
            names.insert(peer.clone(), device_name.clone());
            coalescer.begin_backlog(now, Some(device_name));
        }
        EngineEvent::AssetReceived {
            peer,
            hash,
            name,
            size,
        } => {
            record(Direction::Received, Some(peer), hash, name, *size, names);
            if lock(&backend.settings).notifications {
                coalescer.push(now, &device(peer, names), name);
            }
        }
        EngineEvent::AssetSent {
            peer,
            hash,
            name,
            size,
        } => record(Direction::Sent, Some(peer), hash, name, *size, names),
        EngineEvent::AssetDeleted {
            peer,
            hash,
            name,
            size,
        } => {
            record(
                Direction::Deleted,
                peer.as_deref(),
                hash,
                name,
                *size,
                names,
            );
            // Only deletions from other devices: the user knows their own.
            if let Some(peer) = peer
                && lock(&backend.settings).notifications
            {
                coalescer.push_kind(now, Kind::Deleted, &device(peer, names), name);
            }
        }
        EngineEvent::AssetRestored {
            peer,
            hash,
            name,
            size,
        } => record(
            Direction::Restored,
            peer.as_deref(),
            hash,
            name,
            *size,
            names,
        ),
        EngineEvent::MassDeleteHeld { count, sample } => {
            return vec![coalesce::held(*count, sample)];
        }
        EngineEvent::Resumed => coalescer.begin_backlog(now, None),
        _ => {}
    }
    Vec::new()
}

fn short(id: &str) -> String {
    id.chars().take(10).collect()
}

#[cfg(test)]
mod tests {
    use super::{IDLE_PUSH, MOVING_PUSH, read_every, shows_the_same};
    use can_sync::{PeerStatus, Status, TransferStatus};

    fn with_rtt(rtt_ms: Option<f64>) -> Status {
        Status {
            peers: vec![PeerStatus {
                endpoint_id: "p".into(),
                device_name: "P".into(),
                path: "direct".into(),
                rtt_ms,
                assets_sent: 0,
                assets_received: 0,
                bytes_sent: 0,
                bytes_received: 0,
                last_activity: String::new(),
            }],
            ..Status::default()
        }
    }

    #[test]
    fn sub_millisecond_rtt_jitter_is_no_change() {
        assert!(shows_the_same(&with_rtt(Some(0.31)), &with_rtt(Some(0.44))));
        assert!(shows_the_same(&with_rtt(Some(23.2)), &with_rtt(Some(22.6))));
        assert!(!shows_the_same(
            &with_rtt(Some(23.2)),
            &with_rtt(Some(24.6))
        ));
        assert!(!shows_the_same(&with_rtt(None), &with_rtt(Some(0.2))));
        let mut more = with_rtt(Some(0.3));
        more.pending = 1;
        assert!(!shows_the_same(&with_rtt(Some(0.3)), &more));
    }

    #[test]
    fn idle_reads_only_for_a_window_pending_work_or_moving_transfers() {
        let idle = with_rtt(Some(1.0));
        // The window closed to the tray, nothing to do: no periodic read at all.
        assert_eq!(read_every(Some(&idle), false), None);
        // The window shows round-trip times, which change without an event.
        assert_eq!(read_every(Some(&idle), true), Some(IDLE_PUSH));
        // Nothing read yet (the first read failed): keep trying.
        assert_eq!(read_every(None, false), Some(IDLE_PUSH));
        // Work pending: the notifications' catch-up waits for the engine to be idle.
        let mut pending = idle.clone();
        pending.pending = 2;
        assert_eq!(read_every(Some(&pending), false), Some(IDLE_PUSH));
        // Transfers moving: the tray's tooltip shows their progress, window or not.
        let mut moving = pending.clone();
        moving.in_flight = 1;
        moving.transfers = vec![TransferStatus::default()];
        assert_eq!(read_every(Some(&moving), false), Some(MOVING_PUSH));
        assert_eq!(read_every(Some(&moving), true), Some(MOVING_PUSH));
    }
}
