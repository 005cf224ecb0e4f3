//! The wan bench's figures: a Markdown table per profile with ratios, and JSON.

use can_testkit::wan::Profile;
use serde_json::{Value, json};

use super::Run;
use crate::compare::report::Latency;

/// Everything measured on one profile.
pub struct ProfileResult {
    pub profile: Profile,
    pub big_bytes: u64,
    pub small_count: u64,
    pub small_bytes: u64,
    pub can_big: Option<Run>,
    pub st_big: Option<Run>,
    pub raw_big: Option<Run>,
    pub can_small: Option<Run>,
    pub st_small: Option<Run>,
    pub can_latency: Option<Latency>,
    pub st_latency: Option<Latency>,
    /// The large asset uploaded live, uninterrupted and with the link cut at 60 % for 10 s.
    pub can_live: Option<Run>,
    pub can_resume: Option<Run>,
    /// (side, seconds from the restarted engine's start to the asset in its store).
    pub can_restart: Vec<(&'static str, f64)>,
}

impl ProfileResult {
    pub fn new(profile: Profile, big_bytes: u64, small_count: u64, small_size: u64) -> Self {
        ProfileResult {
            profile,
            big_bytes,
            small_count,
            small_bytes: small_count * small_size,
            can_big: None,
            st_big: None,
            raw_big: None,
            can_small: None,
            st_small: None,
            can_latency: None,
            st_latency: None,
            can_live: None,
            can_resume: None,
            can_restart: Vec::new(),
        }
    }

    fn link_mb_s(&self) -> f64 {
        self.profile.bits_per_sec as f64 / 8e6
    }
}

pub struct Report {
    pub stamp: String,
    /// `--congestion`: the agents' and the raw stream's controller.
    pub congestion: String,
    pub total_secs: f64,
    pub profiles: Vec<ProfileResult>,
}

impl Report {
    pub fn new(congestion: &str) -> Report {
        Report {
            stamp: crate::util::stamp(time::OffsetDateTime::now_utc()),
            congestion: congestion.to_owned(),
            total_secs: 0.0,
            profiles: Vec::new(),
        }
    }

    pub fn markdown_all(&self) -> String {
        format!(
            "{}\nwhole run: {:.0} s\n",
            markdown(&self.profiles),
            self.total_secs
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "stamp": self.stamp,
            "congestion": self.congestion,
            "total_secs": self.total_secs,
            "profiles": self.profiles.iter().map(profile_json).collect::<Vec<_>>(),
        })
    }
}

fn mb_s(bytes: u64, run: &Option<Run>) -> Option<f64> {
    run.map(|r| bytes as f64 / r.secs / 1e6)
}

fn cell_rate(bytes: u64, run: &Option<Run>, link: f64) -> String {
    match mb_s(bytes, run) {
        Some(v) => format!(
            "{v:.2} MB/s ({:.0} % of link) · {:.2} × on the wire",
            v / link * 100.0,
            run.map_or(0.0, |r| r.wire as f64 / bytes as f64)
        ),
        None => "–".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

fn lat(l: &Option<Latency>) -> String {
    l.as_ref().map_or("–".into(), |l| {
        format!("{:.0} / {:.0} ms", l.p50(), l.p95())
    })
}

/// One table for the given profiles.
pub fn markdown(profiles: &[ProfileResult]) -> String {
    let mut s = String::from(
        "| profile | figure | CAN Sync | Syncthing | raw iroh | CAN ÷ Syncthing | CAN ÷ raw iroh |\n|---|---|---|---|---|---|---|\n",
    );
    for r in profiles {
        let p = &r.profile;
        let link = r.link_mb_s();
        let big = r.big_bytes;
        s += &format!(
            "| {} | one {} MiB asset | {} | {} | {} | {} | {} |\n",
            p.name,
            big >> 20,
            cell_rate(big, &r.can_big, link),
            cell_rate(big, &r.st_big, link),
            cell_rate(big, &r.raw_big, link),
            ratio(mb_s(big, &r.can_big), mb_s(big, &r.st_big)),
            ratio(mb_s(big, &r.can_big), mb_s(big, &r.raw_big)),
        );
        s += &format!(
            "| {} | {} × 100 KiB | {} | {} | | {} | ÷ one asset: {} |\n",
            p.name,
            r.small_count,
            cell_rate(r.small_bytes, &r.can_small, link),
            cell_rate(r.small_bytes, &r.st_small, link),
            ratio(
                mb_s(r.small_bytes, &r.can_small),
                mb_s(r.small_bytes, &r.st_small)
            ),
            ratio(mb_s(r.small_bytes, &r.can_small), mb_s(big, &r.can_big)),
        );
        s += &format!(
            "| {} | 1 KiB propagation p50 / p95 | {} | {} | | {} | |\n",
            p.name,
            lat(&r.can_latency),
            lat(&r.st_latency),
            ratio(
                r.can_latency.as_ref().map(Latency::p50),
                r.st_latency.as_ref().map(Latency::p50)
            ),
        );
        if let (Some(live), Some(cut)) = (r.can_live, r.can_resume) {
            s += &format!(
                "| {} | resume: {} MiB, link cut at 60 % for 10 s | {:.1} s, {:.2} × the asset on the wire (uninterrupted: {:.1} s, {:.2} ×): {:.1} s and {:.1} % more bytes | | | | |\n",
                p.name,
                big >> 20,
                cut.secs,
                cut.wire as f64 / big as f64,
                live.secs,
                live.wire as f64 / big as f64,
                cut.secs - live.secs,
                (cut.wire as f64 - live.wire as f64) / big as f64 * 100.0,
            );
        }
        if !r.can_restart.is_empty() {
            let cells: Vec<String> = r
                .can_restart
                .iter()
                .map(|(side, secs)| format!("{side} restarted: {secs:.2} s"))
                .collect();
            s += &format!(
                "| {} | restart catch-up (engine start → asset stored) | {} | | | | |\n",
                p.name,
                cells.join(", ")
            );
        }
    }
    s
}

fn run_json(bytes: u64, r: &Option<Run>) -> Value {
    match r {
        Some(r) => json!({
            "secs": r.secs,
            "mb_per_s": bytes as f64 / r.secs / 1e6,
            "wire_bytes": r.wire,
        }),
        None => Value::Null,
    }
}

fn profile_json(r: &ProfileResult) -> Value {
    let p = &r.profile;
    let lat_json = |l: &Option<Latency>| {
        l.as_ref().map_or(
            Value::Null,
            |l| json!({ "p50_ms": l.p50(), "p95_ms": l.p95(), "samples_ms": l.samples }),
        )
    };
    json!({
        "profile": p.name,
        "link_bits_per_sec": p.bits_per_sec,
        "big_bytes": r.big_bytes,
        "small_count": r.small_count,
        "small_bytes": r.small_bytes,
        "big": {
            "can_sync": run_json(r.big_bytes, &r.can_big),
            "syncthing": run_json(r.big_bytes, &r.st_big),
            "raw_iroh": run_json(r.big_bytes, &r.raw_big),
        },
        "small": {
            "can_sync": run_json(r.small_bytes, &r.can_small),
            "syncthing": run_json(r.small_bytes, &r.st_small),
        },
        "latency_1kib": {
            "can_sync": lat_json(&r.can_latency),
            "syncthing": lat_json(&r.st_latency),
        },
        "resume": {
            "uninterrupted": run_json(r.big_bytes, &r.can_live),
            "cut_60_percent_10_s": run_json(r.big_bytes, &r.can_resume),
        },
        "restart_catch_up_secs": r.can_restart.iter()
            .map(|(side, secs)| json!({ "side": side, "secs": secs }))
            .collect::<Vec<_>>(),
    })
}
