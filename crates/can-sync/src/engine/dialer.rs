//! The dialer: every candidate from discovery or a ticket gets one dial loop, bounded in
//! number ([`MAX_CANDIDATES`](crate::candidates::MAX_CANDIDATES)) and in concurrent attempts
//! ([`MAX_CONCURRENT_DIALS`](crate::candidates::MAX_CONCURRENT_DIALS)); a loop ends when its
//! candidate is dropped (repeated failures), speaks another protocol version, or the engine
//! stops. The rules are in [`crate::candidates`], pure.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iroh::{EndpointAddr, EndpointId};
use iroh_tickets::endpoint::EndpointTicket;
use tokio::sync::mpsc;

use crate::admission::{ALPN, Role};
use crate::candidates::{AfterFailure, Offer, Source};
use crate::context::{Context, Discovered};
use crate::events::EngineEvent;
use crate::peer::{self, RunOutcome};
use crate::util::{jitter, sleep_or_cancel};

/// How long one connection attempt may take: a peer named by a ticket or proven before gets
/// more patience (a slow relay path) than an endpoint only discovery vouches for.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT_DISCOVERED: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Takes candidates from discovery and tickets; starts a dial loop for each new one.
pub(super) async fn run(ctx: Arc<Context>, mut rx: mpsc::Receiver<Discovered>) {
    loop {
        let next = tokio::select! {
            d = rx.recv() => d,
            _ = ctx.cancelled() => return,
        };
        let Some(Discovered { addr, source }) = next else {
            return;
        };
        let id = addr.id;
        let offer = ctx
            .candidates
            .lock()
            .map(|mut c| c.offer(id, source, Instant::now()))
            .unwrap_or(Offer::Full);
        if matches!(offer, Offer::Full | Offer::Quarantined) {
            continue;
        }
        if !addr.is_empty() {
            learn_addrs(&ctx, addr);
        }
        if offer == Offer::New {
            tracing::info!(peer = %id.fmt_short(), ?source, "new candidate");
            // Both ends often learn of each other at once: the smaller id dials first, the
            // other a little later if still not connected, so most pairs make one
            // connection. A ticket is the user's explicit wish: dialled at once. So is a
            // proven peer we are not connected to (remembered from before a restart): it may
            // still hold our dead connection and would not redial before its idle timeout,
            // so a deferred dial was the whole of a restarted larger id's catch-up (2.5 s on
            // `lan`, bench/run wan). A proven peer that just connected to us is not dialled.
            let remembered = source == Source::Proven && !ctx.is_connected(&id);
            let defer = source != Source::Ticket && !remembered && ctx.endpoint.id() > id;
            tokio::spawn(dial_loop(ctx.clone(), id, defer));
        }
    }
}

/// Addresses kept per endpoint in the memory lookup. Sources add to what is known (a peer
/// may be reachable several ways); past this many, the newest offer replaces the lot, so
/// re-advertisements with ever new addresses cannot grow it.
const MAX_ADDRS_PER_PEER: usize = 16;

fn learn_addrs(ctx: &Context, addr: EndpointAddr) {
    let known = ctx
        .lookup
        .get_endpoint_info(addr.id)
        .map_or(0, |info| EndpointAddr::from(info).addrs.len());
    if known + addr.addrs.len() > MAX_ADDRS_PER_PEER {
        let mut addr = addr;
        while addr.addrs.len() > MAX_ADDRS_PER_PEER {
            addr.addrs.pop_last();
        }
        ctx.lookup.set_endpoint_info(addr);
    } else {
        ctx.lookup.add_endpoint_info(addr);
    }
}

enum Attempt {
    Session(RunOutcome),
    Unreachable(String),
    /// The peer speaks another version of the protocol (no common ALPN).
    Incompatible(String),
}

async fn dial_loop(ctx: Arc<Context>, id: EndpointId, defer: bool) {
    let mut backoff = Duration::from_millis(250);
    if defer {
        sleep_or_cancel(&ctx, jitter(Duration::from_secs(2))).await;
    }
    loop {
        if ctx.cancel.is_cancelled() || !is_candidate(&ctx, &id) {
            break;
        }
        if ctx.is_connected(&id) || ctx.admission_limited(&id) {
            sleep_or_cancel(&ctx, Duration::from_millis(500)).await;
            continue;
        }
        if !ctx.dial_allowed(&id) || ctx.is_resting(&id) {
            // Enough peers, or we rotated this one away: wait for one to leave (the jitter
            // spreads who takes its place) or the rest to end.
            sleep_or_cancel(&ctx, jitter(Duration::from_secs(2))).await;
            continue;
        }
        let started = Instant::now();
        match attempt(&ctx, id).await {
            Attempt::Session(RunOutcome::Admitted) => {
                if let Ok(mut c) = ctx.candidates.lock() {
                    c.admitted(id);
                }
                if started.elapsed() > Duration::from_secs(10) {
                    backoff = Duration::from_millis(250);
                }
            }
            // Another admission with it is running, or it failed recently: the limiter's
            // wait applies, the candidate is not at fault (yet).
            Attempt::Session(RunOutcome::Limited) => {}
            Attempt::Incompatible(reason) => {
                tracing::warn!(peer = %id.fmt_short(), %reason, "peer speaks another protocol version; not dialling it again");
                if let Ok(mut c) = ctx.candidates.lock() {
                    c.quarantine(id, Instant::now());
                }
                ctx.emit(EngineEvent::IncompatiblePeer {
                    peer: id.to_string(),
                    reason,
                });
                break;
            }
            outcome @ (Attempt::Session(RunOutcome::AdmissionFailed | RunOutcome::Failed)
            | Attempt::Unreachable(_)) => {
                if let Attempt::Unreachable(reason) = &outcome {
                    tracing::debug!(peer = %id.fmt_short(), %reason, "dial failed");
                }
                let after = ctx
                    .candidates
                    .lock()
                    .map(|mut c| c.failed(id, Instant::now()))
                    .unwrap_or(AfterFailure::Drop);
                if after == AfterFailure::Drop {
                    tracing::info!(peer = %id.fmt_short(), "giving up on a candidate after repeated failures");
                    break;
                }
            }
        }
        sleep_or_cancel(&ctx, jitter(backoff)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    if !is_candidate(&ctx, &id) && !ctx.is_connected(&id) {
        // Forget its addresses too: the lookup holds only live candidates.
        ctx.lookup.remove_endpoint_info(id);
    }
}

fn is_candidate(ctx: &Context, id: &EndpointId) -> bool {
    ctx.candidates
        .lock()
        .map(|c| c.contains(id))
        .unwrap_or(false)
}

/// One dial. Endpoints that only discovery vouches for share [`MAX_CONCURRENT_DIALS`]
/// permits, so a flood of spoofed ones cannot hold up the dials of tickets and peers that
/// passed admission before (those need none). A permit bounds connection attempts, not
/// sessions: it is given back as soon as the connection is up (or not).
///
/// [`MAX_CONCURRENT_DIALS`]: crate::candidates::MAX_CONCURRENT_DIALS
async fn attempt(ctx: &Arc<Context>, id: EndpointId) -> Attempt {
    let discovered = ctx
        .candidates
        .lock()
        .map(|c| c.source(&id) == Some(Source::Discovered))
        .unwrap_or(true);
    let connected = {
        let _permit = if discovered {
            match ctx.dial_permits.acquire().await {
                Ok(p) => Some(p),
                Err(_) => return Attempt::Unreachable("engine stopping".into()),
            }
        } else {
            None
        };
        let limit = if discovered {
            CONNECT_TIMEOUT_DISCOVERED
        } else {
            CONNECT_TIMEOUT
        };
        tokio::time::timeout(limit, ctx.endpoint.connect(EndpointAddr::new(id), ALPN)).await
    };
    match connected {
        Ok(Ok(conn)) => {
            // The fan-out slot is taken once the connection is up (attempts to unreachable
            // candidates are bounded by the dial permits, not by it) and held for the whole
            // session; dials that raced past the check above stop here.
            let Some(_slot) = ctx.outbound_slot(&id) else {
                peer::close_conn(&conn, peer::close::FULL, "enough peers");
                return Attempt::Session(RunOutcome::Limited);
            };
            Attempt::Session(peer::run(ctx.clone(), conn, Role::Dialer).await)
        }
        Ok(Err(e)) => {
            let reason = format!("{e:#}");
            if is_incompatible(&reason) {
                Attempt::Incompatible(reason)
            } else {
                Attempt::Unreachable(reason)
            }
        }
        Err(_) => Attempt::Unreachable("timed out".into()),
    }
}

/// A TLS handshake that failed for want of a common ALPN (alert 120,
/// no_application_protocol): the peer runs another version of the protocol.
fn is_incompatible(error: &str) -> bool {
    // iroh reports it as "the cryptographic handshake failed: error 120: peer doesn't
    // support any known protocol" (TLS alert 120 as a QUIC crypto error).
    let e = error.to_ascii_lowercase();
    e.contains("handshake failed: error 120")
        || e.contains("crypto(78)")
        || e.contains("doesn't support any known protocol")
        || e.contains("no_application_protocol")
}

/// Follows a ticket file (a peer's address written by it, or by the user): waits for it,
/// and hands the peer to the dialer whenever the ticket changes.
pub(super) async fn follow_ticket_file(ctx: Arc<Context>, path: PathBuf) {
    let mut last: Option<EndpointAddr> = None;
    loop {
        let addr = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<EndpointTicket>().ok())
            .map(EndpointAddr::from);
        if let Some(addr) = addr
            && last.as_ref() != Some(&addr)
        {
            if addr.id == ctx.endpoint.id() {
                tracing::error!(path = %path.display(), "a connect ticket names this node itself; ignoring it");
            } else if !ctx.discover_ticket(addr.clone()).await {
                return; // the dialer has stopped
            }
            last = Some(addr);
        }
        let wait = if last.is_none() {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(5)
        };
        sleep_or_cancel(&ctx, wait).await;
        if ctx.cancel.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_mismatch_is_recognised() {
        assert!(is_incompatible(
            "ConnectError::Connecting: ConnectingError::ConnectionError: aborted by peer: the cryptographic handshake failed: error 120: peer doesn't support any known protocol"
        ));
        assert!(!is_incompatible("timed out"));
    }
}
