//! Helpers of the deletion tests: requests, listings, records and event streams.
#![allow(dead_code)]

pub use std::collections::{BTreeMap, BTreeSet, HashMap};
pub use std::time::Duration;

pub use base64::Engine as _;
pub use can_proto::sync_api as pb;
pub use can_testkit::*;
pub use eventsource_stream::Eventsource;
pub use futures_util::{Stream, StreamExt};
pub use prost::Message;
pub use serde_json::Value;

pub fn auth(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.header("Authorization", format!("Bearer {KEY}"))
}

pub async fn status_and_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let body = r.bytes().await.expect("body");
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).expect("JSON body")
    };
    (status, json)
}

pub async fn delete(c: &reqwest::Client, svc: &Service, hash: &str) -> (u16, Value) {
    let r = c
        .delete(svc.url(&format!("/api/assets/{hash}")))
        .send()
        .await
        .expect("DELETE asset");
    status_and_json(r).await
}

pub async fn restore(c: &reqwest::Client, svc: &Service, hash: &str) -> (u16, Value) {
    let r = c
        .post(svc.url(&format!("/api/trash/{hash}/restore")))
        .send()
        .await
        .expect("restore");
    status_and_json(r).await
}

pub async fn get_status(c: &reqwest::Client, svc: &Service, path: &str) -> u16 {
    c.get(svc.url(path))
        .send()
        .await
        .expect("GET")
        .status()
        .as_u16()
}

/// `GET path` on the public API: status and JSON body.
pub async fn get_json(c: &reqwest::Client, svc: &Service, path: &str) -> (u16, Value) {
    status_and_json(c.get(svc.url(path)).send().await.expect("GET")).await
}

/// `GET /api/trash?limit=1000`.
pub async fn trash(c: &reqwest::Client, svc: &Service) -> Value {
    let (status, v) = get_json(c, svc, "/api/trash?limit=1000").await;
    assert_eq!(status, 200, "{v}");
    v
}

pub fn hashes_of(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|a| a["hash"].as_str().expect("hash").to_owned())
        .collect()
}

/// Every live asset the public listing has, all pages: hash → (size, seq).
pub async fn live(c: &reqwest::Client, svc: &Service) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    let mut after = 0;
    loop {
        let page: Value = c
            .get(svc.url(&format!("/api/assets?after={after}&limit=1000")))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("list JSON");
        for a in page["assets"].as_array().expect("assets") {
            assert!(a.get("deleted").is_none(), "a deleted asset is listed: {a}");
            out.insert(
                a["hash"].as_str().expect("hash").to_owned(),
                (a["size"].as_u64().unwrap(), a["seq"].as_u64().unwrap()),
            );
        }
        match page["next"].as_u64() {
            Some(n) => after = n,
            None => return out,
        }
    }
}

/// The content the service serves for `hash` is `size` bytes that hash to `hash`.
pub async fn serves_whole(c: &reqwest::Client, svc: &Service, hash: &str, size: u64) -> bool {
    let r = c
        .get(svc.url(&format!("/api/assets/{hash}")))
        .send()
        .await
        .expect("GET content");
    if r.status() != 200 {
        return false;
    }
    let body = r.bytes().await.expect("content");
    body.len() as u64 == size && b3(&body) == hash
}

/// Files in `data_dir/trash`.
pub fn trash_files(svc: &Service) -> BTreeSet<String> {
    std::fs::read_dir(svc.data_dir().join("trash"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub async fn totals(c: &reqwest::Client, svc: &Service) -> pb::Totals {
    let r = auth(c.get(svc.url("/sync/v1/totals")))
        .send()
        .await
        .expect("totals");
    assert_eq!(r.status(), 200);
    pb::Totals::decode(r.bytes().await.unwrap()).expect("Totals")
}

pub async fn hashes(c: &reqwest::Client, svc: &Service, deleted: bool) -> pb::HashPage {
    let r = auth(c.get(svc.url(&format!("/sync/v1/hashes?deleted={deleted}"))))
        .send()
        .await
        .expect("hashes");
    assert_eq!(r.status(), 200);
    pb::HashPage::decode(r.bytes().await.unwrap()).expect("HashPage")
}

pub async fn post_record(
    c: &reqwest::Client,
    svc: &Service,
    record: &pb::Record,
) -> reqwest::Response {
    auth(c.post(svc.url("/sync/v1/records")))
        .header("Content-Type", "application/x-protobuf")
        .body(record.encode_to_vec())
        .send()
        .await
        .expect("records")
}

pub async fn apply(c: &reqwest::Client, svc: &Service, record: &pb::Record) -> pb::RecordResponse {
    let r = post_record(c, svc, record).await;
    assert_eq!(r.status(), 200);
    pb::RecordResponse::decode(r.bytes().await.unwrap()).expect("RecordResponse")
}

pub fn outcome(r: &pb::RecordResponse) -> pb::record_response::Outcome {
    pb::record_response::Outcome::try_from(r.outcome).expect("known outcome")
}

pub fn record(content: &[u8], stamp: u64, deleted: bool) -> pb::Record {
    pb::Record {
        hash: blake3::hash(content).as_bytes().to_vec(),
        stamp,
        deleted,
        origin: "peer:remote".into(),
        size: content.len() as u64,
        name: "from-peer.bin".into(),
    }
}

/// `POST /sync/v1/assets` of `content` with `stamp`.
pub async fn sync_ingest(
    c: &reqwest::Client,
    svc: &Service,
    content: &[u8],
    stamp: u64,
) -> reqwest::Response {
    let mut body = pb::IngestRequest {
        asset: Some(pb::Asset {
            hash: blake3::hash(content).as_bytes().to_vec(),
            size: content.len() as u64,
            name: "synced.bin".into(),
            origin: "peer:remote".into(),
            stamp,
            ..Default::default()
        }),
        offset: 0,
    }
    .encode_length_delimited_to_vec();
    body.extend_from_slice(content);
    auth(c.post(svc.url("/sync/v1/assets")))
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("sync ingest")
}

pub fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A stamp of the store's clock format at `ms` (milliseconds since the epoch).
pub fn stamp_at(ms: u64) -> u64 {
    ms << 16
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub async fn events(
    c: &reqwest::Client,
    url: String,
    sync: bool,
) -> impl Stream<Item = eventsource_stream::Event> + Unpin {
    let mut req = c.get(url);
    if sync {
        req = auth(req);
    }
    let r = req.send().await.expect("events");
    assert_eq!(r.status(), 200);
    Box::pin(
        r.bytes_stream()
            .eventsource()
            .map(|e| e.expect("well-formed event")),
    )
}

pub async fn next_event<S>(events: &mut S) -> eventsource_stream::Event
where
    S: Stream<Item = eventsource_stream::Event> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("stream open")
}

pub fn sync_event(e: &eventsource_stream::Event) -> pb::IngestEvent {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&e.data)
        .expect("base64");
    pb::IngestEvent::decode(raw.as_slice()).expect("IngestEvent")
}
