//! The figures of one compare run: a Markdown table with ratios, and JSON.

use serde_json::{Value, json};

use super::Cfg;

/// Propagation latencies in milliseconds.
pub struct Latency {
    pub samples: Vec<f64>,
}

impl Latency {
    pub fn of(mut samples: Vec<f64>) -> Latency {
        samples.sort_by(f64::total_cmp);
        Latency { samples }
    }

    pub fn p50(&self) -> f64 {
        self.samples[self.samples.len() / 2]
    }

    /// Nearest rank: with fewer than 20 samples this is the maximum.
    pub fn p95(&self) -> f64 {
        let n = self.samples.len();
        self.samples[((n * 95).div_ceil(100)).clamp(1, n) - 1]
    }

    fn json(&self) -> Value {
        json!({ "p50_ms": self.p50(), "p95_ms": self.p95(), "samples_ms": self.samples })
    }
}

/// One bulk mirror. Index 0 is the sender (A), 1 the receiver (B).
pub struct Bulk {
    pub secs: f64,
    pub wire: Option<u64>,
    /// CPU seconds of the agents (Syncthing: its serving processes) during the mirror.
    pub cpu_agents: [f64; 2],
    /// CPU seconds of the CAN Services (CAN Sync only: Syncthing stores files itself).
    pub cpu_services: Option<[f64; 2]>,
    /// Peak RSS during the mirror, bytes.
    pub peak_rss: [u64; 2],
}

/// Idle CPU, percent of one core, A and B.
pub struct Idle {
    pub agents: [f64; 2],
    pub services: Option<[f64; 2]>,
}

/// One initial reconciliation.
pub struct Recon {
    /// Still not in sync after [`super::RECON_TIMEOUT`]: `secs` is a lower bound.
    pub timed_out: bool,
    pub assets: usize,
    pub missing: usize,
    /// From starting B (A already up) until in sync.
    pub secs: f64,
    /// From B's start until the first connection was seen.
    pub connect_secs: f64,
    pub wire: Option<u64>,
    /// CPU seconds of A and B from start until in sync.
    pub cpu_agents: [f64; 2],
}

#[derive(Default)]
pub struct ToolResults {
    pub latency: Option<Latency>,
    /// Syncthing only: at its default watcher delay.
    pub latency_slow: Option<Latency>,
    pub bulk: Option<Bulk>,
    pub idle: Option<Idle>,
    pub recon: Vec<Recon>,
}

pub struct Results {
    pub cfg: Cfg,
    pub syncthing_version: String,
    /// UTC, for file names: 2026-11-26T1230Z.
    pub stamp: String,
    pub date: String,
    pub commit: String,
    pub load_start: String,
    pub load_end: String,
    pub bulk_bytes: u64,
    pub can: ToolResults,
    pub st: ToolResults,
    /// Bytes and seconds of one raw iroh stream.
    pub raw_iroh: Option<(u64, f64)>,
    /// Assets per second seeded through POST /api/assets (16 in parallel).
    pub can_seed_rate: f64,
    pub total_secs: f64,
}

impl Results {
    pub fn new(cfg: Cfg, syncthing_version: String) -> Results {
        let now = time::OffsetDateTime::now_utc();
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Results {
            cfg,
            syncthing_version,
            stamp: crate::util::stamp(now),
            date: format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                now.year(),
                u8::from(now.month()),
                now.day(),
                now.hour(),
                now.minute()
            ),
            commit,
            load_start: loadavg(),
            load_end: String::new(),
            bulk_bytes: 0,
            can: ToolResults::default(),
            st: ToolResults::default(),
            raw_iroh: None,
            can_seed_rate: 0.0,
            total_secs: 0.0,
        }
    }

    pub fn finish(&mut self) {
        self.load_end = loadavg();
    }

    fn mbps(&self, secs: f64) -> f64 {
        self.bulk_bytes as f64 / secs / 1e6
    }

    pub fn markdown(&self) -> String {
        let mut rows: Vec<[String; 6]> = Vec::new();
        let mut row = |cells: [String; 6]| rows.push(cells);
        let e = String::new;

        if let (Some(c), Some(s)) = (&self.can.latency, &self.st.latency) {
            row([
                format!(
                    "propagation of a 1 KiB asset, p50 / p95 ({} samples; Syncthing at fsWatcherDelayS=1)",
                    c.samples.len()
                ),
                format!("{:.1} / {:.1} ms", c.p50(), c.p95()),
                format!("{:.0} / {:.0} ms", s.p50(), s.p95()),
                ratio(c.p50(), s.p50()),
                e(),
                e(),
            ]);
        }
        if let (Some(c), Some(s)) = (&self.can.latency, &self.st.latency_slow) {
            row([
                format!(
                    "same, Syncthing at its default watcher delay (10 s; {} samples, p95 = max)",
                    s.samples.len()
                ),
                format!("{:.1} / {:.1} ms", c.p50(), c.p95()),
                format!("{:.2} / {:.2} s", s.p50() / 1e3, s.p95() / 1e3),
                ratio(c.p50(), s.p50()),
                e(),
                e(),
            ]);
        }
        if let (Some(c), Some(s)) = (&self.can.bulk, &self.st.bulk) {
            let (raw_cell, raw_ratio) = match self.raw_iroh {
                Some((bytes, secs)) => {
                    let raw = bytes as f64 / secs / 1e6;
                    (
                        format!("{secs:.2} s, {raw:.0} MB/s"),
                        ratio(self.mbps(c.secs), raw),
                    )
                }
                None => (e(), e()),
            };
            row([
                format!(
                    "bulk mirror, {} × 10 KiB + one {} MiB asset ({:.1} MB): time, MB/s (ratio of MB/s)",
                    self.cfg.small_files,
                    self.cfg.size_mib,
                    self.bulk_bytes as f64 / 1e6
                ),
                format!("{:.2} s, {:.0} MB/s", c.secs, self.mbps(c.secs)),
                format!("{:.2} s, {:.0} MB/s", s.secs, self.mbps(s.secs)),
                ratio(self.mbps(c.secs), self.mbps(s.secs)),
                raw_cell,
                raw_ratio,
            ]);
            if let (Some(cw), Some(sw)) = (c.wire, s.wire) {
                row([
                    "bytes on the wire during the bulk mirror".into(),
                    mb(cw),
                    mb(sw),
                    ratio(cw as f64, sw as f64),
                    e(),
                    e(),
                ]);
            }
            row([
                "agent peak RSS during the bulk mirror, sender / receiver (ratio of the sums)"
                    .into(),
                format!("{:.1} / {:.1} MiB", mib(c.peak_rss[0]), mib(c.peak_rss[1])),
                format!("{:.1} / {:.1} MiB", mib(s.peak_rss[0]), mib(s.peak_rss[1])),
                ratio(
                    (c.peak_rss[0] + c.peak_rss[1]) as f64,
                    (s.peak_rss[0] + s.peak_rss[1]) as f64,
                ),
                e(),
                e(),
            ]);
            row([
                "agent CPU seconds during the bulk mirror, sender / receiver".into(),
                format!("{:.2} / {:.2} s", c.cpu_agents[0], c.cpu_agents[1]),
                format!("{:.2} / {:.2} s", s.cpu_agents[0], s.cpu_agents[1]),
                ratio(
                    c.cpu_agents[0] + c.cpu_agents[1],
                    s.cpu_agents[0] + s.cpu_agents[1],
                ),
                e(),
                e(),
            ]);
            if let Some(svc) = c.cpu_services {
                let (a, b) = (c.cpu_agents[0] + svc[0], c.cpu_agents[1] + svc[1]);
                row([
                    "same, agent + its CAN Service (Syncthing stores files itself)".into(),
                    format!("{a:.2} / {b:.2} s"),
                    format!("{:.2} / {:.2} s", s.cpu_agents[0], s.cpu_agents[1]),
                    ratio(a + b, s.cpu_agents[0] + s.cpu_agents[1]),
                    e(),
                    e(),
                ]);
            }
        }
        for (c, s) in self.can.recon.iter().zip(&self.st.recon) {
            let what = if c.missing == 0 {
                "already in sync".to_owned()
            } else {
                format!("{} missing on each side", thousands(c.missing))
            };
            let same_n = c.assets == s.assets;
            let st_n = if same_n {
                String::new()
            } else {
                format!(
                    " (Syncthing: {} files, {} missing)",
                    thousands(s.assets),
                    thousands(s.missing)
                )
            };
            let r = |a: f64, b: f64| {
                if same_n {
                    ratio(a, b)
                } else {
                    "n/a (other N)".into()
                }
            };
            row([
                format!(
                    "initial reconciliation, {} assets each side{st_n}, {what}: B's start → in sync (of which → connected)",
                    thousands(c.assets)
                ),
                recon_secs(c),
                recon_secs(s),
                if c.timed_out || s.timed_out {
                    "n/a (timed out)".into()
                } else {
                    r(c.secs, s.secs)
                },
                e(),
                e(),
            ]);
            if let (Some(cw), Some(sw)) = (c.wire, s.wire) {
                row([
                    "same, bytes on the wire".into(),
                    mb(cw),
                    mb(sw),
                    r(cw as f64, sw as f64),
                    e(),
                    e(),
                ]);
            }
        }
        if let (Some(c), Some(s)) = (&self.can.idle, &self.st.idle) {
            row([
                format!(
                    "idle CPU over {} s, % of one core, A / B: agent",
                    self.cfg.idle_secs
                ),
                format!("{:.3} / {:.3} %", c.agents[0], c.agents[1]),
                format!("{:.3} / {:.3} %", s.agents[0], s.agents[1]),
                ratio(c.agents[0] + c.agents[1], s.agents[0] + s.agents[1]),
                e(),
                e(),
            ]);
            if let Some(svc) = c.services {
                let (a, b) = (c.agents[0] + svc[0], c.agents[1] + svc[1]);
                row([
                    "same, agent + its CAN Service".into(),
                    format!("{a:.3} / {b:.3} %"),
                    format!("{:.3} / {:.3} %", s.agents[0], s.agents[1]),
                    ratio(a + b, s.agents[0] + s.agents[1]),
                    e(),
                    e(),
                ]);
            }
        }

        let mut out = format!(
            "## CAN Sync vs {} vs raw iroh, two peers on loopback, one run ({}, commit {}{})\n\n",
            self.syncthing_version
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
            self.date,
            self.commit,
            if self.cfg.quick { ", --quick" } else { "" }
        );
        out.push_str(
            "Ratios are CAN Sync's figure ÷ the other's: below 1 is better for times, bytes, \
             memory and CPU; above 1 is better for MB/s.\n\n",
        );
        out.push_str("| measure | CAN Sync | Syncthing | CAN ÷ Syncthing | raw iroh stream | CAN ÷ raw iroh |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        for r in rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        out.push_str(&format!(
            "\nLoad average at start / end: {} / {}; run took {:.0} s; CAN stores seeded at {:.0} assets/s.\n",
            self.load_start, self.load_end, self.total_secs, self.can_seed_rate
        ));
        out
    }

    pub fn json(&self) -> Value {
        let tool = |t: &ToolResults| {
            json!({
                "latency": t.latency.as_ref().map(Latency::json),
                "latency_default_watcher_delay": t.latency_slow.as_ref().map(Latency::json),
                "bulk": t.bulk.as_ref().map(|b| json!({
                    "secs": b.secs,
                    "mb_per_s": self.mbps(b.secs),
                    "wire_bytes": b.wire,
                    "cpu_secs_agents": b.cpu_agents,
                    "cpu_secs_services": b.cpu_services,
                    "peak_rss_bytes": b.peak_rss,
                })),
                "idle_cpu_percent": t.idle.as_ref().map(|i| json!({
                    "agents": i.agents, "services": i.services,
                })),
                "reconciliation": t.recon.iter().map(|r| json!({
                    "assets_each_side": r.assets,
                    "missing_each_side": r.missing,
                    "timed_out": r.timed_out,
                    "secs": r.secs,
                    "connect_secs": r.connect_secs,
                    "wire_bytes": r.wire,
                    "cpu_secs_agents": r.cpu_agents,
                })).collect::<Vec<_>>(),
            })
        };
        json!({
            "date": self.date,
            "commit": self.commit,
            "quick": self.cfg.quick,
            "config": format!("{:?}", self.cfg),
            "syncthing": self.syncthing_version,
            "load_average_start": self.load_start,
            "load_average_end": self.load_end,
            "bulk_bytes": self.bulk_bytes,
            "can_sync": tool(&self.can),
            "syncthing_results": tool(&self.st),
            "raw_iroh": self.raw_iroh.map(|(bytes, secs)| json!({
                "bytes": bytes, "secs": secs, "mb_per_s": bytes as f64 / secs / 1e6,
            })),
            "can_seed_assets_per_s": self.can_seed_rate,
            "total_secs": self.total_secs,
        })
    }
}

fn recon_secs(r: &Recon) -> String {
    if r.timed_out {
        format!("> {:.0} s, timed out", r.secs)
    } else {
        format!("{:.2} s ({:.2} s)", r.secs, r.connect_secs)
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 {
        return "–".into();
    }
    let r = a / b;
    if r >= 0.1 {
        format!("{r:.2}")
    } else {
        format!("{r:.4}")
    }
}

fn mb(bytes: u64) -> String {
    if bytes >= 10_000_000 {
        format!("{:.0} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.2} MB", bytes as f64 / 1e6)
    }
}

fn mib(bytes: u64) -> f64 {
    crate::proc::mib(bytes)
}

pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
