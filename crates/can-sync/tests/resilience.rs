//! Crashes and outages during sync: the mirror completes and nothing partial is stored.

use std::time::Duration;

use can_testkit::*;

const PASS: &str = "ember quartz falcon meadow tidal beacon zephyr";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_during_a_200_mib_transfer_recovers_without_partial_assets() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let b = Service::with_key(&dir.path().join("svc-b"));
    let c = client();
    let big = pseudo_random(200 << 20, 7);
    let hash = b3(&big);
    let (status, _) = upload(&c, &a, "big.bin", big).await;
    assert_eq!(status, 201);

    let (_agent_a, mut agent_b) = Agent::start_pair(dir.path(), &a.url, &b.url, PASS);
    // Kill B's agent while the asset streams into B's store.
    assert!(
        eventually(120, || b.upload_files() > 0).await,
        "the transfer never started"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent_b.kill();
    assert!(
        !has_asset(&c, &b.url, &hash).await,
        "finished before the kill; nothing tested"
    );
    // The interrupted upload is nowhere visible in B's store; what arrived is kept aside
    // for the resume (tests/resume.rs measures what it saves).
    assert_eq!(b.partial_files(), 1);
    assert!(list_all(&c, &b.url).await.is_empty());

    agent_b.restart();
    assert!(
        eventually_async(180, || has_asset(&c, &b.url, &hash)).await,
        "mirror did not complete"
    );
    let body = content(&c, &b.url, &hash).await;
    assert_eq!(b3(&body), hash);
    assert_eq!(b.content_files(), 1);
    assert_eq!(b.upload_files(), 0);
    assert_eq!(a.upload_files(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_can_service_is_survived_and_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let mut b = Service::with_key(&dir.path().join("svc-b"));
    let c = client();
    let (agent_a, mut agent_b) = Agent::start_pair(dir.path(), &a.url, &b.url, PASS);
    assert!(agent_a.wait_for("peer_up", 60).await);
    let (_, first) = upload(&c, &a, "before", b"before the outage".to_vec()).await;
    let first = first["hash"].as_str().unwrap().to_owned();
    assert!(eventually_async(30, || has_asset(&c, &b.url, &first)).await);

    // B's store goes away; A keeps receiving uploads.
    b.kill();
    assert!(
        agent_b.wait_for("store_offline", 30).await,
        "agent B did not notice"
    );
    let mut during = Vec::new();
    for i in 0..5 {
        let (_, m) = upload(
            &c,
            &a,
            &format!("during {i}"),
            format!("uploaded during the outage {i}").into_bytes(),
        )
        .await;
        during.push(m["hash"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        agent_b.is_running(),
        "agent B crashed while its store was down"
    );

    // Back on the same port: everything uploaded meanwhile arrives.
    b.restart(&format!("sync_api_key: {KEY}\n"));
    for h in &during {
        assert!(
            eventually_async(60, || has_asset(&c, &b.url, h)).await,
            "{h} never arrived"
        );
    }
    // And live sync works in both directions again.
    let (_, m) = upload(&c, &b, "after", b"after the outage".to_vec()).await;
    let after = m["hash"].as_str().unwrap().to_owned();
    assert!(eventually_async(30, || has_asset(&c, &a.url, &after)).await);
}
