//! A seeded chaos run: N CAN Services and N agents on loopback (each agent has every other's
//! ticket), and a schedule drawn from a seed of uploads and deletions on every side,
//! SIGKILLs of agents and of stores, and restarts. An agent that is down is a partitioned
//! site: its store keeps changing. At the end everything is restarted and the stores must
//! agree: every acknowledged upload is stored or deleted everywhere alike, every stored asset
//! re-hashes to its name, no upload is left half-written once the agents are idle, and no
//! asset crossed links more often than a bound: all agents together received at most
//! [`CROSSING_BOUND`] × what one copy of every acknowledged upload to every other site
//! would be (kills cut transfers, which resume; a bound well above 1 leaves room for that
//! and for concurrent fetches, not for resending whole assets again and again).
//!
//! A failure names the seed and the command that replays it (`CHAOS_SEED`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Agent, KEY, Service, b3, client, delete_asset, list_all, meta_status};

const PASS: &str = "chaos mantle quarry velvet orbit thistle plume";

/// Content bytes all agents may receive, as a multiple of one copy of every acknowledged
/// upload to every other site.
pub const CROSSING_BOUND: f64 = 2.0;

/// One step of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Upload `size` bytes (content drawn from `seed`) to site `site`'s store.
    Upload {
        site: usize,
        size: usize,
        seed: u64,
    },
    /// Delete, on site `site`, the `pick`-th acknowledged upload (modulo their number).
    Delete {
        site: usize,
        pick: usize,
    },
    /// SIGKILL the agent (the site is partitioned off until it starts again).
    KillAgent(usize),
    StartAgent(usize),
    /// SIGKILL the store and start it again on the same data and port.
    CrashStore(usize),
    /// Let things run.
    Wait(Duration),
}

/// The schedule of `steps` operations over `sites` sites that `seed` stands for.
pub fn schedule(seed: u64, sites: usize, steps: usize) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..steps)
        .map(|_| {
            let site = rng.random_range(0..sites);
            match rng.random_range(0..100) {
                0..40 => Op::Upload {
                    site,
                    // Mostly small; some large enough to be cut by a kill.
                    size: if rng.random_bool(0.2) {
                        rng.random_range(1 << 20..6 << 20)
                    } else {
                        rng.random_range(1..64 << 10)
                    },
                    seed: rng.random(),
                },
                40..52 => Op::Delete {
                    site,
                    pick: rng.random_range(0..1000),
                },
                52..64 => Op::KillAgent(site),
                64..76 => Op::StartAgent(site),
                76..84 => Op::CrashStore(site),
                _ => Op::Wait(Duration::from_millis(rng.random_range(50..800))),
            }
        })
        .collect()
}

/// What a run did, for the test's log and the bench's table.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub uploads: usize,
    pub deletions: usize,
    pub agent_kills: usize,
    pub store_crashes: usize,
    /// Assets stored everywhere at the end, and deleted everywhere.
    pub stored: usize,
    pub deleted: usize,
    /// From the last restart to all stores agreeing.
    pub converged_in: Duration,
    /// Content bytes the agents received in all (`transfer_bytes_received`, summed over
    /// every agent's lives), and one copy of every acknowledged upload to every other site.
    pub bytes_received: u64,
    pub bytes_one_copy_each: u64,
}

impl Summary {
    /// How many times, on average, each needed copy crossed a link.
    pub fn crossings(&self) -> f64 {
        self.bytes_received as f64 / self.bytes_one_copy_each.max(1) as f64
    }
}

struct Site {
    service: Service,
    agent: Option<Agent>,
    dir: PathBuf,
    /// Bytes received by this site's earlier (killed) agents.
    received_before: u64,
}

fn received(agent: &Agent) -> u64 {
    agent
        .try_status()
        .and_then(|s| s["transfer_bytes_received"].as_u64())
        .unwrap_or(0)
}

/// Runs `seed`'s schedule over `sites` sites; `Err` says what differs, with the seed.
pub async fn run(dir: &Path, seed: u64, sites: usize, steps: usize) -> Result<Summary, String> {
    let c = client();
    let mut summary = Summary::default();
    let mut all: Vec<Site> = (0..sites)
        .map(|i| Site {
            service: Service::with_key(&dir.join(format!("svc-{i}"))),
            agent: None,
            dir: dir.join(format!("agent-{i}")),
            received_before: 0,
        })
        .collect();
    for i in 0..sites {
        start_agent(&mut all, i);
    }
    // Acknowledged uploads: hash and the site that took it.
    let mut acked: Vec<String> = Vec::new();
    for op in schedule(seed, sites, steps) {
        match op {
            Op::Upload { site, size, seed } => {
                let body = crate::pseudo_random(size, seed);
                let hash = b3(&body);
                let sent = c
                    .post(all[site].service.url("/api/assets"))
                    .body(body)
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status().is_success()) {
                    acked.push(hash);
                    summary.uploads += 1;
                    summary.bytes_one_copy_each += (size * (sites - 1)) as u64;
                }
            }
            Op::Delete { site, pick } => {
                if !acked.is_empty() {
                    let hash = &acked[pick % acked.len()];
                    if delete_asset(&c, &all[site].service, hash).await == 200 {
                        summary.deletions += 1;
                    }
                }
            }
            Op::KillAgent(site) => {
                if let Some(mut a) = all[site].agent.take() {
                    // What it received so far (what arrives between this read and the kill
                    // is not counted: a small undercount).
                    all[site].received_before += received(&a);
                    a.kill();
                    summary.agent_kills += 1;
                }
            }
            Op::StartAgent(site) => {
                if all[site].agent.is_none() {
                    start_agent(&mut all, site);
                }
            }
            Op::CrashStore(site) => {
                all[site].service.restart(&format!("sync_api_key: {KEY}\n"));
                summary.store_crashes += 1;
            }
            Op::Wait(d) => tokio::time::sleep(d).await,
        }
    }
    for i in 0..sites {
        if all[i].agent.is_none() {
            start_agent(&mut all, i);
        }
    }
    let replay = format!(
        "seed {seed} ({sites} sites, {steps} steps); replay: CHAOS_SEED={seed} cargo test -p can-sync --test chaos"
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let states = loop {
        let mut states = Vec::new();
        for s in &all {
            states.push(state_of(&c, &s.service, &acked).await);
        }
        if states.iter().all(|s| *s == states[0]) {
            break states;
        }
        if Instant::now() >= deadline {
            let diff: Vec<String> = acked
                .iter()
                .filter(|h| states.iter().any(|s| s.get(*h) != states[0].get(*h)))
                .take(5)
                .map(|h| {
                    format!(
                        "{}: {:?}",
                        &h[..12],
                        states.iter().map(|s| s.get(h).copied()).collect::<Vec<_>>()
                    )
                })
                .collect();
            return Err(format!("stores differ after 120 s: {diff:?}; {replay}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    summary.converged_in = started.elapsed();
    let first = &states[0];
    if let Some(lost) = acked.iter().find(|h| first.get(*h) == Some(&404)) {
        return Err(format!("acknowledged upload {lost} is nowhere; {replay}"));
    }
    summary.stored = first.values().filter(|s| **s == 200).count();
    summary.deleted = first.values().filter(|s| **s == 410).count();
    for s in &all {
        for (hash, (size, _)) in list_all(&c, &s.service.url).await {
            let body = crate::content(&c, &s.service.url, &hash).await;
            if body.len() as u64 != size || b3(&body) != hash {
                return Err(format!(
                    "{} serves a damaged {hash}; {replay}",
                    s.service.url
                ));
            }
        }
    }
    for s in &all {
        summary.bytes_received += s.received_before + s.agent.as_ref().map_or(0, received);
    }
    if summary.crossings() > CROSSING_BOUND {
        return Err(format!(
            "assets crossed links {:.2} × (bound {CROSSING_BOUND}): {} bytes received for {} needed; {replay}",
            summary.crossings(),
            summary.bytes_received,
            summary.bytes_one_copy_each
        ));
    }
    // Once every agent is idle, nothing is left half-written (temp files of the public API;
    // partials of interrupted transfers that have since completed are removed on commit).
    for s in &all {
        let ok = crate::eventually(30, || s.service.temp_files() == 0).await;
        if !ok {
            return Err(format!("{} keeps temp files; {replay}", s.service.url));
        }
    }
    Ok(summary)
}

/// Each acknowledged hash's state in a store: 200 stored, 410 deleted, 404 unknown.
async fn state_of(c: &reqwest::Client, svc: &Service, acked: &[String]) -> BTreeMap<String, u16> {
    let mut out = BTreeMap::new();
    for h in acked {
        out.insert(h.clone(), meta_status(c, &svc.url, h).await);
    }
    out
}

/// Starts site `i`'s agent with every other site's ticket (its own ticket file included
/// for the others to read).
fn start_agent(all: &mut [Site], i: usize) {
    let tickets: String = all
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, s)| format!("  - {}\n", s.dir.join("ticket").display()))
        .collect();
    let extra = format!("connect_ticket_file:\n{tickets}device_name: site-{i}\n");
    let agent = Agent::start(&all[i].dir, &all[i].service.url, KEY, PASS, &extra);
    all[i].agent = Some(agent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_draws_the_same_schedule() {
        assert_eq!(schedule(7, 5, 50), schedule(7, 5, 50));
        assert_ne!(schedule(7, 5, 50), schedule(8, 5, 50));
        let ops = schedule(1, 5, 500);
        assert!(ops.iter().any(|o| matches!(o, Op::CrashStore(_))));
        assert!(ops.iter().any(|o| matches!(o, Op::Delete { .. })));
    }
}
