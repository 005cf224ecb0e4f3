//! An upload limit holds over a real transfer: 100 MiB from an agent limited to 5 MB/s
//! arrives at 5 MB/s ± 15 %. Loopback counts as LAN, so the test sets `limit_lan`.

use std::time::Instant;

use can_testkit::*;

const PASS: &str = "ember quartz falcon meadow tidal beacon zephyr";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5_mb_s_upload_limit_holds_over_100_mib() {
    let dir = tempfile::tempdir().unwrap();
    let svc_a = Service::with_key(&dir.path().join("svc-a"));
    let svc_b = Service::with_key(&dir.path().join("svc-b"));
    let c = client();
    let size = 100usize << 20;
    let body = pseudo_random(size, 5);
    let hash = b3(&body);
    assert_eq!(upload(&c, &svc_a, "limited.bin", body).await.0, 201);

    let a = Agent::start(
        &dir.path().join("agent-a"),
        &svc_a.url,
        KEY,
        PASS,
        "upload_limit: 5 MB/s\nlimit_lan: true\n",
    );
    let _b = Agent::start(
        &dir.path().join("agent-b"),
        &svc_b.url,
        KEY,
        PASS,
        &a.connect_line(),
    );
    assert!(
        eventually(60, || svc_b.upload_files() > 0).await,
        "the transfer never started"
    );
    let started = Instant::now();
    assert!(
        eventually_async(120, || has_asset(&c, &svc_b.url, &hash)).await,
        "the transfer did not finish"
    );
    let secs = started.elapsed().as_secs_f64();
    let rate = size as f64 / secs;
    println!(
        "100 MiB under a 5 MB/s upload limit: {secs:.1} s, {:.2} MB/s ({:+.1} %)",
        rate / 1e6,
        (rate / 5e6 - 1.0) * 100.0
    );
    // The first quarter second of tokens goes at once and the store's temp file appears a
    // little after the first bytes left: both make the measured rate slightly high.
    assert!(
        (4.25e6..5.75e6).contains(&rate),
        "measured {:.2} MB/s under a 5 MB/s limit",
        rate / 1e6
    );
}
