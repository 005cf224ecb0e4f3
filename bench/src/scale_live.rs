//! Scale, live: real stores of 10k / 100k / 1M assets, a real agent on each, and what they
//! cost — start-up, memory with peers, an in-sync reconciliation, the store's listing.
//!
//! Per N: one store is seeded through the library (`Store::seed_blocking`: one sync(2) and
//! one transaction, not an fsync per asset) and copied for every site (content files hard
//! linked, the index copied: stores never write content in place). Site A's service and
//! agent start alone: "start" is agent spawn until its `store_online` event (it has listed
//! the whole store through the sync API). Then `--peers` more sites start and dial A's
//! ticket; each connection's first reconciliation finds the sets equal. Memory is VmRSS from
//! /proc, measured, not estimated.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use can_testkit::{Agent, KEY, Service};
use clap::Args as ClapArgs;

use crate::proc::{current_rss, mib};
use crate::util::step;

// Eight words: strong enough that the agents do not warn about it.
const PASS: &str = "bench scale meadow copper lantern violet quarry summit";

#[derive(ClapArgs)]
pub struct Args {
    /// Assets per store, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<usize>,
    /// Peers connected to site A (each with its own store and agent).
    #[arg(long, default_value_t = 4)]
    peers: usize,
    /// Where stores are seeded (needs about 4.5 KB of disk per asset, content hard linked
    /// across sites); default: a temporary directory.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// One row of the table.
struct Row {
    n: usize,
    seed: Duration,
    service_start: Duration,
    /// The same store started with no clean-stop marker: the crash-repair scan runs.
    service_start_scan: Duration,
    agent_listed: Duration,
    rss_started: u64,
    rss_peers: u64,
    service_rss: u64,
    reconcile: Vec<Duration>,
    /// From `peer_up` alone (includes the peer's own store listing when that came later).
    reconcile_from_up: Vec<Duration>,
    reconcile_bytes: Vec<u64>,
    turns: u32,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &n in &args.sizes {
        let tmp = match &args.dir {
            Some(d) => tempfile::tempdir_in(d)?,
            None => tempfile::tempdir()?,
        };
        rows.push(one(tmp.path(), n, args.peers).await?);
        print_rows(&rows, args.peers);
    }
    Ok(())
}

async fn one(dir: &Path, n: usize, peers: usize) -> anyhow::Result<Row> {
    step(&format!("N = {n}: seeding the store through the library"));
    let base = dir.join("base");
    let t = Instant::now();
    {
        let store = can_service::Store::open(&base, u64::MAX, Some(0))?;
        let added = tokio::task::block_in_place(|| {
            store.seed_blocking((0..n).map(|i| {
                (
                    format!("scale-{i}.bin"),
                    format!("scale asset {i}").into_bytes(),
                )
            }))
        })?;
        ensure!(added == n, "seeded {added} of {n}");
    }
    let seed = t.elapsed();
    // Seeding closed the store cleanly, so the copies hold its clean-stop marker.
    for i in 0..=peers {
        copy_store(&base, &dir.join(format!("site-{i}")).join("data"))?;
    }

    step("site A: service, then agent alone");
    let t = Instant::now();
    let svc_a = Service::with_key(&dir.join("site-0"));
    let service_start = t.elapsed();
    let t = Instant::now();
    let agent_a = Agent::start(&dir.join("agent-0"), &svc_a.url, KEY, PASS, "");
    ensure!(
        agent_a.wait_for("store_online", 600).await,
        "agent A did not list its store within 600 s"
    );
    let agent_listed = t.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_started = current_rss(agent_a.pid())?;

    step(&format!(
        "{peers} peers dial A; every store holds the same {n} assets"
    ));
    let mut services = Vec::new();
    let mut agents = Vec::new();
    for i in 1..=peers {
        services.push(Service::with_key(&dir.join(format!("site-{i}"))));
    }
    for (i, svc) in services.iter().enumerate() {
        agents.push(Agent::start(
            &dir.join(format!("agent-{}", i + 1)),
            &svc.url,
            KEY,
            PASS,
            &format!("connect_ticket_file: {}\n", agent_a.ticket_path().display()),
        ));
    }
    // Each peer's first reconciliation, timed from when it is both connected to A and has
    // listed its own store (its `peer_up` and `store_online` events, whichever is later:
    // the peers start at once, and their own listing is "agent start" above, not
    // reconciliation) to its `reconciled` event; also from `peer_up` alone. Events are
    // polled every 10 ms: the figures are good to about that.
    let mut up: Vec<Option<Instant>> = vec![None; peers];
    let mut listed: Vec<Option<Instant>> = vec![None; peers];
    let mut from_up: Vec<Duration> = vec![Duration::ZERO; peers];
    let mut done: Vec<Option<(Duration, u64, u32, usize)>> = vec![None; peers];
    let deadline = Instant::now() + Duration::from_secs(600);
    while done.iter().any(Option::is_none) {
        ensure!(
            Instant::now() < deadline,
            "the peers did not reconcile with A within 600 s"
        );
        for (i, a) in agents.iter().enumerate() {
            let events = a.events();
            if up[i].is_none() && events.iter().any(|e| e["event"] == "peer_up") {
                up[i] = Some(Instant::now());
            }
            if listed[i].is_none() && events.iter().any(|e| e["event"] == "store_online") {
                listed[i] = Some(Instant::now());
            }
            if let (Some(t_up), Some(t_listed), None) = (up[i], listed[i], done[i])
                && let Some(e) = events.iter().find(|e| e["event"] == "reconciled")
            {
                let t0 = t_up.max(t_listed);
                from_up[i] = t_up.elapsed();
                let bytes = e["bytes_sent"].as_u64().unwrap_or(0)
                    + e["bytes_received"].as_u64().unwrap_or(0);
                let turns = e["turns"].as_u64().unwrap_or(0) as u32;
                let missing = e["missing_here"].as_u64().unwrap_or(0) as usize
                    + e["missing_there"].as_u64().unwrap_or(0) as usize;
                done[i] = Some((t0.elapsed(), bytes, turns, missing));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held = agent_a.status()["peers"].as_array().map_or(0, |p| p.len());
    ensure!(held == peers, "A holds {held} peers, not {peers}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_peers = current_rss(agent_a.pid())?;
    let service_rss = current_rss(svc_a.pid())?;
    let done: Vec<_> = done.into_iter().flatten().collect();
    ensure!(
        done.iter().all(|d| d.3 == 0),
        "a reconciliation found differences between equal stores"
    );
    drop(agents);
    drop(agent_a);
    drop(services);
    drop(svc_a);

    // Last, so that its reads of every file do not slow the figures above.
    step("a service on a copy without the clean-stop marker: the start after a crash");
    let crashed = dir.join("crashed");
    copy_store(&base, &crashed.join("data"))?;
    std::fs::remove_file(crashed.join("data").join("clean-stop"))
        .context("the seeded store left no clean-stop marker")?;
    let t = Instant::now();
    drop(Service::with_key(&crashed));
    let service_start_scan = t.elapsed();
    std::fs::remove_dir_all(&crashed)?;
    Ok(Row {
        n,
        seed,
        service_start,
        service_start_scan,
        agent_listed,
        rss_started,
        rss_peers,
        service_rss,
        reconcile: done.iter().map(|d| d.0).collect(),
        reconcile_from_up: from_up,
        reconcile_bytes: done.iter().map(|d| d.1).collect(),
        turns: done.iter().map(|d| d.2).max().unwrap_or(0),
    })
}

/// A copy of the store in `from` at `to`: content files hard linked (never written in place),
/// everything else copied.
fn copy_store(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let link = name == "objects";
        let status = std::process::Command::new("cp")
            .arg(if link { "-al" } else { "-a" })
            .arg(entry.path())
            .arg(to.join(&name))
            .status()
            .context("cp")?;
        ensure!(status.success(), "copying {:?} failed", entry.path());
    }
    Ok(())
}

fn print_rows(rows: &[Row], peers: usize) {
    let secs = |d: &Duration| format!("{:.2} s", d.as_secs_f64());
    println!(
        "\n| assets | seed (library) | service start (clean stop / after a crash) | agent start → store listed | agent RSS after start | agent RSS, {peers} peers in sync | service RSS | in-sync reconciliation (max of {peers}) | peer_up → reconciled (max) | bytes (both ways, max) | turns |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let worst = r.reconcile.iter().max().copied().unwrap_or_default();
        let bytes = r.reconcile_bytes.iter().max().copied().unwrap_or(0);
        let from_up = r
            .reconcile_from_up
            .iter()
            .max()
            .copied()
            .unwrap_or_default();
        println!(
            "| {} | {} | {} / {} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} | {} | {} B | {} |",
            r.n,
            secs(&r.seed),
            secs(&r.service_start),
            secs(&r.service_start_scan),
            secs(&r.agent_listed),
            mib(r.rss_started),
            mib(r.rss_peers),
            mib(r.service_rss),
            secs(&worst),
            secs(&from_up),
            bytes,
            r.turns,
        );
    }
    if let Some(r) = rows.iter().find(|r| r.n >= 1_000_000) {
        let worst = r.reconcile.iter().max().copied().unwrap_or_default();
        println!(
            "\nGoals at 1M: agent RSS with {peers} peers < 300 MiB: {:.0} MiB ({}); start < 10 s: {:.1} s ({}); in-sync reconciliation < 2 s: {:.2} s ({})",
            mib(r.rss_peers),
            ok(mib(r.rss_peers) < 300.0),
            r.agent_listed.as_secs_f64(),
            ok(r.agent_listed < Duration::from_secs(10)),
            worst.as_secs_f64(),
            ok(worst < Duration::from_secs(2)),
        );
    }
}

fn ok(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}
