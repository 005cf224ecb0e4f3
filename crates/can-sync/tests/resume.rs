//! Interrupted transfers resume from what already arrived (issue #13, "Resumable
//! transfers"): a 512 MiB asset cut at ≈ 60 % by a SIGKILL of the receiving agent, then of
//! the receiving store, and a 128 MiB one by the receiving machine sleeping for 20 s (its
//! agent and store stopped), each finishes with at most 10 % of it sent again, verified; a
//! partial tampered with on disk is discarded and fetched again, never stored.

use std::time::Duration;

use can_testkit::*;

const PASS: &str = "harvest copper lagoon violet summit ember quill";
const MIB: usize = 1 << 20;

/// Waits until the store holds `share` of `size` bytes of `hash` as a partial upload.
async fn reached(svc: &Service, hash: &str, size: usize, share: f64) -> u64 {
    let goal = (size as f64 * share) as u64;
    for _ in 0..6000 {
        let got = partial_received(&client(), &svc.url, hash).await;
        if got >= goal {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the transfer of {hash} never reached {goal} bytes");
}

fn sent_by(agent: &Agent) -> u64 {
    agent.status()["transfer_bytes_sent"]
        .as_u64()
        .expect("transfer_bytes_sent")
}

async fn assert_whole(svc: &Service, hash: &str, content: &[u8]) {
    let c = client();
    assert!(
        eventually_async(180, || has_asset(&c, &svc.url, hash)).await,
        "{hash} never arrived"
    );
    let body = can_testkit::content(&c, &svc.url, hash).await;
    assert!(body == content, "{hash} was stored with other content");
    assert_eq!(
        partial_received(&c, &svc.url, hash).await,
        0,
        "the partial outlived the asset"
    );
}

/// At most 10 % of `size` crossed twice.
fn assert_little_resent(what: &str, sent: u64, size: usize, kept: u64) {
    let extra = sent.saturating_sub(size as u64);
    println!(
        "{what}: {size} bytes, {kept} kept at the cut, {sent} sent in all ({:.1} % again)",
        extra as f64 * 100.0 / size as f64
    );
    assert!(
        extra <= size as u64 / 10,
        "{what}: {extra} of {size} bytes were sent again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_transfers_resume_and_a_tampered_partial_is_refetched() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let mut b = Service::with_key(&dir.path().join("svc-b"));
    let c = client();
    let (agent_a, mut agent_b) = Agent::start_pair(dir.path(), &a.url, &b.url, PASS);
    assert!(agent_b.wait_for("peer_up", 60).await);

    // (b) The receiving agent is killed at ≈ 60 %.
    let size = 512 * MIB;
    let first = pseudo_random(size, 11);
    let hash = b3(&first);
    let before = sent_by(&agent_a);
    assert_eq!(upload(&c, &a, "first.bin", first.clone()).await.0, 201);
    let kept = reached(&b, &hash, size, 0.6).await;
    agent_b.kill();
    agent_b.restart();
    assert_whole(&b, &hash, &first).await;
    assert_little_resent("agent killed", sent_by(&agent_a) - before, size, kept);
    drop(first);

    // (c) The receiving store is killed at ≈ 60 %.
    let second = pseudo_random(size, 12);
    let hash = b3(&second);
    let before = sent_by(&agent_a);
    assert_eq!(upload(&c, &a, "second.bin", second.clone()).await.0, 201);
    let kept = reached(&b, &hash, size, 0.6).await;
    b.kill();
    b.restart(&format!("sync_api_key: {KEY}\n"));
    assert_whole(&b, &hash, &second).await;
    assert_little_resent("store killed", sent_by(&agent_a) - before, size, kept);
    drop(second);

    // (d) The receiving machine sleeps at ≈ 60 %: its agent and store stopped together for
    // 20 s, past the 15 s after which QUIC gives a silent connection up, so it wakes to a
    // dead connection, as a laptop does after its lid was closed.
    let size = 128 * MIB;
    let fourth = pseudo_random(size, 14);
    let hash = b3(&fourth);
    let before = sent_by(&agent_a);
    assert_eq!(upload(&c, &a, "fourth.bin", fourth.clone()).await.0, 201);
    let kept = reached(&b, &hash, size, 0.6).await;
    sleep_machine(&[agent_b.pid(), b.pid()], 20).await;
    assert_whole(&b, &hash, &fourth).await;
    assert_little_resent("machine asleep", sent_by(&agent_a) - before, size, kept);
    drop(fourth);

    // A partial whose bytes changed on disk while the agent was down: discarded, the asset
    // fetched again from byte 0, and only the true content stored.
    let size = 64 * MIB;
    let third = pseudo_random(size, 13);
    let hash = b3(&third);
    assert_eq!(upload(&c, &a, "third.bin", third.clone()).await.0, 201);
    reached(&b, &hash, size, 0.6).await;
    agent_b.kill();
    // The store drains what reached it before the agent died.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let path = b.data_dir().join("partial").join(&hash);
    let mut kept = std::fs::read(&path).expect("the partial is kept");
    let middle = kept.len() / 2;
    kept[middle] ^= 0x5a;
    std::fs::write(&path, kept).unwrap();
    agent_b.restart();
    assert_whole(&b, &hash, &third).await;
}
