//! `can-service`: the reference CAN Service binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use can_service::Config;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// A durable content-addressed asset store over HTTP.
#[derive(Debug, Parser)]
#[command(name = "can-service", version, about)]
struct Cli {
    /// YAML config file (keys: listen, data_dir, sync_api_key, max_asset_bytes,
    /// allowed_origins, allowed_hosts, public_api_key).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Listen address; overrides the config file (port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory; overrides the config file.
    #[arg(long)]
    data_dir: Option<PathBuf>,
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
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    config.validate(cli.config.as_deref())?;

    let mut service = can_service::start(&config)
        .await
        .context("starting can-service")?;
    // One machine-readable line on stdout, for scripts and tests that asked for port 0.
    println!("can-service listening on http://{}", service.local_addr());
    tracing::info!(
        addr = %service.local_addr(),
        data_dir = %config.data_dir.display(),
        sync_api = config.sync_api_key.is_some(),
        public_api_key = config.public_api_key.is_some(),
        "can-service started"
    );
    tokio::select! {
        _ = service.wait() => anyhow::bail!("the HTTP server stopped unexpectedly"),
        _ = shutdown_signal() => {}
    }
    tracing::info!("shutting down");
    service.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
