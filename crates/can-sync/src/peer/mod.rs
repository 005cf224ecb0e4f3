//! One peer connection: admission, Hello, then the control stream ([`control`]), serving the
//! peer's requests ([`serve`]) and fetching assets from it ([`fetch`]). Thin I/O around the
//! actor; depends on the engine's narrow [`Context`](crate::context::Context) only.

mod control;
pub(crate) mod fetch;
mod serve;
#[cfg(feature = "builtin-store")]
mod split;

use std::sync::Arc;
use std::time::Duration;

use can_proto::peer::{Control, Hello, control as ctl};
use iroh::endpoint::{Connection, VarInt};
use tokio::io::BufReader;
use tokio::sync::{mpsc, oneshot};

use crate::admission::{AdmissionError, Role, admit};
use crate::context::{AdmissionSlot, Cmd, Context};
use crate::events::EngineEvent;
use crate::reconcile::FEATURE;
use crate::wire::{MAX_FRAME, WireError, expect_frame, write_frame};

/// Application close codes (also in docs/protocol.md).
pub mod close {
    pub const ADMISSION_FAILED: u32 = 1;
    pub const PROTOCOL_ERROR: u32 = 2;
    pub const MISBEHAVING: u32 = 3;
    pub const DUPLICATE: u32 = 4;
    pub const SHUTDOWN: u32 = 5;
    pub const RATE_LIMITED: u32 = 6;
    /// Asked for more O(N) work (full lists, reconciliations from the top) than its budget.
    pub const OVER_BUDGET: u32 = 7;
    /// Did not read what we sent it for too long.
    pub const NOT_READING: u32 = 8;
    /// We have as many peers as we take (bounded fan-out): try others.
    pub const FULL: u32 = 9;
    /// We let this session go to try another peer (bounded fan-out's rotation): nothing is
    /// wrong with it.
    pub const ROTATED: u32 = 10;
    /// On a transfer stream (STOP_SENDING): the receiver takes the rest of the asset as
    /// ranges over other streams (a split transfer); the asset counts as sent.
    pub const TAKEN_AS_RANGES: u32 = 11;
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Commands the actor may queue for one connection before it counts as stuck.
pub(crate) const PEER_QUEUE: usize = 1024;
/// Requests of one peer served at once.
const SERVING: usize = 16;

pub fn close_conn(conn: &Connection, code: u32, reason: &str) {
    conn.close(VarInt::from_u32(code), reason.as_bytes());
}

/// How a connection ended, for the dialer's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunOutcome {
    /// Admission passed (the session may have ended since, for any reason).
    Admitted,
    /// The peer does not know the passphrase.
    AdmissionFailed,
    /// Refused before admission: one is already running with this endpoint, or it failed
    /// recently.
    Limited,
    /// Anything else before admission completed (timeout, lost connection).
    Failed,
}

/// Runs a connection from admission to its end; reports to the actor throughout.
pub(crate) async fn run(ctx: Arc<Context>, conn: Connection, role: Role) -> RunOutcome {
    let remote = conn.remote_id();
    // An incoming session counts until it ends; beyond the fan-out it is refused at once.
    let _slot = match role {
        Role::Listener => match ctx.inbound_slot(&remote) {
            Some(slot) => Some(slot),
            None => {
                close_conn(&conn, close::FULL, "full: try other peers");
                return RunOutcome::Limited;
            }
        },
        Role::Dialer => None,
    };
    let Ok(slot) = ctx.admission_begin(remote) else {
        close_conn(
            &conn,
            close::RATE_LIMITED,
            "too many failed admissions; try later",
        );
        return RunOutcome::Limited;
    };
    let mut admitted = false;
    let mut result = session(&ctx, &conn, role, slot, &mut admitted).await;
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
        Ok(reason) => {
            tracing::info!(peer = %remote.fmt_short(), %reason, "peer connection ended");
            RunOutcome::Admitted
        }
        Err(SessionError::Busy(code)) => {
            tracing::debug!(peer = %remote.fmt_short(), code, "the peer closed before admission (busy or limited)");
            RunOutcome::Limited
        }
        Err(SessionError::Admission(e)) => {
            close_conn(&conn, close::ADMISSION_FAILED, "admission failed");
            if matches!(e, AdmissionError::WrongPassphrase) {
                tracing::warn!(peer = %remote.fmt_short(), "peer refused: it does not know the passphrase");
                ctx.emit(EngineEvent::AdmissionRefused {
                    peer: remote.to_string(),
                    incoming: role == Role::Listener,
                });
            } else {
                tracing::info!(peer = %remote.fmt_short(), error = %e, "admission failed");
            }
            RunOutcome::AdmissionFailed
        }
        Err(_) if !admitted && closed_before_admission(&conn).is_some() => {
            // It closed before admission because it is full, busy or limiting us: not a
            // failure of this candidate.
            tracing::debug!(peer = %remote.fmt_short(), "the peer closed before admission (full, busy or limited)");
            RunOutcome::Limited
        }
        Err(e) => {
            tracing::info!(peer = %remote.fmt_short(), error = %e, "peer connection failed");
            let code = match &e {
                SessionError::OverBudget => close::OVER_BUDGET,
                SessionError::NotReading => close::NOT_READING,
                _ => close::PROTOCOL_ERROR,
            };
            close_conn(&conn, code, &e.to_string());
            if admitted && e.is_misbehaviour() {
                ctx.emit(EngineEvent::PeerMisbehaved {
                    peer: remote.to_string(),
                    reason: e.to_string(),
                });
            }
            if admitted {
                RunOutcome::Admitted
            } else {
                RunOutcome::Failed
            }
        }
    }
}

/// The close code, if the peer closed the connection with 4, 5, 6 or 9.
fn closed_before_admission(conn: &Connection) -> Option<u64> {
    match conn.close_reason() {
        Some(iroh::endpoint::ConnectionError::ApplicationClosed(app)) => {
            let code = app.error_code.into_inner();
            [
                close::DUPLICATE,
                close::SHUTDOWN,
                close::RATE_LIMITED,
                close::FULL,
            ]
            .iter()
            .any(|c| u64::from(*c) == code)
            .then_some(code)
        }
        _ => None,
    }
}

fn closed_on_purpose(e: &iroh::endpoint::ConnectionError) -> bool {
    matches!(
        e,
        iroh::endpoint::ConnectionError::ApplicationClosed(app)
            if [close::ROTATED, close::SHUTDOWN]
                .iter()
                .any(|c| u64::from(*c) == app.error_code.into_inner())
    )
}

fn closed_for_admission(conn: &Connection) -> bool {
    matches!(
        conn.close_reason(),
        Some(iroh::endpoint::ConnectionError::ApplicationClosed(app))
            if app.error_code.into_inner() == u64::from(close::ADMISSION_FAILED)
    )
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
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
    #[error("{0}")]
    Protocol(String),
    #[error("over its budget of full lists and reconciliations")]
    OverBudget,
    #[error("not reading what we send")]
    NotReading,
    /// The peer closed before admission with code 4, 5 or 6 (its own limiter, a duplicate,
    /// shutting down): nobody guessed anything, so it is not a failed admission.
    #[error("the peer closed before admission (code {0})")]
    Busy(u64),
}

impl SessionError {
    /// The peer broke the rules (as opposed to a connection that merely failed).
    fn is_misbehaviour(&self) -> bool {
        match self {
            SessionError::Protocol(_) | SessionError::OverBudget | SessionError::NotReading => true,
            SessionError::Wire(e) => !matches!(e, WireError::Io(_) | WireError::Truncated),
            _ => false,
        }
    }
}

async fn session(
    ctx: &Arc<Context>,
    conn: &Connection,
    role: Role,
    slot: AdmissionSlot,
    admitted: &mut bool,
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
    let admission = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        admit(
            &mut recv,
            &mut send,
            &ctx.keys.admission,
            ctx.endpoint.id(),
            remote,
            role,
        ),
    )
    .await
    .map_err(|_| SessionError::Timeout)?;
    match admission {
        Ok(_) => slot.finish(false),
        Err(AdmissionError::WrongPassphrase) => {
            slot.finish(true);
            return Err(AdmissionError::WrongPassphrase.into());
        }
        Err(e @ AdmissionError::Malformed) => {
            slot.finish(true);
            return Err(e.into());
        }
        Err(AdmissionError::Wire(e)) => {
            // Both ends redialling at once meet each other's admission slot (code 6), or a
            // duplicate: no guess was made, so the slot is freed without a failure.
            if let Some(code) = closed_before_admission(conn) {
                drop(slot);
                return Err(SessionError::Busy(code));
            }
            // Garbage where a proof should be counts as a failed guess; a connection that
            // merely dropped (or closed for admission: the caller re-labels it) does too,
            // since a prober could otherwise stop just before the proof to dodge the limit.
            slot.finish(true);
            return Err(AdmissionError::Wire(e).into());
        }
    }
    *admitted = true;

    let hello = Control {
        kind: Some(ctl::Kind::Hello(Hello {
            device_name: ctx.device_name.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            features: ctx.features.clone(),
            instance: ctx.instance,
        })),
    };
    write_frame(&mut send, &hello).await?;
    // Both sides send Hello before anything else, so waiting for the peer's (bounded) tells
    // us which features it speaks before the first reconciliation message.
    let theirs: Control =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, expect_frame(&mut recv, MAX_FRAME))
            .await
            .map_err(|_| SessionError::Timeout)??;
    let Some(ctl::Kind::Hello(their_hello)) = theirs.kind else {
        return Err(WireError::Unexpected("first control message must be Hello").into());
    };
    let both = |feature: &str| {
        ctx.features.iter().any(|f| f == feature)
            && their_hello.features.iter().any(|f| f == feature)
    };
    let rbsr = both(FEATURE);
    // RIBLT falls back to RBSR, so it is only used beside it.
    let riblt = rbsr && both(crate::reconcile::riblt::FEATURE);
    let tombs = both(crate::tombs::FEATURE);
    let swarm = both(crate::swarm::FEATURE);

    let (peer_tx, peer_rx) = mpsc::channel(PEER_QUEUE);
    let (reply, accepted) = oneshot::channel();
    let conn_id = conn.stable_id();
    let dialer = match role {
        Role::Dialer => ctx.endpoint.id(),
        Role::Listener => remote,
    };
    ctx.cmd
        .send(Cmd::PeerUp {
            id: remote,
            conn_id,
            dialer,
            instance: their_hello.instance,
            device_name: clean_name(&their_hello.device_name),
            rbsr,
            tombs,
            swarm,
            conn: conn.clone(),
            peer: peer_tx,
            reply,
        })
        .await
        .map_err(|_| SessionError::Engine)?;
    // The actor may hold PeerUp a while (its store still loading): a connection that dies
    // meanwhile ends here instead of lingering.
    let accepted = tokio::select! {
        a = accepted => a.unwrap_or(false),
        reason = conn.closed() => return Ok(reason.to_string()),
    };
    if !accepted {
        close_conn(conn, close::DUPLICATE, "duplicate connection");
        return Ok("duplicate connection".into());
    }

    let link = control::Link {
        ctx: ctx.clone(),
        id: remote,
        conn_id,
        rbsr,
        riblt,
        tombs,
    };
    // At most SERVING requests of this peer are served at once (an honest peer asks for 8);
    // more are refused as "busy", so a peer cannot hold many store responses open.
    let serving = Arc::new(tokio::sync::Semaphore::new(SERVING));
    let server = async {
        loop {
            let (send, recv) = conn.accept_bi().await?;
            let permit = serving.clone().try_acquire_owned().ok();
            let lan = crate::bandwidth::is_lan_conn(conn);
            tokio::spawn(serve::serve(
                ctx.clone(),
                remote,
                lan,
                swarm,
                send,
                recv,
                permit,
            ));
        }
        #[allow(unreachable_code)]
        Ok::<_, SessionError>(String::new())
    };
    let result = tokio::select! {
        r = control::run(link, send, recv, peer_rx) => r,
        r = server => r,
        reason = conn.closed() => Ok(reason.to_string()),
    };
    // A peer that let the session go on purpose (rotation, shutdown) ended it; whichever
    // task saw the close first, that is not a failure.
    let result = match result {
        Err(SessionError::Connection(e)) if closed_on_purpose(&e) => Ok(e.to_string()),
        other => other,
    };
    let reason = match &result {
        Ok(r) => r.clone(),
        Err(e) => e.to_string(),
    };
    let _ = ctx
        .cmd
        .send(Cmd::PeerDown {
            id: remote,
            conn_id,
            reason,
        })
        .await;
    if matches!(result, Err(SessionError::OverBudget)) {
        ctx.penalise(remote, crate::limits::OVER_BUDGET_BACKOFF);
    }
    result
}

/// A device name as shown to the user: no control or format characters, at most 64 chars.
fn clean_name(name: &str) -> String {
    crate::text::strip_invisible(name)
        .chars()
        .take(64)
        .collect::<String>()
        .trim()
        .to_owned()
}
