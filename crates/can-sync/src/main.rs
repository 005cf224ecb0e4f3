//! `can-sync config.yaml`: the headless agent.
//!
//! Human-readable logs go to stderr; every engine event is also printed to stdout as one
//! JSON object per line, for scripts and tests.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use can_sync::{Engine, EngineConfig, keys};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Keeps this machine's CAN Service mirrored with every peer that shares the passphrase.
#[derive(Debug, Parser)]
#[command(name = "can-sync", version, about)]
struct Cli {
    /// The agent's YAML config (can_service_url, sync_api_key, sync_passphrase, ...).
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let config = EngineConfig::load(&cli.config)?;
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
    println!(
        "{}",
        serde_json::json!({"event": "ready", "endpoint_id": engine.endpoint_id(), "ticket": engine.ticket()})
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
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
