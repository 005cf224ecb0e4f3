//! The real `can-service` binary as a child process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const KEY: &str = "test-sync-key-0123456789";

/// A running `can-service` process; killed on drop.
pub struct Service {
    pub child: Child,
    pub url: String,
    pub dir: PathBuf,
}

impl Service {
    /// Starts the service on a free loopback port with `data_dir` = `dir/data` and the extra
    /// YAML lines given.
    pub fn start(dir: &Path, extra_yaml: &str) -> Service {
        Self::start_on(dir, extra_yaml, "127.0.0.1:0")
    }

    /// Starts it listening on `listen` (e.g. the port of an earlier run, to restart it).
    pub fn start_on(dir: &Path, extra_yaml: &str, listen: &str) -> Service {
        Self::start_in(dir, extra_yaml, listen, None)
    }

    /// Starts it inside a network namespace the test created.
    pub fn start_in(dir: &Path, extra_yaml: &str, listen: &str, netns: Option<&str>) -> Service {
        std::fs::create_dir_all(dir).expect("service dir");
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!("data_dir: {}\n{extra_yaml}", dir.join("data").display()),
        )
        .expect("write config");
        let mut child = crate::command("can-service", netns)
            .arg("--config")
            .arg(&config)
            .args(["--listen", listen])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn can-service");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("can-service did not report its address within 60 s");
        let url = line
            .trim()
            .strip_prefix("can-service listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Service {
            child,
            url,
            dir: dir.to_owned(),
        }
    }

    pub fn with_key(dir: &Path) -> Service {
        Self::start(dir, &format!("sync_api_key: {KEY}\n"))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts it again on the same data directory and port (after [`Service::kill`]).
    pub fn restart(&mut self, extra_yaml: &str) {
        self.kill();
        let dir = self.dir.clone();
        let listen = self.url.trim_start_matches("http://").to_owned();
        let fresh = Service::start_on(&dir, extra_yaml, &listen);
        // The old handle's process is already reaped; dropping it is harmless.
        let _old = std::mem::replace(self, fresh);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, as a service manager stops it, then waits for it to exit (at most 30 s,
    /// then SIGKILL). Returns whether it exited by itself, with status 0.
    #[cfg(unix)]
    pub fn stop(&mut self) -> bool {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on a child process this test started; nothing is shared.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// SIGKILL: no chance to clean up, like a crash or power cut of the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// Files left in the temp directory (uploads through the public API).
    pub fn temp_files(&self) -> usize {
        std::fs::read_dir(self.data_dir().join("tmp")).map_or(0, |d| d.count())
    }

    /// Partial uploads kept for a resume (sync uploads, docs/sync-api.md).
    pub fn partial_files(&self) -> usize {
        std::fs::read_dir(self.data_dir().join("partial")).map_or(0, |d| d.count())
    }

    /// Uploads in progress or kept unfinished, of either API: temp files and partials.
    pub fn upload_files(&self) -> usize {
        self.temp_files() + self.partial_files()
    }

    /// Content files under objects/.
    pub fn content_files(&self) -> usize {
        let Ok(shards) = std::fs::read_dir(self.data_dir().join("objects")) else {
            return 0;
        };
        shards
            .filter_map(Result::ok)
            .map(|s| std::fs::read_dir(s.path()).map_or(0, |d| d.count()))
            .sum()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client() -> reqwest::Client {
    // Where iroh is in the build, reqwest has no TLS provider of its own: give it ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

pub fn b3(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// Deterministic pseudo-random bytes (BLAKE3's XOF: fast even in debug builds).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut v);
    v
}

/// Uploads through the public API; returns (status, asset JSON).
pub async fn upload(
    c: &reqwest::Client,
    svc: &Service,
    name: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let r = c
        .post(svc.url("/api/assets"))
        .header("X-Filename", percent_encode(name))
        .body(body)
        .send()
        .await
        .expect("upload");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Polls `check` every 20 ms until it holds or `secs` pass.
pub async fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// Like [`eventually`], for an async check.
pub async fn eventually_async<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check().await
}

/// Whether the service serves the asset.
pub async fn has_asset(c: &reqwest::Client, base_url: &str, hash: &str) -> bool {
    c.get(format!("{base_url}/api/assets/{hash}/meta"))
        .send()
        .await
        .map(|r| r.status() == 200)
        .unwrap_or(false)
}

/// The asset's content as the service serves it (`GET /api/assets/{hash}`).
pub async fn content(c: &reqwest::Client, base_url: &str, hash: &str) -> bytes::Bytes {
    c.get(format!("{base_url}/api/assets/{hash}"))
        .send()
        .await
        .expect("GET asset")
        .bytes()
        .await
        .expect("asset body")
}

/// Bytes of `hash` the service kept of an interrupted sync upload
/// (`GET /sync/v1/partials/{hash}`, with [`KEY`]); 0 when it keeps none.
pub async fn partial_received(c: &reqwest::Client, base_url: &str, hash: &str) -> u64 {
    use prost::Message;
    let resp = c
        .get(format!("{base_url}/sync/v1/partials/{hash}"))
        .header("Authorization", format!("Bearer {KEY}"))
        .send()
        .await;
    match resp {
        Ok(r) if r.status() == 200 => r
            .bytes()
            .await
            .ok()
            .and_then(|b| can_proto::sync_api::Partial::decode(b).ok())
            .map_or(0, |p| p.received),
        _ => 0,
    }
}
