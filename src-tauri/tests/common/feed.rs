//! A local update feed: throwaway signing keys made with the Tauri CLI the release workflow
//! signs with (ui/node_modules), and an in-process HTTP server serving `latest.json` files
//! and the bundles they point at.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;

/// The Tauri CLI pinned in ui/package.json.
fn tauri_cli() -> PathBuf {
    let cli =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/node_modules/@tauri-apps/cli/tauri.js");
    assert!(
        cli.exists(),
        "{} is missing: run `npm ci` in ui/ (scripts/setup does it)",
        cli.display()
    );
    cli
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .expect("node (the Tauri CLI) could not be started");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A minisign key pair made by `tauri signer generate`, with no password.
pub struct Signer {
    key: PathBuf,
    /// As tauri.conf.json's `plugins.updater.pubkey` takes it.
    pub pubkey: String,
}

impl Signer {
    pub fn generate(dir: &Path, name: &str) -> Signer {
        let key = dir.join(format!("{name}.key"));
        run(Command::new("node")
            .arg(tauri_cli())
            .args(["signer", "generate", "--ci", "-p", "", "-w"])
            .arg(&key));
        let pubkey = std::fs::read_to_string(key.with_extension("key.pub")).unwrap();
        Signer {
            key,
            pubkey: pubkey.trim().to_owned(),
        }
    }

    /// `tauri signer sign --app-version`: the `.sig` file's content, which is what a feed's
    /// `signature` field holds.
    pub fn sign(&self, file: &Path, version: &str) -> String {
        run(Command::new("node")
            .arg(tauri_cli())
            .args(["signer", "sign", "--app-version", version, "-f"])
            .arg(&self.key)
            .arg(file)
            .env("TAURI_SIGNING_PRIVATE_KEY_PASSWORD", "")
            .env_remove("TAURI_SIGNING_PRIVATE_KEY"));
        let sig = std::fs::read_to_string(format!("{}.sig", file.display())).unwrap();
        std::fs::remove_file(format!("{}.sig", file.display())).unwrap();
        sig.trim().to_owned()
    }
}

/// An AppImage stand-in: what the updater checks of one (an ELF header) and a marker.
pub fn fake_appimage(marker: &str) -> Vec<u8> {
    let mut b = b"\x7fELF\x02\x01\x01".to_vec();
    b.resize(64, 0);
    b.extend_from_slice(marker.as_bytes());
    b
}

/// The updater's key for this machine in a feed's `platforms` (a binary no installer made
/// has no bundle type, so the plain `{os}-{arch}`).
pub fn platform_key() -> String {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        os => os,
    };
    format!("{os}-{}", std::env::consts::ARCH)
}

/// A `latest.json` as the release workflow writes it.
pub fn latest_json(version: &str, notes: &str, url: &str, signature: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": version,
        "notes": notes,
        "pub_date": "2026-03-01T12:00:00Z",
        "platforms": { platform_key(): { "url": url, "signature": signature } }
    }))
    .unwrap()
}

#[derive(Clone, Default)]
struct Files {
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// Paths whose body starts and then never goes on.
    stalled: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    hits: Arc<Mutex<Vec<String>>>,
}

/// Serves whatever was [`FeedServer::put`] at its path, on loopback; 404 otherwise.
pub struct FeedServer {
    pub url: String,
    state: Files,
    task: tokio::task::JoinHandle<()>,
}

impl FeedServer {
    pub async fn start() -> FeedServer {
        let state = Files::default();
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FeedServer { url, state, task }
    }

    pub fn put(&self, path: &str, body: Vec<u8>) {
        self.state
            .files
            .lock()
            .unwrap()
            .insert(path.to_owned(), body);
    }

    /// Serves `start` at `path`, then nothing more, never ending the body (a stalled
    /// download).
    pub fn put_stalled(&self, path: &str, start: Vec<u8>) {
        self.state
            .stalled
            .lock()
            .unwrap()
            .insert(path.to_owned(), start);
    }

    /// The paths requested so far, in order.
    pub fn hits(&self) -> Vec<String> {
        self.state.hits.lock().unwrap().clone()
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(s): State<Files>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    s.hits.lock().unwrap().push(path.clone());
    if let Some(start) = s.stalled.lock().unwrap().get(&path).cloned() {
        let body =
            futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from(start)) })
                .chain(futures_util::stream::pending());
        return (StatusCode::OK, axum::body::Body::from_stream(body)).into_response();
    }
    match s.files.lock().unwrap().get(&path) {
        Some(body) => (StatusCode::OK, Bytes::from(body.clone())).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
