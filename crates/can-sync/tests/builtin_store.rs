//! The engine on a store in its own process, reached through the store's library (the
//! desktop app's built-in store), against a real agent on a real service: assets, a resumed
//! partial, and deletions move both ways; the engine never uses HTTP for its store (its
//! `can_service_url` points nowhere).
#![cfg(feature = "builtin-store")]

mod common;

use can_sync::EngineConfig;
use can_sync::builtin_store::BuiltinStore;
use can_testkit::*;
use common::engine_config;

const PASS: &str = "glacier tempo orchid basalt lagoon cipher walnut";

/// The built-in store (a CAN Service in this process; its HTTP API stays for the user) and
/// an engine on it that knows `peer` by its ticket.
async fn builtin_engine(
    dir: &std::path::Path,
    peer: &Agent,
) -> (can_service::RunningService, can_sync::Engine) {
    let svc_config = can_service::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("builtin"),
        free_space_reserve_bytes: Some(0),
        ..Default::default()
    };
    let builtin = can_service::start(&svc_config).await.unwrap();
    let config = EngineConfig {
        connect_ticket_files: vec![peer.ticket_path()],
        builtin_store: Some(BuiltinStore::new(builtin.store().clone())),
        // Nothing listens here: every store call must go through the library.
        ..engine_config("http://127.0.0.1:9", PASS, "Alpha", dir.join("engine-a"))
    };
    let engine = can_sync::Engine::start(config).await.unwrap();
    (builtin, engine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_on_its_builtin_store_mirrors_and_deletes_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let b = Service::with_key(&dir.path().join("svc-b"));
    let agent_b = Agent::start(&dir.path().join("agent-b"), &b.url, KEY, PASS, "");
    assert!(eventually(60, || agent_b.ticket_path().exists()).await);

    let (builtin, engine) = builtin_engine(dir.path(), &agent_b).await;
    let a_url = format!("http://{}", builtin.local_addr());

    let from_a: serde_json::Value = c
        .post(format!("{a_url}/api/assets"))
        .header("X-Filename", "from-a.txt")
        .body(b"built-in to agent".to_vec())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, from_b) = upload(&c, &b, "from-b.txt", pseudo_random(3 << 20, 7)).await;
    let (ha, hb) = (
        from_a["hash"].as_str().unwrap().to_owned(),
        from_b["hash"].as_str().unwrap().to_owned(),
    );
    assert!(
        eventually_async(30, || has_asset(&c, &b.url, &ha)).await,
        "A → B"
    );
    assert!(
        eventually_async(30, || has_asset(&c, &a_url, &hb)).await,
        "B → A"
    );
    assert_eq!(b3(&content(&c, &a_url, &hb).await), hb);
    let status = engine.status().await.unwrap();
    assert!(status.store_online);
    assert_eq!(status.local_assets, 2);

    // Deletions both ways.
    assert_eq!(delete_asset(&c, &b, &ha).await, 200);
    assert!(eventually_async(10, || async { meta_status(&c, &a_url, &ha).await == 410 }).await);
    let deleted = c
        .delete(format!("{a_url}/api/assets/{hb}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert!(eventually_async(10, || async { meta_status(&c, &b.url, &hb).await == 410 }).await);
    assert!(
        eventually_async(10, || async {
            engine.status().await.unwrap().trash_assets == 2
        })
        .await
    );
    engine.shutdown().await;
    builtin.shutdown().await;
    // Stopped as the app stops at Quit: no handle of the store is left, so it recorded a
    // clean stop and its next start skips the crash-repair scan.
    assert!(dir.path().join("builtin").join("clean-stop").exists());
}

/// A large asset (past the swarm layout's 32 MiB) from one peer reaches the built-in store
/// over several streams at once (`peer::split`): stored whole and verified, and the sender,
/// whose first stream the receiver stopped where the range streams took over, counts it as
/// sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_asset_reaches_the_builtin_store_over_several_streams() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let b = Service::with_key(&dir.path().join("svc-b"));
    let agent_b = Agent::start(&dir.path().join("agent-b"), &b.url, KEY, PASS, "");
    assert!(eventually(60, || agent_b.ticket_path().exists()).await);
    let (builtin, engine) = builtin_engine(dir.path(), &agent_b).await;
    let a_url = format!("http://{}", builtin.local_addr());
    assert!(
        eventually_async(60, || async {
            !engine.status().await.unwrap().peers.is_empty()
        })
        .await
    );
    let body = pseudo_random(40 << 20, 11);
    let (status, from_b) = upload(&c, &b, "large.bin", body.clone()).await;
    assert_eq!(status, 201);
    let hash = from_b["hash"].as_str().unwrap().to_owned();
    assert!(
        eventually_async(120, || has_asset(&c, &a_url, &hash)).await,
        "the large asset never reached the built-in store"
    );
    assert!(content(&c, &a_url, &hash).await == body);
    // The parts were written into the asset's partial, which became the stored file.
    let partials = std::fs::read_dir(dir.path().join("builtin").join("partial")).unwrap();
    assert_eq!(partials.count(), 0, "no partial left behind");
    assert!(
        eventually(10, || agent_b.status()["assets_sent"].as_u64() == Some(1)).await,
        "the sender counts the asset as sent once: {}",
        agent_b.status()
    );
    engine.shutdown().await;
    builtin.shutdown().await;
}
