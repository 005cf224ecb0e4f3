//! The public JSON API of the real binary, over real HTTP.

use std::time::Duration;

use can_testkit::*;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn upload_get_meta_range_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), "");
    let c = client();
    assert_eq!(
        c.get(svc.url("/healthz")).send().await.unwrap().status(),
        200
    );

    // Empty asset.
    let (status, empty) = upload(&c, &svc, "empty.bin", vec![]).await;
    assert_eq!(status, 201);
    assert_eq!(empty["hash"], b3(b""));
    assert_eq!(empty["size"], 0);
    assert_eq!(empty["origin"], "local");
    let r = c
        .get(svc.url(&format!("/api/assets/{}", b3(b""))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "0");
    assert!(r.bytes().await.unwrap().is_empty());

    // 20 MiB asset, non-ASCII name, explicit content type.
    let big = pseudo_random(20 << 20, 1);
    let name = "Grüße — 写真 📷.png";
    let r = c
        .post(svc.url("/api/assets"))
        .header("X-Filename", percent_encode(name))
        .header("Content-Type", "image/png")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let meta: serde_json::Value = r.json().await.unwrap();
    let hash = b3(&big);
    assert_eq!(meta["hash"], hash);
    assert_eq!(meta["size"], big.len());
    assert_eq!(meta["name"], name);
    assert_eq!(meta["content_type"], "image/png");
    assert!(meta["seq"].as_u64().unwrap() > empty["seq"].as_u64().unwrap());
    let created = meta["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");

    let r = c
        .get(svc.url(&format!("/api/assets/{hash}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(
        r.headers()["content-length"],
        big.len().to_string().as_str()
    );
    assert_eq!(r.headers()["etag"], format!("\"{hash}\"").as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), big.as_slice());

    // Meta route.
    let m: serde_json::Value = c
        .get(svc.url(&format!("/api/assets/{hash}/meta")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m, meta);

    // Ranges: explicit, open-ended, suffix, unsatisfiable.
    for (range, start, end) in [
        ("bytes=10-19", 10, 20),
        ("bytes=20971000-", 20971000, big.len()),
        ("bytes=-5", big.len() - 5, big.len()),
    ] {
        let r = c
            .get(svc.url(&format!("/api/assets/{hash}")))
            .header("Range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206, "{range}");
        let cr = format!("bytes {}-{}/{}", start, end - 1, big.len());
        assert_eq!(r.headers()["content-range"], cr.as_str());
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            &big[start..end],
            "{range}"
        );
    }
    let r = c
        .get(svc.url(&format!("/api/assets/{hash}")))
        .header("Range", format!("bytes={}-", big.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);

    // If-None-Match with the ETag.
    let r = c
        .get(svc.url(&format!("/api/assets/{hash}")))
        .header("If-None-Match", format!("\"{hash}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // Dedup: same content again → 200, same row; one content file.
    let (status, again) = upload(&c, &svc, "other name", big.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(again, meta);
    let list: serde_json::Value = c
        .get(svc.url("/api/assets"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["assets"].as_array().unwrap().len(), 2);
    assert_eq!(list["next"], serde_json::Value::Null);
    assert_eq!(svc.content_files(), 2);

    // Name from ?name= and the default content type.
    let r = c
        .post(svc.url("/api/assets?name=caf%C3%A9.txt"))
        .body("coffee")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let m: serde_json::Value = r.json().await.unwrap();
    assert_eq!(m["name"], "café.txt");
    assert_eq!(m["content_type"], "application/octet-stream");

    // Unknown and malformed hashes.
    let unknown = b3(b"never uploaded");
    let r = c
        .get(svc.url(&format!("/api/assets/{unknown}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains(&unknown));
    for bad in ["xyz", &"g".repeat(64), &"a".repeat(65)] {
        let r = c
            .get(svc.url(&format!("/api/assets/{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert!(e["error"].as_str().unwrap().contains("hash"), "{e}");
        let r = c
            .get(svc.url(&format!("/api/assets/{bad}/meta")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn list_paginates_over_ten_thousand_assets() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), "");
    let c = client();
    let n = 10_000usize;
    let statuses: Vec<u16> = futures_util::stream::iter(0..n)
        .map(|i| {
            let c = c.clone();
            let url = svc.url(&format!("/api/assets?name=a{i}"));
            async move {
                c.post(url)
                    .body(format!("asset number {i}"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 201));

    // Pages of 1000 and of the default 100, both cover everything exactly once in seq order.
    for limit in [Some(1000), None] {
        let mut after = 0u64;
        let mut seen = std::collections::HashSet::new();
        let mut pages = 0;
        loop {
            let url = match limit {
                Some(l) => svc.url(&format!("/api/assets?after={after}&limit={l}")),
                None => svc.url(&format!("/api/assets?after={after}")),
            };
            let page: serde_json::Value = c.get(url).send().await.unwrap().json().await.unwrap();
            pages += 1;
            let assets = page["assets"].as_array().unwrap();
            assert!(assets.len() <= limit.unwrap_or(100));
            for a in assets {
                let seq = a["seq"].as_u64().unwrap();
                assert!(seq > after, "seq order");
                after = seq;
                assert!(seen.insert(a["hash"].as_str().unwrap().to_owned()));
            }
            match page["next"].as_u64() {
                Some(next) => assert_eq!(next, after),
                None => break,
            }
            assert!(pages < 1000, "pagination does not end");
        }
        assert_eq!(seen.len(), n);
        assert_eq!(pages, n / limit.unwrap_or(100));
    }
    // Over-large limits are clamped; zero is refused.
    let page: serde_json::Value = c
        .get(svc.url("/api/assets?limit=5000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["assets"].as_array().unwrap().len(), 1000);
    let r = c.get(svc.url("/api/assets?limit=0")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(svc.url("/api/assets?after=minus-one"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("after"), "{e}");
}

type Events = std::pin::Pin<Box<dyn futures_util::Stream<Item = eventsource_stream::Event> + Send>>;

async fn subscribe(c: &reqwest::Client, url: String, last_id: Option<&str>) -> Events {
    let mut req = c.get(url);
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    Box::pin(
        r.bytes_stream()
            .eventsource()
            .map(|e| e.unwrap())
            .filter(|e| {
                let keep = e.event == "ingest";
                async move { keep }
            }),
    )
}

async fn next_event(events: &mut Events) -> eventsource_stream::Event {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("event within 10 s")
        .expect("stream open")
}

#[tokio::test]
async fn events_are_live_and_resume_with_last_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), "");
    let c = client();
    let (_, first) = upload(&c, &svc, "before", b"before subscribing".to_vec()).await;

    // A fresh subscription starts at "now": live events only.
    let mut events = subscribe(&c, svc.url("/api/events"), None).await;
    let mut seqs = Vec::new();
    for i in 0..3 {
        let (_, meta) = upload(
            &c,
            &svc,
            &format!("live {i}"),
            format!("live {i}").into_bytes(),
        )
        .await;
        let e = next_event(&mut events).await;
        assert_eq!(e.id, meta["seq"].to_string());
        let data: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(data, meta);
        seqs.push(meta["seq"].as_u64().unwrap());
    }
    assert!(seqs[0] > first["seq"].as_u64().unwrap());
    drop(events);

    // Missed while disconnected.
    let mut missed = Vec::new();
    for i in 0..2 {
        let (_, meta) = upload(
            &c,
            &svc,
            &format!("missed {i}"),
            format!("missed {i}").into_bytes(),
        )
        .await;
        missed.push(meta);
    }
    let last = seqs[2].to_string();
    let mut events = subscribe(&c, svc.url("/api/events"), Some(&last)).await;
    for meta in &missed {
        let e = next_event(&mut events).await;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&e.data).unwrap(),
            *meta
        );
    }
    // Then live again, with nothing repeated.
    let (_, live) = upload(&c, &svc, "after resume", b"after resume".to_vec()).await;
    let e = next_event(&mut events).await;
    assert_eq!(e.id, live["seq"].to_string());

    // ?after= replays everything from the start.
    let mut all = subscribe(&c, svc.url("/api/events?after=0"), None).await;
    let e = next_event(&mut all).await;
    assert_eq!(e.id, first["seq"].to_string());

    let r = c
        .get(svc.url("/api/events"))
        .header("Last-Event-ID", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn oversized_uploads_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), "max_asset_bytes: 1000\n");
    let c = client();
    // Announced too large: refused before the body is read.
    let r = c
        .post(svc.url("/api/assets"))
        .body(vec![1u8; 2000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("1000"), "{e}");
    // Chunked, no length: refused once it passes the limit.
    let chunks =
        futures_util::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![7u8; 300])));
    let r = c
        .post(svc.url("/api/assets"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Exactly at the limit is fine.
    let (status, _) = upload(&c, &svc, "limit", vec![9u8; 1000]).await;
    assert_eq!(status, 201);
    assert_eq!(list_all(&c, &svc.url).await.len(), 1);
    assert!(eventually(10, || svc.temp_files() == 0).await);
    assert_eq!(svc.content_files(), 1);
}

#[tokio::test]
async fn bad_names_and_types_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), "");
    let c = client();
    let r = c
        .post(svc.url("/api/assets"))
        .header("X-Filename", "%FF%FE")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("X-Filename"), "{e}");
    let r = c
        .post(svc.url("/api/assets"))
        .header("Content-Type", "not a mime type")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("content_type"), "{e}");
    let r = c
        .post(svc.url("/api/assets?name=a%0Ab"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c.get(svc.url("/no/such/route")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(list_all(&c, &svc.url).await.is_empty());
}

#[tokio::test]
async fn client_disconnect_mid_upload_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), "");
    let addr = svc.url.trim_start_matches("http://").to_owned();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/assets HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        10 << 20
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(&vec![5u8; 1 << 20]).await.unwrap();
    sock.flush().await.unwrap();
    // The temp file exists while the upload is under way...
    assert!(
        eventually(10, || svc.temp_files() == 1).await,
        "upload did not start"
    );
    drop(sock);
    // ...and is gone once the client disappears; nothing is listed.
    assert!(
        eventually(10, || svc.temp_files() == 0).await,
        "temp file left behind"
    );
    let c = client();
    assert!(list_all(&c, &svc.url).await.is_empty());
    assert_eq!(svc.content_files(), 0);
    // And the service is still fine.
    let (status, _) = upload(&c, &svc, "after", b"after".to_vec()).await;
    assert_eq!(status, 201);

    // A request with a lying Content-Length that ends early is also an interruption.
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head =
        format!("POST /api/assets HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100\r\n\r\nshort");
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.shutdown().await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut reply)).await;
    assert!(eventually(10, || svc.temp_files() == 0).await);
    assert_eq!(list_all(&c, &svc.url).await.len(), 1);
}

/// Found by fuzzing (crates/can-fuzz/regressions/service_http/range-on-empty-content):
/// tower-http answered `Range: bytes=0-0` on empty content with `206 bytes 0-0/0`.
#[tokio::test]
async fn a_range_on_empty_content_gets_the_whole_empty_content() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), "");
    let c = client();
    let (status, meta) = upload(&c, &svc, "empty", Vec::new()).await;
    assert_eq!(status, 201);
    let url = svc.url(&format!("/api/assets/{}", meta["hash"].as_str().unwrap()));
    for range in ["bytes=0-0", "bytes=0-", "bytes=-1"] {
        let r = c.get(&url).header("Range", range).send().await.unwrap();
        assert_eq!(r.status(), 200, "{range}");
        assert!(r.headers().get("content-range").is_none(), "{range}");
        assert!(r.bytes().await.unwrap().is_empty(), "{range}");
    }
}
