//! Resumable sync uploads and ranged reads of the real binary, over real HTTP
//! (docs/sync-api.md, "Resumable uploads").

use std::time::Duration;

use bytes::Bytes;
use can_proto::frame::read_head;
use can_proto::sync_api as pb;
use can_testkit::*;
use prost::Message;

const MIB: usize = 1 << 20;

fn auth(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.header("Authorization", format!("Bearer {KEY}"))
}

fn asset_for(content: &[u8]) -> pb::Asset {
    pb::Asset {
        hash: blake3::hash(content).as_bytes().to_vec(),
        size: content.len() as u64,
        name: "big.bin".into(),
        content_type: "application/octet-stream".into(),
        created_at: String::new(),
        origin: "peer:test".into(),
        seq: 0,
        ..Default::default()
    }
}

fn head(content: &[u8], offset: u64) -> Bytes {
    pb::IngestRequest {
        asset: Some(asset_for(content)),
        offset,
    }
    .encode_length_delimited_to_vec()
    .into()
}

/// Sends the head and `content[offset..end]`, then breaks the body off (as a peer's stream
/// that dies, or a killed agent, does).
async fn interrupted_upload(svc: &Service, content: &[u8], offset: usize, end: usize) {
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        std::iter::once(Ok(head(content, offset as u64)))
            .chain(
                content[offset..end]
                    .chunks(256 * 1024)
                    .map(|c| Ok(Bytes::copy_from_slice(c))),
            )
            .chain(std::iter::once(Err(std::io::Error::other("cut"))))
            .collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let sent = auth(client().post(svc.url("/sync/v1/assets")))
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await;
    assert!(sent.is_err(), "a broken-off body was answered: {sent:?}");
}

async fn resume(svc: &Service, content: &[u8], offset: u64) -> reqwest::Response {
    let mut body = head(content, offset).to_vec();
    body.extend_from_slice(&content[offset as usize..]);
    auth(client().post(svc.url("/sync/v1/assets")))
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// `Some(received)` of the service's partial upload of `content`, `None` when it has none.
async fn partial(svc: &Service, content: &[u8]) -> Option<u64> {
    let hash = blake3::hash(content).to_hex();
    let resp = auth(client().get(svc.url(&format!("/sync/v1/partials/{hash}"))))
        .send()
        .await
        .unwrap();
    match resp.status().as_u16() {
        200 => {
            let p = pb::Partial::decode(resp.bytes().await.unwrap()).unwrap();
            assert_eq!(p.hash, blake3::hash(content).as_bytes());
            Some(p.received)
        }
        404 => None,
        s => panic!("partial answered {s}"),
    }
}

/// Waits until the service holds at least `at_least` bytes of the partial (the writer
/// drains what arrived after the request failed on our side).
async fn settled_partial(svc: &Service, content: &[u8], at_least: u64) -> u64 {
    let mut last = None;
    for _ in 0..100 {
        last = partial(svc, content).await;
        if last.is_some_and(|r| r >= at_least) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last.expect("the interrupted upload left no partial")
}

async fn stored(svc: &Service, content: &[u8]) -> Option<Bytes> {
    let resp = client()
        .get(svc.url(&format!("/api/assets/{}", blake3::hash(content).to_hex())))
        .send()
        .await
        .unwrap();
    (resp.status() == 200).then_some(resp.bytes().await.unwrap())
}

#[tokio::test]
async fn an_interrupted_upload_resumes_from_what_arrived_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::with_key(dir.path());
    let content = pseudo_random(8 * MIB, 1);
    assert_eq!(partial(&svc, &content).await, None);

    interrupted_upload(&svc, &content, 0, 5 * MIB).await;
    let received = settled_partial(&svc, &content, 1).await;
    assert!(received > 0 && received <= 5 * MIB as u64, "{received}");
    assert!(
        stored(&svc, &content).await.is_none(),
        "a partial became visible"
    );
    assert!(list_all(&client(), &svc.url).await.is_empty());

    // It outlives the service.
    svc.kill();
    svc.restart(&format!("sync_api_key: {KEY}\n"));
    assert_eq!(partial(&svc, &content).await, Some(received));

    // Asking to resume past what arrived is a conflict, and changes nothing.
    let resp = resume(&svc, &content, received + 1).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(partial(&svc, &content).await, Some(received));

    // The rest completes it, verified whole; the partial is gone.
    let resp = resume(&svc, &content, received).await;
    assert_eq!(resp.status(), 201);
    let reply = pb::IngestResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert!(reply.created);
    assert_eq!(stored(&svc, &content).await.unwrap(), content);
    assert_eq!(partial(&svc, &content).await, None);
    assert_eq!(svc.temp_files(), 0);
}

#[tokio::test]
async fn a_tampered_partial_is_discarded_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(dir.path());
    let content = pseudo_random(4 * MIB, 2);
    interrupted_upload(&svc, &content, 0, 3 * MIB).await;
    let received = settled_partial(&svc, &content, 1).await;

    // Flip one byte of what the service kept.
    let path = svc
        .data_dir()
        .join("partial")
        .join(blake3::hash(&content).to_hex().as_str());
    let mut kept = std::fs::read(&path).unwrap();
    kept[received as usize / 2] ^= 0xff;
    std::fs::write(&path, kept).unwrap();

    let resp = resume(&svc, &content, received).await;
    assert_eq!(resp.status(), 422);
    assert!(stored(&svc, &content).await.is_none());
    assert_eq!(
        partial(&svc, &content).await,
        None,
        "the bad partial was kept"
    );
    // From byte 0 it is stored.
    assert_eq!(resume(&svc, &content, 0).await.status(), 201);
    assert_eq!(stored(&svc, &content).await.unwrap(), content);
}

#[tokio::test]
async fn partials_older_than_their_age_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(
        dir.path(),
        &format!("sync_api_key: {KEY}\npartial_max_age_secs: 1\n"),
    );
    let content = pseudo_random(2 * MIB, 3);
    interrupted_upload(&svc, &content, 0, MIB).await;
    assert!(
        eventually_async(15, || async { partial(&svc, &content).await.is_none() }).await,
        "the old partial was kept"
    );
}

#[tokio::test]
async fn a_ranged_read_sends_the_content_from_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(dir.path());
    let content = pseudo_random(3 * MIB + 17, 4);
    assert_eq!(resume(&svc, &content, 0).await.status(), 201);
    let hash = blake3::hash(&content).to_hex();
    for offset in [0, 1, MIB + 5, content.len()] {
        let resp = auth(client().get(svc.url(&format!("/sync/v1/assets/{hash}?offset={offset}"))))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut stream = futures_util::StreamExt::boxed(resp.bytes_stream());
        let (asset, rest): (pb::Asset, Bytes) =
            read_head(&mut stream, 64 * 1024, "Asset").await.unwrap();
        assert_eq!(
            asset.size,
            content.len() as u64,
            "the head names the whole asset"
        );
        let mut body = rest.to_vec();
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            body.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(body, &content[offset..], "offset {offset}");
    }
    let past = content.len() + 1;
    let resp = auth(client().get(svc.url(&format!("/sync/v1/assets/{hash}?offset={past}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}
