//! Deletion, the trash, restores, peers' records and tombstones, of the real binary over
//! real HTTP (docs/sync-api.md, "Deletion"); and SIGKILL in the middle of deletions and
//! restores, again and again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use base64::Engine as _;
use can_proto::sync_api as pb;
use can_testkit::*;
use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use prost::Message;
use serde_json::Value;

fn auth(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.header("Authorization", format!("Bearer {KEY}"))
}

async fn status_and_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let body = r.bytes().await.expect("body");
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).expect("JSON body")
    };
    (status, json)
}

async fn delete(c: &reqwest::Client, svc: &Service, hash: &str) -> (u16, Value) {
    let r = c
        .delete(svc.url(&format!("/api/assets/{hash}")))
        .send()
        .await
        .expect("DELETE asset");
    status_and_json(r).await
}

async fn restore(c: &reqwest::Client, svc: &Service, hash: &str) -> (u16, Value) {
    let r = c
        .post(svc.url(&format!("/api/trash/{hash}/restore")))
        .send()
        .await
        .expect("restore");
    status_and_json(r).await
}

async fn get_status(c: &reqwest::Client, svc: &Service, path: &str) -> u16 {
    c.get(svc.url(path))
        .send()
        .await
        .expect("GET")
        .status()
        .as_u16()
}

/// `GET /api/trash?limit=1000`.
async fn trash(c: &reqwest::Client, svc: &Service) -> Value {
    let (status, v) = status_and_json(
        c.get(svc.url("/api/trash?limit=1000"))
            .send()
            .await
            .expect("trash"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v
}

fn hashes_of(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|a| a["hash"].as_str().expect("hash").to_owned())
        .collect()
}

/// Every live asset the public listing has, all pages: hash → (size, seq).
async fn live(c: &reqwest::Client, svc: &Service) -> BTreeMap<String, (u64, u64)> {
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
async fn serves_whole(c: &reqwest::Client, svc: &Service, hash: &str, size: u64) -> bool {
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
fn trash_files(svc: &Service) -> BTreeSet<String> {
    std::fs::read_dir(svc.data_dir().join("trash"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn totals(c: &reqwest::Client, svc: &Service) -> pb::Totals {
    let r = auth(c.get(svc.url("/sync/v1/totals")))
        .send()
        .await
        .expect("totals");
    assert_eq!(r.status(), 200);
    pb::Totals::decode(r.bytes().await.unwrap()).expect("Totals")
}

async fn hashes(c: &reqwest::Client, svc: &Service, deleted: bool) -> pb::HashPage {
    let r = auth(c.get(svc.url(&format!("/sync/v1/hashes?deleted={deleted}"))))
        .send()
        .await
        .expect("hashes");
    assert_eq!(r.status(), 200);
    pb::HashPage::decode(r.bytes().await.unwrap()).expect("HashPage")
}

async fn post_record(c: &reqwest::Client, svc: &Service, record: &pb::Record) -> reqwest::Response {
    auth(c.post(svc.url("/sync/v1/records")))
        .header("Content-Type", "application/x-protobuf")
        .body(record.encode_to_vec())
        .send()
        .await
        .expect("records")
}

async fn apply(c: &reqwest::Client, svc: &Service, record: &pb::Record) -> pb::RecordResponse {
    let r = post_record(c, svc, record).await;
    assert_eq!(r.status(), 200);
    pb::RecordResponse::decode(r.bytes().await.unwrap()).expect("RecordResponse")
}

fn outcome(r: &pb::RecordResponse) -> pb::record_response::Outcome {
    pb::record_response::Outcome::try_from(r.outcome).expect("known outcome")
}

fn record(content: &[u8], stamp: u64, deleted: bool) -> pb::Record {
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
async fn sync_ingest(
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

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A stamp of the store's clock format at `ms` (milliseconds since the epoch).
fn stamp_at(ms: u64) -> u64 {
    ms << 16
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn events(
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

async fn next_event<S>(events: &mut S) -> eventsource_stream::Event
where
    S: Stream<Item = eventsource_stream::Event> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("stream open")
}

fn sync_event(e: &eventsource_stream::Event) -> pb::IngestEvent {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&e.data)
        .expect("base64");
    pb::IngestEvent::decode(raw.as_slice()).expect("IngestEvent")
}

#[tokio::test]
async fn a_deleted_asset_is_gone_from_the_api_and_kept_in_the_trash() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(dir.path());
    let c = client();
    let a = pseudo_random(70_000, 1);
    let b = pseudo_random(5_000, 2);
    let keep = pseudo_random(123, 3);
    let (_, ma) = upload(&c, &svc, "a.bin", a.clone()).await;
    upload(&c, &svc, "b.bin", b.clone()).await;
    let (_, mk) = upload(&c, &svc, "keep.bin", keep.clone()).await;
    let (ha, hb, hk) = (b3(&a), b3(&b), b3(&keep));

    let (status, tomb) = delete(&c, &svc, &ha).await;
    assert_eq!(status, 200, "{tomb}");
    assert_eq!(tomb["hash"], ha);
    assert_eq!(tomb["size"], a.len() as u64);
    assert_eq!(tomb["name"], "a.bin");
    assert_eq!(tomb["origin"], "local");
    assert_eq!(tomb["deleted"]["in_trash"], true);
    assert!(tomb["deleted"]["at_ms"].as_u64().unwrap() > 0);
    assert!(tomb["seq"].as_u64() > mk["seq"].as_u64(), "no new seq");
    assert!(
        tomb["stamp"].as_u64() > ma["stamp"].as_u64(),
        "no later stamp"
    );

    // Gone from every read route: 410, not 404.
    assert_eq!(
        get_status(&c, &svc, &format!("/api/assets/{ha}")).await,
        410
    );
    let (status, e) = status_and_json(
        c.get(svc.url(&format!("/api/assets/{ha}/meta")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 410);
    assert!(e["error"].as_str().unwrap().contains("deleted"), "{e}");
    assert_eq!(
        live(&c, &svc)
            .await
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([hb.clone(), hk.clone()])
    );
    // Deleting again: 410; unknown: 404; malformed: 400.
    assert_eq!(delete(&c, &svc, &ha).await.0, 410);
    assert_eq!(delete(&c, &svc, &b3(b"never stored")).await.0, 404);
    assert_eq!(delete(&c, &svc, "xyz").await.0, 400);

    // The content sits in the trash, whole; objects/ holds only the live assets.
    let t = trash(&c, &svc).await;
    assert_eq!(hashes_of(&t["assets"]), vec![ha.clone()]);
    assert_eq!(t["assets"][0]["size"], a.len() as u64);
    assert_eq!(t["assets"][0]["name"], "a.bin");
    assert_eq!(
        (t["total_assets"].as_u64(), t["total_bytes"].as_u64()),
        (Some(1), Some(a.len() as u64))
    );
    assert_eq!(trash_files(&svc), BTreeSet::from([ha.clone()]));
    let kept = std::fs::read(svc.data_dir().join("trash").join(&ha)).unwrap();
    assert_eq!(kept, a);
    assert_eq!(svc.content_files(), 2);

    // A second deletion is listed first (newest deletion first); `limit` pages, the totals
    // stay those of the whole trash.
    let (status, _) = delete(&c, &svc, &hb).await;
    assert_eq!(status, 200);
    let t = trash(&c, &svc).await;
    assert_eq!(hashes_of(&t["assets"]), vec![hb.clone(), ha.clone()]);
    assert_eq!(t["total_assets"], 2);
    assert_eq!(t["total_bytes"], (a.len() + b.len()) as u64);
    let one: Value = c
        .get(svc.url("/api/trash?limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hashes_of(&one["assets"]), vec![hb.clone()]);
    assert_eq!(one["total_assets"], 2);
    assert_eq!(get_status(&c, &svc, "/api/trash?limit=0").await, 400);

    let t = totals(&c, &svc).await;
    assert_eq!(
        (
            t.assets,
            t.bytes,
            t.trash_assets,
            t.trash_bytes,
            t.tombstones
        ),
        (1, keep.len() as u64, 2, (a.len() + b.len()) as u64, 2)
    );

    // All of it survives a restart.
    let mut svc = svc;
    svc.restart(&format!("sync_api_key: {KEY}\n"));
    // A new client: the old one's pooled connections died with the process.
    let c = client();
    assert_eq!(
        get_status(&c, &svc, &format!("/api/assets/{ha}")).await,
        410
    );
    assert_eq!(trash(&c, &svc).await["total_assets"], 2);
    assert_eq!(trash_files(&svc).len(), 2);
    assert!(serves_whole(&c, &svc, &hk, keep.len() as u64).await);
}

#[tokio::test]
async fn restore_and_upload_again_bring_an_asset_back_under_a_new_seq() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), "");
    let c = client();
    let a = pseudo_random(40_000, 11);
    let b = pseudo_random(900, 12);
    let (ha, hb) = (b3(&a), b3(&b));
    upload(&c, &svc, "a.bin", a.clone()).await;
    upload(&c, &svc, "original-b.bin", b.clone()).await;

    // Not deleted: 409; unknown: 404.
    assert_eq!(restore(&c, &svc, &ha).await.0, 409);
    assert_eq!(restore(&c, &svc, &b3(b"nothing")).await.0, 404);

    let (_, tomb) = delete(&c, &svc, &ha).await;
    let (status, back) = restore(&c, &svc, &ha).await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["restored"], true);
    assert!(back.get("deleted").is_none(), "{back}");
    assert_eq!(back["name"], "a.bin");
    assert!(back["seq"].as_u64() > tomb["seq"].as_u64());
    assert!(back["stamp"].as_u64() > tomb["stamp"].as_u64());
    assert!(serves_whole(&c, &svc, &ha, a.len() as u64).await);
    let meta: Value = c
        .get(svc.url(&format!("/api/assets/{ha}/meta")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta, back);
    assert_eq!(live(&c, &svc).await[&ha].1, back["seq"].as_u64().unwrap());
    assert_eq!(trash(&c, &svc).await["total_assets"], 0);
    assert!(trash_files(&svc).is_empty());
    assert_eq!(restore(&c, &svc, &ha).await.0, 409);

    // Uploading deleted content again restores it too, under its old name.
    let (_, tomb) = delete(&c, &svc, &hb).await;
    let (status, again) = upload(&c, &svc, "new-name.bin", b.clone()).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["restored"], true);
    assert_eq!(again["name"], "original-b.bin");
    assert!(again["seq"].as_u64() > tomb["seq"].as_u64());
    assert!(serves_whole(&c, &svc, &hb, b.len() as u64).await);
    assert_eq!(trash(&c, &svc).await["total_assets"], 0);
    assert!(trash_files(&svc).is_empty(), "the trash copy stayed");
    assert_eq!(svc.content_files(), 2);
    // And once more: it is plainly stored now.
    let (status, same) = upload(&c, &svc, "x", b.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(same["seq"], again["seq"]);
}

#[tokio::test]
async fn purge_and_empty_trash_delete_content_for_good_but_keep_the_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(dir.path());
    let c = client();
    let contents: Vec<Vec<u8>> = (0..4)
        .map(|i| pseudo_random(1000 + i, 20 + i as u64))
        .collect();
    let hs: Vec<String> = contents.iter().map(|x| b3(x)).collect();
    for (i, x) in contents.iter().enumerate() {
        upload(&c, &svc, &format!("f{i}"), x.clone()).await;
        assert_eq!(delete(&c, &svc, &hs[i]).await.0, 200);
    }
    assert_eq!(trash_files(&svc).len(), 4);

    // One purged: 204, its file gone, its tombstone kept (410, not restorable).
    let r = c
        .delete(svc.url(&format!("/api/trash/{}", hs[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(!trash_files(&svc).contains(&hs[0]));
    assert!(!hashes_of(&trash(&c, &svc).await["assets"]).contains(&hs[0]));
    assert_eq!(
        get_status(&c, &svc, &format!("/api/assets/{}", hs[0])).await,
        410
    );
    assert_eq!(restore(&c, &svc, &hs[0]).await.0, 404);
    let again = c
        .delete(svc.url(&format!("/api/trash/{}", hs[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    let never = c
        .delete(svc.url(&format!("/api/trash/{}", b3(b"never"))))
        .send()
        .await
        .unwrap();
    assert_eq!(never.status(), 404);

    // The rest at once.
    let (status, removed) =
        status_and_json(c.delete(svc.url("/api/trash")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(removed, serde_json::json!({"removed": 3}));
    assert!(trash_files(&svc).is_empty());
    let t = trash(&c, &svc).await;
    assert_eq!(
        (t["total_assets"].as_u64(), t["total_bytes"].as_u64()),
        (Some(0), Some(0))
    );
    let (_, removed) = status_and_json(c.delete(svc.url("/api/trash")).send().await.unwrap()).await;
    assert_eq!(removed["removed"], 0);
    let t = totals(&c, &svc).await;
    assert_eq!((t.assets, t.trash_assets, t.tombstones), (0, 0, 4));
    assert_eq!(hashes(&c, &svc, true).await.entries.len(), 4);

    // Content purged from the trash can still be uploaded again: it is back.
    let (status, back) = upload(&c, &svc, "again", contents[1].clone()).await;
    assert_eq!(status, 201);
    assert_eq!(back["restored"], true);
    assert_eq!(back["name"], "f1");
    assert!(serves_whole(&c, &svc, &hs[1], contents[1].len() as u64).await);
    assert_eq!(svc.content_files(), 1);
}

#[tokio::test]
async fn both_event_streams_announce_deletions_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(dir.path());
    let c = client();
    let a = b"an asset to delete".to_vec();
    let ha = b3(&a);
    let (_, up) = upload(&c, &svc, "a.txt", a.clone()).await;
    let mut public = events(&c, svc.url("/api/events"), false).await;
    let mut sync = events(&c, svc.url("/sync/v1/events"), true).await;

    let (_, tomb) = delete(&c, &svc, &ha).await;
    let e = next_event(&mut public).await;
    assert_eq!(e.event, "delete");
    assert_eq!(e.id, tomb["seq"].to_string());
    let data: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(data, tomb);
    let e = next_event(&mut sync).await;
    assert_eq!(e.event, "delete");
    let d = sync_event(&e);
    assert_eq!(hex_of(&d.hash), ha);
    assert!(d.deleted && !d.restored);
    assert_eq!(d.stamp, tomb["stamp"].as_u64().unwrap());
    assert_eq!(d.seq, tomb["seq"].as_u64().unwrap());
    assert_eq!(d.origin, "local");
    assert_eq!(d.size, a.len() as u64);

    let (_, back) = restore(&c, &svc, &ha).await;
    let e = next_event(&mut public).await;
    assert_eq!(e.event, "ingest");
    assert_eq!(e.id, back["seq"].to_string());
    let data: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(data["restored"], true);
    let e = next_event(&mut sync).await;
    assert_eq!(e.event, "ingest");
    let d = sync_event(&e);
    assert!(d.restored && !d.deleted);
    assert_eq!(d.stamp, back["stamp"].as_u64().unwrap());

    // Deleted and uploaded again: delete, then ingest with `restored`. (Each event is
    // awaited before the next change: a stream reads one row per hash, so a change made
    // before a stream read the previous one of that hash shows up in its place.)
    delete(&c, &svc, &ha).await;
    assert_eq!(next_event(&mut public).await.event, "delete");
    assert_eq!(next_event(&mut sync).await.event, "delete");
    let (status, again) = upload(&c, &svc, "a.txt", a.clone()).await;
    assert_eq!(status, 201);
    let e = next_event(&mut public).await;
    assert_eq!(
        (e.event.as_str(), e.id.clone()),
        ("ingest", again["seq"].to_string())
    );
    assert_eq!(
        serde_json::from_str::<Value>(&e.data).unwrap()["restored"],
        true
    );
    assert!(sync_event(&next_event(&mut sync).await).restored);

    // A stream resumed from before it all replays the current state of each hash once:
    // the asset's latest change replaced its earlier rows.
    let mut replay = events(
        &c,
        svc.url(&format!(
            "/api/events?after={}",
            up["seq"].as_u64().unwrap() - 1
        )),
        false,
    )
    .await;
    let e = next_event(&mut replay).await;
    assert_eq!(
        (e.event.as_str(), e.id.clone()),
        ("ingest", again["seq"].to_string())
    );
}

#[tokio::test]
async fn sync_api_lists_tombstones_applies_records_and_refuses_older_uploads() {
    use pb::record_response::Outcome;
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(dir.path());
    let c = client();
    let x = pseudo_random(3000, 31);
    let y = pseudo_random(4000, 32);
    let (hx, hy) = (b3(&x), b3(&y));
    let (_, mx) = upload(&c, &svc, "x", x.clone()).await;
    let (_, my) = upload(&c, &svc, "y", y.clone()).await;
    let (_, tx) = delete(&c, &svc, &hx).await;
    let tomb_stamp = tx["stamp"].as_u64().unwrap();

    // Without ?deleted only live assets; with it the tombstone too, with its stamp.
    let page = hashes(&c, &svc, false).await;
    assert_eq!(
        page.entries
            .iter()
            .map(|e| hex_of(&e.hash))
            .collect::<Vec<_>>(),
        vec![hy.clone()]
    );
    let page = hashes(&c, &svc, true).await;
    let listed: Vec<_> = page
        .entries
        .iter()
        .map(|e| (hex_of(&e.hash), e.seq, e.stamp, e.deleted, e.size))
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                hy.clone(),
                my["seq"].as_u64().unwrap(),
                my["stamp"].as_u64().unwrap(),
                false,
                4000
            ),
            (
                hx.clone(),
                tx["seq"].as_u64().unwrap(),
                tomb_stamp,
                true,
                3000
            ),
        ]
    );
    assert_eq!(page.last_seq, tx["seq"].as_u64().unwrap());

    // An upload stamped before the deletion: 410, nothing changes.
    let r = sync_ingest(&c, &svc, &x, mx["stamp"].as_u64().unwrap()).await;
    assert_eq!(r.status(), 410);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("deleted"), "{e}");
    assert_eq!(
        get_status(&c, &svc, &format!("/api/assets/{hx}")).await,
        410
    );
    assert_eq!(trash(&c, &svc).await["total_assets"], 1);
    // A record making it live with an older stamp: ours is later.
    let r = apply(&c, &svc, &record(&x, tomb_stamp - 1, false)).await;
    assert_eq!(outcome(&r), Outcome::Superseded);
    let current = r.current.unwrap();
    assert!(current.deleted);
    assert_eq!(current.stamp, tomb_stamp);
    // The same deletion again: unchanged.
    let r = apply(&c, &svc, &record(&x, tomb_stamp, true)).await;
    assert_eq!(outcome(&r), Outcome::Unchanged);
    // A later live record restores it from the trash without any content sent.
    let r = apply(&c, &svc, &record(&x, tomb_stamp + 5, false)).await;
    assert_eq!(outcome(&r), Outcome::Applied);
    let current = r.current.unwrap();
    assert!(!current.deleted);
    assert_eq!(
        (current.stamp, current.origin.as_str()),
        (tomb_stamp + 5, "peer:remote")
    );
    assert!(serves_whole(&c, &svc, &hx, 3000).await);

    // A deletion of y with its own stamp wins the tie; it lands in the trash.
    let y_stamp = my["stamp"].as_u64().unwrap();
    let mut events = events(&c, svc.url("/sync/v1/events"), true).await;
    let r = apply(&c, &svc, &record(&y, y_stamp, true)).await;
    assert_eq!(outcome(&r), Outcome::Applied);
    assert!(r.current.as_ref().unwrap().deleted);
    let d = sync_event(&next_event(&mut events).await);
    assert!(d.deleted && d.stamp == y_stamp && d.origin == "peer:remote");
    assert_eq!(
        get_status(&c, &svc, &format!("/api/assets/{hy}")).await,
        410
    );
    assert!(trash_files(&svc).contains(&hy));
    let r = auth(c.get(svc.url(&format!("/sync/v1/assets/{hy}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    // A live record of both-live content: unchanged.
    let r = apply(&c, &svc, &record(&x, 1, false)).await;
    assert_eq!(outcome(&r), Outcome::Unchanged);
    // An upload of content held, with a later stamp: 200, and the stamp is remembered, so a
    // deletion stamped before it loses here as it does at the uploader's.
    let later = tomb_stamp + 100;
    let r = sync_ingest(&c, &svc, &x, later).await;
    assert_eq!(r.status(), 200);
    let r = apply(&c, &svc, &record(&x, later - 1, true)).await;
    assert_eq!(outcome(&r), Outcome::Superseded);
    assert_eq!(r.current.unwrap().stamp, later);

    // A record of content never held: live → NEED_CONTENT (no current); deleted → a
    // tombstone that refuses older copies and yields to later ones.
    let z = pseudo_random(2500, 33);
    let hz = b3(&z);
    let zs = stamp_at(now_ms());
    let r = apply(&c, &svc, &record(&z, zs, false)).await;
    assert_eq!(outcome(&r), Outcome::NeedContent);
    assert!(r.current.is_none());
    let r = apply(&c, &svc, &record(&z, zs, true)).await;
    assert_eq!(outcome(&r), Outcome::Applied);
    let current = r.current.unwrap();
    assert!(current.deleted);
    assert_eq!(
        (current.size, current.name.as_str()),
        (2500, "from-peer.bin")
    );
    assert_eq!(
        get_status(&c, &svc, &format!("/api/assets/{hz}")).await,
        410
    );
    assert!(!trash_files(&svc).contains(&hz));
    // Live with the same stamp: the deletion outranks it.
    let r = apply(&c, &svc, &record(&z, zs, false)).await;
    assert_eq!(outcome(&r), Outcome::Superseded);
    assert_eq!(sync_ingest(&c, &svc, &z, zs - 1).await.status(), 410);
    assert_eq!(sync_ingest(&c, &svc, &z, zs).await.status(), 410);
    // Live, later, without the content here: fetch it, then upload with that stamp.
    let r = apply(&c, &svc, &record(&z, zs + 1, false)).await;
    assert_eq!(outcome(&r), Outcome::NeedContent);
    assert!(r.current.unwrap().deleted);
    let r = sync_ingest(&c, &svc, &z, zs + 1).await;
    assert_eq!(r.status(), 201);
    let reply = pb::IngestResponse::decode(r.bytes().await.unwrap()).unwrap();
    assert!(reply.created);
    let asset = reply.asset.unwrap();
    assert!(!asset.deleted);
    assert_eq!(asset.stamp, zs + 1);
    assert!(serves_whole(&c, &svc, &hz, 2500).await);

    // Bad records: 400, nothing changes.
    for (what, body) in [
        ("garbage", b"\xff\xff\xff".to_vec()),
        (
            "short hash",
            pb::Record {
                hash: vec![1; 5],
                ..record(&x, 9, true)
            }
            .encode_to_vec(),
        ),
        (
            "no origin",
            pb::Record {
                origin: String::new(),
                ..record(&x, u64::MAX >> 2, true)
            }
            .encode_to_vec(),
        ),
        (
            "control char",
            pb::Record {
                name: "a\u{7}b".into(),
                ..record(&x, u64::MAX >> 2, true)
            }
            .encode_to_vec(),
        ),
    ] {
        let r = auth(c.post(svc.url("/sync/v1/records")))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{what}");
    }
    assert!(serves_whole(&c, &svc, &hx, 3000).await);
    // Without the key: 401.
    let r = c
        .post(svc.url("/sync/v1/records"))
        .body(record(&x, 1, true).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let t = totals(&c, &svc).await;
    assert_eq!(
        (
            t.assets,
            t.bytes,
            t.trash_assets,
            t.trash_bytes,
            t.tombstones
        ),
        (2, 3000 + 2500, 1, 4000, 1)
    );
    let public = trash(&c, &svc).await;
    assert_eq!(
        (
            public["total_assets"].as_u64(),
            public["total_bytes"].as_u64()
        ),
        (Some(1), Some(4000))
    );
}

/// A peer whose clock runs days ahead (beyond what the store's clock takes over) must not
/// make this store's own later changes lose: a deletion here after its upload stays a
/// deletion, and an upload here after its deletion brings the asset back.
#[tokio::test]
async fn local_changes_outrank_a_peer_stamp_from_the_future() {
    use pb::record_response::Outcome;
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(dir.path());
    let c = client();
    let future = stamp_at(now_ms() + 3 * 24 * 3600 * 1000);

    let a = pseudo_random(1500, 41);
    let ha = b3(&a);
    assert_eq!(sync_ingest(&c, &svc, &a, future).await.status(), 201);
    let (status, tomb) = delete(&c, &svc, &ha).await;
    assert_eq!(status, 200);
    assert!(tomb["stamp"].as_u64().unwrap() > future, "{tomb}");
    // The peer's (older) live state does not undo the deletion.
    let r = apply(&c, &svc, &record(&a, future, false)).await;
    assert_eq!(outcome(&r), Outcome::Superseded);
    assert_eq!(
        get_status(&c, &svc, &format!("/api/assets/{ha}")).await,
        410
    );
    // Restored here: later than the deletion.
    let (status, back) = restore(&c, &svc, &ha).await;
    assert_eq!(status, 200);
    assert!(back["stamp"].as_u64() > tomb["stamp"].as_u64(), "{back}");

    let b = pseudo_random(1600, 42);
    let hb = b3(&b);
    let r = apply(&c, &svc, &record(&b, future, true)).await;
    assert_eq!(outcome(&r), Outcome::Applied);
    let (status, again) = upload(&c, &svc, "b", b.clone()).await;
    assert_eq!(status, 201, "{again}");
    assert!(again["stamp"].as_u64().unwrap() > future);
    assert!(serves_whole(&c, &svc, &hb, 1600).await);
}

#[tokio::test]
async fn trash_period_and_tombstone_retention_are_enforced_by_the_service() {
    let dir = tempfile::tempdir().unwrap();
    // 0.00002 days ≈ 1.7 s in the trash; 0.0001 days ≈ 8.6 s for the tombstone.
    let svc = Service::start(
        dir.path(),
        &format!("sync_api_key: {KEY}\ntrash_days: 0.00002\ntombstone_retention_days: 0.0001\n"),
    );
    let c = client();
    let a = pseudo_random(10_000, 51);
    let keep = pseudo_random(10, 52);
    let ha = b3(&a);
    upload(&c, &svc, "a", a.clone()).await;
    upload(&c, &svc, "keep", keep.clone()).await;
    let deleted_at = std::time::Instant::now();
    assert_eq!(delete(&c, &svc, &ha).await.0, 200);
    assert_eq!(trash(&c, &svc).await["total_assets"], 1);
    assert!(trash_files(&svc).contains(&ha));

    // The content goes after the trash period; the tombstone stays.
    assert!(
        eventually_async(30, || async { trash(&c, &svc).await["total_assets"] == 0 }).await,
        "the trash was not emptied after its period"
    );
    let after = deleted_at.elapsed();
    assert!(
        after >= Duration::from_millis(1700),
        "purged too early: {after:?}"
    );
    assert!(trash_files(&svc).is_empty());
    let t = totals(&c, &svc).await;
    assert_eq!((t.trash_assets, t.tombstones), (0, 1));
    assert_eq!(
        get_status(&c, &svc, &format!("/api/assets/{ha}")).await,
        410
    );
    assert_eq!(restore(&c, &svc, &ha).await.0, 404);
    assert!(
        hashes(&c, &svc, true)
            .await
            .entries
            .iter()
            .any(|e| e.deleted)
    );

    // The tombstone goes after its retention: the hash is unknown again.
    assert!(
        eventually_async(30, || async {
            get_status(&c, &svc, &format!("/api/assets/{ha}")).await == 404
        })
        .await,
        "the tombstone was kept"
    );
    let after = deleted_at.elapsed();
    assert!(
        after >= Duration::from_millis(8600),
        "forgotten too early: {after:?}"
    );
    assert!(
        hashes(&c, &svc, true)
            .await
            .entries
            .iter()
            .all(|e| !e.deleted)
    );
    let t = totals(&c, &svc).await;
    assert_eq!((t.assets, t.trash_assets, t.tombstones), (1, 0, 0));
    assert!(serves_whole(&c, &svc, &b3(&keep), 10).await);
}

#[tokio::test]
async fn a_tombstone_outlives_its_retention_while_its_content_is_in_the_trash() {
    let dir = tempfile::tempdir().unwrap();
    // Retention (≈ 0.9 s) shorter than the trash period (≈ 8.6 s).
    let svc = Service::start(
        dir.path(),
        &format!("sync_api_key: {KEY}\ntrash_days: 0.0001\ntombstone_retention_days: 0.00001\n"),
    );
    let c = client();
    let a = pseudo_random(777, 61);
    let ha = b3(&a);
    upload(&c, &svc, "a", a.clone()).await;
    assert_eq!(delete(&c, &svc, &ha).await.0, 200);
    let deleted_at = tokio::time::Instant::now();
    // Well past the retention (the clean-up runs every ≈ 0.2 s), well before the end of the
    // trash period: nothing to await but time.
    tokio::time::sleep_until(deleted_at + Duration::from_millis(2500)).await;
    assert_eq!(trash(&c, &svc).await["total_assets"], 1);
    assert_eq!(
        get_status(&c, &svc, &format!("/api/assets/{ha}")).await,
        410
    );
    assert_eq!(totals(&c, &svc).await.tombstones, 1);
    // Then both go.
    assert!(
        eventually_async(30, || async {
            get_status(&c, &svc, &format!("/api/assets/{ha}")).await == 404
        })
        .await
    );
    assert!(deleted_at.elapsed() >= Duration::from_millis(8600));
    assert!(trash_files(&svc).is_empty());
    assert_eq!(totals(&c, &svc).await.tombstones, 0);
}

#[test]
fn bad_trash_periods_stop_the_service() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("trash_days", "0"),
        ("trash_days", "-1"),
        ("trash_days", ".nan"),
        ("tombstone_retention_days", "0"),
        ("tombstone_retention_days", "40000"),
        ("trash_days", "soon"),
    ] {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, format!("listen: 127.0.0.1:0\n{key}: {value}\n")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_can-service"))
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}: {value} was accepted");
        assert!(err.contains(key) && err.contains("bad.yaml"), "{err}");
    }
}

// ---- SIGKILL during deletions and restores ----

const ASSETS: usize = 40;
const ROUNDS: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Live,
    Trashed,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Delete,
    Restore,
    Reupload,
}

/// After a restart: every asset is either live and served whole, or deleted with its whole
/// content in the trash; nothing else is on disk. Returns each asset's state.
async fn verify_after_crash(
    c: &reqwest::Client,
    svc: &Service,
    contents: &HashMap<String, Vec<u8>>,
) -> BTreeMap<String, State> {
    let live = live(c, svc).await;
    let t = trash(c, svc).await;
    let trashed: BTreeSet<String> = hashes_of(&t["assets"]).into_iter().collect();
    let mut states = BTreeMap::new();
    for (hash, content) in contents {
        let size = content.len() as u64;
        match (live.get(hash), trashed.contains(hash)) {
            (Some((listed_size, _)), false) => {
                assert_eq!(*listed_size, size, "{hash} listed with the wrong size");
                assert!(
                    serves_whole(c, svc, hash, size).await,
                    "live {hash} is not served whole"
                );
                states.insert(hash.clone(), State::Live);
            }
            (None, true) => {
                assert_eq!(
                    get_status(c, svc, &format!("/api/assets/{hash}")).await,
                    410,
                    "trashed {hash} is served"
                );
                let kept = std::fs::read(svc.data_dir().join("trash").join(hash))
                    .unwrap_or_else(|e| panic!("trashed {hash} has no trash file: {e}"));
                assert!(
                    kept.len() as u64 == size && b3(&kept) == *hash,
                    "trashed {hash} is damaged"
                );
                states.insert(hash.clone(), State::Trashed);
            }
            (l, t) => panic!("{hash} is live: {}, in the trash: {t}", l.is_some()),
        }
    }
    assert_eq!(
        live.len() + trashed.len(),
        contents.len(),
        "unknown assets appeared"
    );
    assert_eq!(t["total_assets"].as_u64(), Some(trashed.len() as u64));
    let trashed_bytes: u64 = trashed.iter().map(|h| contents[h].len() as u64).sum();
    assert_eq!(t["total_bytes"].as_u64(), Some(trashed_bytes));
    assert_eq!(
        svc.content_files(),
        live.len(),
        "stray or missing content files"
    );
    assert_eq!(trash_files(svc), trashed, "stray or missing trash files");
    assert_eq!(svc.temp_files(), 0, "temp files left");
    let totals = totals(c, svc).await;
    assert_eq!(
        (totals.assets, totals.trash_assets, totals.tombstones),
        (
            live.len() as u64,
            trashed.len() as u64,
            trashed.len() as u64
        )
    );
    states
}

/// Reproducible randomness from a seed (printed, and taken from `TRASH_CRASH_SEED` if set).
fn random(seed: u64, round: usize, what: u64) -> u64 {
    let h = blake3::hash(
        &[
            seed.to_le_bytes(),
            (round as u64).to_le_bytes(),
            what.to_le_bytes(),
        ]
        .concat(),
    );
    u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_deletions_and_restores_leaves_each_asset_whole_on_one_side() {
    let seed = std::env::var("TRASH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(now_ms);
    eprintln!("TRASH_CRASH_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let config = format!("sync_api_key: {KEY}\n");
    let mut svc = Service::start(dir.path(), &config);
    let mut c = client();
    let mut contents = HashMap::new();
    for i in 0..ASSETS {
        let size = 1 + (random(seed, 0, i as u64) % 200_000) as usize;
        let content = pseudo_random(size, seed ^ i as u64);
        let (status, _) = upload(&c, &svc, &format!("asset-{i}.bin"), content.clone()).await;
        assert_eq!(status, 201);
        contents.insert(b3(&content), content);
    }
    let mut states = verify_after_crash(&c, &svc, &contents).await;
    let mut interrupted_rounds = 0;
    // Kills land after a random delay below this; a round that was all answered before its
    // kill lowers it to that delay, so kills keep landing mid-way on a fast machine too.
    let mut max_delay_ms = 60;

    for round in 0..ROUNDS {
        // Deletions of live assets, restores (by the trash route or by uploading again) of
        // trashed ones; the mixed rounds do both at once.
        let mixed = round >= ROUNDS - 3;
        let deleting = round % 2 == 0 || mixed;
        let restoring = round % 2 == 1 || mixed;
        let mut ops: Vec<(String, Op)> = Vec::new();
        for (i, (hash, state)) in states.iter().enumerate() {
            let op = match state {
                State::Live if deleting => Op::Delete,
                State::Trashed if restoring => {
                    if random(seed, round, i as u64).is_multiple_of(3) {
                        Op::Reupload
                    } else {
                        Op::Restore
                    }
                }
                _ => continue,
            };
            ops.push((hash.clone(), op));
        }
        let delay = Duration::from_millis(random(seed, round, 1_000_000) % max_delay_ms);
        let mut tasks = Vec::new();
        for (hash, op) in ops.clone() {
            let c = c.clone();
            let base = svc.url.clone();
            let content = contents[&hash].clone();
            tasks.push(tokio::spawn(async move {
                let request = match op {
                    Op::Delete => c.delete(format!("{base}/api/assets/{hash}")),
                    Op::Restore => c.post(format!("{base}/api/trash/{hash}/restore")),
                    Op::Reupload => c
                        .post(format!("{base}/api/assets?name=again"))
                        .body(content),
                };
                let status = request.send().await.map(|r| r.status().as_u16()).ok();
                (hash, op, status)
            }));
        }
        tokio::time::sleep(delay).await;
        svc.kill();
        let mut acknowledged = HashMap::new();
        for task in tasks {
            let (hash, op, status) = tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("a request outlived the killed service by 30 s")
                .unwrap();
            match (op, status) {
                (_, None) => {}
                (Op::Delete, Some(200)) => {
                    acknowledged.insert(hash, State::Trashed);
                }
                (Op::Restore, Some(200)) | (Op::Reupload, Some(201)) => {
                    acknowledged.insert(hash, State::Live);
                }
                (op, Some(s)) => panic!("{op:?} of {hash} answered {s}"),
            }
        }
        eprintln!(
            "round {round}: {} of {} changes acknowledged before the kill at {delay:?}",
            acknowledged.len(),
            ops.len()
        );
        if acknowledged.len() < ops.len() {
            interrupted_rounds += 1;
            max_delay_ms = (max_delay_ms * 2).min(60);
        } else {
            max_delay_ms = (delay.as_millis() as u64).max(1);
        }

        svc.restart(&config);
        c = client();
        let after = verify_after_crash(&c, &svc, &contents).await;
        for (hash, state) in &after {
            if let Some(expected) = acknowledged.get(hash) {
                assert_eq!(
                    state, expected,
                    "acknowledged change of {hash} lost in round {round}"
                );
            } else if !ops.iter().any(|(h, _)| h == hash) {
                assert_eq!(
                    state, &states[hash],
                    "untouched {hash} changed in round {round}"
                );
            }
        }
        states = after;
    }
    assert!(
        interrupted_rounds > 0,
        "no kill landed before every change was answered"
    );

    // Everything comes back whole, and the store still works.
    for (hash, state) in &states {
        if *state == State::Trashed {
            let (status, back) = restore(&c, &svc, hash).await;
            assert_eq!(status, 200, "{back}");
        }
        assert!(serves_whole(&c, &svc, hash, contents[hash].len() as u64).await);
    }
    assert!(trash_files(&svc).is_empty());
    assert_eq!(svc.content_files(), ASSETS);
    let (status, _) = upload(&c, &svc, "after", b"after the storm".to_vec()).await;
    assert_eq!(status, 201);
}
