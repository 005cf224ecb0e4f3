//! A running sync: the engine, the built-in store if used, and the task that turns engine
//! events into history rows, status pushes and notifications.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use can_sync::{Engine, EngineConfig, EngineEvent, Secret};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::coalesce::Coalescer;
use super::error::AppError;
use super::history::{Direction, NewItem};
use super::settings::{Settings, StoreSetting};
use super::store::Builtin;
use super::{AppEvent, Backend, lock, notifier};

/// Status is pushed at most this often while things happen; while transfers move it is
/// read every `MOVING_PUSH` (progress bars), else every `IDLE_PUSH` (round-trip times and
/// the like, which change without an event). It reaches the UI only when it changed.
const STATUS_THROTTLE: Duration = Duration::from_millis(300);
const MOVING_PUSH: Duration = Duration::from_millis(250);
const IDLE_PUSH: Duration = Duration::from_secs(10);

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
    let mut dirty = true;
    let mut last_push = Instant::now() - IDLE_PUSH;
    let mut last_status: Option<can_sync::Status> = None;
    loop {
        let now = Instant::now();
        let moving = last_status
            .as_ref()
            .is_some_and(|s| !s.transfers.is_empty());
        let status_due = if dirty {
            last_push + STATUS_THROTTLE
        } else if moving {
            last_push + MOVING_PUSH
        } else {
            last_push + IDLE_PUSH
        };
        let wake = coalescer
            .next_deadline()
            .map_or(status_due, |d| d.min(status_due))
            .max(now);
        tokio::select! {
            _ = cancel.cancelled() => return,
            ev = events.recv() => match ev {
                Ok(ev) => {
                    handle(&backend, &mut coalescer, &mut names, &ev);
                    backend.emit(AppEvent::Engine(ev));
                    dirty = true;
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "UI fell behind the engine's events");
                    dirty = true;
                }
                Err(RecvError::Closed) => return,
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = Instant::now();
        if now >= status_due {
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
        let notes = coalescer.poll(Instant::now());
        if !notes.is_empty() && backend.settings().notifications {
            for note in notes {
                let shown = note.clone();
                let b = backend.clone();
                tokio::task::spawn_blocking(move || match notifier::show(&shown) {
                    Ok(()) => b.emit(AppEvent::Notified(shown)),
                    Err(e) => tracing::warn!(error = %e, "notification not shown"),
                });
            }
        }
    }
}

fn handle(
    backend: &Backend,
    coalescer: &mut Coalescer,
    names: &mut HashMap<String, String>,
    ev: &EngineEvent,
) {
    let now = Instant::now();
    let record = |direction,
                  peer: &str,
                  hash: &str,
                  name: &str,
                  size: u64,
                  names: &HashMap<String, String>| {
        let item = NewItem {
            hash: hash.to_owned(),
            name: name.to_owned(),
            size,
            direction,
            peer_id: peer.to_owned(),
            peer_name: names.get(peer).cloned().unwrap_or_else(|| short(peer)),
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
            record(Direction::Received, peer, hash, name, *size, names);
            if lock(&backend.settings).notifications {
                let device = names.get(peer).cloned().unwrap_or_else(|| short(peer));
                coalescer.push(now, &device, name);
            }
        }
        EngineEvent::AssetSent {
            peer,
            hash,
            name,
            size,
        } => record(Direction::Sent, peer, hash, name, *size, names),
        EngineEvent::Resumed => coalescer.begin_backlog(now, None),
        _ => {}
    }
}

fn short(id: &str) -> String {
    id.chars().take(10).collect()
}

#[cfg(test)]
mod tests {
    use super::shows_the_same;
    use can_sync::{PeerStatus, Status};

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
}
