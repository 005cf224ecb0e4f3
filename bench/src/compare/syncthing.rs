//! Two Syncthing instances on loopback, headless: global and local discovery, relays,
//! NAT traversal, STUN, usage and crash reporting and upgrades off; one shared send-receive
//! folder; only B knows A's address (B dials, as the CAN Sync agent B dials A's ticket), so
//! the two never race to connect to each other. REST on 127.0.0.1 with an API key.
//!
//! `syncthing serve` (v1.19) is a monitor process that starts the real one as its child:
//! resources are read from the child. Stopped (TERM, then KILL) on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use super::wire::{ST_PORTS, free_port};
use crate::proc;

pub const FOLDER: &str = "bench";
const API_KEY: &str = "can-bench-syncthing-key";
const GUI_PORTS: (u16, u16) = (27300, 27399);

/// One Syncthing instance: its home (keys, config, database) and its folder.
pub struct Node {
    pub name: String,
    pub home: PathBuf,
    pub folder: PathBuf,
    pub id: String,
    listen_port: u16,
    /// Where it listens for its peer (loopback unless [`Node::place`]d in a site).
    listen_ip: String,
    /// The network namespace it runs in, if not ours.
    netns: Option<String>,
    api: String,
    http: reqwest::Client,
    monitor: Option<Child>,
    serve: Option<u32>,
}

impl Node {
    /// Generates keys and a device id in `dir/home`; the folder is `dir/folder`.
    pub fn generate(dir: &Path, name: &str, ports: &mut Vec<u16>) -> anyhow::Result<Node> {
        let home = dir.join("home");
        let folder = dir.join("folder");
        std::fs::create_dir_all(folder.join(".stfolder"))?;
        let out = Command::new("syncthing")
            .arg("generate")
            .arg(format!("--home={}", home.display()))
            .args(["--no-default-folder", "--skip-port-probing"])
            .output()
            .context("running `syncthing generate` (is syncthing installed?)")?;
        ensure!(out.status.success(), "syncthing generate failed");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let id = text
            .lines()
            .find_map(|l| {
                l.split_once("Device ID: ")
                    .map(|(_, id)| id.trim().to_owned())
            })
            .context("syncthing generate printed no device id")?;
        let listen_port = free_port(ST_PORTS, ports)?;
        let gui_port = free_port(GUI_PORTS, ports)?;
        Ok(Node {
            name: name.to_owned(),
            home,
            folder,
            id,
            listen_port,
            listen_ip: "127.0.0.1".to_owned(),
            netns: None,
            api: format!("http://127.0.0.1:{gui_port}"),
            http: can_testkit::client(),
            monitor: None,
            serve: None,
        })
    }

    /// Runs it in network namespace `netns` (a WAN testbed site), listening for its peer on
    /// `listen_ip` and serving its REST API on `gui_ip` (reachable from the bench). Call
    /// before [`Node::write_config`].
    pub fn place(
        &mut self,
        netns: &str,
        listen_ip: std::net::Ipv4Addr,
        gui_ip: std::net::Ipv4Addr,
    ) {
        self.netns = Some(netns.to_owned());
        self.listen_ip = listen_ip.to_string();
        let port = self.api.rsplit(':').next().unwrap_or("8384").to_owned();
        self.api = format!("http://{gui_ip}:{port}");
    }

    /// Writes config.xml: the folder shared with `peer`, dialling it only if `dial`.
    pub fn write_config(
        &self,
        peer: &Node,
        dial: bool,
        peer_paused: bool,
        watcher_delay_s: u32,
    ) -> anyhow::Result<()> {
        let peer_addr = if dial {
            format!("tcp://{}:{}", peer.listen_ip, peer.listen_port)
        } else {
            "dynamic".to_owned()
        };
        let gui = self.api.trim_start_matches("http://");
        let xml = format!(
            r#"<configuration version="36">
    <folder id="{FOLDER}" label="{FOLDER}" path="{folder}" type="sendreceive" rescanIntervalS="3600" fsWatcherEnabled="true" fsWatcherDelayS="{watcher_delay_s}" ignorePerms="false" autoNormalize="true">
        <filesystemType>basic</filesystemType>
        <device id="{me}"></device>
        <device id="{peer}"></device>
        <minDiskFree unit="%">0</minDiskFree>
        <markerName>.stfolder</markerName>
    </folder>
    <device id="{me}" name="{my_name}" compression="metadata" introducer="false">
        <address>dynamic</address>
    </device>
    <device id="{peer}" name="{peer_name}" compression="metadata" introducer="false">
        <address>{peer_addr}</address>
        <paused>{peer_paused}</paused>
    </device>
    <gui enabled="true" tls="false" debugging="false">
        <address>{gui}</address>
        <apikey>{API_KEY}</apikey>
    </gui>
    <options>
        <listenAddress>tcp://{listen_ip}:{port}</listenAddress>
        <globalAnnounceEnabled>false</globalAnnounceEnabled>
        <localAnnounceEnabled>false</localAnnounceEnabled>
        <relaysEnabled>false</relaysEnabled>
        <natEnabled>false</natEnabled>
        <stunKeepaliveStartS>0</stunKeepaliveStartS>
        <urAccepted>-1</urAccepted>
        <crashReportingEnabled>false</crashReportingEnabled>
        <autoUpgradeIntervalH>0</autoUpgradeIntervalH>
        <startBrowser>false</startBrowser>
        <setLowPriority>false</setLowPriority>
        <announceLANAddresses>false</announceLANAddresses>
        <minHomeDiskFree unit="%">0</minHomeDiskFree>
    </options>
</configuration>
"#,
            folder = self.folder.display(),
            me = self.id,
            my_name = self.name,
            peer = peer.id,
            peer_name = peer.name,
            port = self.listen_port,
            listen_ip = self.listen_ip,
        );
        std::fs::write(self.home.join("config.xml"), xml)?;
        Ok(())
    }

    /// Starts `syncthing serve`; [`Node::wait_ready`] waits for it.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        ensure!(self.monitor.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("syncthing.log"))?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                // `ip netns exec` execs syncthing in place: the pid stays the monitor's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "syncthing"]);
                c
            }
            None => Command::new("syncthing"),
        };
        let child = cmd
            .arg("serve")
            .arg(format!("--home={}", self.home.display()))
            .args([
                "--no-browser",
                "--no-restart",
                "--no-upgrade",
                "--logflags=0",
            ])
            .env("STNODEFAULTFOLDER", "1")
            .env("STNOUPGRADE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting syncthing")?;
        self.monitor = Some(child);
        Ok(())
    }

    /// Waits (≤ 60 s) until the serving process exists and its REST API answers.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let monitor = self.monitor.as_ref().context("syncthing not started")?.id();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.serve.is_none() {
                self.serve = proc::children(monitor).first().copied();
            }
            if self.serve.is_some()
                && self
                    .get("/rest/system/ping")
                    .await
                    .is_ok_and(|v| v["ping"] == "pong")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "syncthing {} did not answer in 60 s; see {}",
                    self.name,
                    self.home.join("syncthing.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process that does the work (the monitor's child).
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.serve.context("syncthing is not running")
    }

    /// The monitor (`syncthing serve` itself), parent of [`Node::pid`].
    pub fn monitor_pid(&self) -> anyhow::Result<u32> {
        self.monitor
            .as_ref()
            .map(Child::id)
            .context("syncthing is not running")
    }

    /// TERM to both processes, KILL after 10 s.
    pub fn stop(&mut self) {
        let Some(mut monitor) = self.monitor.take() else {
            return;
        };
        let serve = self.serve.take();
        if let Some(pid) = serve {
            proc::signal(pid, libc::SIGTERM);
        }
        proc::signal(monitor.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let monitor_done = matches!(monitor.try_wait(), Ok(Some(_)));
            if monitor_done && !serve.is_some_and(proc::alive) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(pid) = serve {
            proc::signal(pid, libc::SIGKILL);
        }
        let _ = monitor.kill();
        let _ = monitor.wait();
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.api))
            .header("X-API-Key", API_KEY)
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        ensure!(r.status().is_success(), "GET {path}: {}", r.status());
        Ok(r.json().await?)
    }

    pub async fn patch(&self, path: &str, body: Value) -> anyhow::Result<()> {
        let r = self
            .http
            .patch(format!("{}{path}", self.api))
            .header("X-API-Key", API_KEY)
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        ensure!(r.status().is_success(), "PATCH {path}: {}", r.status());
        Ok(())
    }

    pub async fn folder_status(&self) -> anyhow::Result<Value> {
        self.get(&format!("/rest/db/status?folder={FOLDER}")).await
    }

    /// How complete `peer` is, as this node sees it (100 once it has everything we know of).
    pub async fn completion(&self, peer: &Node) -> anyhow::Result<f64> {
        let v = self
            .get(&format!(
                "/rest/db/completion?folder={FOLDER}&device={}",
                peer.id
            ))
            .await?;
        v["completion"].as_f64().context("no completion")
    }

    /// Waits until the folder is idle with `files` local files (e.g. after its initial scan).
    pub async fn wait_scanned(&self, files: u64, secs: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(s) = self.folder_status().await
                && s["state"] == "idle"
                && s["localFiles"].as_u64() == Some(files)
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "syncthing {} did not finish scanning {files} files in {secs} s",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn set_watcher_delay(&self, secs: u32) -> anyhow::Result<()> {
        self.patch(
            &format!("/rest/config/folders/{FOLDER}"),
            serde_json::json!({ "fsWatcherDelayS": secs }),
        )
        .await
    }

    pub async fn connected(&self, peer: &Node) -> bool {
        self.get("/rest/system/connections")
            .await
            .is_ok_and(|v| v["connections"][&peer.id]["connected"] == true)
    }

    pub async fn resume(&self, peer: &Node) -> anyhow::Result<()> {
        self.set_paused(peer, false).await
    }

    pub async fn set_paused(&self, peer: &Node, paused: bool) -> anyhow::Result<()> {
        self.patch(
            &format!("/rest/config/devices/{}", peer.id),
            serde_json::json!({ "paused": paused }),
        )
        .await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two instances sharing one folder; B dials A.
pub struct Pair {
    pub a: Node,
    pub b: Node,
}

impl Pair {
    pub fn new(dir: &Path, ports: &mut Vec<u16>) -> anyhow::Result<Pair> {
        Ok(Pair {
            a: Node::generate(&dir.join("st-a"), "a", ports)?,
            b: Node::generate(&dir.join("st-b"), "b", ports)?,
        })
    }

    /// Writes both configs (each other's device `paused` or not) and starts both.
    pub async fn start(&mut self, paused: bool, watcher_delay_s: u32) -> anyhow::Result<()> {
        self.a
            .write_config(&self.b, false, paused, watcher_delay_s)?;
        self.b
            .write_config(&self.a, true, paused, watcher_delay_s)?;
        self.a.spawn()?;
        self.b.spawn()?;
        self.a.wait_ready().await?;
        self.b.wait_ready().await
    }

    pub fn stop(&mut self) {
        self.a.stop();
        self.b.stop();
    }

    pub fn pids(&self) -> anyhow::Result<[u32; 2]> {
        Ok([self.a.pid()?, self.b.pid()?])
    }
}

/// Writes `data` to `path` with a fixed modification time, so that two folders seeded with
/// the same files are identical to Syncthing (same content, size and mtime).
pub fn write_file(path: &Path, data: &[u8], mtime: Option<SystemTime>) -> anyhow::Result<()> {
    let f = std::fs::File::create(path)?;
    std::io::Write::write_all(&mut &f, data)?;
    if let Some(t) = mtime {
        f.set_modified(t)?;
    }
    Ok(())
}

/// Whether `path` exists with exactly `size` bytes (Syncthing renames a file into place
/// only once it is complete and verified).
pub fn has_file(path: &Path, size: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == size)
}
