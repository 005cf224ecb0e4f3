//! Following the local CAN Service: its event stream for new assets, a periodic poll as the
//! safety net.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::context::{Cmd, Context};
use crate::util::{jitter, sleep_or_cancel};

pub(super) async fn watch(ctx: Arc<Context>, mut cursor: u64, poll_interval: Duration) {
    let mut backoff = Duration::from_millis(250);
    let mut poll = tokio::time::interval(poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if ctx.cancel.is_cancelled() {
            return;
        }
        match ctx.can.events(cursor).await {
            Ok(mut stream) => {
                let _ = ctx.cmd.send(Cmd::StoreState(Ok(()))).await;
                backoff = Duration::from_millis(250);
                loop {
                    tokio::select! {
                        ev = stream.next() => match ev {
                            Some(Ok(ev)) => {
                                cursor = cursor.max(ev.seq);
                                if let Ok(hash) = <[u8; 32]>::try_from(ev.hash.as_slice()) {
                                    let _ = ctx.cmd.send(Cmd::Local { hash, origin: Some(ev.origin) }).await;
                                }
                            }
                            Some(Err(e)) => {
                                tracing::debug!(error = %e, "event stream broke off");
                                break;
                            }
                            None => break,
                        },
                        _ = poll.tick() => poll_once(&ctx, &mut cursor).await,
                        _ = ctx.cancelled() => return,
                    }
                }
            }
            Err(e) => {
                let _ = ctx.cmd.send(Cmd::StoreState(Err(e.to_string()))).await;
                sleep_or_cancel(&ctx, jitter(backoff)).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn poll_once(ctx: &Context, cursor: &mut u64) {
    match ctx.can.all_hashes(*cursor).await {
        Ok((entries, last)) => {
            for e in entries {
                if let Ok(hash) = <[u8; 32]>::try_from(e.hash.as_slice()) {
                    let _ = ctx.cmd.send(Cmd::Local { hash, origin: None }).await;
                }
            }
            *cursor = (*cursor).max(last);
        }
        Err(e) => tracing::debug!(error = %e, "poll of the CAN Service failed"),
    }
}
