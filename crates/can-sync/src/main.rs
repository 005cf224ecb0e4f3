//! `can-sync config.yaml`: the headless agent; `can-sync status|pause|resume`: ask it.
//!
//! Human-readable logs go to stderr; every engine event is also printed to stdout as one
//! JSON object per line, for scripts and tests.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use can_sync::agent::{metrics, report, socket};
use can_sync::{AgentConfig, Engine, config, keys};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Keeps this machine's CAN Service mirrored with every peer that shares the passphrase.
#[derive(Debug, Parser)]
#[command(
    name = "can-sync",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Run the agent with this YAML config (can_service_url, sync_api_key,
    /// sync_passphrase, ...).
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the running agent's state, peers and counts.
    Status {
        /// Print the engine's status as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Pause sync: no transfer starts in either direction until `resume` (or a restart).
    Pause {
        #[command(flatten)]
        target: Target,
    },
    /// Resume sync.
    Resume {
        #[command(flatten)]
        target: Target,
    },
    /// Answer deletions from peers held by the mass-deletion guard (status shows them).
    Deletions {
        #[command(subcommand)]
        action: DeletionAction,
    },
}

#[derive(Debug, Subcommand)]
enum DeletionAction {
    /// Carry them out: the assets go to this store's trash.
    Apply {
        #[command(flatten)]
        target: Target,
    },
    /// Keep this store's assets: the deletions are undone on every device.
    Keep {
        #[command(flatten)]
        target: Target,
    },
}

/// Which agent to ask: by default the one using the default data directory.
#[derive(Debug, clap::Args)]
struct Target {
    /// The agent's config file (its `control_socket`, else `<data_dir>/control.sock`).
    #[arg(long, short, conflicts_with = "socket")]
    config: Option<PathBuf>,
    /// The control socket itself.
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl Target {
    fn socket(&self) -> anyhow::Result<PathBuf> {
        Ok(match (&self.socket, &self.config) {
            (Some(path), _) => path.clone(),
            (None, Some(file)) => AgentConfig::load(file)?.control_socket,
            (None, None) => config::default_control_socket(&config::default_data_dir()),
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = can_sync::runtime::build().context("starting the runtime")?;
    match (cli.command, cli.config) {
        (Some(command), _) => runtime.block_on(ask(command)),
        (None, Some(config)) => runtime.block_on(run(config)),
        (None, None) => {
            anyhow::bail!(
                "give the agent's config file (can-sync config.yaml), or a command: status, pause, resume, deletions (see --help)"
            )
        }
    }
}

/// `can-sync status|pause|resume`: one request to the running agent.
async fn ask(command: Command) -> anyhow::Result<()> {
    let (request, target, json) = match command {
        Command::Status { json, target } => (socket::Request::Status, target, json),
        Command::Pause { target } => (socket::Request::Pause, target, false),
        Command::Resume { target } => (socket::Request::Resume, target, false),
        Command::Deletions {
            action: DeletionAction::Apply { target },
        } => (socket::Request::ApplyDeletions, target, false),
        Command::Deletions {
            action: DeletionAction::Keep { target },
        } => (socket::Request::KeepDeletions, target, false),
    };
    let path = target.socket()?;
    let answer = socket::request(&path, request).await?;
    if !answer.ok {
        anyhow::bail!(
            "the agent refused: {}",
            answer.error.as_deref().unwrap_or("no reason given")
        );
    }
    match request {
        socket::Request::Status => {
            let status = answer.status.unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                let status: can_sync::Status =
                    serde_json::from_value(status).context("the agent's status is not readable")?;
                print!("{}", report::render(&status));
            }
        }
        socket::Request::Pause => println!("paused"),
        socket::Request::Resume => println!("resumed"),
        socket::Request::ApplyDeletions => {
            println!("applied {} held deletions", answer.released.unwrap_or(0))
        }
        socket::Request::KeepDeletions => {
            println!(
                "kept {} assets (their deletions are undone everywhere)",
                answer.released.unwrap_or(0)
            )
        }
    }
    Ok(())
}

async fn run(config_path: PathBuf) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let agent = AgentConfig::load(&config_path)?;
    let config = agent.engine;
    let bits = keys::strength_bits(config.passphrase.expose());
    if bits < keys::RECOMMENDED_BITS {
        tracing::warn!(
            estimated_bits = bits.round(),
            recommended = keys::RECOMMENDED_BITS,
            "the sync passphrase is weak: anyone who guesses it can join; use 7 or more random words"
        );
    }
    let engine = Engine::start(config)
        .await
        .context("starting the sync engine")?;
    let mut events = engine.subscribe();
    let printer = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Ok(line) = serde_json::to_string(&event) {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "{line}");
                        let _ = out.flush();
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "event printer fell behind");
                }
                Err(_) => return,
            }
        }
    });
    // Without its control socket the agent still syncs; it just cannot be asked.
    let control = match socket::bind(&agent.control_socket, engine.handle()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "control socket unavailable: can-sync status/pause/resume cannot reach this agent");
            None
        }
    };
    let metrics = match agent.metrics_addr {
        Some(addr) => Some(
            metrics::serve(addr, engine.handle())
                .await
                .with_context(|| format!("serving metrics on {addr}"))?,
        ),
        None => None,
    };
    println!(
        "{}",
        serde_json::json!({
            "event": "ready",
            "endpoint_id": engine.endpoint_id(),
            "ticket": engine.ticket(),
            "control_socket": control.as_ref().map(|s| s.path().display().to_string()),
            "metrics_addr": metrics.as_ref().map(|m| m.addr.to_string()),
        })
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    drop(control);
    drop(metrics);
    engine.shutdown().await;
    printer.abort();
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
