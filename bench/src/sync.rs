//! Two CAN Services and two agents on loopback (relays off, linked by ticket): propagation
//! latency of small uploads, throughput of mirroring one large asset against a raw iroh
//! stream between two endpoints on the same host, and the agents' peak RSS.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use can_testkit::{Agent, KEY, Service, b3, client, has_asset, pseudo_random, upload};
use clap::Args as ClapArgs;
use iroh::endpoint::{PortmapperConfig, presets};
use iroh::{Endpoint, EndpointAddr, RelayMode};

use crate::proc::{cpu_ns, current_rss, mib, monotonic_secs, peak_rss};

/// CPU time of this process so far (every thread), in ns.
fn own_cpu_ns() -> u64 {
    cpu_ns(std::process::id()).unwrap_or(0)
}

#[derive(ClapArgs)]
pub struct Args {
    /// Latency samples (1 KiB uploads).
    #[arg(long, default_value_t = 30)]
    samples: usize,
    /// Size of the bulk asset in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: usize,
    /// Only the mirror between two engines on built-in stores in this process (for
    /// profiling that path alone).
    #[arg(long)]
    only_builtin: bool,
    /// Congestion controller of the built-in engines and of the raw stream with the
    /// engine's settings: auto (the agents' default), bbr or cubic.
    #[arg(long, default_value = "auto", value_parser = parse_congestion)]
    congestion: can_sync::Congestion,
    /// With --only-builtin: rounds of (mirror, raw stream with iroh's defaults, raw stream
    /// with the engine's settings), each ratio taken within its round, and their medians
    /// printed (this VM's speed drifts by ± 20 % between runs).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

fn parse_congestion(s: &str) -> Result<can_sync::Congestion, String> {
    match s {
        "auto" => Ok(can_sync::Congestion::Auto),
        "bbr" => Ok(can_sync::Congestion::Bbr),
        "cubic" => Ok(can_sync::Congestion::Cubic),
        _ => Err(format!("{s}: expected auto, bbr or cubic")),
    }
}

const PASS: &str = "bench harbor violet summit cobalt ferry lantern";

pub async fn run(args: Args) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    if args.only_builtin {
        return only_builtin(&args, work.path()).await;
    }
    let a = Service::with_key(&work.path().join("svc-a"));
    let b = Service::with_key(&work.path().join("svc-b"));
    let agent_a = Agent::start(&work.path().join("agent-a"), &a.url, KEY, PASS, "");
    let agent_b = Agent::start(
        &work.path().join("agent-b"),
        &b.url,
        KEY,
        PASS,
        &agent_a.connect_line(),
    );
    ensure!(
        agent_b.wait_for("peer_up", 60).await,
        "agents did not connect"
    );
    let c = client();

    // Propagation latency: upload on A → GET succeeds on B.
    let mut lat = Vec::new();
    for i in 0..args.samples {
        let body = pseudo_random(1024, 1_000_000 + i as u64);
        let hash = b3(&body);
        let start = Instant::now();
        let (status, _) = upload(&c, &a, "small", body).await;
        ensure!(status == 201, "upload failed");
        let deadline = start + Duration::from_secs(30);
        while !has_asset(&c, &b.url, &hash).await {
            ensure!(
                Instant::now() < deadline,
                "asset {i} did not arrive in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lat.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    let p50 = lat[lat.len() / 2];
    let p95 = lat[(lat.len() * 95 / 100).min(lat.len() - 1)];

    // Bulk: one large asset, from A's 201 to B serving it.
    let size = args.size_mib << 20;
    let big = big_content(size);
    let hash = b3(&big);
    let (status, _) = upload(&c, &a, "big.bin", big).await;
    ensure!(status == 201, "bulk upload failed");
    let start = Instant::now();
    let deadline = start + Duration::from_secs(600);
    while !has_asset(&c, &b.url, &hash).await {
        ensure!(
            Instant::now() < deadline,
            "bulk asset did not arrive in 600 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mirror_s = start.elapsed().as_secs_f64();
    let rss_a = peak_rss(agent_a.pid())?;
    let rss_b = peak_rss(agent_b.pid())?;
    let now_a = current_rss(agent_a.pid())?;
    let now_b = current_rss(agent_b.pid())?;
    drop(agent_a);
    drop(agent_b);

    let builtin_s = builtin_mirror(
        &work.path().join("builtin"),
        &big_content(size),
        args.congestion,
    )
    .await?;
    let raw_s = raw_iroh(size, None).await?;
    let mbps = |s: f64| size as f64 / s / 1e6;
    println!("## CAN Sync engine, two agents on loopback (relays off, ticket)\n");
    println!("| measure | CAN Sync | baseline | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| propagation of 1 KiB, p50 / p95 ({} samples; goal p50 ≤ 100 ms) | {p50:.1} / {p95:.1} ms | | |",
        args.samples
    );
    println!(
        "| mirror one {} MiB asset (goal ratio ≥ 0.7) | {mirror_s:.2} s, {:.0} MB/s | raw iroh stream {raw_s:.2} s, {:.0} MB/s | {:.2} |",
        args.size_mib,
        mbps(mirror_s),
        mbps(raw_s),
        raw_s / mirror_s
    );
    println!(
        "| the same with both engines on built-in stores in this process (the app's way: the store's library, no HTTP; goal ratio ≥ 0.7) | {builtin_s:.2} s, {:.0} MB/s | raw iroh stream {raw_s:.2} s | {:.2} |",
        mbps(builtin_s),
        raw_s / builtin_s
    );
    println!(
        "| agent peak RSS, sender / receiver (goal < 100 MiB; includes Argon2id's 64 MiB at start) | {:.1} / {:.1} MiB | | |",
        mib(rss_a),
        mib(rss_b)
    );
    println!(
        "| agent RSS after the bulk mirror, sender / receiver | {:.1} / {:.1} MiB | | |",
        mib(now_a),
        mib(now_b)
    );
    Ok(())
}

/// `--only-builtin`: the in-process mirror against the raw streams, `--rounds` times.
async fn only_builtin(args: &Args, work: &std::path::Path) -> anyhow::Result<()> {
    let size = args.size_mib << 20;
    let mbps = |s: f64| size as f64 / s / 1e6;
    let content = big_content(size);
    let (mut ratios, mut ratios_engine, mut speeds) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.rounds.max(1) {
        let dir = work.join(format!("builtin-{round}"));
        let s = builtin_mirror(&dir, &content, args.congestion).await?;
        // Each round's stores go: two copies of a large asset per round add up.
        let _ = std::fs::remove_dir_all(&dir);
        let raw = raw_iroh(size, None).await?;
        let raw_engine = raw_iroh(size, Some(args.congestion)).await?;
        println!(
            "built-in stores in this process ({:?}), round {round}: {} MiB in {s:.2} s, {:.0} MB/s; raw iroh stream: {:.0} MB/s (ratio {:.2}), with the engine's transport settings: {:.0} MB/s (ratio {:.2})",
            args.congestion,
            args.size_mib,
            mbps(s),
            mbps(raw),
            raw / s,
            mbps(raw_engine),
            raw_engine / s,
        );
        ratios.push(raw / s);
        ratios_engine.push(raw_engine / s);
        speeds.push(mbps(s));
    }
    if args.rounds > 1 {
        println!(
            "median of {} rounds: mirror {:.0} MB/s, ratio {:.2} (range {:.2}-{:.2}), with the engine's transport settings {:.2} (goal ≥ 0.7)",
            ratios.len(),
            median(&mut speeds),
            median(&mut ratios),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
            median(&mut ratios_engine),
        );
    }
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn big_content(size: usize) -> Vec<u8> {
    pseudo_random(size, 99)
}

/// Two engines in this process, each on a built-in store reached through its library (as
/// the app runs), linked by ticket: seconds from the upload's 201 to B storing it.
async fn builtin_mirror(
    dir: &std::path::Path,
    big: &[u8],
    congestion: can_sync::Congestion,
) -> anyhow::Result<f64> {
    use can_sync::builtin_store::BuiltinStore;
    let service = |name: &str| {
        let config = can_service::Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.join(name),
            free_space_reserve_bytes: Some(0),
            ..Default::default()
        };
        async move { can_service::start(&config).await.context("built-in store") }
    };
    let a = service("store-a").await?;
    let b = service("store-b").await?;
    let engine = |name: &str, store: &can_service::Store, connect: Vec<std::path::PathBuf>| {
        let config = can_sync::EngineConfig {
            device_name: name.to_owned(),
            bind_addr: "127.0.0.1:0".parse().expect("address"),
            relay_urls: Some(vec![]),
            pkarr_relays: Some(vec![]),
            local_discovery: false,
            ticket_file: Some(dir.join(format!("{name}.ticket"))),
            connect_ticket_files: connect,
            builtin_store: Some(BuiltinStore::new(store.clone())),
            congestion,
            ..can_sync::EngineConfig::new(
                "http://127.0.0.1:9",
                can_sync::Secret::new(KEY),
                can_sync::Secret::new(PASS),
                dir.join(format!("{name}-state")),
            )
        };
        async move { can_sync::Engine::start(config).await.context("engine") }
    };
    let ea = engine("a", a.store(), vec![]).await?;
    let eb = engine("b", b.store(), vec![dir.join("a.ticket")]).await?;
    let c = client();
    let a_url = format!("http://{}", a.local_addr());
    let b_url = format!("http://{}", b.local_addr());
    let deadline = Instant::now() + Duration::from_secs(60);
    while eb.status().await?.peers.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "built-in engines did not connect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hash = b3(big);
    let resp = c
        .post(format!("{a_url}/api/assets"))
        .body(big.to_vec())
        .send()
        .await?;
    ensure!(
        resp.status() == 201,
        "bulk upload to the built-in store failed"
    );
    let start = Instant::now();
    let (window, cpu) = (monotonic_secs(), own_cpu_ns());
    // Where the time goes: B's store writes the asset into a temp (or partial) file, so
    // its size tells when the first and the last byte arrived.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (store_b, size, stopped) = (dir.join("store-b"), big.len() as u64, stop.clone());
    let watch = tokio::task::spawn_blocking(move || watch_arrival(store_b, size, start, stopped));
    let deadline = start + Duration::from_secs(600);
    while !has_asset(&c, &b_url, &hash).await {
        ensure!(
            Instant::now() < deadline,
            "bulk asset did not arrive in 600 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = own_cpu_ns().saturating_sub(cpu) as f64 / 1e9;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (first, last) = watch.await.unwrap_or((None, None));
    let ms = |d: Option<Duration>| {
        d.map_or("?".to_owned(), |d| {
            format!("{:.0} ms", d.as_secs_f64() * 1e3)
        })
    };
    eprintln!(
        "built-in mirror: {cpu:.2} CPU seconds in {secs:.2} s ({:.2} cores busy); first byte stored after {}, last after {}; window on CLOCK_MONOTONIC {window:.3},{:.3} (for perf record -k CLOCK_MONOTONIC, perf report --time)",
        cpu / secs,
        ms(first),
        ms(last),
        window + secs
    );
    ea.shutdown().await;
    eb.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
    Ok(secs)
}

/// When the receiving store's temp or partial file first held a byte and when it held all
/// `size`, polled every 2 ms until then or until `stop` (a blocking thread: the async
/// workers whose CPU the bench measures stay free).
fn watch_arrival(
    data: std::path::PathBuf,
    size: u64,
    start: Instant,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Option<Duration>, Option<Duration>) {
    let held = |dir: std::path::PathBuf| -> u64 {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    let (mut first, mut last) = (None, None);
    while last.is_none() && !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let got = held(data.join("tmp")).max(held(data.join("partial")));
        if got > 0 && first.is_none() {
            first = Some(start.elapsed());
        }
        if got >= size {
            last = Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (first, last)
}

/// The ceiling: `size` bytes over one QUIC stream between two iroh endpoints on loopback,
/// with iroh's default transport settings, or (`engine`) the agents' with that controller.
pub(crate) async fn raw_iroh(
    size: usize,
    engine: Option<can_sync::Congestion>,
) -> anyhow::Result<f64> {
    const ALPN: &[u8] = b"can-bench/raw";
    let bind = || async {
        let mut builder = Endpoint::builder(presets::Minimal)
            .relay_mode(RelayMode::Disabled)
            .clear_ip_transports()
            .bind_addr("127.0.0.1:0")?
            .portmapper_config(PortmapperConfig::Disabled)
            .alpns(vec![ALPN.to_vec()]);
        if let Some(cc) = engine {
            builder = builder.transport_config(can_sync::engine::transport_config(cc));
        }
        builder.bind().await.context("bind")
    };
    let server = bind().await?;
    let client_ep = bind().await?;
    let addr = EndpointAddr::new(server.id()).with_ip_addr(server.bound_sockets()[0]);
    let receiver = tokio::spawn(async move {
        let conn = server.accept().await.context("accept")?.await?;
        let (_send, mut recv) = conn.accept_bi().await?;
        let mut total = 0usize;
        while let Some(chunk) = recv.read_chunk(1 << 20).await? {
            total += chunk.len();
        }
        conn.close(0u32.into(), b"done");
        server.close().await;
        anyhow::Ok(total)
    });
    let conn = client_ep.connect(addr, ALPN).await?;
    let chunk = bytes::Bytes::from(vec![7u8; 1 << 20]);
    let start = Instant::now();
    let cpu = own_cpu_ns();
    let (mut send, _recv) = conn.open_bi().await?;
    let mut sent = 0usize;
    while sent < size {
        send.write_chunk(chunk.clone()).await?;
        sent += chunk.len();
    }
    send.finish()?;
    let received = receiver.await??;
    let secs = start.elapsed().as_secs_f64();
    let cpu = own_cpu_ns().saturating_sub(cpu) as f64 / 1e9;
    eprintln!(
        "raw iroh stream ({}): {cpu:.2} CPU seconds in {secs:.2} s ({:.2} cores busy)",
        if engine.is_some() {
            "engine settings"
        } else {
            "iroh defaults"
        },
        cpu / secs
    );
    ensure!(received == sent, "raw stream lost data");
    client_ep.close().await;
    Ok(secs)
}
