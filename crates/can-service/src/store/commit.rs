//! Committing written content: the decision against what the store holds (a stored asset,
//! a deletion that outranks the upload, or one the upload undoes), the rename into place
//! and the index row, under the lock every state change takes.

use std::path::Path;

use super::ingest::{IngestError, IngestOutcome, Landing, NewAsset, Written, now_rfc3339};
use super::shards::{Shards, sync_dir};
use super::{AssetMeta, Store, StoreError, content_path, db};
use crate::hash::AssetHash;

impl Store {
    /// Before an upload's content is read: the stored asset if it is here already (a
    /// peer's later stamp for it is remembered), [`IngestError::Superseded`] if a deletion
    /// here outranks the upload, `None` if the content is wanted.
    pub async fn existing_for_upload(
        &self,
        hash: AssetHash,
        stamp: Option<u64>,
    ) -> Result<Option<AssetMeta>, IngestError> {
        super::ingest::check_stamp(stamp)?;
        match self.record(hash).await? {
            Some(live) if !live.is_deleted() => {
                self.adopt_stamp(&live, stamp).await?;
                Ok(Some(live))
            }
            // An upload here (no stamp) gets a stamp above every deletion it could meet.
            Some(tomb) if stamp.is_some_and(|s| !wins(s, &tomb)) => {
                Err(IngestError::Superseded { stamp: tomb.stamp })
            }
            _ => Ok(None),
        }
    }

    pub(super) async fn commit<F: Landing>(
        &self,
        written: Written<F>,
        new: NewAsset,
    ) -> Result<IngestOutcome, IngestError> {
        if let Some(stamp) = new.stamp {
            self.inner.clock.observe(stamp);
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let pending = store.inner.clean_stop.pending();
            let result = store.commit_blocking(written, new);
            pending.done(matches!(result, Err(IngestError::Store(_))));
            result
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// A peer's later stamp for content we hold: remembered (see `commit_blocking`).
    async fn adopt_stamp(
        &self,
        existing: &AssetMeta,
        stamp: Option<u64>,
    ) -> Result<(), StoreError> {
        if let Some(stamp) = stamp.filter(|s| *s > existing.stamp) {
            self.inner.clock.observe(stamp);
            let hash = existing.hash;
            self.with_db(move |c| db::set_stamp(c, &hash, stamp))
                .await?;
        }
        Ok(())
    }

    fn commit_blocking<F: Landing>(
        &self,
        written: Written<F>,
        new: NewAsset,
    ) -> Result<IngestOutcome, IngestError> {
        let inner = &self.inner;
        let Written { file, hash, size } = written;
        let dest = content_path(&inner.objects, &hash);
        // A deleted asset's row decides whether this upload brings it back; read it before
        // the content is placed, under the lock that every state change takes.
        let mut conn = inner.db.lock().unwrap_or_else(|p| p.into_inner());
        let row = db::get(&conn, &hash).map_err(StoreError::from)?;
        if let Some(live) = row.as_ref().filter(|r| !r.is_deleted()) {
            // Stored already (before this upload, or by a concurrent one): keep a peer's
            // later stamp for it, so that a deletion between the two cannot win here while
            // it loses elsewhere.
            file.discard();
            if let Some(stamp) = new.stamp.filter(|s| *s > live.stamp) {
                db::set_stamp(&conn, &hash, stamp).map_err(StoreError::from)?;
            }
            return Ok(IngestOutcome::Existing(live.clone()));
        }
        // An upload here outranks the deletion it undoes, however far ahead its stamp.
        let stamp = new.stamp.unwrap_or_else(|| match &row {
            Some(tomb) => inner.clock.after(tomb.stamp),
            None => inner.clock.now(),
        });
        match &row {
            Some(tomb) if !wins(stamp, tomb) => {
                file.discard();
                return Err(IngestError::Superseded { stamp: tomb.stamp });
            }
            _ => {}
        }
        place(&inner.shards, file, &hash, &dest)?;
        let created_at = new.created_at.unwrap_or_else(now_rfc3339);
        let meta = match row {
            None => {
                let mut meta = AssetMeta {
                    hash,
                    size,
                    name: new.name,
                    content_type: new.content_type,
                    created_at,
                    origin: new.origin,
                    seq: 0,
                    stamp,
                    deleted: None,
                    restored: false,
                };
                meta.seq = db::insert(&conn, &meta)
                    .map_err(StoreError::from)?
                    .ok_or_else(|| StoreError::Task("asset row appeared during ingest".into()))?;
                meta
            }
            Some(tomb) => {
                // Uploaded again after a deletion: the asset is back (a restore), with the
                // name it had if it had one.
                let mut meta = AssetMeta {
                    hash,
                    size,
                    name: if tomb.name.is_empty() {
                        new.name
                    } else {
                        tomb.name.clone()
                    },
                    content_type: new.content_type,
                    created_at: if tomb.created_at.is_empty() {
                        created_at
                    } else {
                        tomb.created_at.clone()
                    },
                    origin: new.origin,
                    seq: 0,
                    stamp,
                    deleted: None,
                    restored: true,
                };
                let tx = conn.transaction().map_err(StoreError::from)?;
                meta.seq = db::replace(&tx, &meta).map_err(StoreError::from)?;
                tx.commit().map_err(StoreError::from)?;
                if tomb.deleted.as_ref().is_some_and(|d| d.in_trash) {
                    // The trash copy is no longer the asset's; repair would remove it too.
                    self.remove_trash_file(&hash);
                }
                meta
            }
        };
        drop(conn);
        // Whatever an interrupted sync upload kept of it is no longer needed.
        inner.partials.remove_unless_busy(&hash);
        self.published(meta.seq);
        Ok(IngestOutcome::Created(meta))
    }
}

/// Whether a change with `stamp` that makes the asset live outranks `row`'s state. Equal
/// stamps from two devices: the deletion wins (a fixed rule, so every store decides alike).
pub(super) fn wins(stamp: u64, row: &AssetMeta) -> bool {
    stamp > row.stamp || (stamp == row.stamp && !row.is_deleted())
}

/// Renames the fsynced temp file to its final name and makes the rename durable: the shard
/// folder is fsynced, and so is `objects/` unless the folder's own entry is known durable.
/// Only then may the caller commit the row.
fn place<F: Landing>(
    shards: &Shards,
    file: F,
    hash: &AssetHash,
    dest: &Path,
) -> Result<(), StoreError> {
    let shard = hash.as_bytes()[0];
    let io_error = |source| StoreError::Io {
        path: dest.to_owned(),
        source,
    };
    if let Err((file, error)) = file.land(dest) {
        if error.kind() != std::io::ErrorKind::NotFound {
            return Err(io_error(error));
        }
        // The shard folder was removed behind our back (it exists from open on).
        shards.recreate(shard)?;
        file.land(dest).map_err(|(_, e)| io_error(e))?;
    }
    sync_dir(&shards.dir(shard))?;
    shards.ensure_durable(shard)
}
