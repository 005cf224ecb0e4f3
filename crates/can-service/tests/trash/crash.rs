//! SIGKILL in the middle of deletions and restores, again and again.

use crate::common::*;

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
