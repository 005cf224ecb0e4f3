//! The trash period and the tombstone retention, enforced by the service; bad periods.

use crate::common::*;

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
