//! The desktop app's idle footprint: the real app (release build, window open, built-in
//! store) connected to one peer, then left alone for `--idle-secs`. Reports RSS and CPU of
//! the app's whole process tree (the app + WebKit's web and network processes) beside the
//! headless agent of the peer over the same seconds, as the baseline.
//!
//! Runs headless like the app's tests: a private session bus with GNOME Keyring (the
//! passphrase is put into it first, as the wizard would), Xvfb, an in-process pkarr relay
//! through which the two find each other with the passphrase alone.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use can_sync::Secret;
use can_sync_app::backend::secrets::{Keychain, SecretKind};
use can_sync_app::backend::settings::{Advanced, Settings, StoreSetting};
use can_testkit::desktop::{Keyring, SessionBus, Xvfb};
use can_testkit::{Agent, KEY, LocalServers, Service, workspace_bin};

use crate::proc::{current_rss, mib, peak_rss};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds of idleness measured after the peer is connected.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
}

const PASS: &str = "lantern quarry velvet orbit thistle copper atlas";

/// Clock ticks per second for /proc/<pid>/stat (the Linux default; sysconf would say).
const TICKS: f64 = 100.0;

fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may contain spaces) start after ") ".
    let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line: 12 and 13 here.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `root` and all its descendants.
fn tree(root: u32) -> Vec<u32> {
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(all.iter().copied().filter(|&c| parent(c) == Some(p)));
        i += 1;
    }
    out
}

fn name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let bus = SessionBus::start();
    for (k, v) in bus.env() {
        // SAFETY: set before any thread of ours reads the environment for D-Bus.
        unsafe { std::env::set_var(k, v) };
    }
    let _keyring = Keyring::start(&bus);
    let x = Xvfb::start();
    let servers = LocalServers::start().await;
    let pkarr = servers.pkarr_url();
    let dir = tempfile::tempdir()?;

    // The app, set up as the wizard leaves it: passphrase in the keychain, settings on disk.
    Keychain::new(can_sync_app::APP_ID)
        .set(SecretKind::Passphrase, &Secret::new(PASS))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let env = bus.env();
    let config_home = env
        .iter()
        .find(|(k, _)| k == "XDG_CONFIG_HOME")
        .map(|(_, v)| PathBuf::from(v))
        .context("XDG_CONFIG_HOME")?;
    Settings {
        setup_complete: true,
        store: Some(StoreSetting::Builtin),
        device_name: "Desk".into(),
        advanced: Advanced {
            relay_urls: Some(vec![]),
            pkarr_relays: Some(vec![pkarr.clone()]),
            local_discovery: Some(false),
            builtin_listen: Some("127.0.0.1:0".into()),
            bind_addr: Some("127.0.0.1:0".into()),
        },
        ..Settings::default()
    }
    .save(&config_home.join(can_sync_app::APP_ID))
    .map_err(|e| anyhow::anyhow!("{e}"))?;

    let peer_svc = Service::with_key(&dir.path().join("peer-svc"));
    let peer = Agent::start(
        &dir.path().join("peer-agent"),
        &peer_svc.url(""),
        KEY,
        PASS,
        &format!("device_name: Peer\npkarr_relays: [\"{pkarr}\"]\nrendezvous_interval_secs: 5\n"),
    );

    let mut app = Command::new(workspace_bin("can-sync-app"))
        .envs(env.iter().cloned())
        .env("DISPLAY", &x.display)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start can-sync-app")?;
    let started = Instant::now();
    anyhow::ensure!(
        peer.wait_for("peer_up", 120).await,
        "the app never connected to the peer"
    );
    let connected = started.elapsed();
    // Let start-up settle (first reconciliation, WebKit's first paint) before measuring.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let app_tree = tree(app.id());
    let ticks0: u64 = app_tree.iter().map(|&p| cpu_ticks(p)).sum();
    let agent0 = cpu_ticks(peer.pid());
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let secs = t0.elapsed().as_secs_f64();
    let app_tree = tree(app.id());
    let ticks1: u64 = app_tree.iter().map(|&p| cpu_ticks(p)).sum();
    let agent1 = cpu_ticks(peer.pid());

    let app_cpu = (ticks1.saturating_sub(ticks0)) as f64 / TICKS / secs * 100.0;
    let agent_cpu = (agent1.saturating_sub(agent0)) as f64 / TICKS / secs * 100.0;
    let app_rss: u64 = current_rss(app.id())?;
    let tree_rss: u64 = app_tree.iter().filter_map(|&p| current_rss(p).ok()).sum();
    let agent_rss = current_rss(peer.pid())?;
    println!(
        "\napp idle footprint, {:.0} s idle with one peer (connected {:.1} s after launch)\n",
        secs,
        connected.as_secs_f64()
    );
    println!("| measure | CAN Sync app | headless agent (baseline) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| CPU, % of one core | {app_cpu:.2} % (whole tree) | {agent_cpu:.2} % | {:.1} |",
        if agent_cpu > 0.0 {
            app_cpu / agent_cpu
        } else {
            f64::NAN
        }
    );
    println!(
        "| RSS, app process | {:.1} MiB (peak {:.1}) | {:.1} MiB (peak {:.1}) | {:.1} |",
        mib(app_rss),
        mib(peak_rss(app.id())?),
        mib(agent_rss),
        mib(peak_rss(peer.pid())?),
        app_rss as f64 / agent_rss as f64
    );
    let parts: Vec<String> = app_tree
        .iter()
        .map(|&p| format!("{} {:.0} MiB", name(p), mib(current_rss(p).unwrap_or(0))))
        .collect();
    println!(
        "| RSS, app + WebKit processes | {:.1} MiB ({}) | | |",
        mib(tree_rss),
        parts.join(", ")
    );
    let _ = app.kill();
    let _ = app.wait();
    Ok(())
}
