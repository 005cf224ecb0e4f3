//! Refusing the web (issue #12): foreign `Origin`s get 403 before an upload's body is read,
//! foreign `Host`s (DNS rebinding) get 421, and `public_api_key` guards `/api/`.

use std::time::Duration;

use can_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EVIL_ORIGIN: &str = "https://evil.example";

fn port(svc: &Service) -> u16 {
    svc.url.rsplit(':').next().unwrap().parse().unwrap()
}

async fn status_of(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.unwrap().status().as_u16()
}

/// Sends only a request head over a raw connection and returns the response head: proof
/// that the service answered without waiting for the body.
async fn answer_to_head(svc: &Service, head: &str) -> String {
    let addr = svc.url.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !reply.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed without an answer");
            reply.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("answered before the body was sent");
    String::from_utf8_lossy(&reply).to_lowercase()
}

#[tokio::test]
async fn foreign_origins_are_refused_before_the_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), &format!("sync_api_key: {KEY}\n"));
    let c = client();
    let (status, _) = upload(&c, &svc, "before", b"before".to_vec()).await;
    assert_eq!(status, 201);

    // A cross-site form or fetch POST: refused with a JSON error, nothing stored.
    let r = c
        .post(svc.url("/api/assets?name=evil.html"))
        .header("Origin", EVIL_ORIGIN)
        .header("Content-Type", "text/html")
        .body("<script>alert(1)</script>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("origin"), "{e}");

    // Answered from the head alone: the 10 MiB body is never waited for, never stored.
    let addr = svc.url.trim_start_matches("http://");
    let head = answer_to_head(
        &svc,
        &format!(
            "POST /api/assets HTTP/1.1\r\nHost: {addr}\r\nOrigin: {EVIL_ORIGIN}\r\n\
             Content-Length: {}\r\n\r\n",
            10 << 20
        ),
    )
    .await;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let head = answer_to_head(
        &svc,
        &format!(
            "POST /api/assets HTTP/1.1\r\nHost: {addr}\r\nOrigin: {EVIL_ORIGIN}\r\n\
             Expect: 100-continue\r\nContent-Length: 1000\r\n\r\n"
        ),
    )
    .await;
    assert!(head.starts_with("http/1.1 403"), "no 100 Continue: {head}");
    assert_eq!(svc.temp_files(), 0);

    // Other foreign origins: another port is another origin; sandboxed pages send "null".
    let other_port = format!("http://127.0.0.1:{}", port(&svc) + 1);
    for origin in [other_port.as_str(), "null", "http://localhost", "garbage"] {
        let req = c.post(svc.url("/api/assets")).header("Origin", origin);
        assert_eq!(status_of(req.body("x")).await, 403, "{origin}");
    }
    // Reads and the event stream too, and the sync API (agents never send Origin).
    for path in [
        "/api/assets",
        "/api/events",
        &format!("/api/assets/{}", b3(b"before")),
    ] {
        let req = c.get(svc.url(path)).header("Origin", EVIL_ORIGIN);
        assert_eq!(status_of(req).await, 403, "{path}");
    }
    let req = c
        .get(svc.url("/sync/v1/hashes"))
        .header("Authorization", format!("Bearer {KEY}"))
        .header("Origin", EVIL_ORIGIN);
    assert_eq!(status_of(req).await, 403);
    let req = c.get(svc.url("/healthz")).header("Origin", EVIL_ORIGIN);
    assert_eq!(status_of(req).await, 200);

    assert_eq!(list_all(&c, &svc.url).await.len(), 1);
    assert_eq!(svc.content_files(), 1);

    // The store's own origin, under each name it may be addressed by, is served.
    let p = port(&svc);
    for (host, origin) in [
        (format!("127.0.0.1:{p}"), format!("http://127.0.0.1:{p}")),
        (format!("localhost:{p}"), format!("http://localhost:{p}")),
        (format!("localhost:{p}"), format!("http://127.0.0.1:{p}")),
    ] {
        let req = c
            .post(svc.url("/api/assets"))
            .header("Host", &host)
            .header("Origin", &origin)
            .body(format!("from {host} as {origin}"));
        assert_eq!(status_of(req).await, 201, "{host} {origin}");
    }
}

#[tokio::test]
async fn allow_listed_origins_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(
        dir.path(),
        "allowed_origins: [\"http://localhost:5173\", \"https://app.example\"]\n",
    );
    let c = client();
    for origin in [
        "http://localhost:5173",
        "https://app.example",
        "https://APP.example:443",
    ] {
        let req = c.post(svc.url("/api/assets")).header("Origin", origin);
        let status = status_of(req.body(origin.to_owned())).await;
        assert!(status == 201, "{origin}: {status}");
    }
    for origin in ["http://localhost:5174", "http://app.example", EVIL_ORIGIN] {
        let req = c.post(svc.url("/api/assets")).header("Origin", origin);
        assert_eq!(status_of(req.body("x")).await, 403, "{origin}");
    }
    assert_eq!(list_all(&c, &svc.url).await.len(), 3);
}

#[tokio::test]
async fn foreign_hosts_are_misdirected() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(
        dir.path(),
        &format!("sync_api_key: {KEY}\nallowed_hosts: [nas.example]\n"),
    );
    let c = client();
    let (_, meta) = upload(&c, &svc, "a", b"a".to_vec()).await;
    let hash = meta["hash"].as_str().unwrap();
    let p = port(&svc);
    let evil = format!("evil.example:{p}");
    let gets = [
        "/api/assets".to_owned(),
        format!("/api/assets/{hash}"),
        format!("/api/assets/{hash}/meta"),
        "/api/events".to_owned(),
        "/sync/v1/hashes".to_owned(),
        "/sync/v1/events".to_owned(),
        format!("/sync/v1/assets/{hash}"),
    ];
    for path in &gets {
        let req = c
            .get(svc.url(path))
            .header("Host", &evil)
            .header("Authorization", format!("Bearer {KEY}"));
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 421, "{path}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert!(
            e["error"].as_str().unwrap().contains("allowed_hosts"),
            "{e}"
        );
    }
    let req = c.post(svc.url("/api/assets")).header("Host", &evil);
    assert_eq!(status_of(req.body("rebound")).await, 421);
    // A rebinding page is same-origin with itself: its Origin does not help it.
    let req = c
        .post(svc.url("/api/assets"))
        .header("Host", &evil)
        .header("Origin", format!("http://{evil}"));
    assert_eq!(status_of(req.body("rebound")).await, 421);
    for host in [
        "evil.example",
        "localhost.evil.example",
        "127.0.0.1.evil.example:80",
    ] {
        let req = c.get(svc.url("/api/assets")).header("Host", host);
        assert_eq!(status_of(req).await, 421, "{host}");
    }
    // Health stays open.
    let req = c.get(svc.url("/healthz")).header("Host", &evil);
    assert_eq!(status_of(req).await, 200);

    // IP literals, localhost and allow-listed names are served, on every route.
    for host in [
        format!("localhost:{p}"),
        format!("127.0.0.1:{p}"),
        format!("[::1]:{p}"),
        "localhost".to_owned(),
        format!("nas.example:{p}"),
        format!("NAS.Example:{p}"),
    ] {
        for path in &gets[..3] {
            let req = c.get(svc.url(path)).header("Host", &host);
            assert_eq!(status_of(req).await, 200, "{host} {path}");
        }
        let req = c
            .get(svc.url("/sync/v1/hashes"))
            .header("Host", &host)
            .header("Authorization", format!("Bearer {KEY}"));
        assert_eq!(status_of(req).await, 200, "{host}");
    }
    assert_eq!(list_all(&c, &svc.url).await.len(), 1);
}

#[tokio::test]
async fn public_api_key_guards_the_public_api_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let public_key = "public-key-0123456789";
    let svc = Service::start(
        dir.path(),
        &format!("sync_api_key: {KEY}\npublic_api_key: {public_key}\n"),
    );
    let c = client();
    let with = |req: reqwest::RequestBuilder, key: &str| {
        req.header("Authorization", format!("Bearer {key}"))
    };
    for path in [
        "/api/assets",
        "/api/events",
        &format!("/api/assets/{}", b3(b"x")),
    ] {
        let r = c.get(svc.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(r.headers().contains_key("www-authenticate"));
        let text = r.text().await.unwrap();
        assert!(
            text.contains("public API key") && !text.contains(public_key),
            "{text}"
        );
        for wrong in ["wrong", KEY, &format!("{public_key}x")] {
            let r = with(c.get(svc.url(path)), wrong).send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} {wrong}");
        }
    }
    // An upload without the key is answered before its body is sent.
    let addr = svc.url.trim_start_matches("http://");
    let head = answer_to_head(
        &svc,
        &format!("POST /api/assets HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1000000\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    let r = with(c.post(svc.url("/api/assets?name=ok")), "wrong")
        .body("no")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = with(c.post(svc.url("/api/assets?name=ok")), public_key)
        .body("yes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = with(c.get(svc.url("/api/assets")), public_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: serde_json::Value = r.json().await.unwrap();
    assert_eq!(list["assets"].as_array().unwrap().len(), 1);
    // Health needs no key; the sync API keeps its own.
    assert_eq!(status_of(c.get(svc.url("/healthz"))).await, 200);
    assert_eq!(
        status_of(with(c.get(svc.url("/sync/v1/hashes")), KEY)).await,
        200
    );
    let req = with(c.get(svc.url("/sync/v1/hashes")), public_key);
    assert_eq!(status_of(req).await, 401);
}
