//! Bounded fan-out: twelve agents that find each other by the passphrase alone (a local
//! pkarr relay), each bound to four connections (`max_peers: 4`: it dials two, accepts the
//! rest), converge on 1,000 assets uploaded across all of them —
//! assets hop across the graph — and a deletion crosses it too, while no agent holds more
//! than four connections at any sample (a full mesh would be eleven each). At this bound
//! the room to accept equals what everyone dials for, so without rotation an agent can be
//! left alone (every other one full); rotation (`rotation_interval_secs`, short here)
//! frees slots until the graph is connected.

use std::collections::HashSet;
use std::time::Duration;

use can_testkit::*;

const PASS: &str = "harbor quince lattice ember nomad pixel tundra";
const N: usize = 12;
const ASSETS: usize = 1000;
const BOUND: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_agents_bound_to_four_connections_converge_on_1000_assets() {
    let servers = LocalServers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let yaml = format!(
        "max_peers: {BOUND}\nrotation_interval_secs: 10\npkarr_relays: [\"{}\"]\nrelay_urls: [\"{}\"]\nrendezvous_interval_secs: 2\n",
        servers.pkarr_url(),
        servers.relay_url()
    );
    let services: Vec<Service> = (0..N)
        .map(|i| Service::with_key(&dir.path().join(format!("svc-{i}"))))
        .collect();
    let mut agents = Vec::new();
    for (i, svc) in services.iter().enumerate() {
        agents.push(Agent::start(
            &dir.path().join(format!("agent-{i}")),
            &svc.url,
            KEY,
            PASS,
            &format!("device_name: site-{i}\n{yaml}"),
        ));
    }
    for a in &agents {
        assert!(a.wait_for("ready", 60).await, "agent did not start");
    }
    // 1,000 assets across all agents, uploaded while they find each other.
    let mut all = HashSet::new();
    for k in 0..ASSETS {
        let svc = &services[k % N];
        let (_, m) = upload(&c, svc, &format!("a{k}"), format!("asset {k}").into_bytes()).await;
        all.insert(m["hash"].as_str().unwrap().to_owned());
        if k % 100 == 0 {
            for a in &agents {
                let held = a.status()["peers"].as_array().map_or(0, |p| p.len());
                assert!(
                    held <= BOUND,
                    "an agent holds {held} connections (bound {BOUND})"
                );
            }
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let mut most = 0;
    let mut samples = 0;
    loop {
        for a in &agents {
            let held = a.status()["peers"].as_array().map_or(0, |p| p.len());
            most = most.max(held);
            assert!(
                held <= BOUND,
                "an agent holds {held} connections (bound {BOUND})"
            );
        }
        samples += 1;
        let mut done = true;
        for svc in &services {
            done &= list_all(&c, &svc.url).await.len() == ASSETS;
        }
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not converged within 240 s: {:?}",
            {
                let mut counts = Vec::new();
                for svc in &services {
                    counts.push(list_all(&c, &svc.url).await.len());
                }
                counts
            }
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for svc in &services {
        let have: HashSet<String> = list_all(&c, &svc.url).await.into_keys().collect();
        assert_eq!(have, all, "{} holds other assets", svc.url);
    }
    eprintln!("converged; at most {most} connections per agent over {samples} samples");

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
