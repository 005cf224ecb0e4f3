//! The durable content-addressed store: content files under `data_dir/objects`, metadata
//! and the ingest sequence in SQLite.
//!
//! Invariant: a row exists only for content that is complete, fsynced and in place. Ingest
//! writes to `data_dir/tmp`, fsyncs, renames into `objects/<2 hex>/<64 hex>`, fsyncs the
//! directory (and `objects/` if the shard folder's entry may not be durable yet, see
//! [`shards`]), and only then commits the row. A crash anywhere leaves either the whole asset
//! or nothing that [`Store::open`] does not clean up. Uploads from sync agents write to
//! `data_dir/partial` instead of `tmp`, to be resumed after an interruption ([`partial`]).
//!
//! A deleted asset keeps its row as a tombstone and its content moves to `data_dir/trash`
//! for a while ([`trash`]); every change of a hash's state carries a stamp of the store's
//! hybrid logical clock ([`clock`]) and gets a new seq.

mod changes;
mod clean_stop;
pub mod clock;
mod commit;
mod db;
mod ingest;
pub mod names;
mod partial;
mod parts;
#[cfg(test)]
mod parts_tests;
mod repair;
mod seed;
mod shards;
pub mod space;
mod trash;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::watch;

use crate::hash::AssetHash;

pub use ingest::{IngestError, IngestOutcome, NewAsset};
pub use parts::{Begun, MAX_PARTS, MIN_PART, PartWriter, PartsUpload};
pub use trash::{DeleteError, Record, RecordOutcome, TrashPolicy};

/// Metadata of one asset: stored, or deleted (a tombstone, with or without its content in
/// the trash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AssetMeta {
    #[serde(serialize_with = "hex_hash")]
    pub hash: AssetHash,
    pub size: u64,
    pub name: String,
    pub content_type: String,
    pub created_at: String,
    /// Who made the latest change: "local", or the agent's origin (e.g. "peer:<id>").
    pub origin: String,
    pub seq: u64,
    /// Hybrid logical clock stamp of the latest change (upload, deletion or restore).
    pub stamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Deletion>,
    /// The latest change brought this asset back from a deletion.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restored: bool,
}

/// A deleted asset's deletion.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Deletion {
    /// When it was deleted here (wall clock, ms since the Unix epoch).
    pub at_ms: u64,
    /// Its content is held in the trash (else only the tombstone is left).
    pub in_trash: bool,
}

impl AssetMeta {
    pub fn is_deleted(&self) -> bool {
        self.deleted.is_some()
    }
}

/// What the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub assets: u64,
    pub bytes: u64,
    pub trash_assets: u64,
    pub trash_bytes: u64,
    pub tombstones: u64,
}

fn hex_hash<S: serde::Serializer>(h: &AssetHash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&h.to_hex())
}

/// A failure of the store itself (disk, database), as opposed to bad input.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O error at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("store task failed: {0}")]
    Task(String),
}

impl StoreError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}

/// The asset store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    objects: PathBuf,
    shards: shards::Shards,
    tmp: PathBuf,
    trash: PathBuf,
    clock: clock::Clock,
    // One connection: statements are short and SQLite serialises writers anyway.
    db: Mutex<Connection>,
    // The highest seq stored; SSE streams wait on it.
    latest: watch::Sender<u64>,
    max_asset_bytes: u64,
    space: space::SpaceGuard,
    partials: Arc<partial::Partials>,
    /// Tombstone retention (ms): a deletion stamped longer ago is forgotten, and one that
    /// arrives from a peer is not taken up again.
    tombstones_for_ms: std::sync::atomic::AtomicU64,
    /// Last: fields drop in order, so the index is closed before the marker is written.
    clean_stop: clean_stop::CleanStop,
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir` and repairs what a crash left.
    /// `free_space_reserve`: bytes uploads must leave free on the disk (`None`: the default
    /// of [`space::default_reserve`]).
    pub fn open(
        data_dir: &Path,
        max_asset_bytes: u64,
        free_space_reserve: Option<u64>,
    ) -> Result<Self, StoreError> {
        let objects = data_dir.join("objects");
        let tmp = data_dir.join("tmp");
        let trash = data_dir.join("trash");
        let new_data_dir = !data_dir.exists();
        for dir in [data_dir, &objects, &tmp, &trash] {
            std::fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
        }
        let shards = shards::Shards::open(&objects)?;
        let conn = db::open(&data_dir.join("index.sqlite3"))?;
        // The entries of objects/, tmp/ and the index must be durable before the first
        // upload is acknowledged, or a crash could take a whole new store with it.
        shards::sync_dir(data_dir)?;
        if new_data_dir && let Some(parent) = data_dir.parent().filter(|p| p.exists()) {
            shards::sync_dir(parent)?;
        }
        let (clean_stop, was_clean) = clean_stop::CleanStop::take(data_dir)?;
        if was_clean {
            repair::empty_tmp(&tmp)?;
        } else {
            let report = repair::repair(&conn, &objects, &tmp, &trash)?;
            if !report.is_clean() {
                tracing::warn!(?report, "repaired the store after an unclean stop");
            }
        }
        let space = space::SpaceGuard::new(data_dir, free_space_reserve)?;
        let partials = Arc::new(partial::Partials::open(data_dir)?);
        let last = db::last_seq(&conn)?;
        let clock = clock::Clock::starting_at(db::max_stamp(&conn)?);
        let (latest, _) = watch::channel(last);
        let store = Self {
            inner: Arc::new(Inner {
                objects,
                shards,
                tmp,
                trash,
                clock,
                db: Mutex::new(conn),
                latest,
                max_asset_bytes,
                space,
                partials,
                tombstones_for_ms: std::sync::atomic::AtomicU64::new(
                    TrashPolicy::default().tombstones_for.as_millis() as u64,
                ),
                clean_stop,
            }),
        };
        store.inner.clean_stop.arm();
        Ok(store)
    }

    /// Records that a change failed part way: the next start runs the repair scan even
    /// after a clean stop.
    fn failed(&self) {
        self.inner.clean_stop.mark_dirty();
    }

    pub fn max_asset_bytes(&self) -> u64 {
        self.inner.max_asset_bytes
    }

    /// Replaces the free-space guard of a store just opened (tests fake a filling disk).
    #[cfg(test)]
    fn set_space(&mut self, space: space::SpaceGuard) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.space = space;
        }
    }

    /// Refuses (507) an upload of `size` bytes that would leave less than the reserve free.
    pub fn check_space(&self, size: u64) -> Result<(), IngestError> {
        self.check_space_reclaiming(size, None)
    }

    /// Where the content of `hash` lives (whether or not it is stored).
    pub fn content_path(&self, hash: &AssetHash) -> PathBuf {
        content_path(&self.inner.objects, hash)
    }

    /// The highest seq assigned so far; changes wake subscribers.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.latest.subscribe()
    }

    pub fn last_seq(&self) -> u64 {
        *self.inner.latest.borrow()
    }

    /// A stored (live) asset.
    pub async fn get(&self, hash: AssetHash) -> Result<Option<AssetMeta>, StoreError> {
        Ok(self.record(hash).await?.filter(|m| !m.is_deleted()))
    }

    /// What the store knows of `hash`: stored, or deleted (a tombstone).
    pub async fn record(&self, hash: AssetHash) -> Result<Option<AssetMeta>, StoreError> {
        self.with_db(move |c| db::get(c, &hash)).await
    }

    /// Stored assets with seq > `after`, in seq order, at most `limit`; plus whether more
    /// follow.
    pub async fn list(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<AssetMeta>, bool), StoreError> {
        self.with_db(move |c| db::list(c, after, limit, false))
            .await
    }

    /// Every change with seq > `after`: stored assets and tombstones, in seq order.
    pub async fn changes(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<AssetMeta>, bool), StoreError> {
        self.with_db(move |c| db::list(c, after, limit, true)).await
    }

    /// Counts and bytes of stored assets, the trash and tombstones.
    pub async fn totals(&self) -> Result<Totals, StoreError> {
        self.with_db(db::totals).await
    }

    /// How long deletions are remembered (the cleaner enforces the rest of the policy).
    pub fn set_trash_policy(&self, policy: TrashPolicy) {
        self.inner.tombstones_for_ms.store(
            policy.tombstones_for.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// A new stamp of the store's clock.
    #[cfg(test)]
    fn stamp(&self) -> u64 {
        self.inner.clock.now()
    }

    /// Announces a new highest seq to event streams.
    fn published(&self, seq: u64) {
        publish(&self.inner.latest, seq);
    }

    /// Runs a database closure on the blocking pool.
    async fn with_db<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pending = inner.clean_stop.pending();
            let conn = inner.db.lock().unwrap_or_else(|poison| poison.into_inner());
            let result = f(&conn).map_err(StoreError::from);
            pending.done(result.is_err());
            result
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn publish(latest: &watch::Sender<u64>, seq: u64) {
    latest.send_if_modified(|latest| {
        let newer = seq > *latest;
        *latest = (*latest).max(seq);
        newer
    });
}

fn content_path(objects: &Path, hash: &AssetHash) -> PathBuf {
    let hex = hash.to_hex();
    objects.join(&hex[..2]).join(hex)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod trash_tests;
