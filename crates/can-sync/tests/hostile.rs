//! Hostile and unlucky peers against a real agent: parallel guesses, stalled and refused
//! transfers, a newer or other protocol version, and a member removed by a passphrase change.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use can_proto::peer::{Request, Response, response};
use can_proto::sync_api::Asset;
use can_sync::admission::{ALPN, Role, admit};
use can_sync::peer::close;
use can_sync::wire::{expect_frame, write_frame};
use can_testkit::*;
use common::*;
use iroh::Endpoint;

const PASS: &str = "saddle prairie cobalt mosaic thunder pepper alpine";

fn asset_header(content: &[u8], name: &str) -> Response {
    Response {
        kind: Some(response::Kind::Asset(Asset {
            hash: blake3::hash(content).as_bytes().to_vec(),
            size: content.len() as u64,
            name: name.into(),
            content_type: "application/octet-stream".into(),
            created_at: String::new(),
            origin: "local".into(),
            seq: 1,
            ..Default::default()
        })),
        offset: 0,
        ..Default::default()
    }
}

/// Serves the agent's requests on `conn` with `answer`, counting requests per hash.
fn serve_requests<F, Fut>(
    conn: iroh::endpoint::Connection,
    answer: F,
) -> Arc<std::sync::Mutex<Vec<Vec<u8>>>>
where
    F: Fn(Request, iroh::endpoint::SendStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((tx, mut rx)) = conn.accept_bi().await {
            let Ok(req) = expect_frame::<Request, _>(&mut rx, 256).await else {
                continue;
            };
            log.lock().unwrap().push(req.hash.clone());
            tokio::spawn((answer)(req, tx));
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_guesses_get_one_admission_at_a_time_and_the_documented_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let agent = Agent::start(&dir.path().join("agent-a"), &a.url, KEY, PASS, "");
    let addr = ticket_addr(&agent).await;
    let wrong = can_sync::keys::derive("not the passphrase of this group at all").unwrap();
    let ep = endpoint().await;

    // One guess from one endpoint: returns the close code.
    let guess = |ep: Endpoint| {
        let (addr, key) = (addr.clone(), wrong.admission);
        async move {
            let conn = ep.connect(addr.clone(), ALPN).await.ok()?;
            if let Ok((mut send, recv)) = conn.open_bi().await {
                let mut recv = tokio::io::BufReader::new(recv);
                let _ = admit(&mut recv, &mut send, &key, ep.id(), addr.id, Role::Dialer).await;
            }
            closed_code(&conn).await
        }
    };
    // Twenty connections at once from the same id: one admission runs, the rest are refused.
    let codes = futures_util::future::join_all((0..20).map(|_| guess(ep.clone()))).await;
    let failed = codes
        .iter()
        .filter(|c| **c == Some(u64::from(close::ADMISSION_FAILED)))
        .count();
    let limited = codes
        .iter()
        .filter(|c| **c == Some(u64::from(close::RATE_LIMITED)))
        .count();
    assert_eq!(failed, 1, "{codes:?}");
    assert_eq!(limited, 19, "{codes:?}");
    assert!(eventually(10, || agent.count("admission_refused") == 1).await);

    // The schedule: 2 s after the first failure, 4 s after the second (docs/protocol.md).
    let first = Instant::now();
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(
        guess(ep.clone()).await,
        Some(u64::from(close::ADMISSION_FAILED))
    );
    let second = Instant::now();
    assert!(first.elapsed() >= Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        guess(ep.clone()).await,
        Some(u64::from(close::RATE_LIMITED)),
        "the second wait is 4 s"
    );
    tokio::time::sleep(
        Duration::from_secs(4).saturating_sub(second.elapsed()) + Duration::from_millis(300),
    )
    .await;
    assert_eq!(
        guess(ep.clone()).await,
        Some(u64::from(close::ADMISSION_FAILED))
    );
    assert!(eventually(10, || agent.count("admission_refused") == 3).await);
    ep.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_refusal_is_reported_once_and_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::start(
        &dir.path().join("svc-a"),
        &format!("sync_api_key: {KEY}\nmax_asset_bytes: 1048576\n"),
    );
    let agent = Agent::start(&dir.path().join("agent-a"), &a.url, KEY, PASS, "");
    let addr = ticket_addr(&agent).await;
    let keys = can_sync::keys::derive(PASS).unwrap();

    let big = pseudo_random(2 << 20, 7); // over the store's limit: 413
    let badly_named = b"content under a name the store refuses".to_vec(); // 400
    let ep = endpoint().await;
    let (conn, mut send, recv) = admitted_peer(&ep, &addr, &keys, "sender").await;
    drain(recv);
    let (b1, b2) = (big.clone(), badly_named.clone());
    let seen = serve_requests(conn.clone(), move |req, mut tx| {
        let (big, named) = (b1.clone(), b2.clone());
        async move {
            let (content, name) = if req.hash == blake3::hash(&big).as_bytes().to_vec() {
                (big, "big.bin".to_owned())
            } else {
                (named, "bell\u{7}.txt".to_owned())
            };
            let _ = write_frame(&mut tx, &asset_header(&content, &name)).await;
            let _ = tx.write_all(&content).await;
            let _ = tx.finish();
            let _ = tx.stopped().await;
        }
    });
    claim(
        &mut send,
        &[
            *blake3::hash(&big).as_bytes(),
            *blake3::hash(&badly_named).as_bytes(),
        ],
    )
    .await;
    assert!(
        eventually(30, || agent.count("asset_refused") == 2).await,
        "both refusals reported: {:?}",
        agent.events()
    );
    // No retry storm: a resume-like second round (a fresh list) does not bring them back
    // either, and nothing was asked for again in the meantime.
    tokio::time::sleep(Duration::from_secs(5)).await;
    claim(
        &mut send,
        &[
            *blake3::hash(&big).as_bytes(),
            *blake3::hash(&badly_named).as_bytes(),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Each hash was asked for once; at most once more when the store's early refusal
    // raced the upload of the body and reached the agent as a broken connection (then it
    // is retried after a backoff, like any store failure). Never a storm.
    let requests = seen.lock().unwrap().len();
    assert!((2..=4).contains(&requests), "{requests} requests");
    assert_eq!(agent.count("asset_refused"), 2);
    let statuses: Vec<u64> = agent
        .events()
        .iter()
        .filter(|e| e["event"] == "asset_refused")
        .filter_map(|e| e["status"].as_u64())
        .collect();
    assert!(
        statuses.contains(&413) && statuses.contains(&400),
        "{statuses:?}"
    );
    assert_eq!(agent.count("peer_misbehaved"), 0);
    assert!(list_all(&client(), &a.url).await.is_empty());
    assert!(eventually(10, || a.upload_files() == 0).await);
    ep.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_that_stalls_is_aborted_and_completes_from_another_peer() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let b = Service::with_key(&dir.path().join("svc-b"));
    let c = client();
    let content = pseudo_random(1 << 20, 11);
    let (_, m) = upload(&c, &b, "wanted.bin", content.clone()).await;
    let hash = m["hash"].as_str().unwrap().to_owned();
    let agent_a = Agent::start(
        &dir.path().join("agent-a"),
        &a.url,
        KEY,
        PASS,
        "transfer_idle_timeout_secs: 2\n",
    );
    let addr = ticket_addr(&agent_a).await;
    let keys = can_sync::keys::derive(PASS).unwrap();

    // The staller claims the asset first, sends its header and half of it, then nothing.
    let ep = endpoint().await;
    let (conn, mut send, recv) = admitted_peer(&ep, &addr, &keys, "staller").await;
    drain(recv);
    let half = content[..content.len() / 2].to_vec();
    let whole = content.clone();
    let seen = serve_requests(conn.clone(), move |_req, mut tx| {
        let (half, whole) = (half.clone(), whole.clone());
        async move {
            let _ = write_frame(&mut tx, &asset_header(&whole, "wanted.bin")).await;
            let _ = tx.write_all(&half).await;
            // Hold the stream open, sending nothing, for longer than the test runs.
            tokio::time::sleep(Duration::from_secs(120)).await;
            drop(tx);
        }
    });
    claim(&mut send, &[*blake3::hash(&content).as_bytes()]).await;
    assert!(
        eventually(20, || !seen.lock().unwrap().is_empty()).await,
        "the agent never asked the staller"
    );
    // Now an honest peer with the same asset connects.
    let agent_b = Agent::start(
        &dir.path().join("agent-b"),
        &b.url,
        KEY,
        PASS,
        &agent_a.connect_line(),
    );
    assert!(
        eventually_async(60, || has_asset(&c, &a.url, &hash)).await,
        "the asset did not arrive from the second peer"
    );
    // The store holds the asset a moment before the agent reports it: await the event.
    assert!(
        eventually(10, || agent_a.count("asset_received") >= 1).await,
        "no asset_received event"
    );
    let from: Vec<String> = agent_a
        .events()
        .iter()
        .filter(|e| e["event"] == "asset_received")
        .filter_map(|e| e["peer"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(from.len(), 1, "{from:?}");
    assert_ne!(from[0], ep.id().to_string(), "taken from the staller");
    assert!(eventually(10, || a.upload_files() == 0).await);
    drop(agent_b);
    ep.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_of_a_newer_kind_is_not_misbehaviour() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let agent = Agent::start(&dir.path().join("agent-a"), &a.url, KEY, PASS, "");
    let addr = ticket_addr(&agent).await;
    let keys = can_sync::keys::derive(PASS).unwrap();
    let ep = endpoint().await;
    let (conn, mut send, recv) = admitted_peer(&ep, &addr, &keys, "from the future").await;
    drain(recv);
    let seen = serve_requests(conn.clone(), |_req, mut tx| async move {
        // Field 9 of Response, unknown to this version: `kind` decodes as none.
        let future = [0x4a, 0x03, b'n', b'e', b'w'];
        let mut framed = Vec::new();
        prost::encoding::encode_varint(future.len() as u64, &mut framed);
        framed.extend_from_slice(&future);
        let _ = tx.write_all(&framed).await;
        let _ = tx.finish();
        let _ = tx.stopped().await;
    });
    claim(&mut send, &[*blake3::hash(b"something newer").as_bytes()]).await;
    assert!(eventually(20, || !seen.lock().unwrap().is_empty()).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(agent.count("peer_misbehaved"), 0, "{:?}", agent.events());
    assert!(conn.close_reason().is_none(), "the connection was closed");
    assert_eq!(agent.count("peer_down"), 0);
    ep.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_protocol_version_is_not_redialled() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    // It speaks only can-sync/2.
    let newer = endpoint_with_alpns(vec![b"can-sync/2".to_vec()]).await;
    let ticket = dir.path().join("newer.ticket");
    write_ticket(&newer, &ticket);
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let acceptor = newer.clone();
    tokio::spawn(async move {
        while let Some(incoming) = acceptor.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let _ = incoming.await;
            });
        }
    });
    let agent = Agent::start(
        &dir.path().join("agent-a"),
        &a.url,
        KEY,
        PASS,
        &format!("connect_ticket_file: {}\n", ticket.display()),
    );
    assert!(
        agent.wait_for("incompatible_peer", 30).await,
        "{:?}",
        agent.events()
    );
    let after_report = attempts.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        after_report,
        "redialled after incompatible_peer"
    );
    assert!(after_report <= 2, "{after_report} attempts");
    assert_eq!(agent.count("incompatible_peer"), 1);
    newer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_never_dialled_after_a_passphrase_change() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let b = Service::with_key(&dir.path().join("svc-b"));
    let mut agent_a = Agent::start(&dir.path().join("agent-a"), &a.url, KEY, PASS, "");
    let agent_b = Agent::start(
        &dir.path().join("agent-b"),
        &b.url,
        KEY,
        PASS,
        &agent_a.connect_line(),
    );
    assert!(agent_a.wait_for("peer_up", 60).await);
    assert!(agent_b.wait_for("peer_up", 60).await);
    // A remembers B now (its peers file). A moves to a new passphrase; B keeps the old one.
    let remembered = agent_a.dir.join("state").join("peers.pb");
    assert!(eventually(10, || remembered.exists()).await);
    agent_a.edit_config(|c| c.replace(PASS, "lantern quartz meadow binary cactus wizard ripple"));
    let before = agent_b.events().len();
    agent_a.restart();
    // B still dials A (its ticket): A refuses it. A itself must never dial B.
    assert!(
        eventually(60, || agent_b.count("admission_refused") > 0).await,
        "B never tried"
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    let incoming_at_b: Vec<_> = agent_b.events()[before..]
        .iter()
        .filter(|e| e["event"] == "admission_refused" && e["incoming"] == true)
        .cloned()
        .collect();
    assert!(incoming_at_b.is_empty(), "A dialled B: {incoming_at_b:?}");
    assert_eq!(agent_a.count("peer_up"), 0, "A and B are still connected");
    assert!(
        agent_a
            .events()
            .iter()
            .all(|e| e["event"] != "admission_refused" || e["incoming"] == true),
        "A dialled B: {:?}",
        agent_a.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_room_reports_store_full_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A reserve larger than any disk: every transfer into this store is refused up front.
    let a = Service::start(
        &dir.path().join("svc-a"),
        &format!("sync_api_key: {KEY}\nfree_space_reserve_bytes: 1000000000000000\n"),
    );
    let b = Service::with_key(&dir.path().join("svc-b"));
    let c = client();
    upload(&c, &b, "wanted.bin", pseudo_random(256 << 10, 3)).await;
    let agent_a = Agent::start(&dir.path().join("agent-a"), &a.url, KEY, PASS, "");
    let _agent_b = Agent::start(
        &dir.path().join("agent-b"),
        &b.url,
        KEY,
        PASS,
        &agent_a.connect_line(),
    );
    assert!(
        agent_a.wait_for("store_full", 60).await,
        "{:?}",
        agent_a.events()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(agent_a.count("store_full"), 1, "reported once");
    assert_eq!(agent_a.count("asset_received"), 0);
    assert!(list_all(&c, &a.url).await.is_empty());
    assert_eq!(a.upload_files(), 0);
    assert_eq!(a.content_files(), 0);
}
