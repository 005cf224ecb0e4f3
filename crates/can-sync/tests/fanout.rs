//! Bounded fan-out: nine agents that find each other by the passphrase alone (a local pkarr
//! relay), each allowed one dialled peer (two on the LAN, which loopback is) and four
//! incoming, still converge — assets and deletions hop across the graph — while none holds
//! more than four connections at any time (a full mesh would be eight each).

use std::collections::HashSet;
use std::time::Duration;

use can_testkit::*;

const PASS: &str = "harbor quince lattice ember nomad pixel tundra";
const N: usize = 9;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_agents_with_one_peer_each_still_converge() {
    let servers = LocalServers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let yaml = format!(
        "max_peers: 1\npkarr_relays: [\"{}\"]\nrelay_urls: [\"{}\"]\nrendezvous_interval_secs: 2\n",
        servers.pkarr_url(),
        servers.relay_url()
    );
    let mut services = Vec::new();
    let mut agents = Vec::new();
    let mut all = HashSet::new();
    for i in 0..N {
        let svc = Service::with_key(&dir.path().join(format!("svc-{i}")));
        let (_, m) = upload(
            &c,
            &svc,
            &format!("a{i}"),
            format!("asset of site {i}").into_bytes(),
        )
        .await;
        all.insert(m["hash"].as_str().unwrap().to_owned());
        agents.push(Agent::start(
            &dir.path().join(format!("agent-{i}")),
            &svc.url,
            KEY,
            PASS,
            &format!("device_name: site-{i}\n{yaml}"),
        ));
        services.push(svc);
    }
    for a in &agents {
        assert!(a.wait_for("ready", 60).await, "agent did not start");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut most = 0;
    loop {
        let mut done = true;
        for svc in &services {
            let have: HashSet<String> = list_all(&c, &svc.url).await.into_keys().collect();
            done &= have == all;
        }
        for a in &agents {
            most = most.max(a.status()["peers"].as_array().map_or(0, |p| p.len()));
        }
        assert!(most <= 4, "an agent holds {most} connections (limit 4)");
        if done {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let mut report = String::new();
            for (svc, a) in services.iter().zip(&agents) {
                let st = a.status();
                let peers: Vec<String> = st["peers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["device_name"].as_str().unwrap_or("?").to_owned())
                    .collect();
                report += &format!(
                    "{} has {} assets, peers {peers:?}, candidates {}\n",
                    st["device_name"],
                    list_all(&c, &svc.url).await.len(),
                    st["candidates"]
                );
            }
            panic!("not converged within 120 s:\n{report}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("converged; most connections held by one agent: {most}");

    // A deletion crosses the same graph.
    let gone = all.iter().next().unwrap().clone();
    assert_eq!(delete_asset(&c, &services[0], &gone).await, 200);
    for svc in &services {
        assert!(
            eventually_async(30, || async {
                meta_status(&c, &svc.url, &gone).await == 410
            })
            .await,
            "deletion did not reach {}",
            svc.url
        );
    }
}
