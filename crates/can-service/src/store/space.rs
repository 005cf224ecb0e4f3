//! Free space on the store's filesystem: an upload is refused (507) before it starts when
//! its claimed size would eat into the reserve, and aborted while it streams when the disk
//! fills up from elsewhere, so the store never fills the disk it shares with the system.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::StoreError;
use super::ingest::IngestError;

/// Largest default reserve: 1 GiB.
pub const MAX_DEFAULT_RESERVE: u64 = 1 << 30;

/// How much is written between two free-space checks while an upload streams. A statvfs
/// call costs about a microsecond; every 4 MiB it is noise next to writing the data.
pub const CHECK_EVERY: u64 = 4 << 20;

/// Size and free space of a filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    pub total: u64,
    /// What an unprivileged writer may still use (excludes the root-only blocks).
    pub available: u64,
}

/// The reserve when the config names none: 5 % of the filesystem, at most 1 GiB. A fixed
/// 1 GiB would forbid any upload on a small disk (an SD card, a test tmpfs); the cap keeps a
/// large disk from holding back hundreds of gigabytes.
pub fn default_reserve(total: u64) -> u64 {
    (total / 20).min(MAX_DEFAULT_RESERVE)
}

/// The free space of the filesystem holding `path`.
#[cfg(unix)]
pub fn disk_space(path: &Path) -> std::io::Result<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to writable memory
    // of the right type; statvfs writes only into it.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct (and it was zeroed before).
    let stat = unsafe { stat.assume_init() };
    // The field widths differ between platforms, hence the `as` casts (none narrows).
    #[allow(clippy::unnecessary_cast)]
    let (frsize, blocks, bavail) = (
        stat.f_frsize as u64,
        stat.f_blocks as u64,
        stat.f_bavail as u64,
    );
    Ok(DiskSpace {
        total: blocks.saturating_mul(frsize),
        available: bavail.saturating_mul(frsize),
    })
}

/// Elsewhere the check is skipped: the space reads as unlimited.
#[cfg(not(unix))]
pub fn disk_space(_path: &Path) -> std::io::Result<DiskSpace> {
    Ok(DiskSpace {
        total: u64::MAX,
        available: u64::MAX,
    })
}

/// How the guard learns the free space: [`disk_space`], or a fake in tests (a real disk
/// cannot be made to fill up on cue).
type Probe = Arc<dyn Fn(&Path) -> std::io::Result<DiskSpace> + Send + Sync>;

/// The free-space policy of one store.
#[derive(Clone)]
pub struct SpaceGuard {
    dir: PathBuf,
    reserve: u64,
    probe: Probe,
}

impl std::fmt::Debug for SpaceGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceGuard")
            .field("dir", &self.dir)
            .field("reserve", &self.reserve)
            .finish_non_exhaustive()
    }
}

impl SpaceGuard {
    /// `reserve`: the configured one, or `None` for [`default_reserve`] of `dir`'s filesystem.
    pub fn new(dir: &Path, reserve: Option<u64>) -> Result<Self, StoreError> {
        let reserve = match reserve {
            Some(r) => r,
            None => default_reserve(disk_space(dir).map_err(StoreError::io(dir))?.total),
        };
        Ok(Self {
            dir: dir.to_owned(),
            reserve,
            probe: Arc::new(disk_space),
        })
    }

    /// A guard that asks `probe` instead of the filesystem.
    #[cfg(test)]
    pub fn with_probe(
        dir: &Path,
        reserve: u64,
        probe: impl Fn(&Path) -> std::io::Result<DiskSpace> + Send + Sync + 'static,
    ) -> Self {
        Self {
            dir: dir.to_owned(),
            reserve,
            probe: Arc::new(probe),
        }
    }

    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Refuses when writing `more` bytes would leave less than the reserve free.
    pub fn check(&self, more: u64) -> Result<(), IngestError> {
        let available = (self.probe)(&self.dir)
            .map_err(StoreError::io(&self.dir))?
            .available;
        if more.saturating_add(self.reserve) > available {
            return Err(IngestError::NoSpace {
                needed: more,
                available,
                reserve: self.reserve,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_reserve_is_five_percent_capped_at_one_gib() {
        assert_eq!(default_reserve(0), 0);
        assert_eq!(default_reserve(19), 0);
        assert_eq!(default_reserve(100), 5);
        assert_eq!(default_reserve(8 << 30), (8u64 << 30) / 20);
        // 5 % of 20 GiB is exactly the cap; above it the cap holds.
        assert_eq!(default_reserve(20 << 30), 1 << 30);
        assert_eq!(default_reserve(4 << 40), 1 << 30);
        assert_eq!(default_reserve(u64::MAX), 1 << 30);
    }

    #[test]
    fn check_against_the_real_disk() {
        let dir = tempfile::tempdir().unwrap();
        let space = disk_space(dir.path()).unwrap();
        assert!(space.total >= space.available && space.total > 0);
        let none = SpaceGuard::new(dir.path(), Some(0)).unwrap();
        none.check(0).unwrap();
        let e = none.check(space.total.saturating_add(1)).unwrap_err();
        assert!(matches!(e, IngestError::NoSpace { reserve: 0, .. }), "{e}");
        let huge = SpaceGuard::new(dir.path(), Some(u64::MAX)).unwrap();
        assert!(huge.check(0).is_err());
        let default = SpaceGuard::new(dir.path(), None).unwrap();
        assert_eq!(default.reserve(), default_reserve(space.total));
    }
}
