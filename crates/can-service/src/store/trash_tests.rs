//! Deletion, the trash, restores and peers' records, at the store level.

use std::time::Duration;

use bytes::Bytes;

use super::*;

async fn open(dir: &Path) -> Store {
    Store::open(&dir.join("data"), 1 << 20, Some(0)).unwrap()
}

async fn upload(
    store: &Store,
    content: &'static [u8],
    stamp: Option<u64>,
) -> Result<AssetMeta, IngestError> {
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(content))]);
    let new = NewAsset {
        name: "n.txt".into(),
        content_type: "text/plain".into(),
        created_at: None,
        origin: if stamp.is_some() {
            "peer:x".into()
        } else {
            "local".into()
        },
        stamp,
    };
    let expected = stamp.map(|_| (AssetHash::from(blake3::hash(content)), content.len() as u64));
    store
        .ingest(body, new, expected)
        .await
        .map(|o| o.meta().clone())
}

fn record(hash: AssetHash, stamp: u64, deleted: bool) -> Record {
    Record {
        hash,
        stamp,
        deleted,
        origin: "peer:x".into(),
        size: 5,
        name: "r".into(),
    }
}

#[tokio::test]
async fn delete_moves_content_to_the_trash_and_restore_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let a = upload(&store, b"alpha", None).await.unwrap();
    let tomb = store.delete(a.hash, "local").await.unwrap();
    assert!(tomb.seq > a.seq && tomb.stamp > a.stamp);
    assert!(tomb.deleted.as_ref().unwrap().in_trash);
    assert!(store.get(a.hash).await.unwrap().is_none());
    assert!(!store.content_path(&a.hash).exists());
    assert!(store.trash_path(&a.hash).exists());
    assert!(store.list(0, 10).await.unwrap().0.is_empty());
    assert_eq!(store.changes(0, 10).await.unwrap().0, vec![tomb.clone()]);
    assert!(matches!(
        store.delete(a.hash, "local").await,
        Err(DeleteError::AlreadyDeleted(_))
    ));
    let t = store.totals().await.unwrap();
    assert_eq!(
        (t.assets, t.trash_assets, t.trash_bytes, t.tombstones),
        (0, 1, 5, 1)
    );

    let back = store.restore(a.hash, "local").await.unwrap();
    assert!(back.restored && back.seq > tomb.seq && back.stamp > tomb.stamp);
    assert_eq!(back.name, "n.txt");
    assert!(store.content_path(&a.hash).exists());
    assert!(!store.trash_path(&a.hash).exists());
    assert!(matches!(
        store.restore(a.hash, "local").await,
        Err(DeleteError::NotDeleted(_))
    ));
}

#[tokio::test]
async fn uploading_deleted_content_again_restores_it_and_an_older_upload_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let a = upload(&store, b"alpha", None).await.unwrap();
    let tomb = store.delete(a.hash, "local").await.unwrap();
    // A peer's copy stamped before the deletion does not bring it back.
    let old = upload(&store, b"alpha", Some(a.stamp)).await;
    assert!(matches!(old, Err(IngestError::Superseded { stamp }) if stamp == tomb.stamp));
    // An upload here does.
    let again = upload(&store, b"alpha", None).await.unwrap();
    assert!(again.restored && again.stamp > tomb.stamp && !again.is_deleted());
    assert!(
        !store.trash_path(&a.hash).exists(),
        "trash copy left behind"
    );
}

#[tokio::test]
async fn records_apply_by_last_writer_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // Stamps a minute old (well inside the tombstone retention), and some after them.
    let t = clock::stamp_of_ms(clock::wall_ms() - 60_000);
    let a = upload(&store, b"alpha", Some(t + 100)).await.unwrap();
    assert_eq!(a.stamp, t + 100);
    // An older deletion loses; ours is sent back.
    assert!(matches!(
        store
            .apply_record(record(a.hash, t + 99, true))
            .await
            .unwrap(),
        RecordOutcome::Unchanged(_) | RecordOutcome::Superseded(_)
    ));
    assert!(store.get(a.hash).await.unwrap().is_some());
    // A deletion with the same stamp wins the tie.
    let RecordOutcome::Applied(tomb) = store
        .apply_record(record(a.hash, t + 100, true))
        .await
        .unwrap()
    else {
        panic!("tie not won by the deletion");
    };
    assert!(tomb.is_deleted() && tomb.origin == "peer:x");
    assert!(store.trash_path(&a.hash).exists());
    // The same record again changes nothing; an older live record is answered with ours.
    assert!(matches!(
        store
            .apply_record(record(a.hash, t + 100, true))
            .await
            .unwrap(),
        RecordOutcome::Unchanged(_)
    ));
    assert!(
        matches!(store.apply_record(record(a.hash, t + 50, false)).await.unwrap(), RecordOutcome::Superseded(m) if m.is_deleted())
    );
    // A later live record restores from the trash without any content sent.
    let RecordOutcome::Applied(back) = store
        .apply_record(record(a.hash, t + 200, false))
        .await
        .unwrap()
    else {
        panic!("later restore not applied");
    };
    assert!(back.restored && back.stamp == t + 200);
    // Our clock now runs after what it saw: a local deletion outranks the peer's restore.
    let tomb = store.delete(a.hash, "local").await.unwrap();
    assert!(tomb.stamp > t + 200);
    store.purge(a.hash).await.unwrap();
    // Without the content, a winning live record asks for it.
    assert_eq!(
        store
            .apply_record(record(a.hash, tomb.stamp + 1, false))
            .await
            .unwrap(),
        RecordOutcome::NeedContent
    );
}

#[tokio::test]
async fn a_deletion_of_content_never_held_leaves_a_tombstone_that_refuses_older_copies() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // Stamps a minute old (well inside the tombstone retention), and some after them.
    let t = clock::stamp_of_ms(clock::wall_ms() - 60_000);
    let hash = AssetHash::from(blake3::hash(b"alpha"));
    let RecordOutcome::Applied(tomb) = store
        .apply_record(record(hash, t + 500, true))
        .await
        .unwrap()
    else {
        panic!("tombstone not recorded");
    };
    assert!(!tomb.deleted.as_ref().unwrap().in_trash);
    assert!(matches!(
        upload(&store, b"alpha", Some(t + 400)).await,
        Err(IngestError::Superseded { .. })
    ));
    let later = upload(&store, b"alpha", Some(t + 600)).await.unwrap();
    assert!(later.restored && later.stamp == t + 600);
}

#[tokio::test]
async fn repair_undoes_moves_that_were_never_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let store = open(dir.path()).await;
        let a = upload(&store, b"alpha", None).await.unwrap();
        let b = upload(&store, b"bravo", None).await.unwrap();
        store.delete(b.hash, "local").await.unwrap();
        // A deletion of a that crashed after its move; a restore of b that did too.
        std::fs::rename(store.content_path(&a.hash), store.trash_path(&a.hash)).unwrap();
        std::fs::rename(store.trash_path(&b.hash), store.content_path(&b.hash)).unwrap();
        // A purge that crashed after its commit left a stray file.
        std::fs::write(store.inner.trash.join("stray"), b"x").unwrap();
        // A crash: the store is never closed, so it records no clean stop.
        std::mem::forget(store);
        (a, b)
    };
    let store = open(dir.path()).await;
    assert!(store.get(a.hash).await.unwrap().is_some());
    assert!(store.content_path(&a.hash).exists() && !store.trash_path(&a.hash).exists());
    assert!(store.record(b.hash).await.unwrap().unwrap().is_deleted());
    assert!(store.trash_path(&b.hash).exists() && !store.content_path(&b.hash).exists());
    assert!(!store.inner.trash.join("stray").exists());
    store.restore(b.hash, "local").await.unwrap();
}

#[tokio::test]
async fn trash_period_and_tombstone_retention_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let a = upload(&store, b"alpha", None).await.unwrap();
    store.delete(a.hash, "local").await.unwrap();
    let keep = TrashPolicy {
        trash_for: Duration::from_secs(3600),
        tombstones_for: Duration::from_secs(7200),
    };
    assert_eq!(store.clean_trash(keep).await.unwrap(), (0, 0));
    tokio::time::sleep(Duration::from_millis(30)).await;
    let short = TrashPolicy {
        trash_for: Duration::from_millis(10),
        tombstones_for: Duration::from_secs(3600),
    };
    assert_eq!(store.clean_trash(short).await.unwrap(), (1, 0));
    assert!(!store.trash_path(&a.hash).exists());
    let tomb = store.record(a.hash).await.unwrap().unwrap();
    assert!(tomb.is_deleted() && !tomb.deleted.unwrap().in_trash);
    let gone = TrashPolicy {
        trash_for: Duration::from_millis(10),
        tombstones_for: Duration::from_millis(10),
    };
    assert_eq!(store.clean_trash(gone).await.unwrap(), (0, 1));
    assert!(store.record(a.hash).await.unwrap().is_none());
}

#[tokio::test]
async fn local_changes_outrank_a_peer_stamp_too_far_ahead_to_move_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // Three days ahead: beyond what the clock takes over from peers.
    let far = (clock::wall_ms() + 3 * 24 * 3600 * 1000) << 16;
    let a = upload(&store, b"alpha", Some(far)).await.unwrap();
    let tomb = store.delete(a.hash, "local").await.unwrap();
    assert!(
        tomb.stamp > far,
        "the deletion here ranks below the state it deleted"
    );
    assert!(matches!(
        store.apply_record(record(a.hash, far, false)).await.unwrap(),
        RecordOutcome::Superseded(m) if m.is_deleted()
    ));
    let back = store.restore(a.hash, "local").await.unwrap();
    assert!(back.stamp > tomb.stamp);

    let hash = AssetHash::from(blake3::hash(b"bravo"));
    store.apply_record(record(hash, far, true)).await.unwrap();
    let again = upload(&store, b"bravo", None).await.unwrap();
    assert!(again.restored && again.stamp > far);
    // Other hashes' stamps still follow the wall clock.
    assert!(store.stamp() < far);
}

/// Concurrent changes of one hash on three stores, delivered to a fresh replica in every
/// order: every order ends in the state of the change that ranks highest (last writer
/// wins; a deletion wins a tie), and no order brings back content it should not.
#[tokio::test]
async fn every_delivery_order_of_concurrent_changes_converges() {
    use std::collections::HashSet;

    const X: &[u8] = b"the contested asset";
    let hash = AssetHash::from(blake3::hash(X));
    let dir = tempfile::tempdir().unwrap();
    let origin = |i: usize| format!("peer:{i}");
    // Three stores holding X, as mirrors do (same stamp: the origin's).
    let mut stores = Vec::new();
    for i in 0..3 {
        let s = Store::open(&dir.path().join(format!("s{i}")), 1 << 20, Some(0)).unwrap();
        upload(&s, X, Some(1)).await.unwrap();
        stores.push(s);
    }
    // Concurrent changes, none having seen another's: S0 deletes; S1 deletes and restores;
    // S2 deletes, empties its trash and uploads the content again.
    let as_record = |m: &AssetMeta, i: usize| Record {
        hash,
        stamp: m.stamp,
        deleted: m.is_deleted(),
        origin: origin(i),
        size: m.size,
        name: m.name.clone(),
    };
    let mut records = vec![as_record(
        &stores[0].delete(hash, "local").await.unwrap(),
        0,
    )];
    records.push(as_record(
        &stores[1].delete(hash, "local").await.unwrap(),
        1,
    ));
    records.push(as_record(
        &stores[1].restore(hash, "local").await.unwrap(),
        1,
    ));
    records.push(as_record(
        &stores[2].delete(hash, "local").await.unwrap(),
        2,
    ));
    stores[2].empty_trash().await.unwrap();
    records.push(as_record(&upload(&stores[2], X, None).await.unwrap(), 2));
    let winner = records
        .iter()
        .max_by_key(|r| (r.stamp, r.deleted))
        .unwrap()
        .clone();

    // Delivers `order` to `store` as an engine would: a live record the store cannot apply
    // from its trash is answered NeedContent, and the content follows with its stamp.
    async fn deliver(store: &Store, records: &[Record]) {
        for r in records {
            if store.apply_record(r.clone()).await.unwrap() == RecordOutcome::NeedContent {
                match upload(store, X, Some(r.stamp)).await {
                    Ok(_) | Err(IngestError::Superseded { .. }) => {}
                    Err(e) => panic!("fetch after NeedContent failed: {e}"),
                }
            }
        }
    }

    let mut seen = HashSet::new();
    let mut order: Vec<usize> = (0..records.len()).collect();
    // Heap's algorithm: all 120 orders of the five records.
    let mut c = vec![0usize; order.len()];
    let mut i = 0;
    let mut orders = vec![order.clone()];
    while i < order.len() {
        if c[i] < i {
            let j = if i % 2 == 0 { 0 } else { c[i] };
            order.swap(j, i);
            orders.push(order.clone());
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    assert_eq!(orders.len(), 120);
    for (n, order) in orders.iter().enumerate() {
        let replica = Store::open(&dir.path().join(format!("r{n}")), 1 << 20, Some(0)).unwrap();
        upload(&replica, X, Some(1)).await.unwrap();
        let ordered: Vec<Record> = order.iter().map(|k| records[*k].clone()).collect();
        deliver(&replica, &ordered).await;
        let row = replica.record(hash).await.unwrap().unwrap();
        assert_eq!(
            (row.stamp, row.is_deleted()),
            (winner.stamp, winner.deleted),
            "order {order:?} ended elsewhere"
        );
        assert_eq!(replica.content_path(&hash).exists(), !winner.deleted);
        seen.insert((row.stamp, row.is_deleted()));
    }
    assert_eq!(seen.len(), 1);
    // The three originals, each given the others' changes, agree too.
    for (k, s) in stores.iter().enumerate() {
        let theirs: Vec<Record> = records
            .iter()
            .filter(|r| r.origin != origin(k))
            .cloned()
            .collect();
        deliver(s, &theirs).await;
        let row = s.record(hash).await.unwrap().unwrap();
        assert_eq!(
            (row.stamp, row.is_deleted()),
            (winner.stamp, winner.deleted)
        );
    }
}

#[tokio::test]
async fn a_deletion_older_than_the_retention_is_not_taken_up_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.set_trash_policy(TrashPolicy {
        trash_for: Duration::from_secs(3600),
        tombstones_for: Duration::from_secs(3600),
    });
    let hash = AssetHash::from(blake3::hash(b"alpha"));
    let two_hours_ago = clock::stamp_of_ms(clock::wall_ms() - 2 * 3600 * 1000);
    // A store that forgot it is not taught it again, and a held copy stays.
    assert_eq!(
        store
            .apply_record(record(hash, two_hours_ago, true))
            .await
            .unwrap(),
        RecordOutcome::Expired
    );
    assert!(store.record(hash).await.unwrap().is_none());
    let a = upload(&store, b"alpha", Some(1)).await.unwrap();
    assert_eq!(
        store
            .apply_record(record(hash, two_hours_ago, true))
            .await
            .unwrap(),
        RecordOutcome::Expired
    );
    assert!(store.get(a.hash).await.unwrap().is_some());
    // Retention counts from the deletion's stamp, not from when this store learnt of it.
    let RecordOutcome::Applied(_) = store
        .apply_record(record(
            hash,
            clock::stamp_of_ms(clock::wall_ms() - 1000),
            true,
        ))
        .await
        .unwrap()
    else {
        panic!("a recent deletion was not applied");
    };
    store.purge(hash).await.unwrap();
    let policy = TrashPolicy {
        trash_for: Duration::from_secs(3600),
        tombstones_for: Duration::from_millis(500),
    };
    assert_eq!(store.clean_trash(policy).await.unwrap(), (0, 1));
}
