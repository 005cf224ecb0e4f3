//! `bash bench/run wan`: per WAN profile (can_testkit::wan, two sites joined by the emulated
//! link), CAN Sync vs Syncthing vs one raw iroh stream on the same shaped link, in one run:
//! one large asset, many 100 KiB assets, 1 KiB propagation p50/p95, bytes on the wire; for
//! CAN Sync also a resume figure (the large asset again, the link cut at 60 % for 10 s) and
//! restart catch-up (each side's agent killed and started again). Root only. Prints a
//! Markdown table with ratios and writes JSON to bench/results/. See bench/README.md.

mod raw;
mod report;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use can_testkit::wan::{Profile, Testbed};
use can_testkit::{Agent, Service, b3, client, has_asset, partial_received, pseudo_random};
use clap::Args as ClapArgs;

use crate::compare::report::Latency;
use crate::compare::syncthing::{self, Pair};
use crate::util::{poll, post, step};
use report::{ProfileResult, Report};

#[derive(ClapArgs)]
pub struct Args {
    /// Profiles to run, comma-separated [lan,broadband,long-haul,mobile,satellite].
    #[arg(long, value_delimiter = ',')]
    profiles: Vec<String>,
    /// Size of the large asset in MiB [by profile: lan 1024, broadband 512, long-haul 256,
    /// satellite 128, mobile 64, so that each transfer takes about a minute].
    #[arg(long)]
    size_mib: Option<usize>,
    /// Number of 100 KiB assets [1000; mobile 300].
    #[arg(long)]
    small_files: Option<usize>,
    /// 1 KiB propagation samples per tool [10].
    #[arg(long, default_value_t = 10)]
    samples: usize,
    /// CAN Sync and raw iroh only.
    #[arg(long)]
    no_syncthing: bool,
    /// The agents' (and the raw stream's) congestion controller: auto (the product
    /// default), bbr or cubic.
    #[arg(long, default_value = "auto")]
    congestion: String,
    /// A check during development: sizes ÷ 16, 50 small files, 3 samples.
    #[arg(long)]
    quick: bool,
}

const PASS: &str = "bench harbor violet summit cobalt ferry lantern quarry";
const SMALL: usize = 100 * 1024;
const MIB: usize = 1 << 20;
/// The longest any one phase may take before the run fails.
const PHASE_SECS: u64 = 1800;

impl Args {
    /// `--congestion` as the raw stream's transport takes it (the agents get the text).
    fn congestion(&self) -> anyhow::Result<can_sync::config::Congestion> {
        use can_sync::config::Congestion;
        Ok(match self.congestion.as_str() {
            "auto" => Congestion::Auto,
            "bbr" => Congestion::Bbr,
            "cubic" => Congestion::Cubic,
            other => bail!("--congestion {other}: expected auto, bbr or cubic"),
        })
    }

    fn profiles(&self) -> anyhow::Result<Vec<Profile>> {
        if self.profiles.is_empty() {
            return Ok(Profile::ALL.to_vec());
        }
        self.profiles
            .iter()
            .map(|n| Profile::by_name(n).with_context(|| format!("no profile named {n}")))
            .collect()
    }

    fn size(&self, p: &Profile) -> usize {
        let mib = self.size_mib.unwrap_or(match p.name {
            "lan" => 1024,
            "broadband" => 512,
            "long-haul" => 256,
            "satellite" => 128,
            _ => 64,
        });
        if self.quick {
            mib * MIB / 16
        } else {
            mib * MIB
        }
    }

    fn small_files(&self, p: &Profile) -> usize {
        if self.quick {
            return 50;
        }
        self.small_files
            .unwrap_or(if p.name == "mobile" { 300 } else { 1000 })
    }
}

/// One timed transfer: seconds and IP bytes both sites sent meanwhile.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub secs: f64,
    pub wire: u64,
}

/// Times a phase from its creation and counts what both sites send meanwhile.
struct Meter<'a> {
    tb: &'a Testbed,
    start: Instant,
    before: u64,
}

impl<'a> Meter<'a> {
    fn start(tb: &'a Testbed) -> Self {
        Meter {
            tb,
            before: tb.sent_bytes(),
            start: Instant::now(),
        }
    }

    fn stop(self) -> Run {
        Run {
            secs: self.start.elapsed().as_secs_f64(),
            wire: self.tb.sent_bytes() - self.before,
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        Testbed::available(),
        "the WAN testbed needs root, ip(8) and /dev/net/tun"
    );
    if !args.no_syncthing {
        std::process::Command::new("syncthing")
            .arg("--version")
            .output()
            .context("syncthing is not installed (bench/run wan installs it)")?;
    }
    // Checked before the first run, and recorded: the JSON says which controller ran.
    args.congestion()?;
    let mut report = Report::new(&args.congestion);
    let started = Instant::now();
    for p in args.profiles()? {
        step(&format!("profile {}", p.name));
        let r = tokio::select! {
            r = profile(&args, p) => r?,
            _ = tokio::signal::ctrl_c() => bail!("interrupted; everything started was stopped"),
        };
        println!("{}", report::markdown(std::slice::from_ref(&r)));
        report.profiles.push(r);
    }
    report.total_secs = started.elapsed().as_secs_f64();
    println!("{}", report.markdown_all());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("wan-{}.json", report.stamp));
    std::fs::write(&path, serde_json::to_string_pretty(&report.json())?)?;
    println!("JSON: {}", path.display());
    Ok(())
}

async fn profile(args: &Args, p: Profile) -> anyhow::Result<ProfileResult> {
    let tb = Testbed::start(&[p, p]);
    let work = tempfile::Builder::new()
        .prefix("can-bench-wan-")
        .tempdir()?;
    let size = args.size(&p);
    let n = args.small_files(&p);
    let mut r = ProfileResult::new(p, size as u64, n as u64, SMALL as u64);
    let big = Bytes::from(pseudo_random(size, 99));
    let smalls: Vec<Bytes> = (0..n)
        .map(|i| Bytes::from(pseudo_random(SMALL, 10_000 + i as u64)))
        .collect();

    can_sync(&tb, work.path(), args, &big, &smalls, &mut r).await?;
    if !args.no_syncthing {
        syncthing_runs(&tb, work.path(), args, &big, &smalls, &mut r).await?;
    }
    step(&format!(
        "{}: raw iroh stream of {} MiB",
        p.name,
        size / MIB
    ));
    r.raw_big = Some(raw::stream(&tb, size, args.congestion()?).await?);
    Ok(r)
}

/// A site's store and agent (`Testbed::store_and_agent`) with the congestion controller
/// under test.
fn can_site(tb: &Testbed, i: usize, dir: &Path, cc: &str, extra: &str) -> (Service, Agent) {
    tb.store_and_agent(
        i,
        dir,
        PASS,
        &format!("congestion_controller: {cc}\n{extra}"),
    )
}

async fn can_sync(
    tb: &Testbed,
    work: &Path,
    args: &Args,
    big: &Bytes,
    smalls: &[Bytes],
    r: &mut ProfileResult,
) -> anyhow::Result<()> {
    let name = r.profile.name;
    let dir = work.join("can");
    let c = client();
    // The large asset is in A's store before B's agent first starts: timed from B's
    // connection to the asset in B's store (the same start as Syncthing's).
    step(&format!(
        "{name}: CAN Sync, one {} MiB asset",
        big.len() / MIB
    ));
    let (svc_a, mut agent_a) = can_site(tb, 0, &dir, &args.congestion, "");
    post(&c, &svc_a.url, "big.bin", big.clone()).await?;
    let big_hash = b3(big);
    let (svc_b, mut agent_b) = can_site(tb, 1, &dir, &args.congestion, &agent_a.connect_line());
    let run = timed_from_connection(tb, &agent_b, || has_asset(&c, &svc_b.url, &big_hash)).await?;
    r.can_big = Some(run);

    // Many small assets: uploaded to A while B's agent is down, timed from its reconnection.
    step(&format!("{name}: CAN Sync, {} × 100 KiB", smalls.len()));
    agent_b.kill();
    for (i, s) in smalls.iter().enumerate() {
        post(&c, &svc_a.url, &format!("s{i:04}.bin"), s.clone()).await?;
    }
    let want = smalls.len() + 1;
    agent_b.restart();
    let run = timed_from_connection(tb, &agent_b, || async {
        agent_b.count("asset_received") >= want - 1
    })
    .await?;
    r.can_small = Some(run);

    step(&format!("{name}: CAN Sync, 1 KiB propagation"));
    let mut lat = Vec::new();
    for i in 0..args.samples.max(1) {
        let body = Bytes::from(pseudo_random(1024, 1_000_000 + i as u64));
        let hash = b3(&body);
        let start = Instant::now();
        post(&c, &svc_a.url, &format!("lat{i}.bin"), body).await?;
        poll(60, 1, "a 1 KiB asset did not arrive in 60 s", || {
            has_asset(&c, &svc_b.url, &hash)
        })
        .await?;
        lat.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    r.can_latency = Some(Latency::of(lat));

    // Resume: a second large asset uploaded live, uninterrupted, then a third with the link
    // cut at 60 % for 10 s. Both timed from the upload's end.
    for cut in [false, true] {
        let what = if cut {
            "cut at 60 % for 10 s"
        } else {
            "uninterrupted"
        };
        step(&format!(
            "{name}: CAN Sync, a large asset uploaded live, {what}"
        ));
        let body = Bytes::from(pseudo_random(big.len(), if cut { 98 } else { 97 }));
        let hash = b3(&body);
        post(
            &c,
            &svc_a.url,
            if cut { "cut.bin" } else { "live.bin" },
            body,
        )
        .await?;
        let meter = Meter::start(tb);
        if cut {
            let at = big.len() as u64 * 6 / 10;
            poll(PHASE_SECS, 5, "the transfer never reached 60 %", || async {
                partial_received(&c, &svc_b.url, &hash).await >= at
                    || has_asset(&c, &svc_b.url, &hash).await
            })
            .await?;
            tb.cut(1);
            tokio::time::sleep(Duration::from_secs(10)).await;
            tb.restore(1);
        }
        poll(PHASE_SECS, 5, "the large asset never arrived", || {
            has_asset(&c, &svc_b.url, &hash)
        })
        .await?;
        let run = meter.stop();
        if cut {
            r.can_resume = Some(run);
        } else {
            r.can_live = Some(run);
        }
    }

    // Restart catch-up: each agent killed, an asset uploaded on the other side, the agent
    // started again; timed from its engine's start ("ready") to the asset in its store.
    for (side, i) in [("B", 1usize), ("A", 0)] {
        step(&format!("{name}: CAN Sync, restart of {side}"));
        let (agent, svc, other) = if i == 1 {
            (&mut agent_b, &svc_b, &svc_a)
        } else {
            (&mut agent_a, &svc_a, &svc_b)
        };
        agent.kill();
        let body = Bytes::from(format!("uploaded while {side} was down").into_bytes());
        let hash = b3(&body);
        post(&c, &other.url, &format!("restart-{side}.txt"), body).await?;
        agent.restart();
        ensure!(agent.wait_for("ready", 60).await, "{side} did not start");
        let start = Instant::now();
        poll(60, 5, "the restarted agent did not catch up", || {
            has_asset(&c, &svc.url, &hash)
        })
        .await?;
        r.can_restart.push((side, start.elapsed().as_secs_f64()));
    }
    drop((agent_a, agent_b));
    drop((svc_a, svc_b));
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Waits (polling every 5 ms) until `agent` reports a connected peer, then times `done` from
/// there; the bytes are what both sites sent from the connection on.
async fn timed_from_connection<F, Fut>(tb: &Testbed, agent: &Agent, done: F) -> anyhow::Result<Run>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    poll(120, 5, "the agents did not connect", || async {
        agent.count("peer_up") > 0
    })
    .await?;
    let meter = Meter::start(tb);
    poll(PHASE_SECS, 5, "the mirror did not finish", done).await?;
    Ok(meter.stop())
}

async fn syncthing_runs(
    tb: &Testbed,
    work: &Path,
    args: &Args,
    big: &Bytes,
    smalls: &[Bytes],
    r: &mut ProfileResult,
) -> anyhow::Result<()> {
    let name = r.profile.name;
    let mut ports = Vec::new();
    let mut st = Pair::new(&work.join("st"), &mut ports)?;
    for (node, i) in [(&mut st.a, 0), (&mut st.b, 1)] {
        let s = tb.site(i);
        node.place(&s.netns, s.addr, s.veth_addr);
    }
    // As in compare: the data is written and scanned while the devices are paused, and the
    // mirror is timed from their connection.
    step(&format!(
        "{name}: Syncthing, one {} MiB asset",
        big.len() / MIB
    ));
    syncthing::write_file(&st.a.folder.join("big.bin"), big, None)?;
    st.start(true, 1).await?;
    st.a.wait_scanned(1, 300).await?;
    st.b.wait_scanned(0, 60).await?;
    let target = st.b.folder.join("big.bin");
    let run = st_mirror(tb, &st, || syncthing::has_file(&target, big.len() as u64)).await?;
    r.st_big = Some(run);

    step(&format!("{name}: Syncthing, {} × 100 KiB", smalls.len()));
    st.a.set_paused(&st.b, true).await?;
    st.b.set_paused(&st.a, true).await?;
    poll(60, 20, "Syncthing did not pause", || async {
        !st.b.connected(&st.a).await
    })
    .await?;
    for (i, s) in smalls.iter().enumerate() {
        syncthing::write_file(&st.a.folder.join(format!("s{i:04}.bin")), s, None)?;
    }
    st.a.wait_scanned(smalls.len() as u64 + 1, 300).await?;
    let mut missing: Vec<std::path::PathBuf> = (0..smalls.len())
        .map(|i| st.b.folder.join(format!("s{i:04}.bin")))
        .collect();
    let run = st_mirror(tb, &st, || {
        missing.retain(|p| !syncthing::has_file(p, SMALL as u64));
        missing.is_empty()
    })
    .await?;
    r.st_small = Some(run);

    step(&format!(
        "{name}: Syncthing, 1 KiB propagation (fsWatcherDelayS=1)"
    ));
    let files = smalls.len() as u64 + 1;
    st.a.wait_scanned(files, 120).await?;
    st.b.wait_scanned(files, 120).await?;
    let mut lat = Vec::new();
    for i in 0..args.samples.max(1) {
        let body = pseudo_random(1024, 3_000_000 + i as u64);
        let file = format!("lat{i}.bin");
        let target = st.b.folder.join(&file);
        let start = Instant::now();
        syncthing::write_file(&st.a.folder.join(&file), &body, None)?;
        poll(60, 1, "a 1 KiB file did not arrive in 60 s", || {
            std::future::ready(syncthing::has_file(&target, 1024))
        })
        .await?;
        lat.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    r.st_latency = Some(Latency::of(lat));
    st.stop();
    drop(st);
    std::fs::remove_dir_all(work.join("st")).ok();
    Ok(())
}

/// Unpauses both devices, waits for their connection, then times `done` from there.
async fn st_mirror(tb: &Testbed, st: &Pair, mut done: impl FnMut() -> bool) -> anyhow::Result<Run> {
    st.a.resume(&st.b).await?;
    st.b.resume(&st.a).await?;
    poll(120, 5, "the Syncthing instances did not connect", || {
        st.b.connected(&st.a)
    })
    .await?;
    let meter = Meter::start(tb);
    poll(PHASE_SECS, 5, "Syncthing's mirror did not finish", || {
        std::future::ready(done())
    })
    .await?;
    Ok(meter.stop())
}
