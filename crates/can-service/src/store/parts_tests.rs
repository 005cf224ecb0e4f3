//! Uploads in parts, through the store: parts written out of order by several tasks are
//! stored whole; a wrong byte stores and keeps nothing; an unfinished upload keeps the
//! whole parts from byte 0 for a resume.

use bytes::Bytes;

use super::*;

const PART: u64 = 4096;

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 997) as u8).collect()
}

fn synced(stamp: u64) -> NewAsset {
    NewAsset {
        name: "big.bin".to_owned(),
        content_type: "application/octet-stream".to_owned(),
        created_at: None,
        origin: "peer:test".to_owned(),
        stamp: Some(stamp),
    }
}

async fn begin(store: &Store, data: &[u8]) -> PartsUpload {
    let hash = AssetHash::from(blake3::hash(data));
    match store
        .begin_parts(synced(7), hash, data.len() as u64, PART)
        .await
        .unwrap()
    {
        Begun::Upload(u) => u,
        Begun::Existing(_) => panic!("not stored yet"),
    }
}

/// Writes part `i` of `data` in chunks of 1000 bytes.
async fn write(upload: &PartsUpload, data: &[u8], i: usize) {
    let (offset, len) = upload.range(i);
    let mut part = upload.part(i).unwrap();
    for chunk in data[offset as usize..(offset + len) as usize].chunks(1000) {
        part.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    part.finish().await.unwrap();
}

#[tokio::test]
async fn parts_written_out_of_order_at_once_are_stored_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1 << 20, Some(0)).unwrap();
    let data = content(9 * PART as usize + 123);
    let upload = begin(&store, &data).await;
    assert_eq!(upload.count(), 10);
    // Two writers at once, one from each end, as the sync engine's streams take them.
    let (front, back) = tokio::join!(
        async {
            for i in 0..5 {
                write(&upload, &data, i).await;
            }
        },
        async {
            for i in (5..10).rev() {
                write(&upload, &data, i).await;
            }
        }
    );
    let ((), ()) = (front, back);
    let outcome = upload.finish().await.unwrap();
    assert!(matches!(outcome, IngestOutcome::Created(_)));
    let hash = AssetHash::from(blake3::hash(&data));
    assert_eq!(std::fs::read(store.content_path(&hash)).unwrap(), data);
    assert_eq!(
        store.partial_received(&hash),
        None,
        "the partial was landed"
    );
    // Stored already: a second upload in parts has nothing to write.
    let again = store
        .begin_parts(synced(7), hash, data.len() as u64, PART)
        .await
        .unwrap();
    assert!(matches!(again, Begun::Existing(_)));
}

#[tokio::test]
async fn a_wrong_byte_in_any_part_stores_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1 << 20, Some(0)).unwrap();
    let data = content(6 * PART as usize);
    let hash = AssetHash::from(blake3::hash(&data));
    let upload = begin(&store, &data).await;
    let mut bad = data.clone();
    bad[3 * PART as usize + 10] ^= 0x40;
    for i in 0..upload.count() {
        write(&upload, &bad, i).await;
    }
    let err = upload.finish().await.unwrap_err();
    assert!(matches!(err, IngestError::HashMismatch { .. }), "{err}");
    assert!(store.get(hash).await.unwrap().is_none());
    assert_eq!(store.partial_received(&hash), None);
}

#[tokio::test]
async fn an_unfinished_upload_keeps_the_whole_parts_from_byte_0_for_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1 << 20, Some(0)).unwrap();
    let data = content(8 * PART as usize + 5);
    let hash = AssetHash::from(blake3::hash(&data));
    let upload = begin(&store, &data).await;
    // Parts 0, 1 and 3 whole, part 2 broken off halfway, the last one whole.
    for i in [0, 1, 3, 8] {
        write(&upload, &data, i).await;
    }
    let mut half = upload.part(2).unwrap();
    half.write(Bytes::copy_from_slice(&data[2 * PART as usize..][..100]))
        .await
        .unwrap();
    drop(half);
    // Another upload of the hash waits for this one.
    let busy = store
        .begin_parts(synced(7), hash, data.len() as u64, PART)
        .await;
    assert!(matches!(busy, Err(IngestError::Busy)));
    drop(upload);
    // Cut once the broken part's writer thread has seen its channel close.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.partial_received(&hash) != Some(2 * PART) {
        assert!(
            std::time::Instant::now() < deadline,
            "the partial was not cut"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // A resume from there stores the asset (once the upload's claim on the hash, released
    // just after the cut, is gone).
    let outcome = loop {
        let rest = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::copy_from_slice(
            &data[2 * PART as usize..],
        ))]);
        match store
            .ingest_resumable(rest, synced(7), hash, data.len() as u64, 2 * PART)
            .await
        {
            Err(IngestError::Busy) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            other => break other.unwrap(),
        }
    };
    assert!(matches!(outcome, IngestOutcome::Created(_)));
    assert_eq!(std::fs::read(store.content_path(&hash)).unwrap(), data);
}

#[tokio::test]
async fn parts_that_do_not_cut_the_asset_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1 << 20, Some(0)).unwrap();
    let hash = AssetHash::from(blake3::hash(b"x"));
    for (size, part_len) in [
        (10_000, 3000),
        (10_000, 512),
        (4096, 4096),
        (1 << 21, 1 << 22),
    ] {
        let got = store.begin_parts(synced(7), hash, size, part_len).await;
        assert!(
            matches!(
                got,
                Err(IngestError::Invalid {
                    field: "part_len",
                    ..
                }) | Err(IngestError::TooLarge { .. })
            ),
            "{size} / {part_len}"
        );
    }
    let upload = begin(&store, &content(3 * PART as usize)).await;
    assert!(upload.part(3).is_err());
    let mut part = upload.part(0).unwrap();
    let over = part.write(Bytes::from(vec![0; PART as usize + 1])).await;
    assert!(matches!(over, Err(IngestError::SizeMismatch { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_written_again_keeps_only_the_new_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // Parts large enough that the dropped writer still has chunks queued when the new one
    // starts: without the wait, its stale bytes would land over the new ones.
    const BIG: u64 = 1 << 20;
    let data = content(4 * BIG as usize);
    let hash = AssetHash::from(blake3::hash(&data));
    for round in 0..10 {
        let store = Store::open(&dir.path().join(round.to_string()), 1 << 24, Some(0)).unwrap();
        let upload = match store
            .begin_parts(synced(7), hash, data.len() as u64, BIG)
            .await
            .unwrap()
        {
            Begun::Upload(u) => u,
            Begun::Existing(_) => panic!("round {round}: stored already"),
        };
        let mut stale = upload.part(2).unwrap();
        for _ in 0..8 {
            stale
                .write(Bytes::from(vec![0xff; 64 * 1024]))
                .await
                .unwrap();
        }
        drop(stale);
        for i in 0..4 {
            let (offset, len) = upload.range(i);
            let mut part = upload.part(i).unwrap();
            part.write(Bytes::copy_from_slice(
                &data[offset as usize..(offset + len) as usize],
            ))
            .await
            .unwrap();
            part.finish().await.unwrap();
        }
        // Time for a dropped writer's thread that started late to try its stale bytes.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        upload.finish().await.unwrap();
        let stored = std::fs::read(store.content_path(&hash)).unwrap();
        assert!(stored == data, "round {round}: stale bytes were stored");
    }
}
