//! Store-level tests of what HTTP cannot observe: the ordering of directory fsyncs, and a
//! disk that fills up while an upload streams.

use bytes::Bytes;

use super::*;

fn new_asset(name: &str) -> NewAsset {
    NewAsset {
        name: name.to_owned(),
        content_type: "text/plain".to_owned(),
        created_at: None,
        origin: "local".to_owned(),
        stamp: None,
    }
}

async fn ingest(store: &Store, content: &'static [u8], name: &str) -> IngestOutcome {
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(content))]);
    store.ingest(body, new_asset(name), None).await.unwrap()
}

fn shard_of(content: &[u8]) -> u8 {
    blake3::hash(content).as_bytes()[0]
}

#[tokio::test]
async fn open_creates_every_shard_folder_durably() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let store = Store::open(&data, 1 << 20, Some(0)).unwrap();
    let shards = &store.inner.shards;
    for i in 0..=255u8 {
        assert!(shards.dir(i).is_dir(), "shard {i:02x} missing after open");
        assert!(shards.is_durable(i), "shard {i:02x} not durable after open");
    }
    // Once for all 256 folders, not once per upload.
    assert_eq!(shards.objects_syncs(), 1);
    ingest(&store, b"first", "a").await;
    ingest(&store, b"second", "b").await;
    assert_eq!(shards.objects_syncs(), 1);
}

/// The race of issue #12: another upload has just created the shard folder and not yet
/// fsynced `objects/`. A commit into that folder must fsync `objects/` itself first.
#[tokio::test]
async fn commit_into_a_folder_not_yet_durable_fsyncs_objects_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1 << 20, Some(0)).unwrap();
    let shards = &store.inner.shards;
    let shard = shard_of(b"racing upload");
    shards.forget_durability(shard);
    let before = shards.objects_syncs();
    let outcome = ingest(&store, b"racing upload", "r").await;
    assert!(matches!(outcome, IngestOutcome::Created(_)));
    assert_eq!(shards.objects_syncs(), before + 1);
    assert!(shards.is_durable(shard));
}

#[tokio::test]
async fn a_shard_folder_removed_behind_our_back_is_recreated_durably() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1 << 20, Some(0)).unwrap();
    let shards = &store.inner.shards;
    let shard = shard_of(b"orphaned shard");
    std::fs::remove_dir(shards.dir(shard)).unwrap();
    let before = shards.objects_syncs();
    let outcome = ingest(&store, b"orphaned shard", "o").await;
    let IngestOutcome::Created(meta) = outcome else {
        panic!("not created: {outcome:?}");
    };
    assert!(store.content_path(&meta.hash).is_file());
    assert_eq!(shards.objects_syncs(), before + 1);
    assert!(shards.is_durable(shard));
}

#[tokio::test]
async fn names_lose_format_characters_at_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1 << 20, Some(0)).unwrap();
    let outcome = ingest(&store, b"rlo", "invoice\u{202E}fdp.exe\u{200B}").await;
    assert_eq!(outcome.meta().name, "invoicefdp.exe");
    let stored = store.get(outcome.meta().hash).await.unwrap().unwrap();
    assert_eq!(stored.name, "invoicefdp.exe");
}

/// Another writer fills the disk while an upload streams: the check every few MiB notices,
/// the upload fails with `NoSpace` and its temp file is gone.
#[tokio::test]
async fn a_disk_filling_up_mid_upload_aborts_it_and_removes_the_temp_file() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 1 << 30, Some(0)).unwrap();
    let calls = std::sync::Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    // Plenty free before the upload starts, 1 MiB once it is under way.
    store.set_space(space::SpaceGuard::with_probe(
        dir.path(),
        2 << 20,
        move |_| {
            let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
            Ok(space::DiskSpace {
                total: 1 << 40,
                available: if first { 100 << 20 } else { 1 << 20 },
            })
        },
    ));
    let chunks = (0..16).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![3u8; 1 << 20])));
    let err = store
        .ingest(futures_util::stream::iter(chunks), new_asset("big"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, IngestError::NoSpace { reserve, .. } if reserve == 2 << 20),
        "{err}"
    );
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "never re-checked while streaming"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert!(store.list(0, 10).await.unwrap().0.is_empty());
}

/// An interrupted resumable upload of `content`: `cut` bytes arrive, then the body breaks.
async fn interrupted(store: &Store, content: &[u8], cut: usize) {
    let hash = AssetHash::from(blake3::hash(content));
    let chunks = [
        Ok(Bytes::copy_from_slice(&content[..cut])),
        Err(std::io::Error::other("cut")),
    ];
    let err = store
        .ingest_resumable(
            futures_util::stream::iter(chunks),
            new_asset("p"),
            hash,
            content.len() as u64,
            0,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::Interrupted(_)), "{err}");
}

#[tokio::test]
async fn kept_partials_make_room_for_new_uploads_oldest_first_and_go_when_stored() {
    const MIB: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 1 << 30, Some(0)).unwrap();
    // A 10 MiB disk on which only the partials take room.
    let partial_dir = dir.path().join("partial");
    store.set_space(space::SpaceGuard::with_probe(dir.path(), 0, move |_| {
        let used: u64 = std::fs::read_dir(&partial_dir)?
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        Ok(space::DiskSpace {
            total: 10 << 20,
            available: (10u64 << 20).saturating_sub(used),
        })
    }));
    let (old, new) = (vec![1u8; 5 * MIB], vec![2u8; 5 * MIB]);
    interrupted(&store, &old, 3 * MIB).await;
    // Distinct modification times, so "least recently written" is well defined.
    std::thread::sleep(std::time::Duration::from_millis(20));
    interrupted(&store, &new, 3 * MIB).await;
    let hash_of = |c: &[u8]| AssetHash::from(blake3::hash(c));
    assert_eq!(store.partial_received(&hash_of(&old)), Some(3 * MIB as u64));

    // 6 MiB more does not fit beside 6 MiB of partials: the older one goes, not the newer.
    store.check_space_reclaiming(6 * MIB as u64, None).unwrap();
    assert_eq!(store.partial_received(&hash_of(&old)), None);
    assert_eq!(store.partial_received(&hash_of(&new)), Some(3 * MIB as u64));
    // What cannot fit even without the partials other than the one being resumed is 507.
    let err = store
        .check_space_reclaiming(9 * MIB as u64, Some(&hash_of(&new)))
        .unwrap_err();
    assert!(matches!(err, IngestError::NoSpace { .. }), "{err}");
    assert_eq!(store.partial_received(&hash_of(&new)), Some(3 * MIB as u64));

    // Stored by another way (a public upload): its partial goes with it.
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(new.clone()))]);
    store.ingest(body, new_asset("whole"), None).await.unwrap();
    assert_eq!(store.partial_received(&hash_of(&new)), None);
}

#[tokio::test]
async fn the_marker_is_left_only_by_a_clean_stop_after_no_failed_change() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let marker = data.join("clean-stop");
    let store = Store::open(&data, 1 << 20, Some(0)).unwrap();
    let IngestOutcome::Created(meta) = ingest(&store, b"one asset", "one").await else {
        panic!("created");
    };
    assert!(!marker.exists());
    drop(store);
    assert!(
        marker.exists(),
        "dropping the last handle records a clean stop"
    );

    // A crash (the handle is never dropped) leaves no marker: it was taken at open.
    let store = Store::open(&data, 1 << 20, Some(0)).unwrap();
    assert!(!marker.exists(), "taken at open");
    std::mem::forget(store);
    assert!(!marker.exists());

    // A change that fails part way (the trash folder is gone: the move fails) makes the
    // next start scan even after a clean stop.
    let store = Store::open(&data, 1 << 20, Some(0)).unwrap();
    drop(store);
    assert!(marker.exists());
    let store = Store::open(&data, 1 << 20, Some(0)).unwrap();
    std::fs::remove_dir_all(data.join("trash")).unwrap();
    std::fs::write(data.join("trash"), b"not a folder").unwrap();
    assert!(matches!(
        store.delete(meta.hash, "local").await,
        Err(DeleteError::Store(_))
    ));
    drop(store);
    assert!(!marker.exists(), "a failed change leaves no marker");
}
