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
