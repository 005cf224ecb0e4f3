//! The reconciliation scenario: two stores seeded alike (plus a few differences), then
//! CAN Sync's agents (or Syncthing) started on them and timed until in sync, with CPU,
//! memory and bytes on the wire.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::ensure;
use bytes::Bytes;
use can_testkit::{client, pseudo_random};

use super::report::{Recon, Results};
use super::wire::{self, Wire};
use super::{Cfg, RECON_SIZE, RECON_TIMEOUT, can, quiet, remove, syncthing};
use crate::proc::cpu_seconds;
use crate::util::{poll, post, step};

/// CAN Sync: stores seeded before the agents start; from agent start until in sync.
pub(super) async fn recon_can(
    cfg: &Cfg,
    dir: &Path,
    wire: Option<&Wire>,
    ports: &mut Vec<u16>,
    results: &mut Results,
) -> anyhow::Result<()> {
    let c = client();
    let n = cfg.recon_assets;
    let m = n / 100;
    step(&format!("CAN Sync: seeding {} common assets", n - m));
    let seeding = Instant::now();
    let base = can::seed_base(&c, &dir.join("base"), n - m, 100_000_000).await?;
    let seed_rate = (n - m) as f64 / seeding.elapsed().as_secs_f64();
    for missing in [0, m] {
        let label = if missing == 0 { "in-sync" } else { "diff" };
        step(&format!(
            "CAN Sync: reconciliation, {n} assets each side, {missing} missing on each"
        ));
        let mut pair = can::Pair::from_base(&dir.join(label), &base)?;
        // In sync: the same m more assets on both sides; else m different ones on each.
        let (seed_a, seed_b) = if missing == 0 {
            (200_000_000, 200_000_000)
        } else {
            (300_000_000, 400_000_000)
        };
        let (ra, rb) = tokio::join!(
            can::upload_many(&c, &pair.a, "ra", seed_a, m, RECON_SIZE, 8),
            can::upload_many(&c, &pair.b, "rb", seed_b, m, RECON_SIZE, 8),
        );
        ra?;
        rb?;
        // A is up and has listed its store (store_online) before B starts: the clock
        // runs from B's start, like a device coming online next to a running peer.
        pair.start_a(ports)?;
        {
            let aa = pair.agent_a()?;
            poll(60, 5, "agent A did not come up", || async {
                aa.count("store_online") > 0 && aa.ticket_path().exists()
            })
            .await?;
        }
        let wire0 = wire.map(|w| w.bytes(wire::Tool::Can)).transpose()?;
        let t0 = Instant::now();
        pair.start_b(ports)?;
        let (aa, ab) = pair.agents()?;
        let mut connect = None;
        let mut probes = [false, false];
        let mut timed_out = false;
        let deadline = t0 + Duration::from_secs(RECON_TIMEOUT);
        loop {
            let up = [aa.count("peer_up") > 0, ab.count("peer_up") > 0];
            if connect.is_none() && (up[0] || up[1]) {
                connect = Some(t0.elapsed().as_secs_f64());
            }
            let done = if missing == 0 {
                // Nothing to transfer, so no event says "done": once a side is up, one
                // new asset is uploaded there. Its announcement travels on the control
                // stream behind that side's hash list, so the peer receiving it has
                // received and processed the whole list.
                for (i, svc) in [&pair.a, &pair.b].into_iter().enumerate() {
                    if up[i] && !probes[i] {
                        let body = Bytes::from(pseudo_random(1024, 500_000_000 + i as u64));
                        post(&c, &svc.url, "probe.bin", body).await?;
                        probes[i] = true;
                    }
                }
                aa.count("asset_received") >= 1 && ab.count("asset_received") >= 1
            } else {
                aa.count("asset_received") >= m && ab.count("asset_received") >= m
            };
            if done {
                break;
            }
            if Instant::now() >= deadline {
                timed_out = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let secs = t0.elapsed().as_secs_f64();
        let pids = pair.pids()?;
        let (cpu, wire_bytes) = settled(
            "CAN Sync",
            secs,
            [pids[0], pids[1]],
            wire,
            wire0,
            wire::Tool::Can,
        )
        .await?;
        let expect = if missing == 0 { n + 1 } else { n + m };
        let got = can_testkit::list_all(&c, &pair.b.url).await.len();
        ensure!(
            timed_out || got >= expect,
            "B holds {got} assets, expected {expect}"
        );
        results.can.recon.push(Recon {
            timed_out,
            assets: n,
            missing,
            secs,
            connect_secs: connect.unwrap_or(secs),
            wire: wire_bytes,
            cpu_agents: cpu,
        });
        drop(pair);
        remove(&dir.join(label))?;
    }
    results.can_seed_rate = seed_rate;
    Ok(())
}

/// Syncthing: both folders seeded and scanned with the peer paused, both stopped; then from
/// starting both (peer unpaused) until in sync.
pub(super) async fn recon_st(
    cfg: &Cfg,
    dir: &Path,
    wire: Option<&Wire>,
    ports: &mut Vec<u16>,
    results: &mut Results,
) -> anyhow::Result<()> {
    let n = cfg.st_recon_assets;
    let m = n / 100;
    // Same mtime on both sides: files that are identical in content, size and time.
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let scan_secs = 120 + n as u64 / 100;
    for missing in [0, m] {
        let label = if missing == 0 { "in-sync" } else { "diff" };
        step(&format!(
            "Syncthing: seeding and scanning {n} files each side, {missing} missing on each"
        ));
        let mut pair = syncthing::Pair::new(&dir.join(label), ports)?;
        let (seed_a, seed_b) = if missing == 0 {
            (200_000_000u64, 200_000_000u64)
        } else {
            (300_000_000, 400_000_000)
        };
        let mut only_a = Vec::new();
        let mut only_b = Vec::new();
        for i in 0..n - m {
            let body = pseudo_random(RECON_SIZE, 100_000_000 + i as u64);
            let name = format!("r{i:06}");
            syncthing::write_file(&pair.a.folder.join(&name), &body, Some(mtime))?;
            syncthing::write_file(&pair.b.folder.join(&name), &body, Some(mtime))?;
        }
        for i in 0..m {
            let (a, b) = (
                pseudo_random(RECON_SIZE, seed_a + i as u64),
                pseudo_random(RECON_SIZE, seed_b + i as u64),
            );
            let (name_a, name_b) = if missing == 0 {
                (format!("x{i:06}"), format!("x{i:06}"))
            } else {
                (format!("ra{i:06}"), format!("rb{i:06}"))
            };
            syncthing::write_file(&pair.a.folder.join(&name_a), &a, Some(mtime))?;
            syncthing::write_file(&pair.b.folder.join(&name_b), &b, Some(mtime))?;
            only_a.push(pair.b.folder.join(name_a));
            only_b.push(pair.a.folder.join(name_b));
        }
        step("Syncthing: first scan of both folders (peer paused)");
        pair.start(true, 10).await?;
        pair.a.wait_scanned(n as u64, scan_secs).await?;
        pair.b.wait_scanned(n as u64, scan_secs).await?;
        pair.stop();

        step(&format!(
            "Syncthing: reconciliation, {n} files each side, {missing} missing on each"
        ));
        step("Syncthing: A up and idle, then B");
        // A is up, listening and done with its start-up scan before B starts; the clock
        // runs from B's start (B dials A).
        pair.a.write_config(&pair.b, false, false, 10)?;
        pair.b.write_config(&pair.a, true, false, 10)?;
        pair.a.spawn()?;
        pair.a.wait_ready().await?;
        pair.a.wait_scanned(n as u64, scan_secs).await?;
        let wire0 = wire.map(|w| w.bytes(wire::Tool::Syncthing)).transpose()?;
        let t0 = Instant::now();
        pair.b.spawn()?;
        pair.b.wait_ready().await?;
        let mut connect = None;
        let mut timed_out = false;
        let deadline = t0 + Duration::from_secs(RECON_TIMEOUT);
        loop {
            if connect.is_none() && pair.b.connected(&pair.a).await {
                connect = Some(t0.elapsed().as_secs_f64());
            }
            let done = if missing == 0 {
                in_sync(&pair, n as u64).await
            } else {
                only_a.retain(|p| !syncthing::has_file(p, RECON_SIZE as u64));
                only_b.retain(|p| !syncthing::has_file(p, RECON_SIZE as u64));
                only_a.is_empty() && only_b.is_empty()
            };
            if done {
                break;
            }
            if Instant::now() >= deadline {
                timed_out = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(if missing == 0 { 200 } else { 20 })).await;
        }
        let secs = t0.elapsed().as_secs_f64();
        let pids = pair.pids()?;
        let (cpu, wire_bytes) = settled(
            "Syncthing",
            secs,
            [pids[0], pids[1]],
            wire,
            wire0,
            wire::Tool::Syncthing,
        )
        .await?;
        let conflicts = std::fs::read_dir(&pair.b.folder)?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".sync-conflict"))
            .count();
        ensure!(conflicts == 0, "Syncthing made {conflicts} conflict copies");
        results.st.recon.push(Recon {
            timed_out,
            assets: n,
            missing,
            secs,
            connect_secs: connect.unwrap_or(secs),
            wire: wire_bytes,
            cpu_agents: cpu,
        });
        step("Syncthing: stopping");
        pair.stop();
        drop(pair);
        remove(&dir.join(label))?;
    }
    Ok(())
}

/// Both instances have the other's full index (completion 100) and need nothing.
async fn in_sync(pair: &syncthing::Pair, files: u64) -> bool {
    for (me, peer) in [(&pair.a, &pair.b), (&pair.b, &pair.a)] {
        let Ok(status) = me.folder_status().await else {
            return false;
        };
        if status["needFiles"] != 0 || status["globalFiles"].as_u64() != Some(files) {
            return false;
        }
        if !me.completion(peer).await.is_ok_and(|c| c >= 100.0) {
            return false;
        }
    }
    true
}

/// After a side is in sync: both agents' CPU seconds so far, and the bytes on the wire since
/// `wire0` once the link is quiet.
async fn settled(
    label: &str,
    secs: f64,
    pids: [u32; 2],
    wire: Option<&Wire>,
    wire0: Option<u64>,
    tool: wire::Tool,
) -> anyhow::Result<([f64; 2], Option<u64>)> {
    step(&format!(
        "{label}: in sync after {secs:.2} s; waiting for a quiet link"
    ));
    let cpu = [cpu_seconds(pids[0])?, cpu_seconds(pids[1])?];
    let wire_bytes = match (wire, wire0) {
        (Some(w), Some(b0)) => Some(quiet(w, tool).await? - b0),
        _ => None,
    };
    Ok((cpu, wire_bytes))
}
