//! Reconciliation at connection start, by real agents and services on loopback: rateless
//! IBLT (riblt-v2) between two current agents, range-based (rbsr-v1) with an agent that
//! offers only that (`reconcile: rbsr`, as agents before riblt-v1), full hash lists with an
//! agent that offers neither (`reconcile: full`, as agents before RBSR).

use std::collections::HashMap;
use std::time::Duration;

use can_testkit::*;
use serde_json::Value;

const PASS: &str = "velvet harbor quartz meadow ember signal koala";
const SHARED: usize = 300;
const UNIQUE: usize = 5;

/// Uploads `SHARED` identical assets to both services and `UNIQUE` different ones to each.
async fn seed(c: &reqwest::Client, a: &Service, b: &Service) {
    for i in 0..SHARED {
        let body = format!("shared asset {i}").into_bytes();
        for svc in [a, b] {
            let (status, _) = upload(c, svc, &format!("shared-{i}.txt"), body.clone()).await;
            assert!(status == 201 || status == 200, "upload: {status}");
        }
    }
    for i in 0..UNIQUE {
        for (svc, side) in [(a, "A"), (b, "B")] {
            let body = format!("only on {side}: {i}").into_bytes();
            let (status, _) = upload(c, svc, &format!("{side}-{i}.txt"), body).await;
            assert!(status == 201 || status == 200, "upload: {status}");
        }
    }
}

async fn wait_mirrored(c: &reqwest::Client, a: &Service, b: &Service, n: usize, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let la = list_all(c, &a.url).await;
        let lb = list_all(c, &b.url).await;
        if la.len() == n && lb.len() == n && la.keys().all(|k| lb.contains_key(k)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not mirrored within {secs} s: A has {}, B has {}",
            la.len(),
            lb.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn reconciled(agent: &Agent) -> Vec<Value> {
    agent
        .events()
        .into_iter()
        .filter(|e| e["event"] == "reconciled")
        .collect()
}

/// Starts two agents on seeded services; B dials A. `extra_b` goes into B's config.
async fn pair(dir: &std::path::Path, extra_b: &str) -> (Service, Service, Agent, Agent) {
    let a = Service::with_key(&dir.join("svc-a"));
    let b = Service::with_key(&dir.join("svc-b"));
    seed(&client(), &a, &b).await;
    let agent_a = Agent::start(&dir.join("agent-a"), &a.url, KEY, PASS, "device_name: A\n");
    let agent_b = Agent::start(
        &dir.join("agent-b"),
        &b.url,
        KEY,
        PASS,
        &format!(
            "device_name: B\nconnect_ticket_file: {}\n{extra_b}",
            agent_a.ticket_path().display()
        ),
    );
    assert!(
        agent_a.wait_for("peer_up", 60).await,
        "agents did not connect"
    );
    (a, b, agent_a, agent_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_agents_reconcile_by_riblt_and_move_only_the_difference() {
    only_the_difference_moves("", "riblt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_riblt_reconciles_by_ranges_and_moves_only_the_difference() {
    only_the_difference_moves("reconcile: rbsr\n", "rbsr").await;
}

/// B (with `extra_b` in its config) dials A; both reconcile with `method`, and only the
/// unique assets cross, each once.
async fn only_the_difference_moves(extra_b: &str, method: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, agent_a, agent_b) = pair(dir.path(), extra_b).await;
    let c = client();
    wait_mirrored(&c, &a, &b, SHARED + 2 * UNIQUE, 60).await;
    assert!(agent_a.wait_for("reconciled", 10).await);
    assert!(agent_b.wait_for("reconciled", 10).await);
    for (agent, name) in [(&agent_a, "A"), (&agent_b, "B")] {
        // One session per connection (the dialer's); a second would only follow a duplicate
        // connection.
        let events = reconciled(agent);
        assert!(
            events.iter().all(|e| e["method"] == method),
            "{name}: {events:?}"
        );
        let e = &events[0];
        eprintln!("{name}: {e}");
        assert_eq!(e["missing_here"], UNIQUE, "{name}: {e}");
        assert_eq!(e["missing_there"], UNIQUE, "{name}: {e}");
        // Full lists would be (SHARED + UNIQUE) × 32 bytes each way.
        let bytes = e["bytes_sent"].as_u64().unwrap() + e["bytes_received"].as_u64().unwrap();
        assert!(
            bytes < ((SHARED + UNIQUE) * 32) as u64,
            "{name}: {bytes} bytes"
        );
    }
    // Only the unique assets crossed, each once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut sent: HashMap<String, usize> = HashMap::new();
    for agent in [&agent_a, &agent_b] {
        for e in agent.events() {
            if e["event"] == "asset_sent" {
                *sent
                    .entry(e["hash"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
    }
    assert_eq!(sent.len(), 2 * UNIQUE, "{sent:?}");
    assert!(sent.values().all(|n| *n == 1), "{sent:?}");

    // Live sync still works after the reconciliation.
    let (_, meta) = upload(
        &c,
        &a,
        "live.txt",
        format!("live after {method}").into_bytes(),
    )
    .await;
    let hash = meta["hash"].as_str().unwrap().to_owned();
    assert!(eventually_async(30, || has_asset(&c, &b.url, &hash)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_rbsr_still_syncs_by_full_hash_lists() {
    let dir = tempfile::tempdir().unwrap();
    // B offers no features, exactly like an agent from before RBSR.
    let (a, b, agent_a, agent_b) = pair(dir.path(), "reconcile: full\n").await;
    let c = client();
    wait_mirrored(&c, &a, &b, SHARED + 2 * UNIQUE, 60).await;
    assert!(agent_a.wait_for("reconciled", 10).await);
    assert!(agent_b.wait_for("reconciled", 10).await);
    for (agent, name) in [(&agent_a, "A"), (&agent_b, "B")] {
        let events = reconciled(agent);
        assert!(!events.is_empty(), "{name}");
        for e in &events {
            assert_eq!(e["method"], "full", "{name}: {e}");
        }
        assert_eq!(events[0]["missing_here"], UNIQUE, "{name}: {:?}", events[0]);
    }
    assert_eq!(
        agent_a.count("asset_sent") + agent_b.count("asset_sent"),
        2 * UNIQUE
    );
}
