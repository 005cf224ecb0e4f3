//! Three agents and stores, and a seeded schedule of uploads, deletions, restores and
//! uploads-again of the same few contents on every side, with agents killed (partitions)
//! and restarted in between: at the end every store holds the same assets and the same
//! deletions. A failure prints the seed; `DELETION_CHAOS_SEED=<n>` replays it.

use std::collections::BTreeMap;
use std::time::Duration;

use can_testkit::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PASS: &str = "lunar cadet ribbon oxide tundra mosaic quiver";
const CONTENTS: usize = 4;
const STEPS: usize = 30;

fn content(i: usize) -> Vec<u8> {
    format!("contested content {i}").into_bytes()
}

/// Each content's state in a store: 200 stored, 410 deleted, 404 unknown.
async fn states(c: &reqwest::Client, svc: &Service) -> BTreeMap<usize, u16> {
    let mut out = BTreeMap::new();
    for i in 0..CONTENTS {
        out.insert(i, meta_status(c, &svc.url, &b3(&content(i))).await);
    }
    out
}

async fn run(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let svcs: Vec<Service> = (0..3)
        .map(|i| Service::with_key(&dir.path().join(format!("svc-{i}"))))
        .collect();
    let first = Agent::start(&dir.path().join("agent-0"), &svcs[0].url, KEY, PASS, "");
    let line = first.connect_line();
    let mut agents = vec![first];
    for (i, svc) in svcs.iter().enumerate().skip(1) {
        agents.push(Agent::start(
            &dir.path().join(format!("agent-{i}")),
            &svc.url,
            KEY,
            PASS,
            &line,
        ));
    }
    let mut down = [false; 3];
    for step in 0..STEPS {
        let s = rng.random_range(0..3);
        let i = rng.random_range(0..CONTENTS);
        let hash = b3(&content(i));
        match rng.random_range(0..10) {
            0..=2 => {
                let _ = upload(&c, &svcs[s], &format!("c{i}"), content(i)).await;
            }
            3..=5 => {
                let _ = delete_asset(&c, &svcs[s], &hash).await;
            }
            6..=7 => {
                let _ = restore_asset(&c, &svcs[s], &hash).await;
            }
            // A partition: the agent goes (its store keeps changing), or comes back.
            _ => {
                if down[s] {
                    agents[s].restart();
                } else {
                    agents[s].kill();
                }
                down[s] = !down[s];
            }
        }
        if rng.random_bool(0.5) {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        }
        let _ = step;
    }
    for (s, agent) in agents.iter_mut().enumerate() {
        if down[s] {
            agent.restart();
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (converged, last) = loop {
        let mut all = Vec::new();
        for svc in &svcs {
            all.push(states(&c, svc).await);
        }
        if all.iter().all(|s| *s == all[0]) {
            break (true, all);
        }
        if tokio::time::Instant::now() >= deadline {
            break (false, all);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        converged,
        "seed {seed}: stores differ after 60 s: {last:?}\nreplay: DELETION_CHAOS_SEED={seed} cargo test -p can-sync --test deletion_chaos"
    );
    // What is stored re-hashes to its name everywhere.
    for svc in &svcs {
        for (hash, (size, _)) in list_all(&c, &svc.url).await {
            let body = can_testkit::content(&c, &svc.url, &hash).await;
            assert_eq!(body.len() as u64, size, "seed {seed}");
            assert_eq!(b3(&body), hash, "seed {seed}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deletes_restores_and_uploads_converge_under_partitions() {
    let seeds: Vec<u64> = match std::env::var("DELETION_CHAOS_SEED") {
        Ok(s) => vec![s.parse().expect("DELETION_CHAOS_SEED is a number")],
        Err(_) => {
            let base: u64 = rand::random::<u32>().into();
            (0..3).map(|k| base + k).collect()
        }
    };
    for seed in seeds {
        eprintln!("deletion chaos seed {seed}");
        run(seed).await;
    }
}
