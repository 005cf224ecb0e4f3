//! Following the local CAN Service: its event stream for new and deleted assets, and a poll
//! while that stream is down.
//!
//! The stream is driven by the service's index and resumed from the last seq seen, so while
//! it is connected it misses nothing and a poll beside it would only cost wake-ups (an idle
//! tray app should do nothing). A stalled stream is noticed by the client's read timeout:
//! the service sends a keep-alive every 15 s.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::context::{Cmd, Context, LocalChange};
use crate::util::{jitter, sleep_or_cancel};

/// The first retry of a dropped stream; doubled up to the poll interval.
const FIRST_RETRY: Duration = Duration::from_millis(250);

pub(super) async fn watch(ctx: Arc<Context>, mut cursor: u64, poll_interval: Duration) {
    let mut backoff = FIRST_RETRY;
    loop {
        if ctx.cancel.is_cancelled() {
            return;
        }
        match ctx.can.events(cursor).await {
            Ok(mut stream) => {
                let _ = ctx.cmd.send(Cmd::StoreState(Ok(()))).await;
                backoff = FIRST_RETRY;
                loop {
                    tokio::select! {
                        ev = stream.next() => match ev {
                            Some(Ok(ev)) => {
                                cursor = cursor.max(ev.seq);
                                if let Ok(hash) = <[u8; 32]>::try_from(ev.hash.as_slice()) {
                                    let change = LocalChange {
                                        deleted: ev.deleted,
                                        stamp: ev.stamp,
                                        size: ev.size,
                                        name: ev.name,
                                    };
                                    let _ = ctx.cmd.send(Cmd::Local { hash, origin: Some(ev.origin), change }).await;
                                }
                            }
                            Some(Err(e)) => {
                                tracing::debug!(error = %e, "event stream broke off");
                                break;
                            }
                            None => break,
                        },
                        _ = ctx.cancelled() => return,
                    }
                }
                // Whatever was stored between the break and the next stream is picked up by
                // that stream (it resumes from `cursor`); poll at once in case it never comes.
                poll_once(&ctx, &mut cursor).await;
            }
            Err(e) => {
                // A service without a working stream (or none at all): the poll is the
                // fallback, every retry, and it says whether the service is there at all.
                let state = if poll_once(&ctx, &mut cursor).await {
                    Ok(())
                } else {
                    Err(e.to_string())
                };
                let _ = ctx.cmd.send(Cmd::StoreState(state)).await;
                sleep_or_cancel(&ctx, jitter(backoff)).await;
                backoff = (backoff * 2).min(poll_interval.max(FIRST_RETRY));
            }
        }
    }
}

/// Reads what the service stored after `cursor`; whether the service answered.
async fn poll_once(ctx: &Context, cursor: &mut u64) -> bool {
    match ctx.can.all_hashes(*cursor).await {
        Ok((entries, last)) => {
            for e in entries {
                if let Ok(hash) = <[u8; 32]>::try_from(e.hash.as_slice()) {
                    let change = LocalChange {
                        deleted: e.deleted,
                        stamp: e.stamp,
                        size: e.size,
                        name: String::new(),
                    };
                    let _ = ctx
                        .cmd
                        .send(Cmd::Local {
                            hash,
                            origin: None,
                            change,
                        })
                        .await;
                }
            }
            *cursor = (*cursor).max(last);
            true
        }
        Err(e) => {
            tracing::debug!(error = %e, "poll of the CAN Service failed");
            false
        }
    }
}
