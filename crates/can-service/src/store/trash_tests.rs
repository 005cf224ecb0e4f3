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
    let a = upload(&store, b"alpha", Some(100)).await.unwrap();
    assert_eq!(a.stamp, 100);
    // An older deletion loses; ours is sent back.
    assert!(matches!(
        store.apply_record(record(a.hash, 99, true)).await.unwrap(),
        RecordOutcome::Unchanged(_) | RecordOutcome::Superseded(_)
    ));
    assert!(store.get(a.hash).await.unwrap().is_some());
    // A deletion with the same stamp wins the tie.
    let RecordOutcome::Applied(tomb) = store.apply_record(record(a.hash, 100, true)).await.unwrap()
    else {
        panic!("tie not won by the deletion");
    };
    assert!(tomb.is_deleted() && tomb.origin == "peer:x");
    assert!(store.trash_path(&a.hash).exists());
    // The same record again changes nothing; an older live record is answered with ours.
    assert!(matches!(
        store.apply_record(record(a.hash, 100, true)).await.unwrap(),
        RecordOutcome::Unchanged(_)
    ));
    assert!(
        matches!(store.apply_record(record(a.hash, 50, false)).await.unwrap(), RecordOutcome::Superseded(m) if m.is_deleted())
    );
    // A later live record restores from the trash without any content sent.
    let RecordOutcome::Applied(back) = store
        .apply_record(record(a.hash, 200, false))
        .await
        .unwrap()
    else {
        panic!("later restore not applied");
    };
    assert!(back.restored && back.stamp == 200);
    // Our clock now runs after what it saw: a local deletion outranks the peer's restore.
    let tomb = store.delete(a.hash, "local").await.unwrap();
    assert!(tomb.stamp > 200);
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
    let hash = AssetHash::from(blake3::hash(b"alpha"));
    let RecordOutcome::Applied(tomb) = store.apply_record(record(hash, 500, true)).await.unwrap()
    else {
        panic!("tombstone not recorded");
    };
    assert!(!tomb.deleted.as_ref().unwrap().in_trash);
    assert!(matches!(
        upload(&store, b"alpha", Some(400)).await,
        Err(IngestError::Superseded { .. })
    ));
    let later = upload(&store, b"alpha", Some(600)).await.unwrap();
    assert!(later.restored && later.stamp == 600);
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
