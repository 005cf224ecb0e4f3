//! Deletion between real agents and stores on loopback: a deletion, a restore and an upload
//! after a deletion reach every store; a device that was offline catches up without
//! bringing a deleted asset back; the mass-deletion guard holds and releases.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use can_testkit::*;

const PASS: &str = "lunar cadet ribbon oxide tundra mosaic quiver";

async fn put(c: &reqwest::Client, svc: &Service, name: &str, body: &[u8]) -> String {
    let (status, meta) = upload(c, svc, name, body.to_vec()).await;
    assert!(status == 201 || status == 200, "upload {name}: {status}");
    meta["hash"].as_str().unwrap().to_owned()
}

/// Waits until every store answers `status` for `hash` (200 stored, 410 deleted).
async fn everywhere(c: &reqwest::Client, svcs: &[&Service], hash: &str, status: u16, secs: u64) {
    let ok = eventually_async(secs, || async {
        for s in svcs {
            if meta_status(c, &s.url, hash).await != status {
                return false;
            }
        }
        true
    })
    .await;
    assert!(ok, "{hash} not {status} everywhere within {secs} s");
}

/// Waits until the stores list the same assets, `n` of them.
async fn mirrored(
    c: &reqwest::Client,
    svcs: &[&Service],
    n: usize,
    secs: u64,
) -> HashMap<String, (u64, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let mut lists = Vec::new();
        for s in svcs {
            lists.push(list_all(c, &s.url).await);
        }
        let first = &lists[0];
        if first.len() == n
            && lists
                .iter()
                .all(|l| l.len() == n && l.keys().all(|k| first.contains_key(k)))
        {
            return lists.swap_remove(0);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not mirrored within {secs} s: {:?}",
            lists.iter().map(|l| l.len()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_restore_and_upload_again_reach_every_store() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let sa = Service::with_key(&dir.path().join("svc-a"));
    let sb = Service::with_key(&dir.path().join("svc-b"));
    let sc = Service::with_key(&dir.path().join("svc-c"));
    let (a, b) = Agent::start_pair(dir.path(), &sa.url, &sb.url, PASS);
    let _agent_c = Agent::start(
        &dir.path().join("agent-c"),
        &sc.url,
        KEY,
        PASS,
        &a.connect_line(),
    );
    let all = [&sa, &sb, &sc];

    let x = put(
        &c,
        &sa,
        "holiday.jpg",
        b"the photo that should not have been shared",
    )
    .await;
    let keep = put(&c, &sb, "keep.txt", b"an asset nobody deletes").await;
    everywhere(&c, &all, &x, 200, 30).await;
    everywhere(&c, &all, &keep, 200, 30).await;

    // Delete on A: gone from B's listing within a second, its content in B's trash.
    let started = Instant::now();
    assert_eq!(delete_asset(&c, &sa, &x).await, 200);
    assert!(
        eventually_async(5, || async { meta_status(&c, &sb.url, &x).await == 410 }).await,
        "deletion did not reach B"
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "deletion took {took:?} to reach B"
    );
    assert!(!list_all(&c, &sb.url).await.contains_key(&x));
    assert!(trash_hashes(&c, &sb).await.contains(&x), "not in B's trash");
    everywhere(&c, &all, &x, 410, 10).await;
    assert!(b.wait_for("asset_deleted", 10).await);
    let size = b"the photo that should not have been shared".len() as u64;
    assert!(
        eventually(10, || b.status()["trash_bytes"].as_u64() == Some(size)).await,
        "B's status does not report its trash: {}",
        b.status()
    );

    // Restore on B: back on A and C, without the content crossing again (A and C hold it
    // in their trash).
    assert_eq!(restore_asset(&c, &sb, &x).await, 200);
    everywhere(&c, &all, &x, 200, 10).await;
    assert!(a.wait_for("asset_restored", 10).await);
    assert_eq!(&b3(&content(&c, &sa.url, &x).await), &x);

    // Deleted again on A, then the same content uploaded again on C: back everywhere.
    assert_eq!(delete_asset(&c, &sa, &x).await, 200);
    everywhere(&c, &all, &x, 410, 10).await;
    let again = put(
        &c,
        &sc,
        "holiday again.jpg",
        b"the photo that should not have been shared",
    )
    .await;
    assert_eq!(again, x);
    everywhere(&c, &all, &x, 200, 10).await;
    let listed = mirrored(&c, &all, 2, 10).await;
    assert!(listed.contains_key(&keep));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_offline_during_a_deletion_catches_up_without_bringing_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let sa = Service::with_key(&dir.path().join("svc-a"));
    let sb = Service::with_key(&dir.path().join("svc-b"));
    let (_a, mut b) = Agent::start_pair(dir.path(), &sa.url, &sb.url, PASS);
    let gone = put(&c, &sa, "gone.txt", b"deleted while B was away").await;
    let stays = put(&c, &sa, "stays.txt", b"kept").await;
    mirrored(&c, &[&sa, &sb], 2, 30).await;

    b.kill();
    assert_eq!(delete_asset(&c, &sa, &gone).await, 200);
    let new = put(&c, &sa, "new.txt", b"added while B was away").await;
    b.restart();

    // B learns the deletion (a tombstone reconciliation) and the new asset; A does not get
    // the deleted asset back from B.
    everywhere(&c, &[&sa, &sb], &gone, 410, 30).await;
    everywhere(&c, &[&sa, &sb], &new, 200, 30).await;
    let listed = mirrored(&c, &[&sa, &sb], 2, 10).await;
    assert!(listed.contains_key(&stays) && listed.contains_key(&new));
    assert!(trash_hashes(&c, &sb).await.contains(&gone));
    // A second reconciliation changes nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(meta_status(&c, &sa.url, &gone).await, 410);
}

/// 500 assets on A, mirrored to B.
async fn five_hundred(c: &reqwest::Client, sa: &Service) -> Vec<String> {
    let mut hashes = Vec::new();
    for i in 0..500 {
        hashes.push(
            put(
                c,
                sa,
                &format!("photo-{i:03}.jpg"),
                format!("photo {i}").as_bytes(),
            )
            .await,
        );
    }
    hashes
}

fn held(agent: &Agent) -> u64 {
    agent.status()["mass_delete_held"]["count"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_deletion_while_connected_is_held_until_applied() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let sa = Service::with_key(&dir.path().join("svc-a"));
    let sb = Service::with_key(&dir.path().join("svc-b"));
    let (_a, b) = Agent::start_pair(dir.path(), &sa.url, &sb.url, PASS);
    let hashes = five_hundred(&c, &sa).await;
    mirrored(&c, &[&sa, &sb], 500, 60).await;

    for h in &hashes[..100] {
        assert_eq!(delete_asset(&c, &sa, h).await, 200);
    }
    assert!(
        b.wait_for("mass_delete_held", 20).await,
        "B did not hold the deletions"
    );
    // The first 50 (10 % of the store) went through before the guard tripped; the rest wait.
    assert!(
        eventually(20, || held(&b) == 50).await,
        "held: {}",
        held(&b)
    );
    // The admitted 50 reach B's store a moment after the guard admits them.
    let applied = eventually_async(20, || async { list_all(&c, &sb.url).await.len() == 450 }).await;
    assert!(
        applied,
        "B lists {} assets, not 450",
        list_all(&c, &sb.url).await.len()
    );
    let event = b
        .events()
        .into_iter()
        .find(|e| e["event"] == "mass_delete_held")
        .unwrap();
    assert!(
        event["sample"][0].as_str().unwrap().starts_with("photo-"),
        "{event}"
    );

    let out = b.release_deletions(true);
    assert!(out.contains("50"), "{out}");
    mirrored(&c, &[&sa, &sb], 400, 20).await;
    assert_eq!(held(&b), 0);
    assert!(b.wait_for("mass_delete_released", 5).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_deletion_found_after_an_absence_is_held_and_kept_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let sa = Service::with_key(&dir.path().join("svc-a"));
    let sb = Service::with_key(&dir.path().join("svc-b"));
    let (_a, mut b) = Agent::start_pair(dir.path(), &sa.url, &sb.url, PASS);
    let hashes = five_hundred(&c, &sa).await;
    mirrored(&c, &[&sa, &sb], 500, 60).await;

    b.kill();
    for h in &hashes[..100] {
        assert_eq!(delete_asset(&c, &sa, h).await, 200);
    }
    b.restart();
    assert!(
        b.wait_for("mass_delete_held", 30).await,
        "B did not hold the deletions"
    );
    assert!(eventually(20, || held(&b) >= 50).await);
    assert!(list_all(&c, &sb.url).await.len() >= 450);

    // "Keep mine": B keeps its assets and the deletions are undone on A too.
    b.release_deletions(false);
    mirrored(&c, &[&sa, &sb], 500, 30).await;
    for h in &hashes[..100] {
        assert_eq!(meta_status(&c, &sa.url, h).await, 200, "{h} not back on A");
    }
}
