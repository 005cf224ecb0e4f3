//! Running a test inside a private network namespace it creates itself (root only): nothing
//! it starts can reach or disturb the host network, and its loopback carries only its own
//! traffic (multicast included, for mDNS).

use std::process::Command;

const INSIDE: &str = "CAN_TESTKIT_INSIDE_NETNS";

/// Where a test runs after [`private_netns`].
pub enum Place {
    /// Inside the private namespace: run the test's body.
    Inside,
    /// The parent: the test ran inside and passed.
    Done,
    /// Not root, or no `unshare`/`ip`: the test cannot run here (it printed why).
    Skipped,
}

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "ip {args:?} failed");
}

/// Whether this process may create network namespaces: root, with unshare(1) and ip(8).
pub fn can_create() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    root && Command::new("unshare").arg("--version").output().is_ok()
        && Command::new("ip").arg("-V").output().is_ok()
}

/// Re-runs the test named `test` (this test binary, `--exact`) under `unshare -n` and
/// asserts that it passed there. Inside, `lo` is up with multicast on (mDNS over loopback).
pub fn private_netns(test: &str) -> Place {
    if std::env::var_os(INSIDE).is_some() {
        ip(&["link", "set", "lo", "up"]);
        ip(&["link", "set", "lo", "multicast", "on"]);
        ip(&["route", "add", "224.0.0.0/4", "dev", "lo"]);
        return Place::Inside;
    }
    if !can_create() {
        eprintln!(
            "SKIPPED: {test} needs root, unshare(1) and ip(8) for a private network namespace"
        );
        return Place::Skipped;
    }
    let exe = std::env::current_exe().expect("test binary");
    let status = Command::new("unshare")
        .args(["-n", "--"])
        .arg(exe)
        .args(["--exact", test, "--nocapture"])
        .env(INSIDE, "1")
        .status()
        .expect("run the test in a private network namespace");
    assert!(
        status.success(),
        "{test} failed inside its network namespace"
    );
    Place::Done
}
