//! Gives memory back once the app lives in the tray alone (its window closed and WebKit's
//! processes gone, or started hidden and never opened).
//!
//! What the app process still holds then is mostly not its own data: about 30 MiB is
//! anonymous (the engine, the built-in store, GTK), and well over 100 MiB is pages of
//! shared libraries mapped into it, read while the window lived: Mesa's llvmpipe (libLLVM,
//! which GTK loads at start to choose GL visuals), WebKitGTK and JavaScriptCore, speech
//! voices (flite), and the app binary itself (bench/README.md, app-idle). Those pages are
//! clean copies of files in the page cache; they count in the process's RSS for as long as
//! they are mapped, whether or not anything runs them again.
//!
//! So, on Linux with glibc:
//! - `malloc_trim(0)` hands the freed heap of the webview back to the system;
//! - the read-only segments of every loaded ELF object are unmapped from our page tables
//!   with `MADV_DONTNEED`. The pages stay in the page cache (shared with other processes,
//!   reclaimable by the kernel once no one maps them); what the app still runs faults back
//!   in at once, from the page cache, so RSS settles at the working set; a reopened window
//!   faults back in what it needs (WebKit's code) the same way.
//!
//! Why not `MADV_PAGEOUT` on the read-only file mappings of /proc/self/maps: Linux acts on
//! file pages for it only if the caller owns the file or may write it (a page-cache side
//! channel otherwise, `can_do_file_pageout` in mm/madvise.c), so for a user's app and the
//! system's libraries (owned by root) it does nothing; it would work only when run as root
//! (as the bench is), which would measure a saving no user gets. And it evicts the pages
//! from the page cache, so their next use would read the disk.
//!
//! Why `MADV_DONTNEED` is safe here, when on a private mapping it discards private changes:
//! it is applied only to the `PT_LOAD` segments the loader mapped without write permission
//! (code, read-only data), which are never written, so hold no private copy; objects with
//! text relocations (whose code the loader did write) are skipped, and so are pages a
//! writable segment shares. It runs inside `dl_iterate_phdr`, which holds glibc's lock that
//! `dlclose` holds while it unmaps an object: no segment we look at can be unmapped and its
//! addresses reused by something else before our `madvise`. And only the parts that
//! /proc/self/maps lists as read-only mappings of a file are released: a segment someone
//! copied into anonymous memory (glibc's `glibc.rtld.hugetlb=2` does that) is left alone.
//! Bounded: at most `MAX_OBJECTS` objects and `MAX_MAPPINGS` mappings; a few hundred system
//! calls, once.

/// What a trim did, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct Trimmed {
    /// Loaded objects whose read-only segments were released.
    pub objects: usize,
    /// Bytes of address space released (not all of it was resident).
    pub bytes: usize,
    /// The process's resident set before and after, in KiB (0 if /proc could not say).
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

/// Releases what a process with no webview no longer needs resident (see the module's
/// comment). Call it only once no window exists; a no-op off Linux/glibc.
pub fn release_unused() -> Trimmed {
    imp::release_unused()
}

#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod imp {
    use std::ffi::{c_int, c_void};

    use super::Trimmed;

    /// Loaded objects looked at, at most (the app maps a few hundred).
    const MAX_OBJECTS: usize = 4096;
    /// Lines of /proc/self/maps read, at most (the app has a few thousand mappings).
    const MAX_MAPPINGS: usize = 65_536;
    /// Entries of an object's dynamic section read, at most, looking for text relocations.
    const MAX_DYNAMIC: usize = 4096;
    const DT_NULL: i64 = 0;
    const DT_TEXTREL: i64 = 22;
    const DT_FLAGS: i64 = 30;
    const DF_TEXTREL: u64 = 0x4;

    /// An `Elf64_Dyn` (the libc crate has no type for it).
    #[repr(C)]
    struct Dyn {
        tag: i64,
        val: u64,
    }

    struct Walk {
        page: usize,
        seen: usize,
        /// Read-only mappings of files, sorted by address: [start, end).
        files: Vec<(usize, usize)>,
        trimmed: Trimmed,
    }

    pub fn release_unused() -> Trimmed {
        let rss_before_kib = rss_kib();
        // SAFETY: malloc_trim only walks glibc's own free lists.
        unsafe {
            libc::malloc_trim(0);
        }
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(0);
        let mut walk = Walk {
            page: if page.is_power_of_two() { page } else { 4096 },
            seen: 0,
            files: read_only_file_mappings(),
            trimmed: Trimmed::default(),
        };
        // SAFETY: the callback matches dl_iterate_phdr's signature and only uses `data` as
        // the `Walk` passed here, which outlives the call.
        unsafe {
            libc::dl_iterate_phdr(Some(each_object), (&raw mut walk).cast::<c_void>());
        }
        Trimmed {
            rss_before_kib,
            rss_after_kib: rss_kib(),
            ..walk.trimmed
        }
    }

    /// Called by glibc for each loaded object, under its loader lock (see the module's
    /// comment): nothing here may panic (it would unwind into C) or call into the loader.
    unsafe extern "C" fn each_object(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `data` is the `Walk` that release_unused passed, alive and not aliased
        // during the iteration; `info` is glibc's, valid for this call.
        let (walk, info) = unsafe { (&mut *data.cast::<Walk>(), &*info) };
        walk.seen += 1;
        if walk.seen > MAX_OBJECTS {
            return 1; // stops the iteration
        }
        // The program itself comes first (with an empty name); after it, only objects
        // loaded from a file: not the vDSO, which the kernel maps.
        let from_file = walk.seen == 1
            || (!info.dlpi_name.is_null()
                // SAFETY: a non-null dlpi_name is a NUL-terminated string; its first byte
                // exists (at worst the NUL).
                && unsafe { *info.dlpi_name } == b'/' as libc::c_char);
        if !from_file || info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: glibc's program headers of a loaded object, dlpi_phnum of them.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        let base = info.dlpi_addr as usize;
        if has_text_relocations(base, phdrs) {
            return 0;
        }
        let page = walk.page;
        let loads = phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD);
        let mut released = 0;
        for ro in loads.clone().filter(|p| p.p_flags & libc::PF_W == 0) {
            // Whole pages inside the segment only…
            let start = base.wrapping_add(ro.p_vaddr as usize);
            let (mut lo, mut hi) = (
                start.next_multiple_of(page),
                start.saturating_add(ro.p_memsz as usize) & !(page - 1),
            );
            // …and none that a writable segment shares (they may hold written data).
            for rw in loads.clone().filter(|p| p.p_flags & libc::PF_W != 0) {
                let w_start = base.wrapping_add(rw.p_vaddr as usize);
                let (w_lo, w_hi) = (
                    w_start & !(page - 1),
                    w_start
                        .saturating_add(rw.p_memsz as usize)
                        .next_multiple_of(page),
                );
                if w_lo < hi && lo < w_hi {
                    if w_lo <= lo {
                        lo = w_hi;
                    } else {
                        hi = w_lo;
                    }
                }
            }
            // Only what the kernel maps read-only from a file.
            let from = walk.files.partition_point(|&(_, f_hi)| f_hi <= lo);
            for &(f_lo, f_hi) in walk.files.iter().skip(from) {
                if f_lo >= hi {
                    break;
                }
                let (a, b) = (lo.max(f_lo), hi.min(f_hi));
                if a >= b {
                    continue;
                }
                // SAFETY: [a, b) is page-aligned, within a read-only segment of an object
                // that stays loaded during the call and mapped read-only from its file (see
                // the module's comment): dropping those pages loses nothing, they are read
                // again from the page cache when touched.
                let rc = unsafe { libc::madvise(a as *mut c_void, b - a, libc::MADV_DONTNEED) };
                if rc == 0 {
                    released += b - a;
                }
            }
        }
        if released > 0 {
            walk.trimmed.objects += 1;
            walk.trimmed.bytes += released;
        }
        0
    }

    /// Whether the loader had to write this object's code (DT_TEXTREL, DF_TEXTREL): then
    /// its read-only segments may hold private changes, and are left alone.
    fn has_text_relocations(base: usize, phdrs: &[libc::Elf64_Phdr]) -> bool {
        let Some(dynamic) = phdrs.iter().find(|p| p.p_type == libc::PT_DYNAMIC) else {
            return false;
        };
        let max = (dynamic.p_memsz as usize / size_of::<Dyn>()).min(MAX_DYNAMIC);
        let first = base.wrapping_add(dynamic.p_vaddr as usize) as *const Dyn;
        for i in 0..max {
            // SAFETY: the dynamic section of a loaded object, mapped and readable, at most
            // p_memsz bytes of it.
            let d = unsafe { &*first.add(i) };
            match d.tag {
                DT_NULL => return false,
                DT_TEXTREL => return true,
                DT_FLAGS if d.val & DF_TEXTREL != 0 => return true,
                _ => {}
            }
        }
        false
    }

    /// The read-only mappings of files in /proc/self/maps ("start-end perms offset dev
    /// inode path"), sorted; empty if it cannot be read (then nothing is released).
    fn read_only_file_mappings() -> Vec<(usize, usize)> {
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return Vec::new();
        };
        let mut out: Vec<(usize, usize)> = maps
            .lines()
            .take(MAX_MAPPINGS)
            .filter_map(|line| {
                let mut f = line.split_whitespace();
                let (range, perms) = (f.next()?, f.next()?);
                let (_offset, _dev, inode, path) = (f.next()?, f.next()?, f.next()?, f.next()?);
                let file = inode != "0" && path.starts_with('/') && !line.ends_with("(deleted)");
                if !file || perms.as_bytes().get(1) != Some(&b'-') {
                    return None;
                }
                let (lo, hi) = range.split_once('-')?;
                let lo = usize::from_str_radix(lo, 16).ok()?;
                let hi = usize::from_str_radix(hi, 16).ok()?;
                (lo < hi).then_some((lo, hi))
            })
            .collect();
        out.sort_unstable();
        out
    }

    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn releases_read_only_segments_and_the_process_runs_on() {
            let t = super::release_unused();
            // The test binary and libc at least, whose code is mapped read-only.
            assert!(t.objects >= 2, "{t:?}");
            assert!(t.bytes > 0, "{t:?}");
            // Code and read-only data dropped from our page tables come back when used:
            // this runs, allocates and formats after the trim.
            let again = super::release_unused();
            assert!(format!("{again:?}").contains("objects"));
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
mod imp {
    pub fn release_unused() -> super::Trimmed {
        super::Trimmed::default()
    }
}
