//! The sync API: tombstones in the listing, records, stamps, totals.

use crate::common::*;

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

/// A record body is read at most 64 KiB deep (the router does not limit bodies: uploads
/// stream), and a stamp the index cannot keep exactly is refused, on records and uploads
/// alike (kept as another value, it would be applied again, and sent again, forever).
#[tokio::test]
async fn oversized_records_and_out_of_range_stamps_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(dir.path());
    let c = client();
    let big = auth(c.post(svc.url("/sync/v1/records")))
        .header("Content-Type", "application/x-protobuf")
        .body(vec![0u8; 1 << 20])
        .send()
        .await
        .expect("records");
    assert_eq!(big.status(), 413);
    let r = post_record(&c, &svc, &record(b"far", u64::MAX, true)).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("stamp"));
    assert_eq!(
        sync_ingest(&c, &svc, b"far", u64::MAX).await.status(),
        400,
        "an upload stamped out of range"
    );
    // Nothing was stored or recorded.
    assert_eq!(totals(&c, &svc).await.tombstones, 0);
    assert_eq!(totals(&c, &svc).await.assets, 0);
}
