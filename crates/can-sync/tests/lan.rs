//! LAN discovery (mDNS) for real, between two network namespaces joined by a veth pair,
//! all created by the test: it re-runs itself under `unshare -n` (its own namespace "A"),
//! adds a namespace "B" and a veth pair between them, and starts one CAN Service and one
//! agent on each side with rendezvous, relays and tickets off. Needs root (CI runs as
//! root); skips with a message otherwise. Addresses are on the test's own veth link only.

use std::process::Command;

use can_testkit::*;

const PASS: &str = "harbor quill nimbus saffron delta willow ember";
const INNER: &str = "CAN_SYNC_LAN_TEST_INSIDE_NETNS";
const A_ADDR: &str = "10.231.7.1/24";
const B_IP: &str = "10.231.7.2";

#[test]
fn two_agents_in_two_namespaces_find_each_other_by_mdns() {
    if std::env::var_os(INNER).is_some() {
        return inner();
    }
    if !can_testkit::netns::can_create() {
        eprintln!(
            "SKIPPED: the LAN discovery test needs root, unshare(1) and ip(8) to create network namespaces"
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args(["-n", "--"])
        .arg(exe)
        .args([
            "--exact",
            "two_agents_in_two_namespaces_find_each_other_by_mdns",
            "--nocapture",
        ])
        .env(INNER, "1")
        .status()
        .expect("run the test inside a new network namespace");
    assert!(
        status.success(),
        "LAN discovery failed inside the namespaces"
    );
}

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "ip {args:?} failed");
}

/// Deletes namespace B however the test ends.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn inner() {
    let ns = Netns(format!("cansync-lan-{}", std::process::id()));
    let b = ns.0.as_str();
    ip(&["link", "set", "lo", "up"]);
    ip(&["netns", "add", b]);
    ip(&[
        "link", "add", "cs-a", "type", "veth", "peer", "name", "cs-b",
    ]);
    ip(&["link", "set", "cs-b", "netns", b]);
    ip(&["addr", "add", A_ADDR, "dev", "cs-a"]);
    ip(&["link", "set", "cs-a", "up"]);
    ip(&["route", "add", "224.0.0.0/4", "dev", "cs-a"]);
    ip(&["-n", b, "link", "set", "lo", "up"]);
    ip(&["-n", b, "addr", "add", &format!("{B_IP}/24"), "dev", "cs-b"]);
    ip(&["-n", b, "link", "set", "cs-b", "up"]);
    ip(&["-n", b, "route", "add", "224.0.0.0/4", "dev", "cs-b"]);

    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let key_yaml = format!("sync_api_key: {KEY}\n");
            let svc_a =
                Service::start_in(&dir.path().join("svc-a"), &key_yaml, "127.0.0.1:0", None);
            // B's service listens on B's veth address, so the test (in A) can check it.
            let svc_b = Service::start_in(
                &dir.path().join("svc-b"),
                &key_yaml,
                &format!("{B_IP}:0"),
                Some(b),
            );
            let c = client();
            let (_, m) = upload(&c, &svc_a, "lan.txt", b"found over the LAN".to_vec()).await;
            let from_a = m["hash"].as_str().unwrap().to_owned();
            let (_, m) = upload(&c, &svc_b, "lan-b.txt", b"and back".to_vec()).await;
            let from_b = m["hash"].as_str().unwrap().to_owned();
            // Wildcard bind: mDNS advertises the veth addresses.
            let lan = "local_discovery: true\nbind_addr: 0.0.0.0:0\n";
            let agent_a = Agent::start(&dir.path().join("agent-a"), &svc_a.url, KEY, PASS, lan);
            let agent_b =
                Agent::start_in(&dir.path().join("agent-b"), &svc_b.url, KEY, PASS, lan, b);
            assert!(
                agent_a.wait_for("peer_up", 60).await,
                "A found no peer by mDNS"
            );
            assert!(
                agent_b.wait_for("peer_up", 60).await,
                "B found no peer by mDNS"
            );
            assert!(
                eventually_async(30, || has_asset(&c, &svc_b.url, &from_a)).await,
                "A's asset did not reach B"
            );
            assert!(
                eventually_async(30, || has_asset(&c, &svc_a.url, &from_b)).await,
                "B's asset did not reach A"
            );
        });
}
