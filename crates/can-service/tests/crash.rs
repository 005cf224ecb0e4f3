//! Crash safety: SIGKILL in the middle of large uploads, again and again.

use std::collections::HashMap;
use std::time::Duration;

use can_testkit::*;
use futures_util::StreamExt;

const BIG: usize = 24 << 20;
const CHUNK: usize = 256 << 10;

/// Every listed asset is complete and re-hashes to its name; nothing else is on disk.
async fn verify_store(c: &reqwest::Client, svc: &Service) -> HashMap<String, u64> {
    let listed = listed_whole(c, svc).await;
    assert_eq!(svc.temp_files(), 0, "orphan temp files after restart");
    assert_eq!(
        svc.content_files(),
        listed.len(),
        "content files without rows"
    );
    listed
}

/// What the store lists, each asset fetched whole and re-hashed to its name.
async fn listed_whole(c: &reqwest::Client, svc: &Service) -> HashMap<String, u64> {
    let mut listed = HashMap::new();
    let mut after = 0;
    loop {
        let page: serde_json::Value = c
            .get(svc.url(&format!("/api/assets?after={after}&limit=1000")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for a in page["assets"].as_array().unwrap() {
            let hash = a["hash"].as_str().unwrap().to_owned();
            let size = a["size"].as_u64().unwrap();
            let mut body = c
                .get(svc.url(&format!("/api/assets/{hash}")))
                .send()
                .await
                .unwrap()
                .bytes_stream();
            let mut hasher = blake3::Hasher::new();
            let mut got = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.unwrap();
                got += chunk.len() as u64;
                hasher.update(&chunk);
            }
            assert_eq!(got, size, "asset {hash} is truncated");
            assert_eq!(
                hasher.finalize().to_hex().as_str(),
                hash,
                "asset {hash} is corrupt"
            );
            listed.insert(hash, size);
        }
        match page["next"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    listed
}

fn streaming_body(seed: u64) -> (reqwest::Body, String) {
    let data = pseudo_random(BIG, seed);
    let hash = b3(&data);
    let chunks: Vec<Vec<u8>> = data.chunks(CHUNK).map(<[u8]>::to_vec).collect();
    let stream = futures_util::stream::iter(chunks).then(|chunk| async move {
        // Paced, so kills land at every stage: mid-body, at fsync, rename and commit.
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok::<_, std::io::Error>(chunk)
    });
    (reqwest::Body::wrap_stream(stream), hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_large_uploads_never_leaves_a_partial_asset() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let mut acknowledged: HashMap<String, u64> = HashMap::new();
    for round in 0..20u64 {
        let mut svc = Service::start(dir.path(), "");
        let listed = verify_store(&c, &svc).await;
        for (hash, size) in &acknowledged {
            assert_eq!(
                listed.get(hash),
                Some(size),
                "acknowledged asset {hash} lost in round {round}"
            );
        }
        // A small upload that completes before the kill must survive it.
        let small = format!("small asset of round {round}").into_bytes();
        let (status, meta) = upload(&c, &svc, "small", small.clone()).await;
        assert_eq!(status, 201);
        acknowledged.insert(
            meta["hash"].as_str().unwrap().to_owned(),
            small.len() as u64,
        );

        let (body, hash) = streaming_body(round);
        let url = svc.url("/api/assets?name=big");
        let client = c.clone();
        let upload = tokio::spawn(async move { client.post(url).body(body).send().await });
        // Kill points spread from "just started" to "probably finished".
        let delay = Duration::from_millis(20 + (round * 97) % 1500);
        tokio::time::sleep(delay).await;
        svc.kill();
        if let Ok(Ok(r)) = upload.await
            && r.status() == 201
        {
            eprintln!("round {round}: killed after the big upload was acknowledged");
            acknowledged.insert(hash, BIG as u64);
        }
    }
    let svc = Service::start(dir.path(), "");
    let listed = verify_store(&c, &svc).await;
    for (hash, size) in &acknowledged {
        assert_eq!(
            listed.get(hash),
            Some(size),
            "acknowledged asset {hash} lost"
        );
    }
    // The store still works after all that.
    let (status, _) = upload(&c, &svc, "after", b"after the storm".to_vec()).await;
    assert_eq!(status, 201);
}

/// An orphan content file, as a crash between a rename and its row's commit leaves one.
fn plant_orphan(svc: &Service, seed: u64) {
    let data = pseudo_random(1000, seed);
    let hex = b3(&data);
    let shard = svc.data_dir().join("objects").join(&hex[..2]);
    std::fs::create_dir_all(&shard).unwrap();
    std::fs::write(shard.join(&hex), data).unwrap();
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_lets_the_next_start_skip_the_scan_and_a_crash_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let mut svc = Service::start(dir.path(), "");
    let marker = svc.data_dir().join("clean-stop");
    let (status, _) = upload(&c, &svc, "kept", b"kept across stops".to_vec()).await;
    assert_eq!(status, 201);
    assert!(!marker.exists(), "no marker while it runs");

    // SIGTERM: a clean stop is recorded.
    assert!(svc.stop(), "SIGTERM ends it with status 0");
    assert!(marker.exists(), "a clean stop leaves the marker");

    // The next start takes the marker and skips the scan: a planted orphan (which only
    // outside hands could add after a clean stop) is left alone, unfinished temp files are
    // still removed, and the store serves what it held.
    plant_orphan(&svc, 1);
    std::fs::write(svc.data_dir().join("tmp").join("left-over"), b"x").unwrap();
    let mut svc = Service::start(dir.path(), "");
    assert!(!marker.exists(), "the marker is taken at start");
    assert_eq!(svc.temp_files(), 0, "temp files are removed at every start");
    assert_eq!(svc.content_files(), 2, "the scan was skipped");
    assert_eq!(listed_whole(&c, &svc).await.len(), 1);

    // SIGKILL leaves no marker: the next start scans and removes the orphan.
    svc.kill();
    assert!(!marker.exists(), "a crash leaves no marker");
    let svc = Service::start(dir.path(), "");
    let listed = verify_store(&c, &svc).await;
    assert_eq!(listed.len(), 1, "the acknowledged asset survives");
}
