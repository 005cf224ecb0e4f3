//! The real `can-sync` agent as a child process, with its JSON event lines collected.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// A running agent; killed on drop.
pub struct Agent {
    child: Child,
    pub dir: PathBuf,
    pub config: PathBuf,
    events: Arc<Mutex<Vec<Value>>>,
    /// The network namespace it runs in (kept across restarts).
    netns: Option<String>,
}

impl Agent {
    fn write_config(
        dir: &Path,
        can_url: &str,
        key: &str,
        passphrase: &str,
        extra_yaml: &str,
    ) -> PathBuf {
        std::fs::create_dir_all(dir).expect("agent dir");
        let config = dir.join("config.yaml");
        // Loopback defaults; a key given in `extra_yaml` replaces its default line.
        let defaults = [
            ("bind_addr", "127.0.0.1:0"),
            ("relay_urls", "[]"),
            ("pkarr_relays", "[]"),
            ("local_discovery", "false"),
            ("poll_interval_secs", "2"),
        ];
        let mut text = format!(
            "can_service_url: {can_url}\nsync_api_key: {key}\nsync_passphrase: \"{passphrase}\"\n\
             data_dir: {data}\nticket_file: {ticket}\n",
            data = dir.join("state").display(),
            ticket = dir.join("ticket").display(),
        );
        for (k, v) in defaults {
            if !extra_yaml.lines().any(|l| l.starts_with(&format!("{k}:"))) {
                text.push_str(&format!("{k}: {v}\n"));
            }
        }
        text.push_str(extra_yaml);
        std::fs::write(&config, text).expect("write agent config");
        config
    }

    /// Writes `dir/config.yaml` (loopback only: no relays, no LAN discovery) plus `extra_yaml`,
    /// and starts the agent. Its ticket is written to `dir/ticket`.
    pub fn start(
        dir: &Path,
        can_url: &str,
        key: &str,
        passphrase: &str,
        extra_yaml: &str,
    ) -> Agent {
        let config = Self::write_config(dir, can_url, key, passphrase, extra_yaml);
        Self::spawn(dir, config, None)
    }

    /// Agents A and B (in `dir/agent-a` and `dir/agent-b`) for the stores at `a_url` and
    /// `b_url`, sharing `passphrase`; B dials A by its ticket, so they connect on loopback.
    pub fn start_pair(dir: &Path, a_url: &str, b_url: &str, passphrase: &str) -> (Agent, Agent) {
        let a = Self::start(&dir.join("agent-a"), a_url, crate::KEY, passphrase, "");
        let b = Self::start(
            &dir.join("agent-b"),
            b_url,
            crate::KEY,
            passphrase,
            &a.connect_line(),
        );
        (a, b)
    }

    /// Like [`Agent::start`], inside a network namespace the test created.
    pub fn start_in(
        dir: &Path,
        can_url: &str,
        key: &str,
        passphrase: &str,
        extra_yaml: &str,
        netns: &str,
    ) -> Agent {
        let config = Self::write_config(dir, can_url, key, passphrase, extra_yaml);
        Self::spawn(dir, config, Some(netns))
    }

    fn spawn(dir: &Path, config: PathBuf, netns: Option<&str>) -> Agent {
        let mut child = crate::command("can-sync", netns)
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("AGENT_LOG").unwrap_or_else(|_| "warn,can_sync=info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn can-sync");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("events").push(v);
                }
            }
        });
        Agent {
            child,
            dir: dir.to_owned(),
            config,
            events,
            netns: netns.map(str::to_owned),
        }
    }

    /// The config line that makes another agent dial this one by its ticket.
    pub fn connect_line(&self) -> String {
        format!("connect_ticket_file: {}\n", self.ticket_path().display())
    }

    pub fn ticket_path(&self) -> PathBuf {
        self.dir.join("ticket")
    }

    /// Events seen so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().expect("events").clone()
    }

    /// How many events of this kind were seen.
    pub fn count(&self, event: &str) -> usize {
        self.events().iter().filter(|e| e["event"] == event).count()
    }

    /// A string field of the agent's `ready` line (`endpoint_id`, `ticket`, `control_socket`,
    /// `metrics_addr`); panics if it has not been printed.
    pub fn ready(&self, key: &str) -> String {
        self.events()
            .iter()
            .find(|e| e["event"] == "ready")
            .and_then(|e| e[key].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no `ready` line with {key} yet"))
    }

    /// `can-sync status --json` of this agent, through its control socket (the real CLI).
    /// The status, or `None` when the agent does not answer (not up yet, or gone).
    pub fn try_status(&self) -> Option<Value> {
        let out = crate::command("can-sync", None)
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Peers connected now (0 while the agent does not answer).
    pub fn peer_count(&self) -> usize {
        self.try_status()
            .and_then(|s| s["peers"].as_array().map(|p| p.len()))
            .unwrap_or(0)
    }

    pub fn status(&self) -> Value {
        let out = crate::command("can-sync", None)
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .output()
            .expect("run can-sync status");
        assert!(
            out.status.success(),
            "can-sync status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
    }

    /// Waits until an event of this kind has been seen, or `secs` pass.
    pub async fn wait_for(&self, event: &str, secs: u64) -> bool {
        crate::eventually(secs, || self.count(event) > 0).await
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Rewrites the config file (takes effect at the next [`Agent::restart`]).
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).expect("read agent config");
        std::fs::write(&self.config, edit(text)).expect("write agent config");
    }

    /// Starts the agent again with the same config, in the same network namespace (after
    /// [`Agent::kill`]); events restart empty.
    pub fn restart(&mut self) {
        self.kill();
        let fresh = Self::spawn(
            &self.dir.clone(),
            self.config.clone(),
            self.netns.clone().as_deref(),
        );
        let _old = std::mem::replace(self, fresh);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every asset of a service: hash → (size, name), following pagination.
pub async fn list_all(
    c: &reqwest::Client,
    base_url: &str,
) -> std::collections::HashMap<String, (u64, String)> {
    let mut out = std::collections::HashMap::new();
    let mut after = 0;
    loop {
        let page: Value = c
            .get(format!("{base_url}/api/assets?after={after}&limit=1000"))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("list json");
        for a in page["assets"].as_array().expect("assets") {
            out.insert(
                a["hash"].as_str().unwrap_or_default().to_owned(),
                (
                    a["size"].as_u64().unwrap_or(0),
                    a["name"].as_str().unwrap_or_default().to_owned(),
                ),
            );
        }
        match page["next"].as_u64() {
            Some(n) => after = n,
            None => return out,
        }
    }
}
