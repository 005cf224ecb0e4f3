//! Swarm transfers: a large asset added on one of four connected agents reaches the other
//! three whole and verified, with its origin (upload-limited, as a home uplink is)
//! uploading far less than once per receiver, because the receivers pass pieces to each
//! other; the piece files are gone once the asset is stored. A peer that sends a wrong
//! piece is cut off, and the asset still arrives whole from the honest one.

mod common;

use std::time::{Duration, Instant};

use can_proto::peer::{Request, Response, response};
use can_proto::sync_api::Asset;
use can_sync::peer::close;
use can_sync::wire::{expect_frame, write_frame};
use can_testkit::*;
use common::*;

const PASS: &str = "ember quartz falcon meadow tidal beacon zephyr";
const MIB: usize = 1 << 20;

fn sent_by(agent: &Agent) -> u64 {
    agent.status()["transfer_bytes_sent"]
        .as_u64()
        .expect("transfer_bytes_sent")
}

/// Answers every request on `conn` with `answer(request)`: the header to send and, unless
/// it carries a piece map, the bytes after it.
fn answer_requests<F>(conn: iroh::endpoint::Connection, answer: F)
where
    F: Fn(&Request) -> (Response, Vec<u8>) + Send + Sync + 'static,
{
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut tx, mut rx)) = conn.accept_bi().await {
            let Ok(req) = expect_frame::<Request, _>(&mut rx, 256).await else {
                continue;
            };
            let (header, bytes) = answer(&req);
            tokio::spawn(async move {
                let _ = write_frame(&mut tx, &header).await;
                let _ = tx.write_all(&bytes).await;
                let _ = tx.finish();
                let _ = tx.stopped().await;
            });
        }
    });
}

/// A header for `size` bytes of the asset `req` asks for, from where it asks.
fn header(req: &Request, size: u64) -> Response {
    Response {
        kind: Some(response::Kind::Asset(Asset {
            hash: req.hash.clone(),
            size,
            name: "wanted.bin".into(),
            content_type: "application/octet-stream".into(),
            origin: "local".into(),
            seq: 1,
            ..Default::default()
        })),
        offset: req.offset,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_asset_reaches_three_peers_with_the_origin_uploading_it_about_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let names = ["origin", "b", "c", "d"];
    let services: Vec<Service> = names
        .iter()
        .map(|n| Service::with_key(&dir.path().join(format!("svc-{n}"))))
        .collect();
    // The origin's uplink is the bottleneck: 3 whole copies from it would take 3× as long.
    let mut agents: Vec<Agent> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let mut extra = format!("device_name: {n}\n");
        if i == 0 {
            extra.push_str("upload_limit: 10 MB/s\nlimit_lan: true\n");
        } else {
            let tickets: Vec<String> = agents
                .iter()
                .map(|a| a.ticket_path().display().to_string())
                .collect();
            extra.push_str(&format!("connect_ticket_file: [{}]\n", tickets.join(", ")));
        }
        agents.push(Agent::start(
            &dir.path().join(format!("agent-{n}")),
            &services[i].url,
            KEY,
            PASS,
            &extra,
        ));
    }
    assert!(
        eventually(60, || agents.iter().all(|a| a.peer_count() == 3)).await,
        "the four agents never all connected: {:?}",
        agents.iter().map(Agent::peer_count).collect::<Vec<_>>()
    );

    let size = 64 * MIB;
    let body = pseudo_random(size, 77);
    let hash = b3(&body);
    let started = Instant::now();
    assert_eq!(
        upload(&c, &services[0], "big.bin", body.clone()).await.0,
        201
    );
    for svc in &services[1..] {
        assert!(
            eventually_async(180, || has_asset(&c, &svc.url, &hash)).await,
            "the asset never reached {}",
            svc.url
        );
    }
    let secs = started.elapsed().as_secs_f64();
    for svc in &services[1..] {
        let got = content(&c, &svc.url, &hash).await;
        assert!(got == body, "{} holds other content", svc.url);
    }
    // The counters settle once the last range's acknowledgement is in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let origin = sent_by(&agents[0]);
    let others: Vec<u64> = agents[1..].iter().map(sent_by).collect();
    println!(
        "64 MiB to 3 peers in {secs:.1} s; the origin (10 MB/s uplink) sent {:.2} copies, the others {:?} MiB",
        origin as f64 / size as f64,
        others.iter().map(|b| b / MIB as u64).collect::<Vec<_>>()
    );
    assert!(
        origin <= 2 * size as u64,
        "the origin sent {origin} bytes for three receivers of {size}"
    );
    assert!(
        others.iter().sum::<u64>() >= size as u64,
        "the receivers passed on only {others:?} bytes"
    );
    for n in &names[1..] {
        let swarm = dir
            .path()
            .join(format!("agent-{n}"))
            .join("state")
            .join("swarm");
        let left = std::fs::read_dir(&swarm).map_or(0, |d| d.count());
        assert_eq!(left, 0, "{n} kept a piece file of a stored asset");
    }
    for a in &agents {
        assert_eq!(a.count("peer_misbehaved"), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_sends_a_wrong_piece_is_cut_off_and_the_asset_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let b = Service::with_key(&dir.path().join("svc-b"));
    let c = client();
    let size = 40 * MIB;
    let body = pseudo_random(size, 13);
    let hash = b3(&body);
    let hash_bytes = *blake3::hash(&body).as_bytes();
    assert_eq!(upload(&c, &b, "wanted.bin", body.clone()).await.0, 201);
    let agent_a = Agent::start(&dir.path().join("agent-a"), &a.url, KEY, PASS, "");
    let addr = ticket_addr(&agent_a).await;
    let keys = can_sync::keys::derive(PASS).unwrap();

    // The liar speaks swarm-v1 and answers every request with the right header and bytes
    // that are not the asset's.
    let ep = endpoint().await;
    let (conn, mut send, recv) =
        admitted_peer_with(&ep, &addr, &keys, "liar", vec!["swarm-v1".into()]).await;
    drain(recv);
    answer_requests(conn.clone(), move |req| {
        let len = match req.length {
            0 => size as u64 - req.offset,
            n => n,
        };
        (header(req, size as u64), vec![0x5a; len as usize])
    });

    // The honest peer sends slowly, so the fetch is still on when the liar claims the asset.
    let agent_b = Agent::start(
        &dir.path().join("agent-b"),
        &b.url,
        KEY,
        PASS,
        &format!(
            "upload_limit: 5 MB/s\nlimit_lan: true\n{}",
            agent_a.connect_line()
        ),
    );
    assert!(
        eventually(60, || agent_a.try_status().is_some_and(|s| s["transfers"]
            .as_array()
            .is_some_and(|t| !t.is_empty())))
        .await,
        "the fetch from the honest peer never started"
    );
    claim(&mut send, &[hash_bytes]).await;
    assert_eq!(
        closed_code(&conn).await,
        Some(close::MISBEHAVING as u64),
        "the liar was not cut off"
    );
    assert!(
        eventually_async(120, || has_asset(&c, &a.url, &hash)).await,
        "the asset never arrived"
    );
    assert!(
        content(&c, &a.url, &hash).await == body,
        "stored other content"
    );
    assert!(agent_a.count("peer_misbehaved") >= 1);
    assert_eq!(agent_b.count("peer_misbehaved"), 0);
    ep.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piece_map_with_a_false_size_is_its_senders_fault_alone() {
    use can_sync::swarm::pieces::{Layout, PieceHasher, encode_map};
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let b = Service::with_key(&dir.path().join("svc-b"));
    let c = client();
    let size = 40 * MIB;
    let body = pseudo_random(size, 17);
    let hash = b3(&body);
    let hash_bytes = *blake3::hash(&body).as_bytes();
    // The true map, sent with a size one byte short: same piece count, same tree shape,
    // so the map still merges to the hash.
    let layout = Layout::for_size(size as u64).unwrap();
    let mut hasher = PieceHasher::new(layout);
    hasher.update(&body);
    let map = encode_map(&hasher.finish().unwrap());
    let false_size = size as u64 - 1;
    assert_eq!(
        Layout::for_size(false_size).unwrap().count(),
        layout.count()
    );

    let agent_a = Agent::start(&dir.path().join("agent-a"), &a.url, KEY, PASS, "");
    let addr = ticket_addr(&agent_a).await;
    let keys = can_sync::keys::derive(PASS).unwrap();
    // A second swarm peer that holds nothing: with two, the agent asks for a map.
    let quiet_ep = endpoint().await;
    let (_quiet, _quiet_send, quiet_recv) =
        admitted_peer_with(&quiet_ep, &addr, &keys, "quiet", vec!["swarm-v1".into()]).await;
    drain(quiet_recv);
    let ep = endpoint().await;
    let (conn, mut send, recv) =
        admitted_peer_with(&ep, &addr, &keys, "liar", vec!["swarm-v1".into()]).await;
    drain(recv);
    let truth = body.clone();
    answer_requests(conn.clone(), move |req| {
        let mut head = header(req, false_size);
        if req.pieces {
            head.pieces = map.clone();
            head.piece_len = layout.piece_len;
            return (head, Vec::new());
        }
        // The true bytes, cut to the false size.
        let start = (req.offset as usize).min(false_size as usize);
        let end = match req.length {
            0 => false_size as usize,
            n => (start + n as usize).min(false_size as usize),
        };
        (head, truth[start..end].to_vec())
    });
    claim(&mut send, &[hash_bytes]).await;
    assert_eq!(
        closed_code(&conn).await,
        Some(close::MISBEHAVING as u64),
        "the peer with the false size was not cut off"
    );
    // The honest peer comes later and is never taken for the liar.
    assert_eq!(upload(&c, &b, "wanted.bin", body.clone()).await.0, 201);
    let agent_b = Agent::start(
        &dir.path().join("agent-b"),
        &b.url,
        KEY,
        PASS,
        &agent_a.connect_line(),
    );
    assert!(
        eventually_async(120, || has_asset(&c, &a.url, &hash)).await,
        "the asset never arrived"
    );
    assert!(
        content(&c, &a.url, &hash).await == body,
        "stored other content"
    );
    assert_eq!(agent_b.count("peer_misbehaved"), 0);
    // Only the liar was blamed.
    let blamed: Vec<String> = agent_a
        .events()
        .iter()
        .filter(|e| e["event"] == "peer_misbehaved")
        .filter_map(|e| e["peer"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(blamed, vec![ep.id().to_string()]);
    quiet_ep.close().await;
    ep.close().await;
}
