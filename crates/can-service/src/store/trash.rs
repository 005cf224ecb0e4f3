//! Deletion, the trash and restores; and the same changes arriving from peers as records.
//!
//! A deletion keeps the asset's row as a tombstone (hash, stamp, origin, when) under a new
//! seq, and moves its content from `objects/` to `trash/<64 hex>`, where it stays for the
//! trash period. A restore moves it back. Either is whole or absent after a crash: the file
//! is moved (and both folders fsynced) first and the row committed after, and
//! [`super::repair`] moves a file back to where its row says it belongs.
//!
//! Between devices, the change with the later stamp wins for each hash (last writer wins on
//! the store's hybrid logical clock; a deletion wins a tie): [`Store::apply_record`].

use std::path::Path;
use std::time::Duration;

use super::clock::wall_ms;
use super::shards::sync_dir;
use super::{AssetMeta, Deletion, Store, StoreError, content_path, db};
use crate::hash::AssetHash;

/// Most rows handled per pass of the periodic clean-up (the rest waits for the next pass).
const CLEAN_BATCH: usize = 1000;

/// How long deleted content and tombstones are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrashPolicy {
    /// Deleted content stays in the trash this long (`trash_days`).
    pub trash_for: Duration,
    /// Tombstones are forgotten this long after the deletion's stamp
    /// (`tombstone_retention_days`).
    pub tombstones_for: Duration,
}

impl Default for TrashPolicy {
    fn default() -> Self {
        Self {
            trash_for: Duration::from_secs(30 * 86_400),
            tombstones_for: Duration::from_secs(180 * 86_400),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("no asset {0}")]
    NotFound(AssetHash),
    #[error("asset {0} is deleted already")]
    AlreadyDeleted(AssetHash),
    #[error("asset {0} is not in the trash")]
    NotInTrash(AssetHash),
    #[error("asset {0} is not deleted")]
    NotDeleted(AssetHash),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A change of one hash's state, as a peer describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub hash: AssetHash,
    pub stamp: u64,
    /// A deletion (else an upload or a restore: the asset is live).
    pub deleted: bool,
    /// Who delivered it ("peer:<id>"), stored as the change's origin.
    pub origin: String,
    /// The asset's size and name, kept in a tombstone of content never held here.
    pub size: u64,
    pub name: String,
}

/// What [`Store::apply_record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Our state is now the record's (a new seq, an event).
    Applied(AssetMeta),
    /// We were in that state already.
    Unchanged(AssetMeta),
    /// Our state outranks the record: the sender should learn ours.
    Superseded(AssetMeta),
    /// The record makes the asset live, and we do not hold its content: fetch it and
    /// upload it with the record's stamp.
    NeedContent,
    /// A deletion older than the tombstone retention: forgotten, so not taken up (taking it
    /// up would teach it back to stores that forgot it). Nothing changes.
    Expired,
}

/// Rank of a state for last-writer-wins: the stamp, then a deletion above an upload.
fn rank(stamp: u64, deleted: bool) -> (u64, bool) {
    (stamp, deleted)
}

impl Store {
    /// Deletes a stored asset here (`origin` "local"): a tombstone with a new stamp, the
    /// content in the trash.
    pub async fn delete(&self, hash: AssetHash, origin: &str) -> Result<AssetMeta, DeleteError> {
        let store = self.clone();
        let origin = origin.to_owned();
        self.blocking(move || {
            let conn = store.lock_db();
            match db::get(&conn, &hash)? {
                None => Err(DeleteError::NotFound(hash)),
                Some(row) if row.is_deleted() => Err(DeleteError::AlreadyDeleted(hash)),
                Some(row) => {
                    let stamp = store.inner.clock.after(row.stamp);
                    Ok(store.delete_row(conn, row, stamp, origin)?)
                }
            }
        })
        .await
    }

    /// Brings a deleted asset back from the trash here, with a new stamp.
    pub async fn restore(&self, hash: AssetHash, origin: &str) -> Result<AssetMeta, DeleteError> {
        let store = self.clone();
        let origin = origin.to_owned();
        self.blocking(move || {
            let conn = store.lock_db();
            match db::get(&conn, &hash)? {
                None => Err(DeleteError::NotFound(hash)),
                Some(row) if !row.is_deleted() => Err(DeleteError::NotDeleted(hash)),
                Some(row) if !row.deleted.as_ref().is_some_and(|d| d.in_trash) => {
                    Err(DeleteError::NotInTrash(hash))
                }
                Some(row) => {
                    let stamp = store.inner.clock.after(row.stamp);
                    Ok(store.restore_row(conn, row, stamp, origin)?)
                }
            }
        })
        .await
    }

    /// Applies a peer's change of one hash if it outranks ours (see [`RecordOutcome`]). The
    /// stamp must be at most [`super::clock::MAX_STAMP`] (`sync_ops` checks it).
    pub async fn apply_record(&self, record: Record) -> Result<RecordOutcome, StoreError> {
        let retention = self
            .inner
            .tombstones_for_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if record.deleted
            && super::clock::stamp_ms(record.stamp).saturating_add(retention) < wall_ms()
        {
            return Ok(RecordOutcome::Expired);
        }
        self.inner.clock.observe(record.stamp);
        let store = self.clone();
        self.blocking(move || {
            let mut conn = store.lock_db();
            let row = db::get(&conn, &record.hash)?;
            if let Some(row) = &row {
                let ours = rank(row.stamp, row.is_deleted());
                let theirs = rank(record.stamp, record.deleted);
                if !row.is_deleted() && !record.deleted {
                    // Both live: nothing to change but a later stamp to remember.
                    if record.stamp > row.stamp {
                        db::set_stamp(&conn, &row.hash, record.stamp)?;
                    }
                    return Ok(RecordOutcome::Unchanged(row.clone()));
                }
                if ours == theirs {
                    return Ok(RecordOutcome::Unchanged(row.clone()));
                }
                if ours > theirs {
                    return Ok(RecordOutcome::Superseded(row.clone()));
                }
            }
            let applied = match (row, record.deleted) {
                (Some(live), true) if !live.is_deleted() => {
                    store.delete_row(conn, live, record.stamp, record.origin)?
                }
                (Some(tomb), true) => {
                    // A later deletion of what is deleted already: the same state with the
                    // later stamp, so that every store names it alike.
                    let meta = AssetMeta {
                        stamp: record.stamp,
                        origin: record.origin,
                        ..tomb
                    };
                    store.replace(&mut conn, meta)?
                }
                (None, true) => {
                    // Content we never held: only the tombstone, so no peer brings it here.
                    let meta = AssetMeta {
                        hash: record.hash,
                        size: record.size,
                        name: record.name,
                        content_type: String::new(),
                        created_at: String::new(),
                        origin: record.origin,
                        seq: 0,
                        stamp: record.stamp,
                        deleted: Some(Deletion {
                            at_ms: wall_ms(),
                            in_trash: false,
                        }),
                        restored: false,
                    };
                    store.replace(&mut conn, meta)?
                }
                (Some(tomb), false) if tomb.deleted.as_ref().is_some_and(|d| d.in_trash) => {
                    store.restore_row(conn, tomb, record.stamp, record.origin)?
                }
                (_, false) => return Ok(RecordOutcome::NeedContent),
            };
            Ok(RecordOutcome::Applied(applied))
        })
        .await
    }

    /// Deleted assets whose content is in the trash, most recently deleted first.
    pub async fn trash(&self, limit: usize) -> Result<Vec<AssetMeta>, StoreError> {
        self.with_db(move |c| db::trash(c, limit)).await
    }

    /// Deletes a trashed asset's content for good (its tombstone stays).
    pub async fn purge(&self, hash: AssetHash) -> Result<(), DeleteError> {
        let store = self.clone();
        self.blocking(move || {
            let conn = store.lock_db();
            if !db::in_trash(&conn, hash.as_bytes())? {
                return Err(DeleteError::NotInTrash(hash));
            }
            db::set_untrashed(&conn, &hash)?;
            // Still under the lock: once it is released, the hash may be uploaded again and
            // deleted again, and its new trash file must not be the one removed here.
            store.remove_trash_file(&hash);
            drop(conn);
            Ok(())
        })
        .await
    }

    /// Empties the trash; returns how many assets' content went.
    pub async fn empty_trash(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        loop {
            let batch = self.trash(CLEAN_BATCH).await?;
            if batch.is_empty() {
                return Ok(removed);
            }
            for meta in batch {
                match self.purge(meta.hash).await {
                    Ok(()) => removed += 1,
                    Err(DeleteError::Store(e)) => return Err(e),
                    Err(_) => {} // restored or purged meanwhile
                }
            }
        }
    }

    /// Enforces the trash period and the tombstone retention; returns (content purged,
    /// tombstones forgotten).
    pub async fn clean_trash(&self, policy: TrashPolicy) -> Result<(usize, usize), StoreError> {
        let now = wall_ms();
        let trash_before = now.saturating_sub(policy.trash_for.as_millis() as u64);
        let mut purged = 0;
        loop {
            let due = self
                .with_db(move |c| db::trashed_before(c, trash_before, CLEAN_BATCH))
                .await?;
            let last = due.len() < CLEAN_BATCH;
            for hash in due {
                match self.purge(hash).await {
                    Ok(()) => purged += 1,
                    Err(DeleteError::Store(e)) => return Err(e),
                    Err(_) => {}
                }
            }
            if last {
                break;
            }
        }
        let forget_before = now.saturating_sub(policy.tombstones_for.as_millis() as u64);
        let forgotten = self
            .with_db(move |c| db::forget_tombstones(c, forget_before))
            .await?;
        Ok((purged, forgotten))
    }

    /// Where a deleted asset's content is kept.
    pub fn trash_path(&self, hash: &AssetHash) -> std::path::PathBuf {
        self.inner.trash.join(hash.to_hex())
    }

    pub(super) fn remove_trash_file(&self, hash: &AssetHash) {
        let path = self.trash_path(hash);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                if sync_dir(&self.inner.trash).is_err() {
                    self.failed();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "cannot remove trashed content");
                self.failed();
            }
        }
    }

    /// Moves `live`'s content to the trash and commits its tombstone.
    fn delete_row(
        &self,
        mut conn: std::sync::MutexGuard<'_, rusqlite::Connection>,
        live: AssetMeta,
        stamp: u64,
        origin: String,
    ) -> Result<AssetMeta, StoreError> {
        let from = content_path(&self.inner.objects, &live.hash);
        let to = self.trash_path(&live.hash);
        let in_trash = match move_durably(&from, &to) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Damaged from outside; the deletion still holds, without content to keep.
                tracing::warn!(hash = %live.hash, "deleted an asset whose content was missing");
                false
            }
            Err(source) => return Err(StoreError::Io { path: from, source }),
        };
        let meta = AssetMeta {
            origin,
            stamp,
            deleted: Some(Deletion {
                at_ms: wall_ms(),
                in_trash,
            }),
            restored: false,
            ..live
        };
        self.replace(&mut conn, meta)
    }

    /// Moves a trashed asset's content back and commits it live.
    fn restore_row(
        &self,
        mut conn: std::sync::MutexGuard<'_, rusqlite::Connection>,
        tomb: AssetMeta,
        stamp: u64,
        origin: String,
    ) -> Result<AssetMeta, StoreError> {
        let from = self.trash_path(&tomb.hash);
        let to = content_path(&self.inner.objects, &tomb.hash);
        let shard = tomb.hash.as_bytes()[0];
        if !self.inner.shards.dir(shard).exists() {
            self.inner.shards.recreate(shard)?;
        }
        move_durably(&from, &to).map_err(|source| StoreError::Io { path: from, source })?;
        self.inner.shards.ensure_durable(shard)?;
        let meta = AssetMeta {
            origin,
            stamp,
            deleted: None,
            restored: true,
            ..tomb
        };
        self.replace(&mut conn, meta)
    }

    /// Writes `meta` as its hash's new state under a new seq, announces it, returns it.
    fn replace(
        &self,
        conn: &mut std::sync::MutexGuard<'_, rusqlite::Connection>,
        mut meta: AssetMeta,
    ) -> Result<AssetMeta, StoreError> {
        let tx = conn.transaction()?;
        meta.seq = db::replace(&tx, &meta)?;
        tx.commit()?;
        self.published(meta.seq);
        Ok(meta)
    }

    fn lock_db(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.inner.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + StoreFailure + Send + 'static,
        F: FnOnce() -> Result<T, E> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let pending = store.inner.clean_stop.pending();
            let result = f();
            pending.done(result.as_ref().err().is_some_and(E::is_store_failure));
            result
        })
        .await
        .map_err(|e| E::from(StoreError::Task(e.to_string())))?
    }
}

/// Whether an error is the store failing (I/O, the index), not a refusal of the request.
pub(super) trait StoreFailure {
    fn is_store_failure(&self) -> bool;
}

impl StoreFailure for StoreError {
    fn is_store_failure(&self) -> bool {
        true
    }
}

impl StoreFailure for DeleteError {
    fn is_store_failure(&self) -> bool {
        matches!(self, DeleteError::Store(_))
    }
}

impl From<rusqlite::Error> for DeleteError {
    fn from(e: rusqlite::Error) -> Self {
        DeleteError::Store(e.into())
    }
}

/// Renames `from` to `to` and makes both directory entries durable.
pub(super) fn move_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    for dir in [to.parent(), from.parent()].into_iter().flatten() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
