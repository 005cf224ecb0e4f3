//! CAN Sync side by side with Syncthing and a raw iroh stream, on one machine in one run:
//! propagation latency, bulk mirror, initial reconciliation (time and bytes on the wire),
//! agent memory and CPU, idle CPU. Prints a Markdown table with ratios and writes JSON and a
//! PNG chart to bench/results/. See bench/README.md for what each figure means.

mod can;
mod chart;
mod recon;
pub(crate) mod report;
pub(crate) mod syncthing;
mod wire;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use can_testkit::{b3, client, has_asset, pseudo_random};
use clap::Args as ClapArgs;

use crate::netns::{self, Netns};
use crate::proc::{cpu_seconds, peak_rss, reset_peak_rss};
use crate::util::{poll, post, step};
use recon::{recon_can, recon_st};
use report::{Bulk, Idle, Latency, Results};
use wire::Wire;

#[derive(ClapArgs)]
pub struct Args {
    /// Small sizes for a check during development: 5 latency samples (3 at Syncthing's
    /// default watcher delay), 50 MiB bulk, 2,000 reconciliation assets, 5 s idle.
    #[arg(long)]
    quick: bool,
    /// Propagation samples for CAN Sync and for Syncthing at fsWatcherDelayS=1 [30].
    #[arg(long)]
    samples: Option<usize>,
    /// Propagation samples for Syncthing at its default watcher delay (10 s each) [5].
    #[arg(long)]
    slow_samples: Option<usize>,
    /// Size of the large bulk asset in MiB [1024].
    #[arg(long)]
    size_mib: Option<usize>,
    /// Number of 10 KiB assets in the bulk mirror [1000].
    #[arg(long)]
    small_files: Option<usize>,
    /// Assets on each side for the reconciliation runs [100000].
    #[arg(long)]
    recon_assets: Option<usize>,
    /// Files on each side for Syncthing's reconciliation runs [same as --recon-assets].
    #[arg(long)]
    st_recon_assets: Option<usize>,
    /// Seconds of idle CPU measurement [60].
    #[arg(long)]
    idle_secs: Option<u64>,
}

/// The sizes of one run.
#[derive(Clone, Debug)]
pub struct Cfg {
    pub quick: bool,
    pub samples: usize,
    pub slow_samples: usize,
    pub size_mib: usize,
    pub small_files: usize,
    pub recon_assets: usize,
    pub st_recon_assets: usize,
    pub idle_secs: u64,
}

impl From<Args> for Cfg {
    fn from(a: Args) -> Cfg {
        let q = a.quick;
        let recon = a.recon_assets.unwrap_or(if q { 2_000 } else { 100_000 });
        Cfg {
            quick: q,
            samples: a.samples.unwrap_or(if q { 5 } else { 30 }).max(1),
            slow_samples: a.slow_samples.unwrap_or(if q { 3 } else { 5 }).max(1),
            size_mib: a.size_mib.unwrap_or(if q { 50 } else { 1024 }),
            small_files: a.small_files.unwrap_or(1000),
            recon_assets: recon.max(100),
            st_recon_assets: a.st_recon_assets.unwrap_or(recon).max(100),
            idle_secs: a.idle_secs.unwrap_or(if q { 5 } else { 60 }),
        }
    }
}

const SMALL: usize = 10 * 1024;
const RECON_SIZE: usize = 1024;
const MIB: usize = 1 << 20;
/// A reconciliation still running after this is reported as timed out (not an error).
const RECON_TIMEOUT: u64 = 900;

pub async fn run(args: Args) -> anyhow::Result<()> {
    let private = match netns::enter(false, &[("AGENT_LOG", "warn")])? {
        Netns::Done => return Ok(()),
        Netns::Private => true,
        Netns::Host => false,
    };
    let cfg = Cfg::from(args);
    let version = std::process::Command::new("syncthing")
        .arg("--version")
        .output()
        .context("syncthing is not installed (bench/run compare installs it)")?;
    let mut results = Results::new(
        cfg.clone(),
        String::from_utf8_lossy(&version.stdout).trim().to_owned(),
    );
    let started = Instant::now();
    step(&format!("{cfg:?}"));
    tokio::select! {
        r = measure(&cfg, private, &mut results) => r?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; everything started was stopped"),
    }
    results.total_secs = started.elapsed().as_secs_f64();
    step("done");
    results.finish();
    println!("{}", results.markdown());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&dir)?;
    let stem = format!(
        "compare-{}{}",
        results.stamp,
        if cfg.quick { "-quick" } else { "" }
    );
    let json = dir.join(format!("{stem}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(&results.json())?)?;
    let png = dir.join(format!("{stem}.png"));
    chart::draw(&results, &png)?;
    println!("\nwrote {} and {}", json.display(), png.display());
    Ok(())
}

async fn measure(cfg: &Cfg, private: bool, results: &mut Results) -> anyhow::Result<()> {
    let work = tempfile::Builder::new()
        .prefix("can-bench-compare-")
        .tempdir()?;
    let wire = if private { Wire::start() } else { None };
    if wire.is_none() {
        eprintln!(
            "bytes on the wire not measured: needs root (a private network namespace) and nft"
        );
    }
    let wire = wire.as_ref();
    let mut ports = Vec::new();
    let c = client();

    // The same bulk data for both tools.
    let big = Bytes::from(pseudo_random(cfg.size_mib * MIB, 99));
    let big_hash = b3(&big);
    let smalls: Vec<Bytes> = (0..cfg.small_files)
        .map(|i| Bytes::from(pseudo_random(SMALL, 10_000 + i as u64)))
        .collect();
    let bulk_bytes = (big.len() + SMALL * cfg.small_files) as u64;
    results.bulk_bytes = bulk_bytes;

    // --- CAN Sync: bulk mirror, then propagation latency on the same connected pair.
    step("CAN Sync: bulk mirror");
    let mut can = can::Pair::new(&work.path().join("can"));
    for (i, s) in smalls.iter().enumerate() {
        post(&c, &can.a.url, &format!("s{i:04}.bin"), s.clone()).await?;
    }
    post(&c, &can.a.url, "big.bin", big.clone()).await?;
    can.start_agents(&mut ports)?;
    {
        let (aa, ab) = can.agents()?;
        poll(60, 2, "the agents did not connect", || async {
            aa.count("peer_up") + ab.count("peer_up") > 0
        })
        .await?;
    }
    let pids = can.pids()?;
    let watch = Watch::start(&pids, wire, wire::Tool::Can)?;
    let t0 = Instant::now();
    {
        let (_, ab) = can.agents()?;
        let want = cfg.small_files + 1;
        poll(
            600,
            5,
            "the bulk mirror did not finish in 600 s",
            || async { ab.count("asset_received") >= want },
        )
        .await?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let (cpu, peak, wire_bytes) = watch.stop(&pids, wire, wire::Tool::Can)?;
    ensure!(
        has_asset(&c, &can.b.url, &big_hash).await,
        "B does not serve the bulk asset"
    );
    results.can.bulk = Some(Bulk {
        secs,
        wire: wire_bytes,
        cpu_agents: [cpu[0], cpu[1]],
        cpu_services: Some([cpu[2], cpu[3]]),
        peak_rss: [peak[0], peak[1]],
    });

    step("CAN Sync: propagation latency");
    let mut lat = Vec::new();
    for i in 0..cfg.samples {
        let body = Bytes::from(pseudo_random(1024, 1_000_000 + i as u64));
        let hash = b3(&body);
        let start = Instant::now();
        post(&c, &can.a.url, &format!("lat{i}.bin"), body).await?;
        let b_url = can.b.url.clone();
        poll(30, 1, "a 1 KiB asset did not arrive in 30 s", || {
            has_asset(&c, &b_url, &hash)
        })
        .await?;
        lat.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    results.can.latency = Some(Latency::of(lat));

    // --- Syncthing: the same data, pre-scanned at A; B connects; then latency.
    step("Syncthing: scanning the bulk data");
    let mut st = syncthing::Pair::new(&work.path().join("st"), &mut ports)?;
    for (i, s) in smalls.iter().enumerate() {
        syncthing::write_file(&st.a.folder.join(format!("s{i:04}.bin")), s, None)?;
    }
    syncthing::write_file(&st.a.folder.join("big.bin"), &big, None)?;
    st.start(true, 10).await?;
    let scan_secs = 120 + (cfg.size_mib as u64) / 10;
    st.a.wait_scanned(cfg.small_files as u64 + 1, scan_secs)
        .await?;
    st.b.wait_scanned(0, 60).await?;
    step("Syncthing: bulk mirror");
    st.a.resume(&st.b).await?;
    st.b.resume(&st.a).await?;
    poll(90, 5, "the Syncthing instances did not connect", || {
        st.b.connected(&st.a)
    })
    .await?;
    let st_pids = st.pids()?;
    let watch = Watch::start(&st_pids, wire, wire::Tool::Syncthing)?;
    let t0 = Instant::now();
    let mut missing: Vec<(std::path::PathBuf, u64)> = (0..cfg.small_files)
        .map(|i| (st.b.folder.join(format!("s{i:04}.bin")), SMALL as u64))
        .chain([(st.b.folder.join("big.bin"), big.len() as u64)])
        .collect();
    poll(
        600,
        5,
        "Syncthing's bulk mirror did not finish in 600 s",
        || {
            missing.retain(|(p, size)| !syncthing::has_file(p, *size));
            std::future::ready(missing.is_empty())
        },
    )
    .await?;
    let secs = t0.elapsed().as_secs_f64();
    let (cpu, peak, wire_bytes) = watch.stop(&st_pids, wire, wire::Tool::Syncthing)?;
    results.st.bulk = Some(Bulk {
        secs,
        wire: wire_bytes,
        cpu_agents: [cpu[0], cpu[1]],
        cpu_services: None,
        peak_rss: [peak[0], peak[1]],
    });
    drop(big);
    drop(smalls);

    let files = cfg.small_files as u64 + 1;
    st.a.wait_scanned(files, 120).await?;
    st.b.wait_scanned(files, 120).await?;
    step("Syncthing: propagation latency at the default watcher delay (10 s)");
    results.st.latency_slow = Some(st_latency(&st, cfg.slow_samples, "slow", 2_000_000, 60).await?);
    let files = files + cfg.slow_samples as u64;
    for node in [&st.a, &st.b] {
        node.set_watcher_delay(1).await?;
    }
    // The change restarts the folder: let it leave "idle" before waiting for it again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    st.a.wait_scanned(files, 120).await?;
    st.b.wait_scanned(files, 120).await?;
    step("Syncthing: propagation latency at fsWatcherDelayS=1");
    results.st.latency = Some(st_latency(&st, cfg.samples, "fast", 3_000_000, 30).await?);

    // --- Idle: both tools up and synced, nothing to do.
    step(&format!("idle CPU over {} s", cfg.idle_secs));
    let files = files + cfg.samples as u64;
    st.a.wait_scanned(files, 120).await?;
    st.b.wait_scanned(files, 120).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all: Vec<u32> = pids.iter().chain(st_pids.iter()).copied().collect();
    let before = all
        .iter()
        .map(|&p| cpu_seconds(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    tokio::time::sleep(Duration::from_secs(cfg.idle_secs)).await;
    let pct = all
        .iter()
        .zip(&before)
        .map(|(&p, b)| Ok((cpu_seconds(p)? - b) / cfg.idle_secs as f64 * 100.0))
        .collect::<anyhow::Result<Vec<_>>>()?;
    results.can.idle = Some(Idle {
        agents: [pct[0], pct[1]],
        services: Some([pct[2], pct[3]]),
    });
    results.st.idle = Some(Idle {
        agents: [pct[4], pct[5]],
        services: None,
    });
    drop(can);
    st.stop();
    drop(st);
    remove(work.path())?;

    // --- The ceiling: one raw iroh QUIC stream of the same number of bytes.
    step("raw iroh stream");
    let raw_size = (bulk_bytes as usize).div_ceil(MIB) * MIB;
    let raw_secs = crate::sync::raw_iroh(raw_size, None).await?;
    results.raw_iroh = Some((raw_size as u64, raw_secs));

    // --- Initial reconciliation.
    recon_can(
        cfg,
        &work.path().join("can-recon"),
        wire,
        &mut ports,
        results,
    )
    .await?;
    recon_st(
        cfg,
        &work.path().join("st-recon"),
        wire,
        &mut ports,
        results,
    )
    .await?;
    remove(work.path())?;
    Ok(())
}

/// Removes a directory this bench filled (its temp dir would at the end anyway), as soon as
/// it is no longer needed, and says how long that took when it is slow.
fn remove(dir: &Path) -> anyhow::Result<()> {
    let start = Instant::now();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if secs > 2.0 {
        step(&format!("removing {} took {secs:.1} s", dir.display()));
    }
    Ok(())
}

/// Latency samples for Syncthing: a 1 KiB file written into A's folder until it is in B's.
async fn st_latency(
    st: &syncthing::Pair,
    samples: usize,
    tag: &str,
    seed: u64,
    timeout: u64,
) -> anyhow::Result<Latency> {
    let mut lat = Vec::new();
    for i in 0..samples {
        let body = pseudo_random(1024, seed + i as u64);
        let name = format!("lat-{tag}-{i}.bin");
        let target = st.b.folder.join(&name);
        let start = Instant::now();
        syncthing::write_file(&st.a.folder.join(&name), &body, None)?;
        poll(timeout, 1, "a 1 KiB file did not arrive", || {
            std::future::ready(syncthing::has_file(&target, 1024))
        })
        .await?;
        lat.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(Latency::of(lat))
}

/// CPU, peak RSS and wire bytes of a set of processes over one phase.
struct Watch {
    cpu: Vec<f64>,
    wire: Option<u64>,
}

impl Watch {
    fn start(pids: &[u32], wire: Option<&Wire>, tool: wire::Tool) -> anyhow::Result<Watch> {
        for &p in pids {
            reset_peak_rss(p)?;
        }
        Ok(Watch {
            cpu: pids
                .iter()
                .map(|&p| cpu_seconds(p))
                .collect::<anyhow::Result<_>>()?,
            wire: wire.map(|w| w.bytes(tool)).transpose()?,
        })
    }

    /// (CPU seconds, peak RSS bytes) per pid, and wire bytes.
    #[allow(clippy::type_complexity)]
    fn stop(
        self,
        pids: &[u32],
        wire: Option<&Wire>,
        tool: wire::Tool,
    ) -> anyhow::Result<(Vec<f64>, Vec<u64>, Option<u64>)> {
        let cpu = pids
            .iter()
            .zip(&self.cpu)
            .map(|(&p, c0)| Ok(cpu_seconds(p)? - c0))
            .collect::<anyhow::Result<_>>()?;
        let peak = pids
            .iter()
            .map(|&p| peak_rss(p))
            .collect::<anyhow::Result<_>>()?;
        let wire = match (wire, self.wire) {
            (Some(w), Some(b0)) => Some(w.bytes(tool)? - b0),
            _ => None,
        };
        Ok((cpu, peak, wire))
    }
}

/// Waits until the link is quiet (under 4 KB in 500 ms, at most 15 s); returns the count.
async fn quiet(wire: &Wire, tool: wire::Tool) -> anyhow::Result<u64> {
    let mut last = wire.bytes(tool)?;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = wire.bytes(tool)?;
        if now - last < 4096 {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}
