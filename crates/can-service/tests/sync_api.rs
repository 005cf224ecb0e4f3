//! The protobuf sync API of the real binary, over real HTTP.

use std::time::Duration;

use base64::Engine as _;
use can_proto::sync_api as pb;
use can_testkit::*;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use prost::Message;

fn auth(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.header("Authorization", format!("Bearer {KEY}"))
}

fn asset_for(content: &[u8], name: &str, origin: &str) -> pb::Asset {
    pb::Asset {
        hash: blake3::hash(content).as_bytes().to_vec(),
        size: content.len() as u64,
        name: name.into(),
        content_type: "text/plain".into(),
        created_at: "2024-05-06T07:08:09.123Z".into(),
        origin: origin.into(),
        seq: 0,
        ..Default::default()
    }
}

fn ingest_body(asset: pb::Asset, content: &[u8]) -> Vec<u8> {
    let mut body = pb::IngestRequest {
        asset: Some(asset),
        offset: 0,
    }
    .encode_length_delimited_to_vec();
    body.extend_from_slice(content);
    body
}

async fn ingest(c: &reqwest::Client, svc: &Service, body: Vec<u8>) -> reqwest::Response {
    auth(c.post(svc.url("/sync/v1/assets")))
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn public_list(c: &reqwest::Client, svc: &Service) -> Vec<serde_json::Value> {
    let v: serde_json::Value = c
        .get(svc.url("/api/assets?limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["assets"].as_array().unwrap().clone()
}

#[tokio::test]
async fn sync_api_is_absent_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), "");
    let c = client();
    for path in ["/sync/v1/hashes", "/sync/v1/events", "/sync/v1/assets/00"] {
        let r = auth(c.get(svc.url(path))).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = ingest(&c, &svc, ingest_body(asset_for(b"x", "x", "peer:a"), b"x")).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn wrong_or_missing_key_is_unauthorized() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(dir.path());
    let c = client();
    let r = c.get(svc.url("/sync/v1/hashes")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    for bad in [
        "Bearer wrong",
        "Bearer ",
        "Basic abc",
        &format!("Bearer {KEY}x"),
        &KEY[..5],
    ] {
        let r = c
            .get(svc.url("/sync/v1/hashes"))
            .header("Authorization", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{bad}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert!(!e.to_string().contains(KEY));
    }
    let r = c
        .post(svc.url("/sync/v1/assets"))
        .header("Authorization", "Bearer wrong")
        .body(ingest_body(asset_for(b"x", "x", "peer:a"), b"x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(public_list(&c, &svc).await.is_empty());
    let r = auth(c.get(svc.url("/sync/v1/hashes")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn ingest_verifies_content_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(dir.path());
    let c = client();

    // Content that does not match the claimed hash: 422, nothing stored.
    let mut lying = asset_for(b"the real content", "lie.txt", "peer:mallory");
    lying.size = b"other content!!!".len() as u64;
    let r = ingest(&c, &svc, ingest_body(lying, b"other content!!!")).await;
    assert_eq!(r.status(), 422);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("hash"), "{e}");
    // Wrong size (shorter and longer than claimed): 422 too.
    let mut short = asset_for(b"abcdef", "s", "peer:m");
    short.size = 10;
    assert_eq!(
        ingest(&c, &svc, ingest_body(short, b"abcdef"))
            .await
            .status(),
        422
    );
    let long = asset_for(b"abc", "l", "peer:m");
    assert_eq!(
        ingest(&c, &svc, ingest_body(long, b"abcdef"))
            .await
            .status(),
        422
    );
    assert!(public_list(&c, &svc).await.is_empty());
    assert!(eventually(10, || svc.upload_files() == 0).await);
    assert_eq!(svc.content_files(), 0);

    // A good one: 201 with its seq and the peer's metadata kept.
    let content = pseudo_random(3 << 20, 9);
    let r = ingest(
        &c,
        &svc,
        ingest_body(asset_for(&content, "from peer ✓", "peer:alice"), &content),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let reply = pb::IngestResponse::decode(r.bytes().await.unwrap()).unwrap();
    assert!(reply.created);
    let stored = reply.asset.unwrap();
    assert_eq!(stored.origin, "peer:alice");
    assert_eq!(stored.created_at, "2024-05-06T07:08:09.123Z");
    assert_eq!(stored.name, "from peer ✓");
    assert!(stored.seq > 0);
    // Again: 200, not created, same seq.
    let r = ingest(
        &c,
        &svc,
        ingest_body(asset_for(&content, "again", "peer:bob"), &content),
    )
    .await;
    assert_eq!(r.status(), 200);
    let reply = pb::IngestResponse::decode(r.bytes().await.unwrap()).unwrap();
    assert!(!reply.created);
    assert_eq!(reply.asset.unwrap().seq, stored.seq);
    let list = public_list(&c, &svc).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["origin"], "peer:alice");

    // Fetch: delimited Asset, then the content.
    let hex = hex_of(&stored.hash);
    let r = auth(c.get(svc.url(&format!("/sync/v1/assets/{hex}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    let mut buf = body.as_ref();
    let meta = pb::Asset::decode_length_delimited(&mut buf).unwrap();
    assert_eq!(meta, stored);
    assert_eq!(buf, content.as_slice());
    let r = auth(c.get(svc.url(&format!("/sync/v1/assets/{}", b3(b"nope")))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn garbage_requests_get_400() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(dir.path());
    let c = client();
    let mut oversized_prefix = Vec::new();
    prost::encoding::encode_varint(1 << 30, &mut oversized_prefix);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", vec![]),
        ("garbage", b"\x05\xff\xff\xff\xff\xffjunk".to_vec()),
        ("bad varint", vec![0xff; 12]),
        ("huge frame", oversized_prefix),
        (
            "no asset",
            pb::IngestRequest {
                asset: None,
                offset: 0,
            }
            .encode_length_delimited_to_vec(),
        ),
        ("short hash", {
            let mut a = asset_for(b"x", "x", "peer:a");
            a.hash.truncate(5);
            ingest_body(a, b"x")
        }),
        ("no origin", ingest_body(asset_for(b"x", "x", ""), b"x")),
        ("bad time", {
            let mut a = asset_for(b"x", "x", "peer:a");
            a.created_at = "yesterday".into();
            ingest_body(a, b"x")
        }),
    ];
    for (what, body) in cases {
        let r = ingest(&c, &svc, body).await;
        assert_eq!(r.status(), 400, "{what}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert!(!e["error"].as_str().unwrap().is_empty(), "{what}");
    }
    let r = auth(c.get(svc.url("/sync/v1/hashes?limit=0")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(public_list(&c, &svc).await.is_empty());
    assert!(eventually(10, || svc.upload_files() == 0).await);
}

#[tokio::test]
async fn hash_listing_pages_with_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(dir.path());
    let c = client();
    let mut expected = Vec::new();
    for i in 0..25 {
        let (_, meta) = upload(
            &c,
            &svc,
            &format!("n{i}"),
            format!("content {i}").into_bytes(),
        )
        .await;
        expected.push((
            meta["hash"].as_str().unwrap().to_owned(),
            meta["seq"].as_u64().unwrap(),
        ));
    }
    let mut after = 0;
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let r = auth(c.get(svc.url(&format!("/sync/v1/hashes?after={after}&limit=10"))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page = pb::HashPage::decode(r.bytes().await.unwrap()).unwrap();
        pages += 1;
        assert_eq!(page.last_seq, expected.last().unwrap().1);
        for e in &page.entries {
            got.push((hex_of(&e.hash), e.seq));
        }
        match page.next {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(got, expected);
    // Only what came after a seq.
    let r = auth(c.get(svc.url(&format!("/sync/v1/hashes?after={}", expected[20].1))))
        .send()
        .await
        .unwrap();
    let page = pb::HashPage::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(page.entries.len(), 4);
    assert_eq!(page.next, None);
}

#[tokio::test]
async fn sync_events_carry_hash_seq_origin_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(dir.path());
    let c = client();
    let open = |last: Option<String>| {
        let mut req = auth(c.get(svc.url("/sync/v1/events")));
        if let Some(id) = last {
            req = req.header("Last-Event-ID", id);
        }
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            Box::pin(r.bytes_stream().eventsource().filter_map(|e| async move {
                let e = e.unwrap();
                (e.event == "ingest").then_some(e)
            }))
        }
    };
    let decode = |e: &eventsource_stream::Event| {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&e.data)
            .unwrap();
        pb::IngestEvent::decode(raw.as_slice()).unwrap()
    };
    let mut events = open(None).await;
    let (_, local) = upload(&c, &svc, "l", b"local one".to_vec()).await;
    let r = ingest(
        &c,
        &svc,
        ingest_body(asset_for(b"synced one", "s", "peer:zed"), b"synced one"),
    )
    .await;
    assert_eq!(r.status(), 201);
    let e1 = next_event(&mut events).await;
    let d1 = decode(&e1);
    assert_eq!(hex_of(&d1.hash), local["hash"].as_str().unwrap());
    assert_eq!(d1.origin, "local");
    assert_eq!(e1.id, d1.seq.to_string());
    let e2 = next_event(&mut events).await;
    let d2 = decode(&e2);
    assert_eq!(d2.origin, "peer:zed");
    assert_eq!(d2.size, 10);
    drop(events);

    upload(&c, &svc, "m", b"missed".to_vec()).await;
    let mut events = open(Some(e2.id.clone())).await;
    let e3 = next_event(&mut events).await;
    assert_eq!(
        decode(&e3).hash,
        blake3::hash(b"missed").as_bytes().to_vec()
    );
}

async fn next_event<S>(events: &mut S) -> eventsource_stream::Event
where
    S: futures_util::Stream<Item = eventsource_stream::Event> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("event within 10 s")
        .expect("stream open")
}

#[tokio::test]
async fn ingest_over_the_size_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(
        dir.path(),
        &format!("sync_api_key: {KEY}\nmax_asset_bytes: 100\n"),
    );
    let c = client();
    let content = vec![1u8; 200];
    let r = ingest(
        &c,
        &svc,
        ingest_body(asset_for(&content, "big", "peer:a"), &content),
    )
    .await;
    assert_eq!(r.status(), 413);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("100"), "{e}");
    assert!(public_list(&c, &svc).await.is_empty());
    assert!(eventually(10, || svc.upload_files() == 0).await);
}
