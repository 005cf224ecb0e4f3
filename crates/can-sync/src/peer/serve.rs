//! Answering one request of a peer: the asset from our CAN Service, or why not.

use std::sync::Arc;

use can_proto::peer::{Request, Response, response};
use futures_util::StreamExt;
use iroh::EndpointId;
use iroh::endpoint::{RecvStream, SendStream, VarInt, WriteError};

use super::close;
use crate::can_client::CanError;
use crate::context::{Cmd, Context};
use crate::progress::Direction;
use crate::wire::{MAX_PRE_ADMISSION_FRAME, expect_frame, write_frame};

fn taken_as_ranges() -> VarInt {
    VarInt::from_u32(close::TAKEN_AS_RANGES)
}

pub(super) async fn serve(
    ctx: Arc<Context>,
    remote: EndpointId,
    // The peer is on the LAN (exempt from the upload limit unless `limit_lan`).
    lan: bool,
    // Both offered swarm-v1: a piece-map request is honoured.
    swarm: bool,
    mut send: SendStream,
    mut recv: RecvStream,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let idle = ctx.idle_timeout;
    let request: Request =
        match tokio::time::timeout(idle, expect_frame(&mut recv, MAX_PRE_ADMISSION_FRAME)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "malformed request");
                let _ = send.reset(VarInt::from_u32(close::PROTOCOL_ERROR));
                return;
            }
            Err(_) => {
                let _ = send.reset(VarInt::from_u32(close::PROTOCOL_ERROR));
                return;
            }
        };
    let refuse = |reason: &str| Response {
        kind: Some(response::Kind::Refused(reason.to_owned())),
        ..Default::default()
    };
    let Ok(hash) = <[u8; 32]>::try_from(request.hash.as_slice()) else {
        let _ = write_frame(&mut send, &refuse("malformed hash")).await;
        let _ = send.finish();
        return;
    };
    if ctx.is_paused() {
        let _ = write_frame(&mut send, &refuse("paused")).await;
        let _ = send.finish();
        return;
    }
    // Held until this request is answered in full (or fails).
    let Some(_permit) = permit else {
        let _ = write_frame(&mut send, &refuse("busy")).await;
        let _ = send.finish();
        return;
    };
    // A range (swarm peers): exactly `length` bytes from `offset`, from our store or from
    // a fetch of ours in progress that holds those pieces.
    let range = request.length > 0;
    if range && request.offset.checked_add(request.length).is_none() {
        let _ = write_frame(&mut send, &refuse("bad range")).await;
        let _ = send.finish();
        return;
    }
    // From where the receiver asks; an offset past the asset's end (its partial is not
    // ours to judge) gets everything, which the receiver stores from byte 0.
    let mut start = request.offset;
    let partial = match range {
        true => crate::swarm::serve::from_partial(&ctx, &hash, start, request.length).await,
        false => None,
    };
    let mut fetched = match partial {
        Some(found) => Ok(found),
        None => ctx.can.fetch(&hash, start).await,
    };
    if !range && start > 0 && matches!(fetched, Err(CanError::Status { status: 400, .. })) {
        start = 0;
        fetched = ctx.can.fetch(&hash, 0).await;
    }
    let (asset, mut content) = match fetched {
        Ok(x) => x,
        Err(e) => {
            let reason = match e {
                CanError::NotFound => "not found",
                CanError::Deleted(_) => "deleted",
                CanError::Status { status: 400, .. } => "bad range",
                _ => "store unavailable",
            };
            let _ = write_frame(&mut send, &refuse(reason)).await;
            let _ = send.finish();
            return;
        }
    };
    if range {
        if start.saturating_add(request.length) > asset.size {
            let _ = write_frame(&mut send, &refuse("bad range")).await;
            let _ = send.finish();
            return;
        }
        content = crate::swarm::serve::limit(content, request.length);
    } else if request.pieces
        && swarm
        && start == 0
        && let Some(layout) = crate::swarm::pieces::Layout::for_size(asset.size)
    {
        // The piece map instead of the content: the receiver fetches the pieces from
        // every peer that has them, us among them.
        let answer = crate::swarm::serve::map_response(&ctx, hash, layout, asset, content).await;
        let response = answer.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "cannot compute a piece map");
            refuse("store unavailable")
        });
        let _ = tokio::time::timeout(idle, write_frame(&mut send, &response)).await;
        let _ = send.finish();
        return;
    }
    let (name, size) = (asset.name.clone(), asset.size);
    // A range counts as a transfer of its own bytes.
    let (sent, done_total) = match range {
        true => (request.length, (0, request.length)),
        false => (size.saturating_sub(start), (start, size)),
    };
    let progress = ctx
        .transfers
        .start(Direction::Upload, remote, hash, &name, done_total);
    let result = async {
        let stalled = || format!("the peer read nothing for {idle:?}");
        tokio::time::timeout(
            idle,
            write_frame(
                &mut send,
                &Response {
                    kind: Some(response::Kind::Asset(asset)),
                    offset: start,
                    ..Default::default()
                },
            ),
        )
        .await
        .map_err(|_| stalled())?
        .map_err(|e| e.to_string())?;
        let mut left = sent;
        while let Some(chunk) = content.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let len = chunk.len() as u64;
            left = left.saturating_sub(len);
            // The upload limit: the chunk waits for its tokens before it goes out.
            ctx.shaper.take(Direction::Upload, lan, len).await;
            // A peer that stops reading would hold this task and the store's response
            // open forever: each chunk must go out within the idle timeout.
            match tokio::time::timeout(idle, send.write_chunk(chunk))
                .await
                .map_err(|_| stalled())?
            {
                Ok(()) => {}
                // The receiver takes the rest as ranges on other streams (a split
                // transfer, `super::split`): this stream's part of the asset is sent.
                Err(WriteError::Stopped(code)) if code == taken_as_ranges() && !range => {
                    return Ok(sent.saturating_sub(left + len));
                }
                Err(e) => return Err(e.to_string()),
            }
            progress.add(len);
        }
        // A content stream that ended early (its reader died) must not look whole to the
        // receiver, whose store would refuse it and blame us: reset instead.
        if left > 0 {
            return Err(format!("the stored content ended {left} bytes early"));
        }
        send.finish().map_err(|e| e.to_string())?;
        // Delivered only once the peer has acknowledged every byte.
        tokio::time::timeout(idle, send.stopped())
            .await
            .map_err(|_| stalled())?
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(sent)
    }
    .await;
    drop(progress);
    match result {
        Ok(_) if range => {
            let _ = ctx
                .cmd
                .send(Cmd::ServedRange {
                    id: remote,
                    bytes: sent,
                })
                .await;
        }
        Ok(bytes) => {
            let _ = ctx
                .cmd
                .send(Cmd::Served {
                    id: remote,
                    hash,
                    name,
                    size,
                    bytes,
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
