//! `can-bench`: benchmarks that print figures and ratios against a baseline run in the same
//! process tree on the same machine. See bench/README.md.

mod app_idle;
mod chaos;
mod compare;
mod discovery;
mod ingest;
mod netns;
mod proc;
mod scale;
mod scale_live;
mod swarm;
mod sync;
mod util;
mod wan;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "can-bench", about = "CAN Sync benchmarks")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Ingest throughput of one large upload into can-service vs. BLAKE3 + a plain file write.
    Ingest(ingest::Args),
    /// Two agents: propagation latency, bulk mirror vs. raw iroh, agent RSS.
    Sync(sync::Args),
    /// Time from agent start to first peer via pkarr rendezvous and via mDNS.
    Discovery(discovery::Args),
    /// The desktop app's RSS and CPU when idle with one peer, beside a headless agent.
    AppIdle(app_idle::Args),
    /// CAN Sync vs Syncthing vs raw iroh: latency, bulk, reconciliation, memory, CPU.
    Compare(compare::Args),
    /// Reconciliation cost at 10k / 100k / 1M assets (the pure protocol, in-process).
    Scale(scale::Args),
    /// Real stores of 10k / 100k / 1M assets: agent start, RSS with peers, in-sync reconciliation.
    ScaleLive(scale_live::Args),
    /// Seed after seed of the chaos run (kills, crashes, uploads, deletions) for N minutes.
    Chaos(chaos::Args),
    /// One large asset to N devices behind limited uplinks: time and the origin's upload.
    Swarm(swarm::Args),
    /// Per WAN profile (emulated links): CAN Sync vs Syncthing vs raw iroh, resume, restart.
    Wan(wan::Args),
}

/// The engines in this process (sync's built-in mirror) and the raw streams beside them
/// run on the runtime the agent and the app use (`can_sync::runtime`).
fn main() -> anyhow::Result<()> {
    can_sync::runtime::build()?.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    // Logs of the engines that run in this process (sync's built-in mirror), only on request.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    match Cli::parse().bench {
        Bench::Ingest(args) => ingest::run(args).await,
        Bench::Sync(args) => sync::run(args).await,
        Bench::Discovery(args) => discovery::run(args).await,
        Bench::AppIdle(args) => app_idle::run(args).await,
        Bench::Compare(args) => compare::run(args).await,
        Bench::Scale(args) => scale::run(args).await,
        Bench::ScaleLive(args) => scale_live::run(args).await,
        Bench::Chaos(args) => chaos::run(args).await,
        Bench::Wan(args) => wan::run(args).await,
        Bench::Swarm(args) => swarm::run(args).await,
    }
}
