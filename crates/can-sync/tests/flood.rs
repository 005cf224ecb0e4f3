//! An admitted member floods an agent holding 100,000 assets with cheap requests that each
//! cost O(N): full hash lists and reconciliations from the top, never reading the answers.
//! The engine runs in this process (as the app embeds it) so its status latency and the
//! memory it holds can be measured while the attack runs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use can_proto::peer::{Control, HashList, Reconcile, control};
use can_sync::peer::close;
use can_sync::reconcile::codec::{Bound, PayloadRef, encode_range};
use can_sync::wire::write_frame;
use can_sync::{Engine, EngineConfig};
use can_testkit::*;
use common::*;

const PASS: &str = "marble quiver tundra falcon ember oyster violet";
/// Assets in both stores (the figure; `CAN_FLOOD_ASSETS` to change it).
const ASSETS: usize = 100_000;
const REQUESTS: u64 = 1_000;

fn assets() -> usize {
    std::env::var("CAN_FLOOD_ASSETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ASSETS)
}

/// Fills the store in `dir/data` with `n` small assets (the same ones for the same `n`).
fn seed(dir: &std::path::Path, n: usize) {
    let store = can_service::Store::open(&dir.join("data"), u64::MAX, Some(0)).unwrap();
    let added = store
        .seed_blocking((0..n).map(|i| {
            (
                format!("seed-{i}.bin"),
                format!("seed asset {i}").into_bytes(),
            )
        }))
        .unwrap();
    assert_eq!(added, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheap_o_n_requests_are_budgeted_and_status_stays_fast() {
    let n = assets();
    // 200,000 small files: on tmpfs when there is one (creating and deleting them on a
    // disk with discard takes minutes; the test is about the engine, not the disk).
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::Builder::new().prefix("can-flood").tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let started = Instant::now();
    let (da, db) = (dir.path().join("svc-a"), dir.path().join("svc-b"));
    let (sa, sb) = (da.clone(), db.clone());
    tokio::task::spawn_blocking(move || {
        seed(&sa, n);
        seed(&sb, n);
    })
    .await
    .unwrap();
    eprintln!("seeded 2 × {n} assets in {:.1?}", started.elapsed());
    let a = Service::with_key(&da);
    let b = Service::with_key(&db);
    let c = client();

    let ticket = dir.path().join("engine-a.ticket");
    let engine = Engine::start(EngineConfig {
        ticket_file: Some(ticket.clone()),
        ..engine_config(&a.url, PASS, "Target", dir.path().join("engine-a"))
    })
    .await
    .unwrap();
    let engine = Arc::new(engine);
    // An honest peer, in sync with us.
    let honest = Agent::start(
        &dir.path().join("agent-b"),
        &b.url,
        KEY,
        PASS,
        &format!("connect_ticket_file: {}\n", ticket.display()),
    );
    assert!(
        honest.wait_for("reconciled", 120).await,
        "honest peer never reconciled"
    );
    eprintln!("honest peer reconciled after {:.1?}", started.elapsed());
    let loaded = eventually_async(60, || async {
        engine.status().await.is_ok_and(|s| s.local_assets == n)
    })
    .await;
    assert!(loaded, "the engine did not list its store");

    // Warm up: the first snapshot of our hashes is built once, before measuring.
    let addr = ticket_file_addr(&ticket).await;
    let keys = can_sync::keys::derive(PASS).unwrap();
    let rss_before = rss_bytes();

    // Sample status latency and memory throughout the attack.
    let stop = Arc::new(AtomicBool::new(false));
    let worst_ms = Arc::new(AtomicU64::new(0));
    let peak_rss = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (engine, stop, worst_ms, peak_rss) = (
            engine.clone(),
            stop.clone(),
            worst_ms.clone(),
            peak_rss.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = tokio::time::timeout(Duration::from_secs(5), engine.status())
                    .await
                    .is_ok_and(|r| r.is_ok());
                let ms = if ok {
                    t.elapsed().as_millis() as u64
                } else {
                    5_000
                };
                worst_ms.fetch_max(ms, Ordering::Relaxed);
                peak_rss.fetch_max(rss_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Attacker 1 (full lists): a 7-byte frame asking for our whole list, a thousand times.
    let ep1 = endpoint().await;
    let (conn1, mut send1, _recv1) = admitted_peer(&ep1, &addr, &keys, "flooder").await;
    // Attacker 2 (RBSR): a thousand new sessions, each an empty IdList over everything,
    // which asks for every id we have.
    let ep2 = endpoint().await;
    let (conn2, mut send2, _recv2) =
        admitted_peer_with(&ep2, &addr, &keys, "flooder-2", vec!["rbsr-v1".into()]).await;
    let mut everything = Vec::new();
    encode_range(&mut everything, &Bound::Infinity, &PayloadRef::IdList(&[]));
    let flood1 = async {
        for round in 0..REQUESTS {
            let list = Control {
                kind: Some(control::Kind::HashList(HashList {
                    round,
                    hashes: Vec::new(),
                    last: true,
                    reply_wanted: true,
                })),
            };
            if write_frame(&mut send1, &list).await.is_err() {
                break;
            }
        }
    };
    let flood2 = async {
        for session in 1..=REQUESTS {
            let msg = Control {
                kind: Some(control::Kind::Reconcile(Reconcile {
                    session,
                    initiator: true,
                    round: 0,
                    ranges: everything.clone(),
                    more: false,
                    set: 0,
                    method: 0,
                })),
            };
            if write_frame(&mut send2, &msg).await.is_err() {
                break;
            }
        }
    };
    let attack = Instant::now();
    tokio::join!(flood1, flood2);
    eprintln!("flood sent in {:.1?}", attack.elapsed());
    // Cut off for going over its budget, or (if its unread answers filled the queue first)
    // for not reading.
    let cut_off = [
        Some(u64::from(close::OVER_BUDGET)),
        Some(u64::from(close::NOT_READING)),
    ];
    let code1 = closed_code(&conn1).await;
    assert!(
        cut_off.contains(&code1),
        "the list flooder was not cut off: {code1:?}"
    );
    let code2 = closed_code(&conn2).await;
    assert!(
        cut_off.contains(&code2),
        "the reconcile flooder was not cut off: {code2:?}"
    );
    eprintln!(
        "flooders cut off ({code1:?}, {code2:?}) after {:.1?}",
        attack.elapsed()
    );

    // The honest peer keeps syncing throughout.
    let (_, m) = upload(&c, &b, "during-the-attack.txt", b"still syncing".to_vec()).await;
    let hash = m["hash"].as_str().unwrap().to_owned();
    assert!(
        eventually_async(30, || has_asset(&c, &a.url, &hash)).await,
        "the honest peer's asset did not arrive"
    );
    // The flooders are refused for a while when they come back.
    let again = ep1.connect(addr.clone(), can_sync::admission::ALPN).await;
    if let Ok(conn) = again {
        assert_eq!(
            closed_code(&conn).await,
            Some(u64::from(close::RATE_LIMITED))
        );
    }
    eprintln!("honest asset arrived after {:.1?}", attack.elapsed());
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let worst = worst_ms.load(Ordering::Relaxed);
    let grown = peak_rss.load(Ordering::Relaxed).saturating_sub(rss_before);
    eprintln!(
        "status worst {worst} ms; RSS grew {:.1} MiB during the flood",
        grown as f64 / (1 << 20) as f64
    );
    assert!(worst < 100, "status took {worst} ms during the flood");
    assert!(grown < 50 << 20, "RSS grew {grown} bytes");
    ep1.close().await;
    ep2.close().await;
    drop(honest);
    if let Ok(engine) = Arc::try_unwrap(engine) {
        engine.shutdown().await;
    }
}
