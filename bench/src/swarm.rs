//! Swarm: one large asset added on one of N devices, every device behind the same uplink
//! (the agents' `upload_limit`, with `limit_lan`, so loopback is limited too). Measured:
//! the time until every other device holds it, and what the origin uploaded, against one
//! transfer (the same asset, origin → one device, same limit) run first in the same
//! process tree; optionally the same mesh with `swarm_transfers: false`, where every
//! receiver fetches the whole asset from the origin.
//!
//! Goal (issue #16): with 8 devices and 1 GiB, the origin uploads ≤ 2 GiB and the last
//! device has it within 2× one transfer.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::ensure;
use can_testkit::{Agent, KEY, Service, b3, client, has_asset, pseudo_random, upload};
use clap::Args as ClapArgs;

use crate::util::step;

const PASS: &str = "bench swarm meadow copper lantern violet quarry summit";

#[derive(ClapArgs)]
pub struct Args {
    /// Devices in the mesh (one origin, the rest receive).
    #[arg(long, default_value_t = 8)]
    devices: usize,
    /// The asset's size in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: usize,
    /// Every device's upload limit in MB/s.
    #[arg(long, default_value_t = 20)]
    uplink_mbs: u64,
    /// Also run the mesh with swarm transfers off.
    #[arg(long)]
    without_swarm: bool,
    /// Where the stores live; default: a temporary directory.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

struct Run {
    what: String,
    devices: usize,
    secs: f64,
    origin_sent: u64,
    others_sent: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let size = args.size_mib << 20;
    step(&format!("{} MiB of test content", args.size_mib));
    let body = pseudo_random(size, 2026);
    let mut runs = Vec::new();
    let tmp = |name: &str| -> anyhow::Result<tempfile::TempDir> {
        Ok(match &args.dir {
            Some(d) => tempfile::Builder::new().prefix(name).tempdir_in(d)?,
            None => tempfile::Builder::new().prefix(name).tempdir()?,
        })
    };
    step("one transfer: origin → one device");
    runs.push(mesh(tmp("one")?.path(), 2, &args, &body, true, "one transfer").await?);
    print(&runs, size);
    step(&format!("{} devices, swarm transfers", args.devices));
    runs.push(
        mesh(
            tmp("swarm")?.path(),
            args.devices,
            &args,
            &body,
            true,
            "swarm",
        )
        .await?,
    );
    print(&runs, size);
    if args.without_swarm {
        step(&format!("{} devices, swarm transfers off", args.devices));
        let r = mesh(
            tmp("whole")?.path(),
            args.devices,
            &args,
            &body,
            false,
            "no swarm",
        )
        .await?;
        runs.push(r);
        print(&runs, size);
    }
    let (one, swarm) = (&runs[0], &runs[1]);
    let ratio = swarm.secs / one.secs;
    let copies = swarm.origin_sent as f64 / size as f64;
    println!(
        "\nGoal ({} devices): origin uploads ≤ 2 copies: {copies:.2} ({}); last device within 2× one transfer: {ratio:.2}× ({})",
        args.devices,
        ok(copies <= 2.0),
        ok(ratio <= 2.0)
    );
    Ok(())
}

async fn mesh(
    dir: &Path,
    devices: usize,
    args: &Args,
    body: &[u8],
    swarm: bool,
    what: &str,
) -> anyhow::Result<Run> {
    let c = client();
    let mut services = Vec::new();
    let mut agents: Vec<Agent> = Vec::new();
    for i in 0..devices {
        services.push(Service::with_key(&dir.join(format!("site-{i}"))));
        let mut extra = format!(
            "device_name: device-{i}\nupload_limit: {} MB/s\nlimit_lan: true\nswarm_transfers: {swarm}\n",
            args.uplink_mbs
        );
        if i > 0 {
            let tickets: Vec<String> = agents
                .iter()
                .map(|a| a.ticket_path().display().to_string())
                .collect();
            extra.push_str(&format!("connect_ticket_file: [{}]\n", tickets.join(", ")));
        }
        agents.push(Agent::start(
            &dir.join(format!("agent-{i}")),
            &services[i].url,
            KEY,
            PASS,
            &extra,
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !agents.iter().all(|a| a.peer_count() == devices - 1) {
        ensure!(Instant::now() < deadline, "the mesh never formed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hash = b3(body);
    let started = Instant::now();
    let (status, _) = upload(&c, &services[0], "swarm.bin", body.to_vec()).await;
    ensure!(status == 201, "upload answered {status}");
    let mut waiting: Vec<usize> = (1..devices).collect();
    let deadline = Instant::now() + Duration::from_secs(3600);
    while !waiting.is_empty() {
        ensure!(Instant::now() < deadline, "not everywhere within an hour");
        let mut still = Vec::new();
        for &i in &waiting {
            if !has_asset(&c, &services[i].url, &hash).await {
                still.push(i);
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // The last acknowledgements settle the counters.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = |a: &Agent| a.status()["transfer_bytes_sent"].as_u64().unwrap_or(0);
    Ok(Run {
        what: what.to_owned(),
        devices,
        secs,
        origin_sent: sent(&agents[0]),
        others_sent: agents[1..].iter().map(sent).sum(),
    })
}

fn print(runs: &[Run], size: usize) {
    let one = runs[0].secs;
    println!(
        "\n| run | devices | last device has it | × one transfer | origin uploaded | others uploaded |"
    );
    println!("|---|---|---|---|---|---|");
    for r in runs {
        println!(
            "| {} | {} | {:.1} s | {:.2}× | {:.2} GiB ({:.2} copies) | {:.2} GiB |",
            r.what,
            r.devices,
            r.secs,
            r.secs / one,
            r.origin_sent as f64 / (1u64 << 30) as f64,
            r.origin_sent as f64 / size as f64,
            r.others_sent as f64 / (1u64 << 30) as f64,
        );
    }
}

fn ok(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}
