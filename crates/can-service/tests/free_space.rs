//! Free space: uploads that would eat into `free_space_reserve_bytes` or claim more than the
//! disk holds are refused with 507 before their body is read, and leave nothing behind.

use std::time::Duration;

use can_proto::sync_api as pb;
use can_service::store::space::disk_space;
use can_testkit::*;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// More than any disk this runs on: 1 PB.
const HUGE_RESERVE: u64 = 1_000_000_000_000_000;

fn ingest_body(content: &[u8], size: u64) -> Vec<u8> {
    let asset = pb::Asset {
        hash: blake3::hash(content).as_bytes().to_vec(),
        size,
        name: "disk-filler.bin".into(),
        content_type: "application/octet-stream".into(),
        created_at: "2024-05-06T07:08:09.123Z".into(),
        origin: "peer:a".into(),
        seq: 0,
        ..Default::default()
    };
    let mut body = pb::IngestRequest {
        asset: Some(asset),
        offset: 0,
    }
    .encode_length_delimited_to_vec();
    body.extend_from_slice(content);
    body
}

async fn sync_ingest(c: &reqwest::Client, svc: &Service, body: Vec<u8>) -> reqwest::Response {
    c.post(svc.url("/sync/v1/assets"))
        .header("Authorization", format!("Bearer {KEY}"))
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Asserts a 507 whose error names `sizes`, on a connection the service closes.
async fn assert_507(r: reqwest::Response, sizes: &[u64]) {
    assert_eq!(r.status(), 507);
    assert_eq!(
        r.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    let e: serde_json::Value = r.json().await.unwrap();
    let message = e["error"].as_str().unwrap();
    for size in sizes {
        assert!(
            message.contains(&size.to_string()),
            "{size} not in {message}"
        );
    }
}

async fn assert_nothing_stored(c: &reqwest::Client, svc: &Service) {
    assert!(list_all(c, &svc.url).await.is_empty());
    assert!(
        eventually(10, || svc.temp_files() == 0).await,
        "temp file left"
    );
    assert_eq!(svc.content_files(), 0);
}

#[tokio::test]
async fn a_reserve_larger_than_the_disk_refuses_every_upload_with_507() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(
        dir.path(),
        &format!("sync_api_key: {KEY}\nfree_space_reserve_bytes: {HUGE_RESERVE}\n"),
    );
    let c = client();
    let content = b"would not fit above the reserve";
    let r = sync_ingest(&c, &svc, ingest_body(content, content.len() as u64)).await;
    assert_507(r, &[content.len() as u64, HUGE_RESERVE]).await;
    // Public API, announced length.
    let r = c
        .post(svc.url("/api/assets?name=a.txt"))
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    assert_507(r, &[content.len() as u64, HUGE_RESERVE]).await;
    // Public API, chunked (no length): refused before the first byte is written.
    let chunks =
        futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![7u8; 1000])));
    let r = c
        .post(svc.url("/api/assets"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_507(r, &[HUGE_RESERVE]).await;
    assert_nothing_stored(&c, &svc).await;
}

#[tokio::test]
async fn no_reserve_accepts_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(
        dir.path(),
        &format!("sync_api_key: {KEY}\nfree_space_reserve_bytes: 0\n"),
    );
    let c = client();
    let content = b"fits";
    let r = sync_ingest(&c, &svc, ingest_body(content, content.len() as u64)).await;
    assert_eq!(r.status(), 201);
    let r = c
        .post(svc.url("/api/assets?name=b.txt"))
        .body("fits too")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(list_all(&c, &svc.url).await.len(), 2);
}

/// With no reserve at all, a claim beyond the free space is still refused up front: the
/// service answers without waiting for a body it could never store.
#[tokio::test]
async fn a_claimed_size_beyond_the_free_space_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(
        dir.path(),
        &format!(
            "sync_api_key: {KEY}\nfree_space_reserve_bytes: 0\nmax_asset_bytes: {}\n",
            u64::MAX / 4
        ),
    );
    std::fs::create_dir_all(svc.data_dir()).unwrap();
    let available = disk_space(&svc.data_dir()).unwrap().available;
    // 1 GiB over, so files other processes delete meanwhile cannot make it fit.
    let claimed = available + (1 << 30);
    let c = client();
    let r = sync_ingest(&c, &svc, ingest_body(b"only the start", claimed)).await;
    assert_507(r, &[claimed]).await;

    // Public API: a raw request announcing the size and sending none of it still gets its
    // answer (hyper could not send one if the service waited for the body).
    let addr = svc.url.trim_start_matches("http://").to_owned();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/assets HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {claimed}\r\n\r\nabc"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut reply))
        .await
        .expect("the service answered and closed within 10 s")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 507"), "{reply}");
    assert!(reply.contains(&claimed.to_string()), "{reply}");
    assert_nothing_stored(&c, &svc).await;
}
