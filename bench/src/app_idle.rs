//! The desktop app's idle footprint, as a tray app lives: started hidden (as at login), then
//! its window opened (Peers), then closed to the tray again. In each state, with one peer
//! connected and nothing to sync, CPU and RSS of the app's whole process tree (the app and
//! WebKit's web and network processes) over `--idle-secs`, beside two baselines measured
//! over the same seconds: the peer's headless agent, and Syncthing (one of two instances
//! sharing a folder, its whole tree: the `serve` monitor and its child).
//!
//! Runs headless like the app's tests: a private session bus with GNOME Keyring (the
//! passphrase is put into it first, as the wizard would), Xvfb, an in-process pkarr relay
//! through which the app and the agent find each other with the passphrase alone. The
//! window is opened the way a second launch does it (single instance) and closed the way a
//! window manager's close button does (`WM_DELETE_WINDOW`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use can_sync::Secret;
use can_sync_app::backend::secrets::{Keychain, SecretKind};
use can_sync_app::backend::settings::{Advanced, Settings, StoreSetting};
use can_testkit::desktop::{Keyring, SessionBus, Xvfb};
use can_testkit::window::{close_windows_of, comm, process_tree, webkit_processes};
use can_testkit::{Agent, KEY, LocalServers, Service, eventually, workspace_bin};

use crate::compare::syncthing;
use crate::proc::{ThreadRun, cpu_ns, mib, threads};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds of idleness measured in each state.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
}

const PASS: &str = "lantern quarry velvet orbit thistle copper atlas";
/// Goals (issue #14): window closed, RSS of the whole tree and CPU no more than Syncthing's;
/// window open, CPU.
const GOAL_CLOSED_RSS_MIB: f64 = 80.0;
const GOAL_OPEN_CPU_PCT: f64 = 0.5;

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// RSS of one process, and of that its anonymous part (heap, stacks: what is really its
/// own; the rest is mapped files, mostly shared libraries), in bytes.
fn rss(pid: u32) -> (u64, u64) {
    (
        status_kib(pid, "VmRSS:") * 1024,
        status_kib(pid, "RssAnon:") * 1024,
    )
}

/// CPU and memory of a process tree over one measured interval.
struct Use {
    cpu_pct: f64,
    /// Times a thread of the tree was put on a CPU (its wake-ups), per minute.
    wakeups_per_min: f64,
    rss: u64,
    /// Per process at the end: name, RSS, anonymous RSS.
    parts: Vec<(String, u64, u64)>,
    /// Per thread name over the interval: CPU ms and wake-ups, most wake-ups first.
    threads: Vec<(String, f64, u64)>,
}

impl Use {
    fn cell(&self) -> String {
        format!(
            "{:.3} % · {:.0} wake-ups/min · {:.1} MiB",
            self.cpu_pct,
            self.wakeups_per_min,
            mib(self.rss)
        )
    }

    fn detail(&self) -> String {
        self.parts
            .iter()
            .map(|(n, r, a)| format!("{n} {:.0} ({:.0} anon)", mib(*r), mib(*a)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn busiest_threads(&self, n: usize) -> String {
        self.threads
            .iter()
            .take(n)
            .map(|(name, ms, runs)| format!("{name} {ms:.1} ms / {runs} wake-ups"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A snapshot of a process tree: CPU ns per process (the process clock, so threads that
/// ended count too) and every thread's scheduler figures.
struct Snapshot {
    cpu: Vec<(u32, u64)>,
    threads: Vec<(u32, ThreadRun)>,
}

fn snapshot(root: u32) -> Snapshot {
    let tree = process_tree(root);
    Snapshot {
        cpu: tree
            .iter()
            .filter_map(|&p| cpu_ns(p).map(|c| (p, c)))
            .collect(),
        threads: tree
            .iter()
            .flat_map(|&p| threads(p).into_iter().map(move |t| (p, t)))
            .collect(),
    }
}

/// Measures the trees under `roots` over the same `secs`. CPU counts processes alive at
/// both ends (one that started in between counts from zero); an idle tree keeps its set.
async fn measure(roots: &[u32], secs: u64) -> Vec<Use> {
    let before: Vec<Snapshot> = roots.iter().map(|&r| snapshot(r)).collect();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    roots
        .iter()
        .zip(before)
        .map(|(&root, b)| {
            let after = snapshot(root);
            let cpu_ns: u64 = after
                .cpu
                .iter()
                .map(|(p, c)| {
                    let was = b.cpu.iter().find(|(q, _)| q == p).map_or(0, |(_, c)| *c);
                    c.saturating_sub(was)
                })
                .sum();
            let mut by_name: Vec<(String, f64, u64)> = Vec::new();
            for (p, t) in &after.threads {
                let was = b
                    .threads
                    .iter()
                    .find(|(q, u)| q == p && u.tid == t.tid)
                    .map(|(_, u)| (u.run_ns, u.runs))
                    .unwrap_or((0, 0));
                let ms = t.run_ns.saturating_sub(was.0) as f64 / 1e6;
                let runs = t.runs.saturating_sub(was.1);
                match by_name.iter_mut().find(|(n, _, _)| *n == t.name) {
                    Some(e) => {
                        e.1 += ms;
                        e.2 += runs;
                    }
                    None => by_name.push((t.name.clone(), ms, runs)),
                }
            }
            by_name.sort_by_key(|t| std::cmp::Reverse(t.2));
            let parts: Vec<(String, u64, u64)> = process_tree(root)
                .into_iter()
                .map(|p| {
                    let (r, a) = rss(p);
                    (comm(p), r, a)
                })
                .collect();
            Use {
                cpu_pct: cpu_ns as f64 / 1e9 / elapsed * 100.0,
                wakeups_per_min: by_name.iter().map(|(_, _, r)| *r).sum::<u64>() as f64 * 60.0
                    / elapsed,
                rss: parts.iter().map(|(_, r, _)| r).sum(),
                parts,
                threads: by_name,
            }
        })
        .collect()
}

/// Kills the app on the way out, whatever happens.
struct App(Child);
impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

    // Syncthing, two instances sharing a folder, connected.
    eprintln!("starting Syncthing (two instances, one shared folder)…");
    let mut ports = Vec::new();
    let mut st = syncthing::Pair::new(&dir.path().join("st"), &mut ports)?;
    st.start(false, 10).await?;
    ensure!(
        can_testkit::eventually_async(90, || st.b.connected(&st.a)).await,
        "the Syncthing instances did not connect"
    );

    let peer_svc = Service::with_key(&dir.path().join("peer-svc"));
    let peer = Agent::start(
        &dir.path().join("peer-agent"),
        &peer_svc.url(""),
        KEY,
        PASS,
        &format!("device_name: Peer\npkarr_relays: [\"{pkarr}\"]\nrendezvous_interval_secs: 5\n"),
    );

    let launch = |extra: &[&str]| {
        Command::new(workspace_bin("can-sync-app"))
            .args(extra)
            .envs(env.iter().cloned())
            .env("DISPLAY", &x.display)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start can-sync-app")
    };
    eprintln!("starting the app hidden (as at login)…");
    let app = App(launch(&["--hidden"])?);
    let pid = app.0.id();
    let started = Instant::now();
    ensure!(
        peer.wait_for("peer_up", 120).await,
        "the app never connected to the peer"
    );
    let connected = started.elapsed();
    // Let start-up settle (first reconciliation) before measuring.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let roots = [pid, peer.pid(), st.a.monitor_pid()?];
    let idle = args.idle_secs;

    eprintln!("measuring: started hidden, window never opened ({idle} s)…");
    let hidden = measure(&roots, idle).await;

    eprintln!("opening the window (a second launch hands over to the first)…");
    let mut second = launch(&[])?;
    ensure!(
        eventually(30, || matches!(second.try_wait(), Ok(Some(_)))).await,
        "the second launch did not exit"
    );
    ensure!(
        eventually(60, || webkit_processes(pid).len() >= 2).await,
        "the window's WebKit processes did not start"
    );
    // WebKit's first paint, the UI's first status.
    tokio::time::sleep(Duration::from_secs(10)).await;
    eprintln!("measuring: window open on Peers ({idle} s)…");
    let open = measure(&roots, idle).await;

    eprintln!("closing the window (WM_DELETE_WINDOW, as a close button)…");
    ensure!(close_windows_of(&x.display, pid) == 1, "no window to close");
    let closed_at = Instant::now();
    ensure!(
        eventually(60, || webkit_processes(pid).is_empty()).await,
        "WebKit processes still there a minute after closing: {:?}",
        webkit_processes(pid)
    );
    let webkit_gone = closed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    eprintln!("measuring: window closed to the tray ({idle} s)…");
    let closed = measure(&roots, idle).await;

    println!(
        "\napp idle footprint, {idle} s idle with one peer in each state (app connected {:.1} s after launch)\n",
        connected.as_secs_f64()
    );
    println!(
        "| state | CAN Sync app, whole tree: CPU · RSS | headless agent | Syncthing (monitor + serve) | goal | met? |"
    );
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, u: &[Use], goal: &str, met: &str| {
        println!(
            "| {name} | {} | {} | {} | {goal} | {met} |",
            u[0].cell(),
            u[1].cell(),
            u[2].cell()
        );
    };
    row("started hidden, never opened", &hidden, "", "");
    let open_ok = open[0].cpu_pct < GOAL_OPEN_CPU_PCT;
    row(
        "window open (Peers)",
        &open,
        &format!("CPU < {GOAL_OPEN_CPU_PCT} %"),
        if open_ok { "yes" } else { "**no**" },
    );
    let rss_ok = mib(closed[0].rss) < GOAL_CLOSED_RSS_MIB;
    let cpu_ok = closed[0].cpu_pct <= closed[2].cpu_pct;
    row(
        "window closed to the tray",
        &closed,
        &format!("RSS < {GOAL_CLOSED_RSS_MIB:.0} MiB, CPU ≤ Syncthing's"),
        &format!(
            "RSS {}, CPU {}",
            if rss_ok { "yes" } else { "**no**" },
            if cpu_ok { "yes" } else { "**no**" }
        ),
    );
    println!("\nProcesses at the end of each state, RSS in MiB (anonymous part in brackets):\n");
    for (name, u) in [
        ("started hidden", &hidden),
        ("window open", &open),
        ("window closed", &closed),
    ] {
        println!(
            "- {name}: app tree: {}; Syncthing: {}",
            u[0].detail(),
            u[2].detail()
        );
    }
    println!("\nThreads with the most wake-ups, window closed (CPU over the interval):\n");
    for (name, u) in [
        ("CAN Sync app", &closed[0]),
        ("headless agent", &closed[1]),
        ("Syncthing", &closed[2]),
    ] {
        println!("- {name}: {}", u.busiest_threads(8));
    }
    println!(
        "\nWebKit's processes were gone {:.1} s after the window closed (the network process is ended after a grace period, src-tauri/src/window.rs).",
        webkit_gone.as_secs_f64()
    );
    println!(
        "CPU is each process's CPU clock (clock_getcpuclockid, nanoseconds) over the {idle} s; wake-ups are the times a thread was put on a CPU (schedstat)."
    );
    drop(app);
    st.stop();
    Ok(())
}
