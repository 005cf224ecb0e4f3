//! Fetching one asset from a peer into our CAN Service, which re-hashes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use can_proto::peer::{Request, Response, response};
use futures_util::Stream;
use iroh::endpoint::Connection;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

use crate::can_client::CanError;
use crate::context::Context;
use crate::progress::{Direction, Guard};
use crate::transfer::{FetchError, Fetched, classify_store_error};
use crate::wire::{MAX_FRAME, WireError, expect_frame, write_frame};

/// The body's chunk size: the store's `content::CHUNK`, which its writer takes without a
/// copy (can-service is a dependency only with the built-in store).
const READ_BUFFER: usize = 256 * 1024;

/// How the peer's side of a body stream ended, when it ended badly.
const BODY_OK: u8 = 0;
const BODY_BROKEN: u8 = 1;
const BODY_STALLED: u8 = 2;

/// Requests `hash` from the peer and streams it into our CAN Service.
pub(crate) async fn fetch(
    ctx: Arc<Context>,
    conn: Connection,
    hash: [u8; 32],
    // Ask for the piece map: a large asset is fetched from every swarm peer that has it.
    swarm: bool,
    // The peer speaks swarm-v1, so it answers range requests: a large asset may come over
    // several streams into the built-in store (`super::split`).
    ranges: bool,
) -> Result<Fetched, FetchError> {
    let remote = conn.remote_id();
    let idle = ctx.idle_timeout;
    // A swarm fetch of it still runs (its first peer left, so the planner asks another):
    // that fetch goes on with the other peers; this one waits for its end, which the idle
    // timeout bounds, and leaves what is left to the planner.
    if let Some(running) = ctx.swarm.partial(&hash) {
        running.ended.cancelled().await;
        // It may have stored the asset a moment before the actor hears of it: asking our
        // store saves fetching it all again.
        if let Ok((asset, _)) = ctx.can.fetch(&hash, 0).await {
            return Ok(Fetched {
                name: asset.name,
                size: asset.size,
                created: false,
            });
        }
        return Err(FetchError::Transport(
            "a swarm fetch of it just ended".into(),
        ));
    }
    // What an interrupted transfer left in our store (from this peer or another): ask for
    // the rest only. Not knowing is not fatal: everything is asked for.
    let offset = match ctx.can.partial(&hash).await {
        Ok(received) => received.unwrap_or(0),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the store's partial upload");
            0
        }
    };
    // The window the peer may fill, for the path as it is now.
    crate::flow::fit(&conn);
    let transport = |e: &dyn std::fmt::Display| FetchError::Transport(e.to_string());
    // The peer grants stream credit and reads our request when it likes: bounded like the
    // body, so a peer that never does cannot hold a transfer slot.
    let (mut send, recv) = tokio::time::timeout(idle, conn.open_bi())
        .await
        .map_err(|_| FetchError::Stalled(idle))?
        .map_err(|e| transport(&e))?;
    tokio::time::timeout(
        idle,
        write_frame(
            &mut send,
            &Request {
                hash: hash.to_vec(),
                offset,
                length: 0,
                // A transfer resumed from our store's partial goes on from this peer alone.
                pieces: swarm && offset == 0,
            },
        ),
    )
    .await
    .map_err(|_| FetchError::Stalled(idle))?
    .map_err(|e| transport(&e))?;
    send.finish().map_err(|e| transport(&e))?;
    let mut recv = BufReader::with_capacity(READ_BUFFER, recv);
    let response: Response = tokio::time::timeout(idle, expect_frame(&mut recv, MAX_FRAME))
        .await
        .map_err(|_| FetchError::Stalled(idle))?
        .map_err(|e| match e {
            WireError::Io(_) | WireError::Truncated => transport(&e),
            other => FetchError::Misbehaved(other.to_string()),
        })?;
    let mut asset = match response.kind {
        Some(response::Kind::Refused(reason)) => return Err(FetchError::Refused(reason)),
        Some(response::Kind::Asset(asset)) => asset,
        // A kind this version does not know (a newer peer): not an answer we can use, and
        // not misbehaviour either.
        None => return Err(FetchError::Refused("unsupported response".into())),
    };
    if asset.hash != hash {
        return Err(FetchError::Misbehaved(
            "sent a different asset than requested".into(),
        ));
    }
    if !response.pieces.is_empty() {
        let layout = crate::swarm::pieces::Layout::checked(asset.size, response.piece_len)
            .ok_or_else(|| FetchError::Misbehaved("a piece map of another layout".into()))?;
        let map = crate::swarm::pieces::decode_map(&layout, &response.pieces)
            .filter(|map| crate::swarm::pieces::verify_map(&layout, map, &hash))
            .ok_or_else(|| {
                FetchError::Misbehaved("a piece map that does not match the asset".into())
            })?;
        drop((send, recv));
        return crate::swarm::download::run(ctx, conn, asset, layout, map).await;
    }
    // The peer sends from where we asked, or (a sender that does not resume, or our offset
    // was past its end) everything.
    let start = response.offset;
    if (start != offset && start != 0) || start > asset.size {
        return Err(FetchError::Misbehaved(format!(
            "sent from byte {start} when asked from byte {offset}"
        )));
    }
    asset.origin = format!("peer:{remote}");
    asset.seq = 0;
    let (name, size) = (asset.name.clone(), asset.size);
    // Remember how the peer's stream failed, to tell a broken or stalled transfer from a
    // store that is down when the upload to the store fails.
    let state = Arc::new(AtomicU8::new(BODY_OK));
    let flow = Flow {
        progress: ctx
            .transfers
            .start(Direction::Download, remote, hash, &name, (start, size)),
        ctx: ctx.clone(),
        lan: crate::bandwidth::is_lan_conn(&conn),
    };
    let rest = crate::wire::body_after_frame(recv);
    // A large asset from byte 0 into the built-in store: over several streams at once.
    #[cfg(feature = "builtin-store")]
    if ranges
        && start == 0
        && let crate::store_link::StoreLink::Builtin(store) = &ctx.can
        && let Some(layout) = crate::swarm::pieces::Layout::for_size(size)
    {
        return match store.begin_parts(asset.clone(), layout.piece_len).await {
            Ok(Ok(upload)) => super::split::fetch(ctx, conn, asset, rest, upload, flow).await,
            Ok(Err(stored)) => Ok(Fetched {
                name,
                size,
                created: stored.created,
            }),
            Err(e) => Err(classify_store_error(e)),
        };
    }
    #[cfg(not(feature = "builtin-store"))]
    let _ = ranges;
    let body = body_stream(rest.take(size - start), idle, state.clone(), flow);
    let result = ctx.can.ingest(asset, start, body).await;
    if result.is_err() {
        match state.load(Ordering::Relaxed) {
            BODY_STALLED => return Err(FetchError::Stalled(idle)),
            BODY_BROKEN => {
                return Err(FetchError::Transport("the peer's stream broke off".into()));
            }
            _ => {}
        }
    }
    match result {
        Ok(ingested) => Ok(Fetched {
            name,
            size,
            created: ingested.created,
        }),
        // Rejected after a resume: the bytes kept in our store may be the bad ones (a
        // corrupted or tampered partial, which the store has now deleted). Not the peer's
        // fault until a whole transfer from it fails: retry, from byte 0.
        Err(CanError::Rejected(message)) if start > 0 => Err(FetchError::Transport(format!(
            "the resumed asset did not verify ({message}); starting over"
        ))),
        Err(e) => Err(classify_store_error(e)),
    }
}

/// What every chunk of a download passes: the download limit, then the progress count.
pub(super) struct Flow {
    progress: Guard,
    ctx: Arc<Context>,
    /// The peer is on the LAN (exempt from the limit unless `limit_lan`).
    lan: bool,
}

impl Flow {
    pub(super) async fn pass(&self, bytes: u64) {
        // The chunk waits for its tokens before it is passed on; meanwhile QUIC flow
        // control slows the sender.
        self.ctx
            .shaper
            .take(Direction::Download, self.lan, bytes)
            .await;
        self.progress.add(bytes);
    }
}

/// Where [`body_stream`] is.
enum Body<R> {
    Reading(R, Flow),
    /// The bytes gathered before a failure went out; the failure (and how the peer's side
    /// ended, `BODY_BROKEN` or `BODY_STALLED`) follows.
    Failed(std::io::Error, u8),
    Done,
}

/// The body as a stream of [`READ_BUFFER`]-sized chunks (the last may be shorter): QUIC
/// hands over whatever has arrived, often a few packets, and the store hashes and writes
/// best in large pieces, one channel hop each. A read that brings nothing for `idle` ends
/// it with an error (and marks it stalled), so a peer that stops sending frees the
/// transfer slot; a slow peer that keeps sending is not stalled, however long a chunk takes.
/// What arrived before a failure is passed on first, so a resume keeps every byte of it.
fn body_stream<R>(
    reader: R,
    idle: Duration,
    state: Arc<AtomicU8>,
    flow: Flow,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static
where
    R: AsyncRead + Unpin + Send + 'static,
{
    futures_util::stream::unfold(Body::Reading(reader, flow), move |body| {
        let state = state.clone();
        async move {
            let (mut reader, flow) = match body {
                Body::Reading(reader, flow) => (reader, flow),
                Body::Failed(e, how) => {
                    // Marked only now: if our store fails on the bytes passed on before
                    // this, that failure is the store's, not the peer's.
                    state.store(how, Ordering::Relaxed);
                    return Some((Err(e), Body::Done));
                }
                Body::Done => return None,
            };
            let mut chunk = BytesMut::with_capacity(READ_BUFFER);
            let mut failed = None;
            let mut ended = false;
            while chunk.len() < READ_BUFFER {
                match tokio::time::timeout(idle, reader.read_buf(&mut chunk)).await {
                    Ok(Ok(0)) => {
                        ended = true;
                        break;
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        failed = Some((e, BODY_BROKEN));
                        break;
                    }
                    Err(_) => {
                        let e =
                            std::io::Error::new(std::io::ErrorKind::TimedOut, "transfer stalled");
                        failed = Some((e, BODY_STALLED));
                        break;
                    }
                }
            }
            if !chunk.is_empty() {
                flow.pass(chunk.len() as u64).await;
            }
            let next = match failed {
                Some((e, how)) => Body::Failed(e, how),
                None if ended => Body::Done,
                None => Body::Reading(reader, flow),
            };
            if chunk.is_empty() {
                return match next {
                    Body::Failed(e, how) => {
                        state.store(how, Ordering::Relaxed);
                        Some((Err(e), Body::Done))
                    }
                    _ => None,
                };
            }
            Some((Ok(chunk.freeze()), next))
        }
    })
}
