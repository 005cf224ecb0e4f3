//! Two CAN Services and two agents, real processes on loopback, linked by ticket files.

use std::collections::HashMap;
use std::time::Duration;

use can_testkit::*;

const PASS: &str = "lunar cadet ribbon oxide tundra mosaic quiver";

async fn upload_named(c: &reqwest::Client, svc: &Service, name: &str, body: Vec<u8>) -> String {
    let (status, meta) = upload(c, svc, name, body).await;
    assert!(status == 201 || status == 200, "upload {name}: {status}");
    meta["hash"].as_str().unwrap().to_owned()
}

/// Waits until both stores list exactly `n` assets and the same ones.
async fn wait_mirrored(
    c: &reqwest::Client,
    a: &Service,
    b: &Service,
    n: usize,
    secs: u64,
) -> HashMap<String, (u64, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let la = list_all(c, &a.url).await;
        let lb = list_all(c, &b.url).await;
        if la.len() == n && la.keys().all(|k| lb.contains_key(k)) && lb.len() == n {
            return la;
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

async fn assert_rehashes(
    c: &reqwest::Client,
    svc: &Service,
    listed: &HashMap<String, (u64, String)>,
) {
    for (hash, (size, _)) in listed {
        let body = c
            .get(svc.url(&format!("/api/assets/{hash}")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len() as u64, *size, "{hash} size");
        assert_eq!(&b3(&body), hash, "{hash} content");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_mirror_existing_and_live_assets_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let b = Service::with_key(&dir.path().join("svc-b"));
    let c = client();

    // 100 on each side, different content; an empty asset, a 20 MiB asset, non-ASCII names.
    let mut names = HashMap::new();
    for i in 0..99 {
        let name = format!("a-{i}-Grüße-写真.txt");
        names.insert(
            upload_named(&c, &a, &name, format!("asset {i} of A").into_bytes()).await,
            name,
        );
        let name = format!("b-{i}.bin");
        names.insert(
            upload_named(&c, &b, &name, format!("asset {i} of B").into_bytes()).await,
            name,
        );
    }
    names.insert(
        upload_named(&c, &a, "empty", Vec::new()).await,
        "empty".into(),
    );
    names.insert(
        upload_named(&c, &b, "big ✓.bin", pseudo_random(20 << 20, 42)).await,
        "big ✓.bin".into(),
    );

    let agent_a = Agent::start(
        &dir.path().join("agent-a"),
        &a.url,
        KEY,
        PASS,
        "device_name: Alpha\n",
    );
    let ticket = agent_a.ticket_path();
    let agent_b = Agent::start(
        &dir.path().join("agent-b"),
        &b.url,
        KEY,
        PASS,
        &format!(
            "device_name: Beta\nconnect_ticket_file: {}\n",
            ticket.display()
        ),
    );
    assert!(
        agent_a.wait_for("peer_up", 60).await,
        "agents did not connect"
    );

    let listed = wait_mirrored(&c, &a, &b, 200, 120).await;
    for (hash, (_, name)) in &listed {
        assert_eq!(names.get(hash), Some(name), "name kept for {hash}");
    }
    assert_rehashes(&c, &a, &listed).await;
    assert_rehashes(&c, &b, &listed).await;
    let on_b = list_all(&c, &b.url).await;
    assert_rehashes(&c, &b, &on_b).await;

    // Live, both ways.
    let live_a = upload_named(&c, &a, "live from A", b"live from A".to_vec()).await;
    let live_b = upload_named(&c, &b, "live from B", b"live from B".to_vec()).await;
    for (svc, hash) in [(&b, &live_a), (&a, &live_b)] {
        let arrived = eventually_async(30, || has_asset(&c, &svc.url, hash)).await;
        assert!(arrived, "live asset {hash} did not arrive");
    }
    wait_mirrored(&c, &a, &b, 202, 30).await;

    // Echo: every asset crossed the wire exactly once, in one direction.
    tokio::time::sleep(Duration::from_secs(3)).await;
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
    assert_eq!(sent.len(), 202, "every asset was sent");
    assert!(
        sent.values().all(|n| *n == 1),
        "an asset crossed twice: {sent:?}"
    );
    assert_eq!(
        agent_a.count("asset_received") + agent_b.count("asset_received"),
        202
    );
    assert_eq!(agent_a.count("asset_sent"), 101);
    assert_eq!(agent_b.count("asset_sent"), 101);
}
