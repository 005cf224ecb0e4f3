//! Resumable uploads from sync agents: an upload of a known hash and size writes to
//! `data_dir/partial/<64 hex>`, which outlives an interrupted request (and a restart), so the
//! next request for that hash can start where the last one stopped.
//!
//! Nothing in a partial is trusted. A resumed upload reads the kept bytes back through the
//! hasher before it appends, and the asset is stored only if the whole file hashes to its
//! name: a partial that was cut short, tampered with or corrupted on disk is deleted, never
//! stored, and the upload starts again from byte 0. One upload per hash at a time (the
//! next gets 409). Partials untouched for `partial_max_age_secs` are deleted.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use super::ingest::{
    CHANNEL_CHUNKS, Ended, IngestError, IngestOutcome, Landing, NewAsset, Written, feed,
    write_chunks,
};
use super::{Store, StoreError};
use crate::hash::AssetHash;

/// Read size when the kept bytes are hashed again.
const REHASH_BUFFER: usize = 1 << 20;

/// The partial uploads of one store.
pub(super) struct Partials {
    dir: PathBuf,
    /// Hashes with an upload in progress.
    busy: Mutex<HashSet<AssetHash>>,
}

/// Holds a hash's partial for one upload; released when dropped.
pub(super) struct Claim {
    partials: Arc<Partials>,
    hash: AssetHash,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.partials.lock().remove(&self.hash);
    }
}

/// A finished partial, ready to be renamed into place.
pub(super) struct Finished {
    pub(super) path: PathBuf,
}

impl Landing for Finished {
    fn land(self, dest: &Path) -> Result<(), (Self, std::io::Error)> {
        std::fs::rename(&self.path, dest).map_err(|e| (self, e))
    }

    fn discard(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Partials {
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let dir = data_dir.join("partial");
        std::fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        Ok(Self {
            dir,
            busy: Mutex::new(HashSet::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<AssetHash>> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn path(&self, hash: &AssetHash) -> PathBuf {
        self.dir.join(hash.to_hex())
    }

    pub(super) fn claim(self: &Arc<Self>, hash: AssetHash) -> Option<Claim> {
        self.lock().insert(hash).then(|| Claim {
            partials: self.clone(),
            hash,
        })
    }

    /// Bytes kept of `hash`'s interrupted upload, if there is one.
    pub fn received(&self, hash: &AssetHash) -> Option<u64> {
        std::fs::metadata(self.path(hash)).ok().map(|m| m.len())
    }

    /// Deletes `hash`'s partial, if any (it was stored whole, or its bytes are wrong).
    pub fn remove(&self, hash: &AssetHash) {
        let _ = std::fs::remove_file(self.path(hash));
    }

    /// Deletes `hash`'s partial unless an upload is writing it: the asset was stored by
    /// another way (a public upload, a concurrent copy from another peer).
    pub fn remove_unless_busy(&self, hash: &AssetHash) {
        let busy = self.lock();
        if !busy.contains(hash) {
            self.remove(hash);
        }
    }

    /// Deletes the least recently written partial that is not being written now and is
    /// not `keep`'s; whether there was one.
    fn remove_oldest(&self, keep: Option<&AssetHash>) -> bool {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return false;
        };
        let busy = self.lock().clone();
        let oldest = entries
            .flatten()
            .filter(|e| {
                let hash = e
                    .file_name()
                    .to_str()
                    .and_then(|n| AssetHash::from_hex(n).ok());
                hash.is_none_or(|h| !busy.contains(&h) && Some(&h) != keep)
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .min();
        oldest.is_some_and(|(_, path)| std::fs::remove_file(path).is_ok())
    }

    /// Deletes partials not written to for `max_age` (and anything in the folder that is not
    /// a partial), except those being written now. Returns how many went.
    pub fn clean(&self, max_age: Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let hash = name.to_str().and_then(|n| AssetHash::from_hex(n).ok());
            if hash.is_some_and(|h| self.lock().contains(&h)) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() >= max_age)
                .unwrap_or(true);
            if (hash.is_none() || old) && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

impl Store {
    /// Whether `size` more bytes fit above the reserve, making room by deleting kept
    /// partials (least recently written first, never `keep`'s) when they do not: a
    /// partial is only a saving, and a peer that leaves many behind must not keep new
    /// uploads out (507) for the week partials are kept.
    pub fn check_space_reclaiming(
        &self,
        size: u64,
        keep: Option<&AssetHash>,
    ) -> Result<(), IngestError> {
        loop {
            match self.inner.space.check(size) {
                Err(IngestError::NoSpace { .. }) if self.inner.partials.remove_oldest(keep) => {}
                other => return other,
            }
        }
    }

    /// Bytes kept of an interrupted upload of `hash` (`GET /sync/v1/partials/{hash}`).
    pub fn partial_received(&self, hash: &AssetHash) -> Option<u64> {
        self.inner.partials.received(hash)
    }

    /// Deletes partial uploads untouched for `max_age`; returns how many.
    pub async fn clean_partials(&self, max_age: Duration) -> usize {
        let partials = self.inner.partials.clone();
        tokio::task::spawn_blocking(move || partials.clean(max_age))
            .await
            .unwrap_or(0)
    }

    /// Stores `body`, the content of `hash` (`size` bytes) from byte `offset` on, the bytes
    /// before it coming from the partial upload kept of an earlier request. Whole and
    /// verified or not at all; an interrupted body leaves its bytes in the partial.
    pub async fn ingest_resumable<S, E>(
        &self,
        body: S,
        new: NewAsset,
        hash: AssetHash,
        size: u64,
        offset: u64,
    ) -> Result<IngestOutcome, IngestError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let new = new.cleaned();
        new.validate()?;
        let limit = self.max_asset_bytes();
        if size > limit {
            return Err(IngestError::TooLarge { limit });
        }
        if offset > size {
            // No partial of this asset can be that long: whatever is kept is wrong.
            let received = self.partial_received(&hash).unwrap_or(0);
            if received > size {
                self.inner.partials.remove(&hash);
            }
            return Err(IngestError::BeyondPartial { offset, received });
        }
        let partials = self.inner.partials.clone();
        let claim = partials.claim(hash).ok_or(IngestError::Busy)?;
        if let Some(existing) = self.existing_for_upload(hash, new.stamp).await? {
            partials.remove(&hash);
            return Ok(IngestOutcome::Existing(existing));
        }
        self.check_space_reclaiming(size - offset, Some(&hash))?;
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let path = partials.path(&hash);
        let space = self.inner.space.clone();
        let writer = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let (file, hasher) = reopen(&path, offset)?;
                write_chunks(file, &path, hasher, offset, &space, Some(size), rx)
            })
        };
        let streamed = feed(body, tx, offset, limit, Some(size)).await;
        let ended = writer.await.map_err(|e| StoreError::Task(e.to_string()))?;
        let written = match ended {
            Ok(Ended::Finished(w)) => w,
            Ok(Ended::Interrupted(file)) => {
                return Err(match streamed {
                    // The body broke off: keep what arrived for the next request, durably.
                    Err(IngestError::Interrupted(e)) => {
                        let _ = file.sync_all();
                        IngestError::Interrupted(e)
                    }
                    // More than the claimed size, or than any asset may be: the sender
                    // is wrong, and so is what it sent.
                    Err(e) => {
                        drop(file);
                        partials.remove(&hash);
                        e
                    }
                    Ok(()) => IngestError::Interrupted("the writer stopped".into()),
                });
            }
            Err(e) => {
                // A full disk frees what it holds; any other failure (a resume from past
                // what is kept included) keeps it for a retry.
                if matches!(e, IngestError::NoSpace { .. }) {
                    partials.remove(&hash);
                }
                return Err(e);
            }
        };
        streamed?;
        if let Err(e) = written.verify(hash, size) {
            // The kept bytes or the new ones are not this asset's: start over next time.
            partials.remove(&hash);
            return Err(e);
        }
        let outcome = self
            .commit(
                Written {
                    file: Finished { path },
                    hash,
                    size,
                },
                new,
            )
            .await;
        drop(claim);
        outcome
    }
}

/// Opens the partial at `path` (creating it), hashes its first `offset` bytes and cuts it
/// there; the file is left positioned at `offset` for appending.
fn reopen(path: &Path, offset: u64) -> Result<(File, blake3::Hasher), IngestError> {
    let io = StoreError::io(path);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(StoreError::io(path))?;
    let received = file.metadata().map_err(StoreError::io(path))?.len();
    if offset > received {
        return Err(IngestError::BeyondPartial { offset, received });
    }
    let mut hasher = blake3::Hasher::new();
    let mut reader = BufReader::with_capacity(REHASH_BUFFER, (&mut file).take(offset));
    let copied = std::io::copy(&mut reader, &mut hasher).map_err(StoreError::io(path))?;
    drop(reader);
    if copied != offset {
        return Err(IngestError::BeyondPartial {
            offset,
            received: copied,
        });
    }
    file.set_len(offset).map_err(StoreError::io(path))?;
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    Ok((file, hasher))
}
