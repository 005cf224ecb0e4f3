//! Runs a benchmark inside a private network namespace (root only): nothing it starts can
//! reach or disturb the host network, and its loopback carries only its own traffic.

use std::process::Command;

use anyhow::ensure;

const INSIDE: &str = "CAN_BENCH_INSIDE_NETNS";

/// Where the benchmark runs.
pub enum Netns {
    /// The parent: the bench ran in a private namespace and has finished; return.
    Done,
    /// In a private namespace, with `lo` up (and multicast on it if asked).
    Private,
    /// On the host's network: not root, or no `unshare`.
    Host,
}

/// As root, re-runs this very command (same arguments) under `unshare -n` with `envs` set,
/// and waits for it.
pub fn enter(multicast: bool, envs: &[(&str, &str)]) -> anyhow::Result<Netns> {
    if std::env::var_os(INSIDE).is_some() {
        let mut cmds = vec![&["link", "set", "lo", "up"][..]];
        if multicast {
            cmds.push(&["link", "set", "lo", "multicast", "on"]);
            cmds.push(&["route", "add", "224.0.0.0/4", "dev", "lo"]);
        }
        for a in cmds {
            ensure!(
                Command::new("ip").args(a).status()?.success(),
                "ip {a:?} failed"
            );
        }
        return Ok(Netns::Private);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !root || Command::new("unshare").arg("--version").output().is_err() {
        return Ok(Netns::Host);
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["-n", "--"])
        .args(std::env::args_os())
        .env(INSIDE, "1");
    for (k, v) in envs {
        if std::env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
    let status = cmd.status()?;
    ensure!(
        status.success(),
        "the bench failed inside its network namespace"
    );
    Ok(Netns::Done)
}
