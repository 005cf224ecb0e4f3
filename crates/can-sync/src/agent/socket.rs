//! The agent's control socket: a Unix socket (`control_socket`, default
//! `<data_dir>/control.sock`) that `can-sync status|pause|resume` use to ask the running agent.
//!
//! One JSON request per line (`{"cmd":"status"}`, `"pause"`, `"resume"`, `"apply_deletions"`,
//! `"keep_deletions"`), one JSON answer
//! per line (`{"ok":true,"paused":false,"status":{...}}` or `{"ok":false,"error":"..."}`).
//! Only the agent's own user may use it: the socket file is made mode 0600 right after it
//! is bound, and — since another user could connect between bind and chmod — every
//! connection's peer credentials are checked too. Requests are bounded (1 KiB, 5 s, 8 at
//! once); anything else is answered with an error, never a panic.

#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::EngineHandle;

/// The longest request line taken.
const MAX_REQUEST: u64 = 1024;
/// A client must send its request and read the answer within this.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed unanswered.
const MAX_CLIENTS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Pause,
    Resume,
    /// Carry out the deletions the mass-deletion guard holds.
    ApplyDeletions,
    /// Keep our assets: undo the held deletions on every device.
    KeepDeletions,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// How many held deletions were released (`apply_deletions`, `keep_deletions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<usize>,
    /// The engine's [`Status`](crate::Status), as the app sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

impl Response {
    fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(message.into()),
            ..Self::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("another agent is running and owns the control socket {0}")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; not touching it")]
    NotASocket(PathBuf),
    #[error("no agent is running (nothing answers on {path}): {source}")]
    NotRunning {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the agent did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the agent's answer is not valid: {0}")]
    BadAnswer(String),
    #[error("the control socket is not available on this platform")]
    Unsupported,
}

/// Answers one request (pure apart from the engine calls).
async fn answer(engine: &EngineHandle, request: Request) -> Response {
    let done = match request {
        Request::Status => Ok(None),
        Request::Pause => engine.pause().await.map(|()| None),
        Request::Resume => engine.resume().await.map(|()| None),
        Request::ApplyDeletions => engine.release_deletions(true).await.map(Some),
        Request::KeepDeletions => engine.release_deletions(false).await.map(Some),
    };
    let released = match done {
        Ok(r) => r,
        Err(e) => return Response::error(e.to_string()),
    };
    match engine.status().await {
        Ok(status) => Response {
            ok: true,
            error: None,
            paused: Some(status.paused),
            released,
            status: (request == Request::Status)
                .then(|| serde_json::to_value(&status).ok())
                .flatten(),
        },
        Err(e) => Response::error(e.to_string()),
    }
}

#[cfg(unix)]
pub use unix::{ControlSocket, bind, request};

#[cfg(unix)]
mod unix {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::sync::Arc;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{UnixListener, UnixStream};
    use tokio::sync::Semaphore;
    use tokio::task::JoinHandle;

    use super::*;

    /// The bound socket; dropping it stops serving and removes the file.
    pub struct ControlSocket {
        path: PathBuf,
        task: JoinHandle<()>,
    }

    impl ControlSocket {
        pub fn path(&self) -> &Path {
            &self.path
        }
    }

    impl Drop for ControlSocket {
        fn drop(&mut self) {
            self.task.abort();
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ControlError + '_ {
        move |source| ControlError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// Binds the socket and serves it. A stale socket (nobody answers) is replaced; a live
    /// one belongs to another agent and is left alone.
    pub fn bind(path: &Path, engine: EngineHandle) -> Result<ControlSocket, ControlError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(path))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(ControlError::InUse(path.to_owned()));
                }
                std::fs::remove_file(path).map_err(io(path))?;
            }
            Ok(_) => return Err(ControlError::NotASocket(path.to_owned())),
            Err(_) => {}
        }
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(io(path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
        listener.set_nonblocking(true).map_err(io(path))?;
        let listener = UnixListener::from_std(listener).map_err(io(path))?;
        let task = tokio::spawn(serve(listener, engine));
        Ok(ControlSocket {
            path: path.to_owned(),
            task,
        })
    }

    async fn serve(listener: UnixListener, engine: EngineHandle) {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let clients = Arc::new(Semaphore::new(MAX_CLIENTS));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == me => {}
                Ok(cred) => {
                    tracing::warn!(uid = cred.uid(), "control socket: refused another user");
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "control socket: no peer credentials");
                    continue;
                }
            }
            let Ok(permit) = clients.clone().try_acquire_owned() else {
                continue;
            };
            let engine = engine.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let _ = tokio::time::timeout(CLIENT_TIMEOUT, client(stream, &engine)).await;
            });
        }
    }

    async fn client(stream: UnixStream, engine: &EngineHandle) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        BufReader::new(read.take(MAX_REQUEST))
            .read_line(&mut line)
            .await?;
        let response = match serde_json::from_str::<Request>(line.trim()) {
            Ok(request) => answer(engine, request).await,
            Err(_) if !line.ends_with('\n') && line.len() as u64 >= MAX_REQUEST => {
                Response::error("request too long")
            }
            Err(e) => Response::error(format!(
                "not a request ({e}); expected {{\"cmd\":\"status\"|\"pause\"|\"resume\"|\"apply_deletions\"|\"keep_deletions\"}}"
            )),
        };
        let mut out = serde_json::to_vec(&response).unwrap_or_default();
        out.push(b'\n');
        write.write_all(&out).await?;
        write.shutdown().await
    }

    /// Sends one request to the agent behind `path` and returns its answer.
    pub async fn request(path: &Path, request: Request) -> Result<Response, ControlError> {
        let exchange = async {
            let stream =
                UnixStream::connect(path)
                    .await
                    .map_err(|source| ControlError::NotRunning {
                        path: path.to_owned(),
                        source,
                    })?;
            let (read, mut write) = stream.into_split();
            let mut line = serde_json::to_vec(&request).unwrap_or_default();
            line.push(b'\n');
            write.write_all(&line).await.map_err(io(path))?;
            // An answer holds a status with up to a few thousand peers and transfers.
            let mut answer = String::new();
            BufReader::new(read.take(16 << 20))
                .read_line(&mut answer)
                .await
                .map_err(io(path))?;
            if answer.is_empty() {
                return Err(ControlError::BadAnswer(
                    "the agent closed the connection without answering (another user's agent?)"
                        .into(),
                ));
            }
            serde_json::from_str(&answer).map_err(|e| ControlError::BadAnswer(e.to_string()))
        };
        tokio::time::timeout(CLIENT_TIMEOUT, exchange)
            .await
            .map_err(|_| ControlError::Timeout(CLIENT_TIMEOUT))?
    }
}

#[cfg(not(unix))]
pub struct ControlSocket;

#[cfg(not(unix))]
impl ControlSocket {
    pub fn path(&self) -> &Path {
        Path::new("")
    }
}

#[cfg(not(unix))]
pub fn bind(_path: &Path, _engine: EngineHandle) -> Result<ControlSocket, ControlError> {
    Err(ControlError::Unsupported)
}

#[cfg(not(unix))]
pub async fn request(_path: &Path, _request: Request) -> Result<Response, ControlError> {
    Err(ControlError::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_by_cmd() {
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"pause"}"#).unwrap(),
            Request::Pause
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"shutdown"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
        let r: Response = serde_json::from_str(r#"{"ok":false,"error":"x"}"#).unwrap();
        assert!(!r.ok && r.status.is_none());
    }
}
