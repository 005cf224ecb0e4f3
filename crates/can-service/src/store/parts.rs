//! Uploads written in parts at once: a sync agent that fetches one large asset over several
//! streams writes each part where it belongs in the asset's partial file
//! (`data_dir/partial/<64 hex>`, see [`super::partial`]), in any order, from several tasks.
//!
//! A part is an aligned run of 2^k BLAKE3 chunks (1 KiB each), so it is a whole subtree of
//! the asset's hash tree: its chaining value is computed from its own bytes as they are
//! written, and the parts' values merge, in the tree's shape, to the hash of the whole.
//! Every byte is hashed by the store as it is written, as in any upload, and the asset is
//! stored only if the merged hash is its name, after an fsync: whole and verified or not at
//! all. An upload that ends unfinished leaves the partial cut to the parts written
//! contiguously from byte 0, so the next upload of the hash resumes there.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, left_subtree_len, merge_subtrees_non_root, merge_subtrees_root,
};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::ingest::{IngestError, IngestOutcome, Msg, NewAsset, Written};
use super::partial::{Claim, Finished};
use super::{AssetMeta, Store, StoreError};
use crate::hash::AssetHash;

/// The most parts an upload may have (a 1 GiB asset in 16 KiB parts).
pub const MAX_PARTS: u64 = 1 << 16;
/// The smallest part: one BLAKE3 chunk.
pub const MIN_PART: u64 = 1024;
/// Chunks queued per part writer: less than a single upload's queue, as several parts
/// are written at once (2 MiB each in the sync engine's 256 KiB chunks).
const PART_CHANNEL_CHUNKS: usize = 8;

/// How [`Store::begin_parts`] went.
pub enum Begun {
    /// The asset is stored already; nothing to write.
    Existing(AssetMeta),
    Upload(PartsUpload),
}

/// An upload of one asset in parts; see the module. Dropped unfinished, it keeps the parts
/// written contiguously from byte 0 as the partial.
pub struct PartsUpload {
    shared: Arc<Shared>,
}

/// Writes one part: exactly its bytes, in order, then [`PartWriter::finish`].
pub struct PartWriter {
    index: usize,
    /// Which writing of the part this is (see [`PartState`]).
    generation: u64,
    len: u64,
    sent: u64,
    tx: mpsc::Sender<Msg>,
    /// Gone once awaited (after a failed write).
    writer: Option<JoinHandle<Result<ChainingValue, IngestError>>>,
    shared: Arc<Shared>,
}

/// One part: which writing of it is current, and its hash once that writing is whole.
#[derive(Debug, Clone, Copy, Default)]
struct PartState {
    /// Bumped each time the part is written again: an older writer's thread writes nothing
    /// more, and its hash is not kept.
    generation: u64,
    cv: Option<ChainingValue>,
}

struct Shared {
    store: Store,
    hash: AssetHash,
    size: u64,
    part_len: u64,
    path: PathBuf,
    new: NewAsset,
    parts: Mutex<Vec<PartState>>,
    /// Held by a part's writer thread while it runs, and checked with the part's
    /// generation before every write: threads of one part never write at once, and an
    /// outdated one (whose thread may start late) writes nothing more, so the bytes on
    /// disk are those of the writing whose hash is kept.
    writing: Vec<Mutex<()>>,
    /// Stored or refused: nothing is kept, and no writer writes any more.
    settled: AtomicBool,
    /// Held until the partial is cut (fields drop after [`Drop::drop`]).
    _claim: Claim,
}

impl Shared {
    fn parts(&self) -> std::sync::MutexGuard<'_, Vec<PartState>> {
        self.parts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether writing `generation` of part `i` may still write.
    fn current(&self, i: usize, generation: u64) -> bool {
        !self.settled.load(Ordering::Acquire) && self.parts()[i].generation == generation
    }

    fn range(&self, i: usize) -> (u64, u64) {
        range(self.size, self.part_len, i)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if self.settled.load(Ordering::Acquire) {
            return;
        }
        // Runs after every part's writer thread ended (each holds this): what is kept is
        // the run of whole parts from byte 0, the bytes a resume may start after.
        let whole = self.parts().iter().take_while(|p| p.cv.is_some()).count();
        let keep = (whole as u64 * self.part_len).min(self.size);
        // Not fsynced (this may run on an async worker): a resume re-hashes what is kept,
        // and the asset is stored only if the whole hashes to its name.
        let cut = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .and_then(|f| f.set_len(keep));
        if let Err(e) = cut {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot cut a partial upload; removing it");
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Part `i` of an asset of `size` bytes in parts of `part_len`: (offset, length).
fn range(size: u64, part_len: u64, i: usize) -> (u64, u64) {
    let start = (i as u64).saturating_mul(part_len);
    (start, part_len.min(size.saturating_sub(start)))
}

impl Store {
    /// Starts an upload of `hash` (`size` bytes) in parts of `part_len` bytes (a power of
    /// two, at least 1 KiB, less than `size`, at most [`MAX_PARTS`] parts). A partial kept
    /// of the hash is discarded: the parts start from nothing.
    pub async fn begin_parts(
        &self,
        new: NewAsset,
        hash: AssetHash,
        size: u64,
        part_len: u64,
    ) -> Result<Begun, IngestError> {
        let new = new.cleaned();
        new.validate()?;
        let limit = self.max_asset_bytes();
        if size > limit {
            return Err(IngestError::TooLarge { limit });
        }
        if !part_len.is_power_of_two()
            || part_len < MIN_PART
            || part_len >= size
            || size.div_ceil(part_len) > MAX_PARTS
        {
            return Err(IngestError::Invalid {
                field: "part_len",
                message: format!("{part_len} does not cut {size} bytes into parts"),
            });
        }
        let partials = self.inner.partials.clone();
        let claim = partials.claim(hash).ok_or(IngestError::Busy)?;
        if let Some(existing) = self.existing_for_upload(hash, new.stamp).await? {
            partials.remove(&hash);
            return Ok(Begun::Existing(existing));
        }
        self.check_space_reclaiming(size, Some(&hash))?;
        let path = partials.path(&hash);
        let created = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || std::fs::File::create(&path).map(drop))
        };
        created
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
            .map_err(StoreError::io(&path))?;
        let count = size.div_ceil(part_len) as usize;
        Ok(Begun::Upload(PartsUpload {
            shared: Arc::new(Shared {
                store: self.clone(),
                hash,
                size,
                part_len,
                path,
                new,
                parts: Mutex::new(vec![PartState::default(); count]),
                writing: (0..count).map(|_| Mutex::new(())).collect(),
                settled: AtomicBool::new(false),
                _claim: claim,
            }),
        }))
    }
}

impl PartsUpload {
    pub fn count(&self) -> usize {
        self.shared.parts().len()
    }

    /// Part `i`'s bytes: (offset, length).
    pub fn range(&self, i: usize) -> (u64, u64) {
        self.shared.range(i)
    }

    /// A writer of part `i`, on its own thread. Writing a part again replaces it: drop the
    /// earlier writer first (the new one's thread waits until the old one's has ended).
    pub fn part(&self, i: usize) -> Result<PartWriter, IngestError> {
        if i >= self.count() {
            return Err(IngestError::Invalid {
                field: "part",
                message: format!("{i} is past the last part"),
            });
        }
        let (_, len) = self.shared.range(i);
        let generation = {
            let mut parts = self.shared.parts();
            parts[i].generation += 1;
            parts[i].cv = None;
            parts[i].generation
        };
        let (tx, rx) = mpsc::channel(PART_CHANNEL_CHUNKS);
        let shared = self.shared.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let _alone = shared.writing[i].lock().unwrap_or_else(|p| p.into_inner());
            write_part(&shared, i, generation, rx)
        });
        Ok(PartWriter {
            index: i,
            generation,
            len,
            sent: 0,
            tx,
            writer: Some(writer),
            shared: self.shared.clone(),
        })
    }

    /// Stores the asset once every part is written and their hashes merge to its name
    /// (fsynced, renamed into place, committed); a mismatch stores nothing and keeps
    /// nothing.
    pub async fn finish(self) -> Result<IngestOutcome, IngestError> {
        let shared = &self.shared;
        let cvs: Option<Vec<ChainingValue>> = shared.parts().iter().map(|p| p.cv).collect();
        let cvs = cvs.ok_or_else(|| IngestError::Interrupted("parts are missing".into()))?;
        let actual = AssetHash::from(blake3::Hash::from_bytes(root(
            shared.part_len,
            &cvs,
            shared.size,
        )));
        if actual != shared.hash {
            shared.settled.store(true, Ordering::Release);
            let _ = std::fs::remove_file(&shared.path);
            return Err(IngestError::HashMismatch {
                expected: shared.hash,
                actual,
            });
        }
        let synced = {
            let path = shared.path.clone();
            tokio::task::spawn_blocking(move || std::fs::File::open(&path)?.sync_all())
        };
        synced
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
            .map_err(StoreError::io(&shared.path))?;
        // From here the file is the commit's: landed, or left for the partials' cleanup.
        shared.settled.store(true, Ordering::Release);
        let written = Written {
            file: Finished {
                path: shared.path.clone(),
            },
            hash: shared.hash,
            size: shared.size,
        };
        shared.store.commit(written, shared.new.clone()).await
    }
}

impl PartWriter {
    /// The next bytes of the part; more than the part holds is an error.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), IngestError> {
        self.sent += chunk.len() as u64;
        if self.sent > self.len {
            return Err(IngestError::SizeMismatch {
                expected: self.len,
                actual: self.sent,
            });
        }
        if self.tx.send(Msg::Data(chunk)).await.is_err() {
            // The writer ended: its error says why (once; then it is gone).
            let Some(writer) = self.writer.take() else {
                return Err(IngestError::Interrupted("the part's writer stopped".into()));
            };
            return Err(match writer.await {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => IngestError::Interrupted("the part's writer stopped".into()),
                Err(e) => StoreError::Task(e.to_string()).into(),
            });
        }
        Ok(())
    }

    /// The part is whole: written through to the file, its hash kept for the merge.
    pub async fn finish(self) -> Result<(), IngestError> {
        if self.sent != self.len {
            return Err(IngestError::SizeMismatch {
                expected: self.len,
                actual: self.sent,
            });
        }
        let Some(writer) = self.writer else {
            return Err(IngestError::Interrupted("the part's writer stopped".into()));
        };
        let _ = self.tx.send(Msg::Finish).await;
        let cv = writer
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        let mut parts = self.shared.parts();
        let part = &mut parts[self.index];
        if part.generation != self.generation {
            return Err(IngestError::Interrupted(
                "the part is being written again".into(),
            ));
        }
        part.cv = Some(cv);
        Ok(())
    }
}

/// A part's writer thread (holding the part's `writing` lock): hashes the part as the
/// subtree at its offset and writes it there, until `Finish` (then starts its writeback).
/// Each chunk is written straight to the file, no buffer that a drop could flush later,
/// and only while this writing is the part's current one.
fn write_part(
    shared: &Shared,
    i: usize,
    generation: u64,
    mut rx: mpsc::Receiver<Msg>,
) -> Result<ChainingValue, IngestError> {
    let (offset, len) = shared.range(i);
    let path = &shared.path;
    let io = |source: std::io::Error| -> IngestError {
        if source.kind() == std::io::ErrorKind::StorageFull {
            IngestError::NoSpace {
                needed: len,
                available: 0,
                reserve: shared.store.inner.space.reserve(),
            }
        } else {
            StoreError::Io {
                path: path.to_owned(),
                source,
            }
            .into()
        }
    };
    let outdated = || IngestError::Interrupted("the part is being written again".into());
    if !shared.current(i, generation) {
        return Err(outdated());
    }
    let mut file = OpenOptions::new().write(true).open(path).map_err(io)?;
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(offset);
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Data(chunk) => {
                if !shared.current(i, generation) {
                    return Err(outdated());
                }
                hasher.update(&chunk);
                file.write_all(&chunk).map_err(io)?;
            }
            Msg::Finish => {
                super::ingest::start_writeback(&file, offset, len);
                return Ok(hasher.finalize_non_root());
            }
        }
    }
    Err(IngestError::Interrupted(
        "the part's body ended early".into(),
    ))
}

/// The hash of `size` bytes whose parts of `part_len` bytes have the chaining values
/// `cvs`: BLAKE3 puts the largest power-of-two number of chunks strictly below a subtree's
/// length on its left, which with parts of 2^k chunks is a whole number of parts.
fn root(part_len: u64, cvs: &[ChainingValue], size: u64) -> [u8; 32] {
    fn merge(part_len: u64, cvs: &[ChainingValue], len: u64, root: bool) -> [u8; 32] {
        if cvs.len() <= 1 {
            return cvs.first().copied().unwrap_or_default();
        }
        let left_len = left_subtree_len(len);
        let split = ((left_len / part_len) as usize).min(cvs.len());
        let l = merge(part_len, &cvs[..split], left_len, false);
        let r = merge(part_len, &cvs[split..], len - left_len, false);
        if root {
            *merge_subtrees_root(&l, &r, Mode::Hash).as_bytes()
        } else {
            merge_subtrees_non_root(&l, &r, Mode::Hash)
        }
    }
    merge(part_len, cvs, size, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 1024) as u8).collect()
    }

    fn cvs(content: &[u8], part_len: u64) -> Vec<ChainingValue> {
        let size = content.len() as u64;
        (0..size.div_ceil(part_len) as usize)
            .map(|i| {
                let (offset, len) = range(size, part_len, i);
                let mut h = blake3::Hasher::new();
                h.set_input_offset(offset);
                h.update(&content[offset as usize..(offset + len) as usize]);
                h.finalize_non_root()
            })
            .collect()
    }

    #[test]
    fn the_parts_hashes_merge_to_the_whole_hash() {
        for (size, part_len) in [
            (2048, 1024),
            (2049, 1024),
            (5 * 1024 + 17, 1024),
            (8 * 4096, 4096),
            (9 * 4096 - 1, 4096),
            (13 * 4096 + 1, 4096),
        ] {
            let content = data(size);
            let got = root(part_len, &cvs(&content, part_len), size as u64);
            assert_eq!(
                got,
                *blake3::hash(&content).as_bytes(),
                "{size} / {part_len}"
            );
        }
    }

    #[test]
    fn a_wrong_part_changes_the_merged_hash() {
        let mut content = data(6 * 1024);
        let whole = *blake3::hash(&content).as_bytes();
        content[3 * 1024 + 5] ^= 1;
        assert_ne!(root(1024, &cvs(&content, 1024), 6 * 1024), whole);
    }
}
