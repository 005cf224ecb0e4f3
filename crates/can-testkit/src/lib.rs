//! Helpers for integration tests and benchmarks: they start the real binaries
//! (`can-service`, `can-sync`) as child processes on loopback and talk to them over HTTP.

mod agent;
pub mod chaos;
pub mod desktop;
pub mod netns;
mod servers;
mod service;
mod trash;
#[cfg(target_os = "linux")]
pub mod wan;
#[cfg(target_os = "linux")]
pub mod window;

pub use agent::{Agent, list_all};
pub use servers::LocalServers;
pub use service::*;
pub use trash::*;

use std::path::PathBuf;

/// A workspace binary, built next to the running test (`target/<profile>/<name>`).
/// `CAN_<NAME>_BIN` (e.g. `CAN_SERVICE_BIN`) overrides it.
pub fn workspace_bin(name: &str) -> PathBuf {
    let var = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Ok(p) = std::env::var(&var) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace` (or set {var})",
        path.display()
    );
    path
}

/// A command for a workspace binary, run inside the named network namespace if given
/// (`ip netns exec` execs the binary, so the child's pid is the binary's).
pub fn command(name: &str, netns: Option<&str>) -> std::process::Command {
    match netns {
        None => std::process::Command::new(workspace_bin(name)),
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns]).arg(workspace_bin(name));
            c
        }
    }
}

/// A machine asleep, as its processes see it: each of `pids` is stopped (SIGSTOP) and
/// continued (SIGCONT) together after `secs`. Timers and sockets behave as after a real
/// suspend: peers hear nothing meanwhile, and the stopped side wakes to dead connections.
#[cfg(unix)]
pub async fn sleep_machine(pids: &[u32], secs: u64) {
    let signal_all = |sig: i32| {
        for &pid in pids {
            if let Ok(pid) = i32::try_from(pid) {
                // SAFETY: kill(2) on a child process this test started; nothing is shared.
                unsafe { libc::kill(pid, sig) };
            }
        }
    };
    signal_all(libc::SIGSTOP);
    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    signal_all(libc::SIGCONT);
}
