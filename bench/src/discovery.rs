//! Discovery latency: time from starting an agent (including its Argon2id key derivation)
//! to its first connected peer, found only through the passphrase — via pkarr rendezvous
//! (an in-process pkarr relay on loopback) and via mDNS. Run as root, the bench re-runs
//! itself in a private network namespace (`unshare -n`) with multicast on its loopback, so
//! mDNS can be measured without touching the host's network; otherwise mDNS is skipped.

use std::time::{Duration, Instant};

use anyhow::ensure;
use can_testkit::{Agent, KEY, LocalServers, Service};
use clap::Args as ClapArgs;

use crate::netns::{self, Netns};

#[derive(ClapArgs)]
pub struct Args {
    /// Measurements per method; the median and the maximum are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

const PASS: &str = "bench tidal cobalt ferry summit violet harbor";

pub async fn run(args: Args) -> anyhow::Result<()> {
    let inside = match netns::enter(true, &[])? {
        Netns::Done => return Ok(()),
        Netns::Private => true,
        Netns::Host => false,
    };

    let work = tempfile::tempdir()?;
    let servers = LocalServers::start().await;
    let pkarr_url = servers.pkarr_url();
    let rendezvous = format!("pkarr_relays: [\"{pkarr_url}\"]\nrendezvous_interval_secs: 60\n");
    let mut results = vec![(
        "pkarr rendezvous",
        measure(&work.path().join("rv"), &rendezvous, args.runs).await?,
    )];
    if inside {
        let mdns = "local_discovery: true\n";
        results.push((
            "mDNS (LAN)",
            measure(&work.path().join("mdns"), mdns, args.runs).await?,
        ));
    }
    println!("## Discovery latency: agent start → first connected peer (passphrase only)\n");
    println!("| method | median | max | runs |");
    println!("|---|---|---|---|");
    for (method, mut v) in results {
        v.sort_by(f64::total_cmp);
        println!(
            "| {method} | {:.2} s | {:.2} s | {} |",
            v[v.len() / 2],
            v[v.len() - 1],
            v.len()
        );
    }
    if !inside {
        println!("\nmDNS not measured: run as root (the bench needs a private network namespace).");
    }
    Ok(())
}

/// Starts agent A, lets it announce itself, then times agent B from start to `peer_up`.
async fn measure(
    dir: &std::path::Path,
    discovery_yaml: &str,
    runs: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    for run in 0..runs {
        let d = dir.join(run.to_string());
        let a = Service::with_key(&d.join("svc-a"));
        let b = Service::with_key(&d.join("svc-b"));
        // A fresh passphrase per run: earlier runs' records and peers cannot help.
        let pass = format!("{PASS} {run}");
        let agent_a = Agent::start(&d.join("agent-a"), &a.url, KEY, &pass, discovery_yaml);
        ensure!(
            can_testkit::eventually(30, || agent_a.ticket_path().exists()).await,
            "agent A did not start"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let start = Instant::now();
        let agent_b = Agent::start(&d.join("agent-b"), &b.url, KEY, &pass, discovery_yaml);
        ensure!(
            agent_b.wait_for("peer_up", 120).await,
            "agent B found no peer"
        );
        out.push(start.elapsed().as_secs_f64());
    }
    Ok(out)
}
