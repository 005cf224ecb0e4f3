//! Discovery with nothing but the passphrase, against real local servers started in-process:
//! a pkarr relay (iroh-dns-server, mainline DHT off) and an iroh relay (plain HTTP), both on
//! 127.0.0.1. Nothing public is configured.

use std::collections::HashSet;
use std::time::Duration;

use can_testkit::*;

const PASS: &str = "copper meadow falcon ripple sundial garnet otter";

struct Servers(LocalServers);

impl Servers {
    async fn start() -> Servers {
        Servers(LocalServers::start().await)
    }

    fn agent_yaml(&self) -> String {
        format!(
            "pkarr_relays: [\"{}\"]\nrelay_urls: [\"{}\"]\nrendezvous_interval_secs: 2\n",
            self.0.pkarr_url(),
            self.0.relay_url(),
        )
    }
}

async fn hashes(c: &reqwest::Client, svc: &Service) -> HashSet<String> {
    list_all(c, &svc.url).await.into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_find_each_other_with_only_the_passphrase() {
    converge_three("").await;
}

/// With no UDP sockets, direct paths are impossible: everything goes through the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_converge_through_the_relay_alone() {
    let agents = converge_three("relay_only: true\n").await;
    for agent in &agents {
        for e in agent.events().iter().filter(|e| e["event"] == "peer_up") {
            assert_eq!(e["path"], "relay", "{e}");
        }
    }
}

async fn converge_three(extra: &str) -> Vec<Agent> {
    let servers = Servers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let mut services = Vec::new();
    let mut agents = Vec::new();
    let mut all = HashSet::new();
    for i in 0..3 {
        let svc = Service::with_key(&dir.path().join(format!("svc-{i}")));
        for j in 0..3 {
            let (_, m) = upload(
                &c,
                &svc,
                &format!("from {i}"),
                format!("asset {j} of agent {i}").into_bytes(),
            )
            .await;
            all.insert(m["hash"].as_str().unwrap().to_owned());
        }
        agents.push(Agent::start(
            &dir.path().join(format!("agent-{i}")),
            &svc.url,
            KEY,
            PASS,
            &format!("device_name: node-{i}\n{extra}{}", servers.agent_yaml()),
        ));
        services.push(svc);
    }
    // An agent with another passphrase on the same servers.
    let stranger_svc = Service::with_key(&dir.path().join("svc-x"));
    upload(
        &c,
        &stranger_svc,
        "secret",
        b"the stranger's own asset".to_vec(),
    )
    .await;
    let stranger = Agent::start(
        &dir.path().join("agent-x"),
        &stranger_svc.url,
        KEY,
        "a completely different passphrase 99",
        &servers.agent_yaml(),
    );

    let converged = eventually_async(120, || async {
        for svc in &services {
            if hashes(&c, svc).await != all {
                return false;
            }
        }
        true
    })
    .await;
    assert!(converged, "the three stores did not converge");
    // Full mesh: every agent connects to both others.
    let peers_of = |agent: &Agent| -> HashSet<String> {
        agent
            .events()
            .iter()
            .filter(|e| e["event"] == "peer_up")
            .map(|e| e["peer"].as_str().unwrap().to_owned())
            .collect()
    };
    let mesh = eventually(60, || agents.iter().all(|a| peers_of(a).len() == 2)).await;
    assert!(
        mesh,
        "not a full mesh: {:?}",
        agents.iter().map(peers_of).collect::<Vec<_>>()
    );
    // The stranger was never dialled and never got anything.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stranger.count("peer_up"), 0);
    assert_eq!(
        stranger.count("admission_refused"),
        0,
        "someone dialled the stranger"
    );
    for agent in &agents {
        assert_eq!(agent.count("admission_refused"), 0);
    }
    assert_eq!(hashes(&c, &stranger_svc).await.len(), 1);
    agents
}

/// Gossip alone: A and C know only B's ticket (no relay, no rendezvous, no LAN). Once B has
/// two peers it makes both its gossip neighbours, and its announcements carry each to the
/// other — although neither A nor C, with one peer each, joins gossip on its own (an agent
/// with a single peer keeps no gossip connection, to idle like a daemon).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_that_share_one_peer_find_each_other_through_its_gossip() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let svc: Vec<Service> = ["a", "b", "c"]
        .iter()
        .map(|n| Service::with_key(&dir.path().join(format!("svc-{n}"))))
        .collect();
    let b = Agent::start(&dir.path().join("agent-b"), &svc[1].url, KEY, PASS, "");
    assert!(b.wait_for("ready", 60).await);
    let a = Agent::start(
        &dir.path().join("agent-a"),
        &svc[0].url,
        KEY,
        PASS,
        &b.connect_line(),
    );
    assert!(a.wait_for("peer_up", 60).await);
    let agent_c = Agent::start(
        &dir.path().join("agent-c"),
        &svc[2].url,
        KEY,
        PASS,
        &b.connect_line(),
    );
    let peers_of = |agent: &Agent| -> HashSet<String> {
        agent
            .events()
            .iter()
            .filter(|e| e["event"] == "peer_up")
            .filter_map(|e| e["peer"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(
        eventually(60, || peers_of(&a).len() == 2
            && peers_of(&agent_c).len() == 2)
        .await,
        "A and C did not meet: {:?} {:?}",
        peers_of(&a),
        peers_of(&agent_c)
    );
    // And the three stay a mirror: an asset of A's reaches C.
    let (_, m) = upload(&c, &svc[0], "from a", b"a's asset".to_vec()).await;
    let h = m["hash"].as_str().unwrap().to_owned();
    assert!(eventually_async(30, || has_asset(&c, &svc[2].url, &h)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_reconnects_from_its_remembered_peers() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let b = Service::with_key(&dir.path().join("svc-b"));
    let c = client();
    let agent_a = Agent::start(&dir.path().join("agent-a"), &a.url, KEY, PASS, "");
    let mut agent_b = Agent::start(
        &dir.path().join("agent-b"),
        &b.url,
        KEY,
        PASS,
        &agent_a.connect_line(),
    );
    assert!(agent_b.wait_for("peer_up", 60).await);
    // No ticket, no rendezvous, no LAN: only the remembered list is left.
    agent_b.kill();
    agent_b.edit_config(|t| {
        t.lines()
            .filter(|l| !l.starts_with("connect_ticket_file"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    agent_b.restart();
    assert!(
        agent_b.wait_for("peer_up", 60).await,
        "did not reconnect from memory"
    );
    let (_, m) = upload(&c, &a, "after restart", b"after restart".to_vec()).await;
    let h = m["hash"].as_str().unwrap().to_owned();
    assert!(eventually_async(30, || has_asset(&c, &b.url, &h)).await);
}

/// NAT traversal: a peer known only by its relay URL is reached through the relay, and the
/// connection moves to a direct path once hole punching finds one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_connection_moves_to_a_direct_path() {
    use can_sync::{Engine, EngineConfig, EngineEvent, Secret};
    let servers = Servers::start().await;
    let relay_url = servers.0.relay_url();
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let b = Service::with_key(&dir.path().join("svc-b"));
    let agent_a = Agent::start(
        &dir.path().join("agent-a"),
        &a.url,
        KEY,
        PASS,
        &format!("relay_urls: [\"{relay_url}\"]\n"),
    );
    assert!(eventually(60, || agent_a.ticket_path().exists()).await);
    let full: iroh::EndpointAddr = std::fs::read_to_string(agent_a.ticket_path())
        .unwrap()
        .trim()
        .parse::<iroh_tickets::endpoint::EndpointTicket>()
        .unwrap()
        .into();
    // A ticket with A's relay only: no direct address is known at first.
    let relay_only = iroh::EndpointAddr::new(full.id).with_relay_url(relay_url.parse().unwrap());
    let ticket = dir.path().join("relay-only.ticket");
    std::fs::write(
        &ticket,
        iroh_tickets::endpoint::EndpointTicket::new(relay_only).to_string(),
    )
    .unwrap();

    let engine = Engine::start(EngineConfig {
        device_name: "B".into(),
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        relay_urls: Some(vec![relay_url.clone()]),
        poll_interval: Duration::from_secs(2),
        connect_ticket_files: vec![ticket],
        pkarr_relays: Some(vec![]),
        local_discovery: false,
        ..EngineConfig::new(
            b.url.clone(),
            Secret::new(KEY),
            Secret::new(PASS),
            dir.path().join("engine-b"),
        )
    })
    .await
    .unwrap();
    // B knows no direct address of A (discovery off, fresh data dir): the connection can only
    // start through the relay. On loopback hole punching wins within a few round trips, often
    // before admission is done, so the switch itself is not observable at peer_up.
    let mut events = engine.subscribe();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(EngineEvent::PeerUp { .. }) = events.recv().await {
                return;
            }
        }
    })
    .await
    .expect("no connection through the relay");
    let direct = eventually_async(30, || async {
        engine
            .status()
            .await
            .map(|s| s.peers.first().is_some_and(|p| p.path == "direct"))
            .unwrap_or(false)
    })
    .await;
    assert!(direct, "the connection never moved to a direct path");
    engine.shutdown().await;
}
