//! Fuzz target: random control messages from admitted peers, fed to a live engine (real
//! CAN Service, real QUIC). Whatever arrives, the engine must not panic, must keep answering
//! status, must close a rule-breaking connection with one of the documented codes, and must
//! still sync with an honest peer at the end.
//!
//! Bounded for CI: `CAN_FUZZ_SESSION_SECS` (default 20 s) of cases, seeded from
//! `CAN_FUZZ_SEED` (printed, so a failure can be replayed); the long run is in
//! docs/fuzzing.md.

mod common;

use std::time::{Duration, Instant};

use can_proto::peer::{Announce, Control, HashList, Hello, Reconcile, control};
use can_sync::reconcile::codec::{Bound, PayloadRef, encode_range};
use can_sync::wire::write_frame;
use can_sync::{Engine, EngineConfig};
use can_testkit::*;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PASS: &str = "copper lantern oyster glacier mango trellis violin";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn random_hash(rng: &mut StdRng) -> [u8; 32] {
    let mut h = [0u8; 32];
    rng.fill(&mut h);
    h
}

/// One random frame body: a well-formed message of a random kind with random fields, or
/// raw bytes (undecodable, or a kind this version does not know).
fn random_frame(rng: &mut StdRng, known: &[[u8; 32]]) -> Vec<u8> {
    use prost::Message;
    let kind = rng.random_range(0..8u8);
    let msg = match kind {
        0 => {
            // Hash lists: random or known hashes, sometimes a length that is not whole.
            let n = rng.random_range(0..40usize);
            let mut hashes: Vec<u8> = (0..n)
                .flat_map(|_| {
                    if rng.random_bool(0.5) && !known.is_empty() {
                        known[rng.random_range(0..known.len())]
                    } else {
                        random_hash(rng)
                    }
                })
                .collect();
            if rng.random_bool(0.1) {
                hashes.push(7);
            }
            control::Kind::HashList(HashList {
                round: rng.random(),
                hashes,
                last: rng.random(),
                reply_wanted: rng.random(),
            })
        }
        1 => control::Kind::Announce(Announce {
            hashes: (0..rng.random_range(0..4usize))
                .flat_map(|_| random_hash(rng))
                .collect(),
        }),
        2 | 3 => {
            // Reconcile: random bytes, or well-formed ranges with random payloads.
            let ranges = if kind == 2 {
                let len = rng.random_range(0..200usize);
                (0..len).map(|_| rng.random()).collect()
            } else {
                let mut out = Vec::new();
                let mut ids: Vec<[u8; 32]> = (0..rng.random_range(0..10usize))
                    .map(|_| random_hash(rng))
                    .collect();
                ids.sort();
                ids.dedup();
                match rng.random_range(0..3u8) {
                    0 => encode_range(&mut out, &Bound::Infinity, &PayloadRef::IdList(&ids)),
                    1 => {
                        let fp: [u8; 16] = rng.random();
                        encode_range(&mut out, &Bound::Infinity, &PayloadRef::Fingerprint(&fp))
                    }
                    _ => encode_range(&mut out, &Bound::Infinity, &PayloadRef::Skip),
                }
                out
            };
            control::Kind::Reconcile(Reconcile {
                session: rng.random_range(0..4),
                initiator: rng.random(),
                round: rng.random_range(0..4),
                ranges,
                more: rng.random_bool(0.2),
                set: rng.random_range(0..3),
                // RBSR ranges under either method: a RIBLT decoder must refuse them too.
                method: rng.random_range(0..3),
            })
        }
        4 => control::Kind::Hello(Hello {
            device_name: "again".into(),
            agent_version: "x".into(),
            features: vec!["rbsr-v1".into(), "from-the-future".into()],
            instance: rng.random(),
        }),
        5 => {
            // A field this version does not know (a newer peer's message kind).
            let field = rng.random_range(9..30u32);
            let mut raw = Vec::new();
            prost::encoding::encode_key(
                field,
                prost::encoding::WireType::LengthDelimited,
                &mut raw,
            );
            prost::encoding::encode_varint(3, &mut raw);
            raw.extend_from_slice(b"new");
            return raw;
        }
        _ => {
            let len = rng.random_range(0..64usize);
            return (0..len).map(|_| rng.random()).collect();
        }
    };
    Control { kind: Some(msg) }.encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_control_messages_never_break_a_live_engine() {
    let secs = env_u64("CAN_FUZZ_SESSION_SECS", 20);
    let seed = env_u64("CAN_FUZZ_SEED", rand::random());
    eprintln!("fuzz_session: seed {seed} ({secs} s); replay with CAN_FUZZ_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let c = client();
    let mut known = Vec::new();
    for i in 0..5 {
        let (_, m) = upload(&c, &a, &format!("a{i}"), format!("asset {i}").into_bytes()).await;
        let hash = hex_to_hash(m["hash"].as_str().unwrap());
        known.push(hash);
    }
    let ticket = dir.path().join("engine.ticket");
    let engine = Engine::start(EngineConfig {
        ticket_file: Some(ticket.clone()),
        transfer_idle_timeout: Duration::from_secs(2),
        ..engine_config(&a.url, PASS, "Target", dir.path().join("engine"))
    })
    .await
    .unwrap();
    let addr = ticket_file_addr(&ticket).await;
    let keys = can_sync::keys::derive(PASS).unwrap();

    let end = Instant::now() + Duration::from_secs(secs);
    let (mut cases, mut frames, mut closed) = (0u64, 0u64, 0u64);
    while Instant::now() < end {
        cases += 1;
        // A fresh endpoint per case: a closed one may be refused for a while, by design.
        let ep = endpoint().await;
        let features = if rng.random() {
            vec!["rbsr-v1".to_owned()]
        } else {
            Vec::new()
        };
        let (conn, mut send, recv) =
            admitted_peer_with(&ep, &addr, &keys, "fuzzer", features).await;
        if rng.random_bool(0.5) {
            drain(recv);
        }
        for _ in 0..rng.random_range(1..12) {
            let body = random_frame(&mut rng, &known);
            frames += 1;
            let sent = if rng.random_bool(0.05) {
                // Sometimes a broken length prefix instead.
                send.write_all(&[0xff; 11]).await.is_ok()
            } else {
                let mut framed = Vec::new();
                prost::encoding::encode_varint(body.len() as u64, &mut framed);
                framed.extend_from_slice(&body);
                send.write_all(&framed).await.is_ok()
            };
            if !sent {
                break;
            }
        }
        // The engine answers status promptly whatever this peer did.
        let t = Instant::now();
        let status = tokio::time::timeout(Duration::from_secs(2), engine.status()).await;
        assert!(
            matches!(status, Ok(Ok(_))),
            "status stalled after case {cases} (seed {seed})"
        );
        assert!(t.elapsed() < Duration::from_secs(2));
        if let Some(code) = closed_code_within(&conn, Duration::from_millis(300)).await {
            closed += 1;
            assert!(
                (1..=8).contains(&code),
                "undocumented close code {code} (seed {seed})"
            );
        }
        ep.close().await;
    }
    eprintln!("fuzz_session: {cases} sessions, {frames} frames, {closed} closed by the engine");

    // Still an honest peer's mirror.
    let ep = endpoint().await;
    let (_conn, mut send, recv) = admitted_peer(&ep, &addr, &keys, "honest").await;
    drain(recv);
    let list = Control {
        kind: Some(control::Kind::HashList(HashList {
            round: 1,
            hashes: Vec::new(),
            last: true,
            reply_wanted: false,
        })),
    };
    write_frame(&mut send, &list).await.unwrap();
    let up = eventually_async(10, || async {
        engine
            .status()
            .await
            .is_ok_and(|s| s.peers.iter().any(|p| p.device_name == "honest"))
    })
    .await;
    assert!(up, "the honest peer was not taken");
    assert_eq!(engine.status().await.unwrap().local_assets, 5);
    ep.close().await;
    engine.shutdown().await;
}

fn hex_to_hash(hex: &str) -> [u8; 32] {
    let mut h = [0u8; 32];
    for (i, b) in h.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    h
}
