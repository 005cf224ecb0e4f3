//! One peer connection: admission, hello, then the control stream in both directions,
//! serving the peer's requests, and fetching assets from it. Thin I/O around the engine.

use std::sync::Arc;
use std::time::Duration;

use can_proto::peer::{Control, Hello, Request, Response, control, response};
use futures_util::StreamExt;
use iroh::EndpointId;
use iroh::endpoint::{Connection, RecvStream, SendStream, VarInt};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::admission::{AdmissionError, Role, admit};
use crate::can_client::CanError;
use crate::engine::{Cmd, Shared};
use crate::events::EngineEvent;
use crate::reconcile::FEATURE;
use crate::wire::{
    MAX_FRAME, MAX_PRE_ADMISSION_FRAME, WireError, expect_frame, read_frame, write_frame,
};

/// Application close codes (also in docs/protocol.md).
pub mod close {
    pub const ADMISSION_FAILED: u32 = 1;
    pub const PROTOCOL_ERROR: u32 = 2;
    pub const MISBEHAVING: u32 = 3;
    pub const DUPLICATE: u32 = 4;
    pub const SHUTDOWN: u32 = 5;
    pub const RATE_LIMITED: u32 = 6;
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const READ_BUFFER: usize = 256 * 1024;

pub fn close_conn(conn: &Connection, code: u32, reason: &str) {
    conn.close(VarInt::from_u32(code), reason.as_bytes());
}

/// Runs a connection from admission to its end; reports to the engine throughout.
pub(crate) async fn run(shared: Arc<Shared>, conn: Connection, role: Role) {
    let remote = conn.remote_id();
    let peer = remote.to_string();
    let mut result = session(&shared, &conn, role).await;
    // The side that finds the mismatch first closes at once, so the other may see only
    // "connection lost": the close code tells it what happened.
    if matches!(
        result,
        Err(SessionError::Admission(AdmissionError::Wire(_)))
    ) && closed_for_admission(&conn)
    {
        result = Err(SessionError::Admission(AdmissionError::WrongPassphrase));
    }
    match result {
        Ok(reason) => tracing::info!(peer = %remote.fmt_short(), %reason, "peer connection ended"),
        Err(SessionError::Admission(AdmissionError::WrongPassphrase)) => {
            tracing::warn!(peer = %remote.fmt_short(), "peer refused: it does not know the passphrase");
            shared.admission_failed(remote);
            close_conn(&conn, close::ADMISSION_FAILED, "admission failed");
            let _ = shared.events.send(EngineEvent::AdmissionRefused { peer });
        }
        Err(e) => {
            tracing::info!(peer = %remote.fmt_short(), error = %e, "peer connection failed");
            let code = match e {
                SessionError::Admission(_) => {
                    shared.admission_failed(remote);
                    close::ADMISSION_FAILED
                }
                _ => close::PROTOCOL_ERROR,
            };
            close_conn(&conn, code, &e.to_string());
        }
    }
}

fn closed_for_admission(conn: &Connection) -> bool {
    matches!(
        conn.close_reason(),
        Some(iroh::endpoint::ConnectionError::ApplicationClosed(app))
            if app.error_code.into_inner() == u64::from(close::ADMISSION_FAILED)
    )
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("admission: {0}")]
    Admission(#[from] AdmissionError),
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("connection: {0}")]
    Connection(#[from] iroh::endpoint::ConnectionError),
    #[error("handshake timed out")]
    Timeout,
    #[error("engine stopped")]
    Engine,
}

async fn session(
    shared: &Arc<Shared>,
    conn: &Connection,
    role: Role,
) -> Result<String, SessionError> {
    let remote = conn.remote_id();
    let (mut send, recv) = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        match role {
            Role::Dialer => conn.open_bi().await,
            Role::Listener => conn.accept_bi().await,
        }
    })
    .await
    .map_err(|_| SessionError::Timeout)??;
    let mut recv = BufReader::with_capacity(64 * 1024, recv);
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        admit(
            &mut recv,
            &mut send,
            &shared.keys.admission,
            shared.endpoint.id(),
            remote,
            role,
        ),
    )
    .await
    .map_err(|_| SessionError::Timeout)??;

    let hello = Control {
        kind: Some(control::Kind::Hello(Hello {
            device_name: shared.device_name.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            features: shared.features.clone(),
        })),
    };
    write_frame(&mut send, &hello).await?;
    // Both sides send Hello before anything else, so waiting for the peer's (bounded) tells
    // us which features it speaks before the first reconciliation message.
    let theirs: Control =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, expect_frame(&mut recv, MAX_FRAME))
            .await
            .map_err(|_| SessionError::Timeout)??;
    let Some(control::Kind::Hello(their_hello)) = theirs.kind else {
        return Err(WireError::Unexpected("first control message must be Hello").into());
    };
    let rbsr = shared.features.iter().any(|f| f == FEATURE)
        && their_hello.features.iter().any(|f| f == FEATURE);

    let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Control>();
    let (reply, accepted) = oneshot::channel();
    let conn_id = conn.stable_id();
    let dialer = match role {
        Role::Dialer => shared.endpoint.id(),
        Role::Listener => remote,
    };
    shared
        .cmd
        .send(Cmd::PeerUp {
            id: remote,
            conn_id,
            dialer,
            device_name: their_hello.device_name.chars().take(128).collect(),
            rbsr,
            conn: conn.clone(),
            control: control_tx,
            reply,
        })
        .await
        .map_err(|_| SessionError::Engine)?;
    if !accepted.await.unwrap_or(false) {
        close_conn(conn, close::DUPLICATE, "duplicate connection");
        return Ok("duplicate connection".into());
    }

    let writer = async {
        while let Some(msg) = control_rx.recv().await {
            write_frame(&mut send, &msg).await?;
        }
        Ok::<_, SessionError>("engine closed the control stream".to_owned())
    };
    let reader = async {
        loop {
            match read_frame::<Control, _>(&mut recv, MAX_FRAME).await {
                Ok(Some(msg)) => shared
                    .cmd
                    .send(Cmd::Control {
                        id: remote,
                        conn_id,
                        msg,
                    })
                    .await
                    .map_err(|_| SessionError::Engine)?,
                Ok(None) => return Ok("peer closed the control stream".to_owned()),
                Err(e) => return Err(SessionError::Wire(e)),
            }
        }
    };
    let server = async {
        loop {
            let (send, recv) = conn.accept_bi().await?;
            tokio::spawn(serve(shared.clone(), remote, send, recv));
        }
        #[allow(unreachable_code)]
        Ok::<_, SessionError>(String::new())
    };
    let result = tokio::select! {
        r = writer => r,
        r = reader => r,
        r = server => r,
        reason = conn.closed() => Ok(reason.to_string()),
    };
    let reason = match &result {
        Ok(r) => r.clone(),
        Err(e) => e.to_string(),
    };
    let _ = shared
        .cmd
        .send(Cmd::PeerDown {
            id: remote,
            conn_id,
            reason: reason.clone(),
        })
        .await;
    if let Err(SessionError::Wire(e)) = &result {
        close_conn(conn, close::PROTOCOL_ERROR, &e.to_string());
    }
    result
}

/// Answers one request of the peer: the asset from our CAN Service, or why not.
async fn serve(
    shared: Arc<Shared>,
    remote: EndpointId,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let request: Request = match expect_frame(&mut recv, MAX_PRE_ADMISSION_FRAME).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "malformed request");
            let _ = send.reset(VarInt::from_u32(close::PROTOCOL_ERROR));
            return;
        }
    };
    let refuse = |reason: &str| Response {
        kind: Some(response::Kind::Refused(reason.to_owned())),
    };
    let Ok(hash) = <[u8; 32]>::try_from(request.hash.as_slice()) else {
        let _ = write_frame(&mut send, &refuse("malformed hash")).await;
        let _ = send.finish();
        return;
    };
    if shared.is_paused() {
        let _ = write_frame(&mut send, &refuse("paused")).await;
        let _ = send.finish();
        return;
    }
    let (asset, mut content) = match shared.can.fetch(&hash).await {
        Ok(x) => x,
        Err(e) => {
            let reason = match e {
                CanError::NotFound => "not found",
                _ => "store unavailable",
            };
            let _ = write_frame(&mut send, &refuse(reason)).await;
            let _ = send.finish();
            return;
        }
    };
    let (name, size) = (asset.name.clone(), asset.size);
    let result = async {
        write_frame(
            &mut send,
            &Response {
                kind: Some(response::Kind::Asset(asset)),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        while let Some(chunk) = content.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            send.write_chunk(chunk).await.map_err(|e| e.to_string())?;
        }
        send.finish().map_err(|e| e.to_string())?;
        // Delivered only once the peer has acknowledged every byte.
        send.stopped().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    }
    .await;
    match result {
        Ok(()) => {
            let _ = shared
                .cmd
                .send(Cmd::Served {
                    id: remote,
                    hash,
                    name,
                    size,
                })
                .await;
        }
        Err(e) => {
            tracing::debug!(error = %e, "sending an asset failed");
            // A reset, not a clean end: the receiver must not take a short stream as whole.
            let _ = send.reset(VarInt::from_u32(close::PROTOCOL_ERROR));
        }
    }
}

/// How a fetch from a peer ended badly.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("peer refused: {0}")]
    Refused(String),
    #[error("peer misbehaved: {0}")]
    Misbehaved(String),
    #[error("local CAN Service: {0}")]
    Store(CanError),
    #[error("transfer failed: {0}")]
    Transport(String),
}

/// What a successful fetch stored.
pub struct Fetched {
    pub name: String,
    pub size: u64,
    pub created: bool,
}

/// Requests `hash` from the peer and streams it into our CAN Service, which re-hashes it.
pub(crate) async fn fetch(
    shared: Arc<Shared>,
    conn: Connection,
    hash: [u8; 32],
) -> Result<Fetched, FetchError> {
    let remote = conn.remote_id();
    let transport = |e: &dyn std::fmt::Display| FetchError::Transport(e.to_string());
    let (mut send, recv) = conn.open_bi().await.map_err(|e| transport(&e))?;
    write_frame(
        &mut send,
        &Request {
            hash: hash.to_vec(),
        },
    )
    .await
    .map_err(|e| transport(&e))?;
    send.finish().map_err(|e| transport(&e))?;
    let mut recv = BufReader::with_capacity(READ_BUFFER, recv);
    let response: Response = expect_frame(&mut recv, MAX_FRAME)
        .await
        .map_err(|e| match e {
            WireError::Io(_) | WireError::Truncated => transport(&e),
            other => FetchError::Misbehaved(other.to_string()),
        })?;
    let mut asset = match response.kind {
        Some(response::Kind::Refused(reason)) => return Err(FetchError::Refused(reason)),
        Some(response::Kind::Asset(asset)) => asset,
        None => return Err(FetchError::Misbehaved("empty response".into())),
    };
    if asset.hash != hash {
        return Err(FetchError::Misbehaved(
            "sent a different asset than requested".into(),
        ));
    }
    asset.origin = format!("peer:{remote}");
    asset.seq = 0;
    let (name, size) = (asset.name.clone(), asset.size);
    // Remember whether the peer's stream failed, to tell a broken transfer from a store
    // that is down when the upload to the store fails.
    let peer_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = peer_failed.clone();
    let body = tokio_util::io::ReaderStream::with_capacity(recv.take(size), READ_BUFFER).inspect(
        move |r| {
            if r.is_err() {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        },
    );
    let result = shared.can.ingest(asset, body).await;
    if result.is_err() && peer_failed.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(FetchError::Transport("the peer's stream broke off".into()));
    }
    match result {
        Ok(ingested) => Ok(Fetched {
            name,
            size,
            created: ingested.created,
        }),
        Err(CanError::Rejected(message)) => Err(FetchError::Misbehaved(format!(
            "content rejected: {message}"
        ))),
        Err(e @ CanError::Status { status: 400, .. }) => Err(transport(&e)),
        Err(e) => Err(FetchError::Store(e)),
    }
}
