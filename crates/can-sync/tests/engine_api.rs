//! The engine as the app embeds it (in-process), against a real agent and real services:
//! status snapshot, events, pause and resume.

use std::time::Duration;

mod common;

use can_sync::{Engine, EngineConfig, EngineEvent};
use can_testkit::*;
use common::engine_config;

const PASS: &str = "glacier tempo orchid basalt lagoon cipher walnut";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_events_pause_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let b = Service::with_key(&dir.path().join("svc-b"));
    let c = client();
    let agent_b = Agent::start(
        &dir.path().join("agent-b"),
        &b.url,
        KEY,
        PASS,
        "device_name: Beta\n",
    );
    assert!(eventually(60, || agent_b.ticket_path().exists()).await);

    let config = EngineConfig {
        connect_ticket_files: vec![agent_b.ticket_path()],
        ..engine_config(&a.url, PASS, "Alpha", dir.path().join("engine-a"))
    };
    let engine = Engine::start(config).await.unwrap();
    let mut events = engine.subscribe();
    let up = wait_event(&mut events, "peer_up").await;
    assert!(
        matches!(up, EngineEvent::PeerUp { ref device_name, .. } if device_name == "Beta"),
        "{up:?}"
    );

    let status = engine.status().await.unwrap();
    assert!(!status.paused);
    assert!(status.store_online);
    assert_eq!(status.device_name, "Alpha");
    assert_eq!(status.peers.len(), 1);
    let peer = &status.peers[0];
    assert_eq!(peer.device_name, "Beta");
    assert_eq!(peer.path, "direct");
    assert!(peer.rtt_ms.is_some());

    // Live receive raises an event with hash, name, size and peer.
    let (_, m) = upload(&c, &b, "first.txt", b"first".to_vec()).await;
    let got = wait_event(&mut events, "asset_received").await;
    match got {
        EngineEvent::AssetReceived {
            hash,
            name,
            size,
            peer,
        } => {
            assert_eq!(hash, m["hash"].as_str().unwrap());
            assert_eq!(name, "first.txt");
            assert_eq!(size, 5);
            assert_eq!(peer, status.peers[0].endpoint_id);
        }
        other => panic!("{other:?}"),
    }

    // Paused: nothing arrives in either direction.
    engine.pause().await.unwrap();
    wait_event(&mut events, "paused").await;
    assert!(engine.status().await.unwrap().paused);
    let (_, held_in) = upload(&c, &b, "held.txt", b"held while paused".to_vec()).await;
    let (_, held_out) = upload(&c, &a, "held-out.txt", b"held outbound".to_vec()).await;
    let held_in = held_in["hash"].as_str().unwrap().to_owned();
    let held_out = held_out["hash"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !has_asset(&c, &a.url, &held_in).await,
        "transfer ran while paused"
    );
    assert!(
        !has_asset(&c, &b.url, &held_out).await,
        "transfer ran while paused"
    );

    // Resumed: both catch up.
    engine.resume().await.unwrap();
    assert!(
        eventually_async(30, || has_asset(&c, &a.url, &held_in)).await,
        "inbound not caught up"
    );
    assert!(
        eventually_async(30, || has_asset(&c, &b.url, &held_out)).await,
        "outbound not caught up"
    );
    // The sender counts a transfer once the receiver has acknowledged its last byte, which
    // can come just after the receiver's store has the asset.
    let counted = eventually_async(10, || async {
        engine
            .status()
            .await
            .map(|s| s.assets_sent == 1)
            .unwrap_or(false)
    })
    .await;
    assert!(counted, "the sent asset was not counted");
    let status = engine.status().await.unwrap();
    assert!(!status.paused);
    assert_eq!(status.assets_received, 2);
    assert_eq!(status.assets_sent, 1);
    assert_eq!(status.peers[0].assets_sent, 1);
    assert_eq!(status.local_assets, 3);
    engine.shutdown().await;
}

async fn wait_event(
    events: &mut tokio::sync::broadcast::Receiver<EngineEvent>,
    want: &str,
) -> EngineEvent {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let e = events.recv().await.expect("event stream open");
            let name = serde_json::to_value(&e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned();
            if name == want {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {want} event within 60 s"))
}

fn offline_config(dir: &std::path::Path, url: &str) -> EngineConfig {
    engine_config(url, PASS, "Alpha", dir.join("engine"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_while_the_store_is_still_offline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    // A store that is down when the engine starts (its port, then stopped).
    let mut svc = Service::with_key(&dir.path().join("svc"));
    svc.kill();
    let engine = Engine::start(offline_config(dir.path(), &svc.url))
        .await
        .unwrap();
    let mut events = engine.subscribe();
    engine.pause().await.unwrap();
    wait_event(&mut events, "paused").await;
    assert!(engine.status().await.unwrap().paused);
    assert!(!engine.status().await.unwrap().store_online);
    svc.restart(&format!("sync_api_key: {KEY}\n"));
    wait_event(&mut events, "store_online").await;
    let status = engine.status().await.unwrap();
    assert!(
        status.paused,
        "the pause was lost while the store was loading"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_ticket_twice_keeps_one_dial_loop() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(&dir.path().join("svc"));
    let engine = Engine::start(offline_config(dir.path(), &svc.url))
        .await
        .unwrap();
    // A peer that is not running: its ticket names a port nobody listens on.
    let other = iroh::SecretKey::generate().public();
    let addr = iroh::EndpointAddr::new(other).with_ip_addr("127.0.0.1:9".parse().unwrap());
    let ticket = iroh_tickets::endpoint::EndpointTicket::new(addr).to_string();
    for _ in 0..20 {
        engine.connect_ticket(&ticket).unwrap();
    }
    let counted = eventually_async(10, || async {
        engine.status().await.is_ok_and(|s| s.candidates == 1)
    })
    .await;
    assert!(counted, "{:?}", engine.status().await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(engine.status().await.unwrap().candidates, 1);
    assert!(
        engine.connect_ticket(engine.ticket()).is_err(),
        "own ticket"
    );
    engine.shutdown().await;
}
