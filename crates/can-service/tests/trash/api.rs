//! The public API: delete, trash, restore, upload again, purge, empty, and both event streams.

use crate::common::*;

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
    let (status, e) = get_json(&c, &svc, &format!("/api/assets/{ha}/meta")).await;
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
    let (status, one) = get_json(&c, &svc, "/api/trash?limit=1").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(hashes_of(&one["assets"]), vec![hb.clone()]);
    assert_eq!(one["total_assets"], 2);
    assert_eq!(get_status(&c, &svc, "/api/trash?limit=0").await, 400);
    // No paging: `after` is refused rather than silently ignored.
    assert_eq!(get_status(&c, &svc, "/api/trash?after=5").await, 400);

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
    let (status, meta) = get_json(&c, &svc, &format!("/api/assets/{ha}/meta")).await;
    assert_eq!(status, 200, "{meta}");
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
