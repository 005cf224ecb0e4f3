//! The clean-stop marker: lets [`super::Store::open`] skip the crash-repair scan, which
//! reads every row and every content file (16–24 s at a million assets), when the last run
//! ended cleanly.
//!
//! The marker is a file, `data_dir/clean-stop`, written only when the store's last handle
//! is dropped after a run in which no state change failed: then no upload, deletion or
//! restore is half done (each holds a handle until its row is committed), and the index
//! was closed (its field drops before this one). At open the marker is removed, durably,
//! before anything else changes: a crash in this run is never taken for a clean stop.
//!
//! What the scan exists for is a crash between a file move and its row's commit; a clean
//! stop cannot leave one. Damage from outside (files deleted by hand) is no longer found
//! at every start, only after a crash; serving such an asset fails with an error, never
//! with partial content, because content is streamed by its recorded size.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::StoreError;
use super::shards::sync_dir;

const FILE: &str = "clean-stop";
const CONTENT: &[u8] = b"can-service stopped cleanly; remove to force a repair scan\n";

#[derive(Debug)]
pub(super) struct CleanStop {
    dir: PathBuf,
    /// Nothing may be written at drop: `open` has not finished, or a change failed.
    dirty: AtomicBool,
}

impl CleanStop {
    /// Takes the marker the last clean stop left: whether there was one. Starts dirty, so
    /// that a store whose `open` fails leaves no marker; [`CleanStop::arm`] ends that.
    pub fn take(data_dir: &Path) -> Result<(Self, bool), StoreError> {
        let path = data_dir.join(FILE);
        let was_clean = match std::fs::remove_file(&path) {
            Ok(()) => {
                sync_dir(data_dir)?;
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(StoreError::io(&path)(e)),
        };
        Ok((
            Self {
                dir: data_dir.to_owned(),
                dirty: AtomicBool::new(true),
            },
            was_clean,
        ))
    }

    /// The store opened: a clean stop may now leave the marker.
    pub fn arm(&self) {
        self.dirty.store(false, Ordering::SeqCst);
    }

    /// A change failed part way (files and index may disagree): the next start scans.
    pub fn mark_dirty(&self) {
        if !self.dirty.swap(true, Ordering::SeqCst) {
            tracing::warn!("a store change failed; the next start runs the repair scan");
        }
    }

    /// Marks the run dirty unless [`Pending::done`] says the change ended cleanly: held
    /// across a change's blocking work, so that a failure counts even when nobody awaits
    /// the result any more, and a panic counts too.
    pub fn pending(&self) -> Pending<'_> {
        Pending(Some(self))
    }

    fn write(&self) -> std::io::Result<()> {
        let path = self.dir.join(FILE);
        let mut f = std::fs::File::create(&path)?;
        std::io::Write::write_all(&mut f, CONTENT)?;
        f.sync_all()?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

/// A change under way; see [`CleanStop::pending`].
pub(super) struct Pending<'a>(Option<&'a CleanStop>);

impl Pending<'_> {
    /// The change ended: `failed` says whether files and index may now disagree.
    pub fn done(mut self, failed: bool) {
        if let Some(c) = self.0.take()
            && failed
        {
            c.mark_dirty();
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        // Not ended by `done`: the work panicked part way.
        if let Some(c) = self.0.take() {
            c.mark_dirty();
        }
    }
}

impl Drop for CleanStop {
    fn drop(&mut self) {
        // A panic unwinding through the last handle (a seed or change part way) is no
        // clean stop.
        if self.dirty.load(Ordering::SeqCst) || std::thread::panicking() {
            return;
        }
        if let Err(e) = self.write() {
            tracing::warn!(error = %e, "cannot record the clean stop; the next start scans");
        }
    }
}
