//! CAN Sync's side: two CAN Services and two agents on loopback (relays, rendezvous and LAN
//! discovery off), B dialling A's ticket, each agent's QUIC socket on a port the wire
//! counters watch. Everything is killed on drop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use can_testkit::{Agent, KEY, Service, b3, pseudo_random};
use futures_util::StreamExt;

use super::wire::{CAN_PORTS, free_port};

// Eight words: strong enough that the agents do not warn about it.
const PASS: &str = "bench harbor violet summit cobalt ferry lantern quarry";

/// Two services; agents once started. Fields drop in order: the agents stop before their
/// services, so they do not report them gone.
pub struct Pair {
    pub agents: Option<(Agent, Agent)>,
    a_only: Option<Agent>,
    pub a: Service,
    pub b: Service,
    pub dir: PathBuf,
}

impl Pair {
    /// Fresh services on empty stores in `dir`.
    pub fn new(dir: &Path) -> Pair {
        Pair {
            agents: None,
            a_only: None,
            a: Service::with_key(&dir.join("svc-a")),
            b: Service::with_key(&dir.join("svc-b")),
            dir: dir.to_owned(),
        }
    }

    /// Services on copies of a seeded store's data directory (see [`seed_base`]).
    pub fn from_base(dir: &Path, base: &Path) -> anyhow::Result<Pair> {
        for side in ["svc-a", "svc-b"] {
            std::fs::create_dir_all(dir.join(side))?;
            let status = std::process::Command::new("cp")
                .arg("-a")
                .arg(base)
                .arg(dir.join(side).join("data"))
                .status()?;
            ensure!(status.success(), "copying the seeded store failed");
        }
        Ok(Self::new(dir))
    }

    /// Starts both agents (product default poll interval, 3 s). Does not wait for them.
    pub fn start_agents(&mut self, ports: &mut Vec<u16>) -> anyhow::Result<()> {
        self.start_a(ports)?;
        self.start_b(ports)
    }

    /// Starts agent A alone (B follows with [`Pair::start_b`]).
    pub fn start_a(&mut self, ports: &mut Vec<u16>) -> anyhow::Result<()> {
        let port = free_port(CAN_PORTS, ports)?;
        let agent = Agent::start(
            &self.dir.join("agent-a"),
            &self.a.url,
            KEY,
            PASS,
            &format!("bind_addr: 127.0.0.1:{port}\npoll_interval_secs: 3\n"),
        );
        self.a_only = Some(agent);
        Ok(())
    }

    /// Starts agent B, dialling A's ticket.
    pub fn start_b(&mut self, ports: &mut Vec<u16>) -> anyhow::Result<()> {
        let agent_a = self.a_only.take().context("agent A not started")?;
        let port = free_port(CAN_PORTS, ports)?;
        let agent_b = Agent::start(
            &self.dir.join("agent-b"),
            &self.b.url,
            KEY,
            PASS,
            &format!(
                "bind_addr: 127.0.0.1:{port}\npoll_interval_secs: 3\nconnect_ticket_file: {}\n",
                agent_a.ticket_path().display()
            ),
        );
        self.agents = Some((agent_a, agent_b));
        Ok(())
    }

    /// Agent A once started alone.
    pub fn agent_a(&self) -> anyhow::Result<&Agent> {
        self.a_only.as_ref().context("agent A not started alone")
    }

    pub fn agents(&self) -> anyhow::Result<&(Agent, Agent)> {
        self.agents.as_ref().context("agents not started")
    }

    /// Agent, service pids: [agent A, agent B, service A, service B].
    pub fn pids(&self) -> anyhow::Result<[u32; 4]> {
        let (a, b) = self.agents()?;
        Ok([a.pid(), b.pid(), self.a.child.id(), self.b.child.id()])
    }
}

/// Uploads `count` assets of `size` bytes (seeds `seed..seed+count`, named `{prefix}{i}`),
/// `parallel` at a time; returns their hashes.
pub async fn upload_many(
    c: &reqwest::Client,
    svc: &Service,
    prefix: &str,
    seed: u64,
    count: usize,
    size: usize,
    parallel: usize,
) -> anyhow::Result<Vec<String>> {
    let url = svc.url("/api/assets");
    let results: Vec<anyhow::Result<String>> = futures_util::stream::iter(0..count)
        .map(|i| {
            let url = url.clone();
            let c = c.clone();
            async move {
                let body = pseudo_random(size, seed + i as u64);
                let hash = b3(&body);
                let r = c
                    .post(&url)
                    .header("X-Filename", format!("{prefix}{i:06}"))
                    .body(body)
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await?;
                ensure!(
                    r.status() == 201 || r.status() == 200,
                    "upload {i} answered {}",
                    r.status()
                );
                Ok(hash)
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Seeds a store with `count` 1 KiB assets through the public API and stops it; returns its
/// data directory, to be copied for each side.
pub async fn seed_base(
    c: &reqwest::Client,
    dir: &Path,
    count: usize,
    seed: u64,
) -> anyhow::Result<PathBuf> {
    let mut svc = Service::with_key(dir);
    upload_many(c, &svc, "r", seed, count, 1024, 16).await?;
    svc.kill();
    Ok(svc.data_dir())
}
