//! Served content cannot run as the store's origin, and names lose invisible format
//! characters on every ingest path (issue #12).

use can_proto::sync_api as pb;
use can_testkit::*;
use prost::Message;

async fn upload_typed(c: &reqwest::Client, svc: &Service, name: &str, ty: Option<&str>) -> String {
    let body = format!("content named {name} of type {ty:?}");
    let mut req = c
        .post(svc.url("/api/assets"))
        .header("X-Filename", percent_encode(name));
    if let Some(ty) = ty {
        req = req.header("Content-Type", ty);
    }
    let r = req.body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 201, "{name}");
    b3(body.as_bytes())
}

#[tokio::test]
async fn active_content_is_an_attachment_in_a_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), "");
    let c = client();
    let cases = [
        ("page.html", Some("text/html"), "attachment"),
        ("page.xhtml", Some("application/xhtml+xml"), "attachment"),
        ("logo.svg", Some("image/svg+xml"), "attachment"),
        ("feed.xml", Some("application/xml"), "attachment"),
        ("doc.xml", Some("text/xml"), "attachment"),
        ("app.js", Some("text/javascript"), "attachment"),
        ("app2.js", Some("application/javascript"), "attachment"),
        ("thing.bin", None, "attachment"),
        ("thing.x", Some("application/x-made-up"), "attachment"),
        ("photo.png", Some("image/png"), "inline"),
        ("photo.jpg", Some("image/jpeg"), "inline"),
        ("notes.txt", Some("text/plain; charset=utf-8"), "inline"),
        ("paper.pdf", Some("application/pdf"), "inline"),
        ("song.mp3", Some("audio/mpeg"), "inline"),
    ];
    for (name, ty, kind) in cases {
        let hash = upload_typed(&c, &svc, name, ty).await;
        let r = c
            .get(svc.url(&format!("/api/assets/{hash}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let h = r.headers();
        let disposition = h["content-disposition"].to_str().unwrap();
        let encoded = percent_encode(name);
        assert_eq!(
            disposition,
            format!("{kind}; filename*=UTF-8''{encoded}"),
            "{name}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{name}");
        assert_eq!(h["content-security-policy"], "sandbox", "{name}");
        assert_eq!(h["etag"], format!("\"{hash}\"").as_str());
        assert_eq!(h["content-type"], ty.unwrap_or("application/octet-stream"));
    }

    // Ranges keep the same protection and their own headers.
    let hash = upload_typed(&c, &svc, "range.html", Some("text/html")).await;
    let r = c
        .get(svc.url(&format!("/api/assets/{hash}")))
        .header("Range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(r.headers().contains_key("content-range"));
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(r.headers()["content-security-policy"], "sandbox");

    // Every response is nosniff and not embeddable by other origins: JSON, errors, health.
    for path in [
        "/healthz",
        "/api/assets",
        "/api/assets/nope",
        "/no/such/route",
        "/sync/v1/hashes",
    ] {
        let r = c.get(svc.url(path)).send().await.unwrap();
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(
            r.headers()["cross-origin-resource-policy"],
            "same-origin",
            "{path}"
        );
    }
}

#[tokio::test]
async fn format_characters_are_stripped_from_names_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(dir.path());
    let c = client();
    let spoof = "invoice\u{202E}fdp.exe";
    let clean = "invoicefdp.exe";

    // X-Filename header.
    let (status, meta) = upload(&c, &svc, spoof, b"via header".to_vec()).await;
    assert_eq!(status, 201);
    assert_eq!(meta["name"], clean);
    // ?name= query, with more invisible characters around.
    let r = c
        .post(svc.url(&format!(
            "/api/assets?name={}",
            percent_encode("\u{FEFF}a\u{200B}b\u{2066}c\u{2069}.txt")
        )))
        .body("via query")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let meta: serde_json::Value = r.json().await.unwrap();
    assert_eq!(meta["name"], "abc.txt");
    // Sync API ingest.
    let content = b"via sync";
    let asset = pb::Asset {
        hash: blake3::hash(content).as_bytes().to_vec(),
        size: content.len() as u64,
        name: spoof.into(),
        content_type: "text/plain".into(),
        created_at: String::new(),
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
    let r = c
        .post(svc.url("/sync/v1/assets"))
        .header("Authorization", format!("Bearer {KEY}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let reply = pb::IngestResponse::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(reply.asset.unwrap().name, clean);

    let names: Vec<String> = list_all(&c, &svc.url)
        .await
        .into_values()
        .map(|(_, name)| name)
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names.iter().all(|n| !n.contains('\u{202E}')), "{names:?}");
    let r = c
        .get(svc.url(&format!("/api/assets/{}", b3(content))))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-disposition"],
        format!("inline; filename*=UTF-8''{clean}").as_str()
    );
    // A name that is only format characters becomes empty, which is allowed.
    let (status, meta) = upload(&c, &svc, "\u{202E}\u{200F}", b"nameless".to_vec()).await;
    assert_eq!(status, 201);
    assert_eq!(meta["name"], "");
    // Control characters are still refused outright.
    let r = c
        .post(svc.url("/api/assets?name=a%1Bb"))
        .body("escape")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
