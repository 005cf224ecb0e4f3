//! Resource use of child processes, read from /proc.

use anyhow::Context;

/// Peak resident set size (VmHWM) of a process, in bytes.
pub fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM:").map(|k| k * 1024)
}

/// Current resident set size (VmRSS) of a process, in bytes.
pub fn current_rss(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:").map(|k| k * 1024)
}

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} for pid {pid}"))
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// CPU time (user + system, all threads) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("malformed /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5), so utime (14) and stime (15) are at 11 and 12.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no CPU times for pid {pid}"))
    };
    // SAFETY: sysconf only reads a constant of the running system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(11)? + ticks(12)?) as f64 / hz)
}

/// Resets the process's peak RSS (VmHWM) to its current RSS, so a later [`peak_rss`] gives
/// the peak of what happened in between (`/proc/<pid>/clear_refs`, value 5; needs the right
/// to write there: root or the same user).
pub fn reset_peak_rss(pid: u32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("cannot reset the peak RSS of pid {pid}"))
}

/// Processes whose parent is `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_owned();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Whether a process with this pid exists (a zombie counts until it is reaped).
pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Sends a signal to one process by its pid.
pub fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a pid this bench started; no memory is shared.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// CPU time a whole process (all its threads, also those that have ended) has used so far,
/// in nanoseconds, from the kernel's process CPU clock (`clock_getcpuclockid`). Unlike
/// [`cpu_seconds`], whose clock ticks are 10 ms, this resolves the few milliseconds a
/// minute an idle process spends.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: both calls write only to the locals passed by pointer.
    unsafe {
        if libc::clock_getcpuclockid(pid, &mut clock) != 0 {
            return None;
        }
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if libc::clock_gettime(clock, &mut ts) != 0 {
            return None;
        }
        Some(u64::try_from(ts.tv_sec).ok()? * 1_000_000_000 + u64::try_from(ts.tv_nsec).ok()?)
    }
}

/// Seconds on `CLOCK_MONOTONIC`, the clock `perf record -k CLOCK_MONOTONIC` stamps its
/// samples with: a window printed in these units can be cut out with `perf report --time`.
pub fn monotonic_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes only to the local passed by pointer.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// One thread's scheduler figures (`/proc/<pid>/task/<tid>/schedstat`): time run, in ns,
/// and how many times it was put on a CPU (each wake-up is one).
#[derive(Clone, Debug)]
pub struct ThreadRun {
    pub tid: u32,
    pub name: String,
    pub run_ns: u64,
    pub runs: u64,
}

/// The threads of a process now, with their scheduler figures.
pub fn threads(pid: u32) -> Vec<ThreadRun> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let base = format!("/proc/{pid}/task/{tid}");
            let stat = std::fs::read_to_string(format!("{base}/schedstat")).ok()?;
            let mut f = stat.split_whitespace();
            let run_ns = f.next()?.parse().ok()?;
            let runs = f.nth(1)?.parse().ok()?;
            let name = std::fs::read_to_string(format!("{base}/comm"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            Some(ThreadRun {
                tid,
                name,
                run_ns,
                runs,
            })
        })
        .collect()
}
