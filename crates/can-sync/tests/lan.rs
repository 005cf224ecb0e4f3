//! LAN discovery (mDNS) for real, in a private network namespace the test creates itself:
//! the test re-runs itself under `unshare -n`, turns on multicast on that namespace's
//! loopback, and two agents find each other with rendezvous, relays and tickets all off.
//! Needs root (CI runs as root); skips with a message otherwise.

use std::process::Command;

use can_testkit::*;

const PASS: &str = "harbor quill nimbus saffron delta willow ember";
const INNER: &str = "CAN_SYNC_LAN_TEST_INSIDE_NETNS";

#[test]
fn two_agents_find_each_other_by_mdns() {
    if std::env::var_os(INNER).is_some() {
        return inner();
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !root || Command::new("unshare").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED: LAN discovery test needs root and unshare(1) to create a network namespace"
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args(["-n", "--"])
        .arg(exe)
        .args([
            "--exact",
            "two_agents_find_each_other_by_mdns",
            "--nocapture",
        ])
        .env(INNER, "1")
        .status()
        .expect("run the test inside a new network namespace");
    assert!(
        status.success(),
        "LAN discovery failed inside the namespace"
    );
}

fn inner() {
    for args in [
        &["link", "set", "lo", "up"][..],
        &["link", "set", "lo", "multicast", "on"],
        &["route", "add", "224.0.0.0/4", "dev", "lo"],
    ] {
        let ok = Command::new("ip")
            .args(args)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "ip {args:?} failed");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let a = Service::with_key(&dir.path().join("svc-a"));
            let b = Service::with_key(&dir.path().join("svc-b"));
            let c = client();
            let (_, m) = upload(&c, &a, "lan.txt", b"found over the LAN".to_vec()).await;
            let h = m["hash"].as_str().unwrap().to_owned();
            let lan = "local_discovery: true\n";
            let agent_a = Agent::start(&dir.path().join("agent-a"), &a.url, KEY, PASS, lan);
            let agent_b = Agent::start(&dir.path().join("agent-b"), &b.url, KEY, PASS, lan);
            assert!(
                agent_a.wait_for("peer_up", 60).await,
                "no peer found by mDNS"
            );
            assert!(
                agent_b.wait_for("peer_up", 60).await,
                "no peer found by mDNS"
            );
            assert!(
                eventually_async(30, || has_asset(&c, &b.url, &h)).await,
                "asset did not sync"
            );
        });
}
