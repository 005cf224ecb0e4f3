//! Strangers, broken clients and lying peers against a real agent.

mod common;

use std::time::Duration;

use can_proto::peer::{Control, HashList, Request, Response, control, response};
use can_proto::sync_api::Asset;
use can_sync::admission::ALPN;
use can_sync::peer::close;
use can_sync::wire::{MAX_FRAME, expect_frame, write_frame};
use can_testkit::*;
use common::*;
use tokio::io::AsyncWriteExt;

const PASS: &str = "orbit velvet canyon prism harbor lantern sequoia";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_passphrase_is_refused_before_any_hash() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let other = Service::with_key(&dir.path().join("svc-o"));
    let c = client();
    for i in 0..3 {
        upload(
            &c,
            &a,
            &format!("secret {i}"),
            format!("private {i}").into_bytes(),
        )
        .await;
    }
    upload(&c, &other, "theirs", b"outsider's asset".to_vec()).await;
    let agent_a = Agent::start(&dir.path().join("agent-a"), &a.url, KEY, PASS, "");
    let outsider = Agent::start(
        &dir.path().join("agent-o"),
        &other.url,
        KEY,
        "a different passphrase entirely 42",
        &agent_a.connect_line(),
    );
    assert!(
        eventually(60, || agent_a.count("admission_refused") > 0
            && outsider.count("admission_refused") > 0)
        .await,
        "both sides should refuse the admission"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    for agent in [&agent_a, &outsider] {
        assert_eq!(agent.count("peer_up"), 0);
        assert_eq!(agent.count("asset_sent"), 0);
        assert_eq!(agent.count("asset_received"), 0);
    }
    assert_eq!(list_all(&c, &a.url).await.len(), 3);
    assert_eq!(list_all(&c, &other.url).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_wrong_version_connections_close_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let mut agent = Agent::start(&dir.path().join("agent-a"), &a.url, KEY, PASS, "");
    let addr = ticket_addr(&agent).await;

    // Another protocol version: the TLS handshake fails (no common ALPN).
    let ep = endpoint().await;
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        ep.connect(addr.clone(), b"can-sync/2"),
    )
    .await;
    assert!(
        matches!(r, Ok(Err(_))),
        "a can-sync/2 client must not connect"
    );
    ep.close().await;

    // Garbage where the admission frame should be: a varint that never ends, a 1 GiB
    // length, and a frame over the pre-admission limit. Each from a fresh endpoint.
    let mut huge = Vec::new();
    prost::encoding::encode_varint(1 << 30, &mut huge);
    let mut big = Vec::new();
    prost::encoding::encode_varint(300, &mut big);
    big.extend(vec![0u8; 300]);
    for garbage in [vec![0xffu8; 12], huge, big, b"\x05hello".to_vec()] {
        let ep = endpoint().await;
        let conn = ep.connect(addr.clone(), ALPN).await.unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(&garbage).await.unwrap();
        send.flush().await.unwrap();
        let code = closed_code(&conn).await;
        assert_eq!(
            code,
            Some(u64::from(close::ADMISSION_FAILED)),
            "garbage {garbage:?}"
        );
        ep.close().await;
    }

    // Failing again from the same endpoint is rate-limited: refused before any admission.
    let ep = endpoint().await;
    for expected in [close::ADMISSION_FAILED, close::RATE_LIMITED] {
        let conn = ep.connect(addr.clone(), ALPN).await.unwrap();
        // The rate-limited connection may be closed before we get to write.
        let streams = conn.open_bi().await;
        if let Ok((mut send, _recv)) = streams {
            let _ = send.write_all(&[0xffu8; 12]).await;
            assert_eq!(closed_code(&conn).await, Some(u64::from(expected)));
        } else {
            assert_eq!(closed_code(&conn).await, Some(u64::from(expected)));
        }
    }
    ep.close().await;

    // Admitted, then a malformed control frame: closed as a protocol error.
    let keys = can_sync::keys::derive(PASS).unwrap();
    let ep = endpoint().await;
    let (conn, mut send, _recv) = admitted_peer(&ep, &addr, &keys, "probe").await;
    let mut oversized = Vec::new();
    prost::encoding::encode_varint((MAX_FRAME + 1) as u64, &mut oversized);
    send.write_all(&oversized).await.unwrap();
    assert_eq!(
        closed_code(&conn).await,
        Some(u64::from(close::PROTOCOL_ERROR))
    );
    ep.close().await;

    // The agent is still up and still admits an honest peer and greets it.
    assert!(agent.is_running(), "the agent died");
    let ep = endpoint().await;
    let _honest = admitted_peer(&ep, &addr, &keys, "honest").await;
    ep.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_content_that_does_not_match_its_hash_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let c = client();
    let agent = Agent::start(&dir.path().join("agent-a"), &a.url, KEY, PASS, "");
    let addr = ticket_addr(&agent).await;
    let keys = can_sync::keys::derive(PASS).unwrap();

    let claimed = b"the asset everyone wants".to_vec();
    let claimed_hash = blake3::hash(&claimed);
    let sent = b"malware, not the asset at all".to_vec();

    let ep = endpoint().await;
    let (conn, mut send, recv) = admitted_peer(&ep, &addr, &keys, "liar").await;
    let list = Control {
        kind: Some(control::Kind::HashList(HashList {
            round: 1,
            hashes: claimed_hash.as_bytes().to_vec(),
            last: true,
            reply_wanted: false,
        })),
    };
    write_frame(&mut send, &list).await.unwrap();
    // Drain what the agent says on the control stream.
    drain(recv);

    // The agent asks for it; we answer with other bytes under the claimed hash.
    let (mut tx, mut rx) = tokio::time::timeout(Duration::from_secs(30), conn.accept_bi())
        .await
        .expect("the agent requests the asset")
        .unwrap();
    let req: Request = expect_frame(&mut rx, 256).await.unwrap();
    assert_eq!(req.hash, claimed_hash.as_bytes().to_vec());
    let header = Response {
        kind: Some(response::Kind::Asset(Asset {
            hash: claimed_hash.as_bytes().to_vec(),
            size: sent.len() as u64,
            name: "wanted.bin".into(),
            content_type: "application/octet-stream".into(),
            created_at: String::new(),
            origin: "local".into(),
            seq: 1,
            ..Default::default()
        })),
        offset: 0,
        ..Default::default()
    };
    write_frame(&mut tx, &header).await.unwrap();
    tx.write_all(&sent).await.unwrap();
    tx.finish().unwrap();

    assert_eq!(
        closed_code(&conn).await,
        Some(u64::from(close::MISBEHAVING)),
        "liar not cut off"
    );
    assert!(agent.wait_for("peer_misbehaved", 10).await);
    assert!(
        list_all(&c, &a.url).await.is_empty(),
        "something was stored"
    );
    assert!(!has_asset(&c, &a.url, &claimed_hash.to_hex()).await);
    assert!(!has_asset(&c, &a.url, &b3(&sent)).await);
    assert!(eventually(10, || a.upload_files() == 0).await);
    assert_eq!(a.content_files(), 0);
    ep.close().await;
}
