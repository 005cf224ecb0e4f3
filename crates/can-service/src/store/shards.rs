//! The 256 shard folders `objects/00` … `objects/ff`, and the durability of their entries.
//!
//! A content file is only durable once the directory entry of its shard folder is durable
//! too, i.e. `objects/` was fsynced after the folder was created. Creating folders on demand
//! raced: upload A created `objects/ab` and was about to fsync `objects/`; upload B saw the
//! folder, renamed its file in, fsynced only `objects/ab` and committed its row. A crash then
//! could drop `objects/ab` and with it B's acknowledged asset.
//!
//! So every folder is created at open and `objects/` is fsynced once, before any upload. A
//! per-shard flag says "this folder's entry is durable"; it is set only *after* the fsync,
//! and [`Shards::ensure_durable`] runs after each rename and before the row is committed,
//! so an upload can never commit into a folder whose entry might still be lost. A folder
//! removed behind the service's back is recreated the same way (flag cleared first).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::StoreError;

pub(super) struct Shards {
    objects: PathBuf,
    durable: [AtomicBool; 256],
    // Serialises creating folders and fsyncing `objects/`; only taken off the fast path.
    create: Mutex<()>,
    // How often `objects/` was fsynced: lets tests check the ordering described above.
    objects_syncs: AtomicU64,
}

impl Shards {
    /// Creates every shard folder under `objects` and makes their entries durable.
    pub fn open(objects: &Path) -> Result<Self, StoreError> {
        let shards = Self {
            objects: objects.to_owned(),
            durable: std::array::from_fn(|_| AtomicBool::new(false)),
            create: Mutex::new(()),
            objects_syncs: AtomicU64::new(0),
        };
        for i in 0..=255u8 {
            let dir = shards.dir(i);
            std::fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        }
        shards.sync_objects()?;
        for flag in &shards.durable {
            flag.store(true, Ordering::SeqCst);
        }
        Ok(shards)
    }

    /// The folder of shard `i` (the first byte of the hash).
    pub fn dir(&self, i: u8) -> PathBuf {
        self.objects.join(hex::encode([i]))
    }

    pub fn is_durable(&self, i: u8) -> bool {
        self.durable[usize::from(i)].load(Ordering::SeqCst)
    }

    /// Makes sure the entry of shard `i` in `objects/` is durable. Called after a file was
    /// renamed into the folder and before its row is committed: if the folder was
    /// (re)created by a concurrent upload that has not fsynced `objects/` yet, the flag is
    /// still clear and this fsyncs it itself rather than trusting the other upload.
    pub fn ensure_durable(&self, i: u8) -> Result<(), StoreError> {
        if self.is_durable(i) {
            return Ok(());
        }
        let _guard = self.create.lock().unwrap_or_else(|p| p.into_inner());
        if !self.is_durable(i) {
            self.sync_objects()?;
            self.durable[usize::from(i)].store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Recreates the folder of shard `i` after it was found missing, and makes it durable.
    /// The flag is cleared *before* the folder exists again, so an upload whose rename
    /// lands in the new folder sees a clear flag in [`Shards::ensure_durable`] until the
    /// fsync below has happened.
    pub fn recreate(&self, i: u8) -> Result<(), StoreError> {
        let _guard = self.create.lock().unwrap_or_else(|p| p.into_inner());
        self.durable[usize::from(i)].store(false, Ordering::SeqCst);
        let dir = self.dir(i);
        tracing::warn!(dir = %dir.display(), "shard folder was missing; recreating it");
        std::fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        self.sync_objects()?;
        self.durable[usize::from(i)].store(true, Ordering::SeqCst);
        Ok(())
    }

    fn sync_objects(&self) -> Result<(), StoreError> {
        sync_dir(&self.objects)?;
        self.objects_syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    #[cfg(test)]
    pub fn objects_syncs(&self) -> u64 {
        self.objects_syncs.load(Ordering::SeqCst)
    }

    /// Test hook: pretend shard `i` was just created by an upload that has not fsynced yet.
    #[cfg(test)]
    pub fn forget_durability(&self, i: u8) {
        self.durable[usize::from(i)].store(false, Ordering::SeqCst);
    }
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(dir))
}
