//! A big transfer reports its progress while it moves: `progress` events and the status's
//! `transfers`, `bytes_left` and rates, on both ends; and a last event when it ended.

use can_testkit::*;

const PASS: &str = "ember quartz falcon meadow tidal beacon zephyr";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_transfer_reports_bytes_rate_and_time_left_on_both_ends() {
    let dir = tempfile::tempdir().unwrap();
    let svc_a = Service::with_key(&dir.path().join("svc-a"));
    let svc_b = Service::with_key(&dir.path().join("svc-b"));
    let c = client();
    let size = 200u64 << 20;
    let big = pseudo_random(size as usize, 11);
    let hash = b3(&big);
    assert_eq!(upload(&c, &svc_a, "big.bin", big).await.0, 201);

    let a = Agent::start(
        &dir.path().join("agent-a"),
        &svc_a.url,
        KEY,
        PASS,
        "device_name: sender\n",
    );
    let b = Agent::start(
        &dir.path().join("agent-b"),
        &svc_b.url,
        KEY,
        PASS,
        &format!(
            "device_name: receiver\nconnect_ticket_file: {}\n",
            a.ticket_path().display()
        ),
    );
    // The receiver's status while the asset streams in (the control socket, as a person
    // would ask it).
    let config_b = b.config.to_str().unwrap().to_owned();
    let mut seen_mid_transfer = None;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while tokio::time::Instant::now() < deadline && !has_asset(&c, &svc_b.url, &hash).await {
        let out = command("can-sync", None)
            .args(["status", "--json", "-c", &config_b])
            .output()
            .unwrap();
        if let Ok(status) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            && let Some(t) = status["transfers"].as_array().and_then(|t| t.first())
            && t["bytes_done"].as_u64().unwrap_or(0) > 0
        {
            seen_mid_transfer = Some((status.clone(), t.clone()));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, t) = seen_mid_transfer.expect("no transfer in the receiver's status");
    assert_eq!(t["hash"], hash);
    assert_eq!(t["name"], "big.bin");
    assert_eq!(t["direction"], "download");
    assert_eq!(t["device_name"], "sender");
    assert_eq!(t["bytes_total"], size);
    assert!(t["bytes_done"].as_u64().unwrap() <= size);
    assert!(status["bytes_left"].as_u64().unwrap() <= size);
    assert!(status["bytes_left"].as_u64().unwrap() > 0);

    assert!(
        eventually_async(180, || has_asset(&c, &svc_b.url, &hash)).await,
        "the mirror did not complete"
    );
    // progress events: while moving (bytes, a rate, time left), then one with nothing left.
    let settle = |agent: &Agent| {
        let events = agent.events();
        events
            .iter()
            .rev()
            .find(|e| e["event"] == "progress")
            .is_some_and(|e| e["transfers"].as_array().is_some_and(|t| t.is_empty()))
    };
    assert!(
        eventually(10, || settle(&b) && settle(&a)).await,
        "no final progress event"
    );
    for (agent, direction) in [(&b, "download"), (&a, "upload")] {
        let events = agent.events();
        let moving: Vec<_> = events
            .iter()
            .filter(|e| e["event"] == "progress")
            .filter_map(|e| e["transfers"].as_array().and_then(|t| t.first()).cloned())
            .collect();
        assert!(!moving.is_empty(), "{direction}: no progress while moving");
        assert!(moving.iter().all(|t| t["direction"] == direction));
        let last = moving.last().unwrap();
        assert!(
            last["rate_bytes_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
            "{direction}: no rate in {last}"
        );
        assert!(
            last["eta_secs"].as_f64().is_some(),
            "{direction}: no time left"
        );
        let done: Vec<u64> = moving
            .iter()
            .map(|t| t["bytes_done"].as_u64().unwrap())
            .collect();
        assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");
    }
}
