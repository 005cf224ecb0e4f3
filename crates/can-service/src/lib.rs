//! The reference CAN Service: a durable content-addressed asset store over HTTP.
//!
//! Used as a binary (`can-service`) by servers, tests and benchmarks, and in-process by the
//! desktop app as its built-in store ([`start`]).

pub mod api;
pub mod config;
pub mod content;
pub mod hash;
pub mod secret;
pub mod store;
pub mod sync_ops;
pub mod web;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::Config;
pub use hash::AssetHash;
pub use store::{AssetMeta, Store};

/// How long a shutdown waits for open requests (event streams never end by themselves).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store in {dir}: {source}")]
    Store {
        dir: std::path::PathBuf,
        source: store::StoreError,
    },
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A service that is serving; dropping it does not stop it, [`RunningService::shutdown`] does.
pub struct RunningService {
    addr: SocketAddr,
    store: Store,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Checks the config, opens the store, binds the listener and serves in the background.
pub async fn start(config: &Config) -> Result<RunningService, StartError> {
    config.validate(None)?;
    let data_dir = config.data_dir.clone();
    let max = config.max_asset_bytes;
    let reserve = config.free_space_reserve_bytes;
    let store = tokio::task::spawn_blocking(move || Store::open(&data_dir, max, reserve))
        .await
        .map_err(|e| StartError::Store {
            dir: config.data_dir.clone(),
            source: store::StoreError::Task(e.to_string()),
        })?
        .map_err(|source| StartError::Store {
            dir: config.data_dir.clone(),
            source,
        })?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let app = api::router(store.clone(), config, addr)?;
    let cleaner = tokio::spawn(clean_partials(
        store.clone(),
        Duration::from_secs(config.partial_max_age_secs),
    ));
    store.set_trash_policy(config.trash_policy());
    let trash_cleaner = tokio::spawn(clean_trash(store.clone(), config.trash_policy()));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let (graceful_tx, graceful_rx) = oneshot::channel::<()>();
        // No Nagle: small event and reply writes must not wait for a delayed ACK (≈40 ms).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = graceful_rx.await;
        });
        let mut server = std::pin::pin!(server.into_future());
        tokio::select! {
            result = &mut server => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "server stopped");
                }
                return;
            }
            _ = stopped => {}
        }
        let _ = graceful_tx.send(());
        if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
            tracing::info!("closing open event streams");
        }
    });
    let task = tokio::spawn(async move {
        let _ = task.await;
        cleaner.abort();
        trash_cleaner.abort();
        // Awaited, so that their store handles are gone when `shutdown` returns: the last
        // handle dropped records a clean stop (an app may exit the process right after).
        let _ = cleaner.await;
        let _ = trash_cleaner.await;
    });
    Ok(RunningService {
        addr,
        store,
        stop,
        task,
    })
}

/// Deletes partial uploads older than `max_age`: at start, then hourly (or every `max_age`
/// when that is shorter, so that short test ages are enforced).
async fn clean_partials(store: Store, max_age: Duration) {
    let every = max_age.min(Duration::from_secs(3600));
    loop {
        let removed = store.clean_partials(max_age).await;
        if removed > 0 {
            tracing::info!(
                removed,
                "deleted partial uploads older than partial_max_age_secs"
            );
        }
        tokio::time::sleep(every).await;
    }
}

/// Enforces the trash period and the tombstone retention: at start, then hourly (or more
/// often when a period is shorter, so that short test periods are enforced).
async fn clean_trash(store: Store, policy: store::TrashPolicy) {
    let every = policy
        .trash_for
        .min(policy.tombstones_for)
        .div_f64(4.0)
        .clamp(Duration::from_millis(250), Duration::from_secs(3600));
    loop {
        match store.clean_trash(policy).await {
            Ok((0, 0)) => {}
            Ok((purged, forgotten)) => {
                tracing::info!(
                    purged,
                    forgotten,
                    "trash period and tombstone retention enforced"
                )
            }
            Err(e) => tracing::warn!(error = %e, "cannot clean the trash"),
        }
        tokio::time::sleep(every).await;
    }
}

impl RunningService {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stops accepting, lets requests finish (bounded), and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

    /// Resolves when the server stops by itself (it only does on a fatal error).
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}
