//! Server-Sent Events of ingests and deletions, shared by `/api/events` and
//! `/sync/v1/events`: `event: ingest` for a stored (or restored) asset, `event: delete` for a
//! deletion.
//!
//! Each stream is driven by the index, not by an in-memory queue: it reads rows after its
//! cursor, and when it has caught up it waits for the store's "latest seq" to change. A
//! slow client therefore never loses events, and a resumed one gets exactly what it missed.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use super::error::ApiError;
use crate::store::{AssetMeta, Store};

const BATCH: usize = 500;

/// Where a stream starts: `Last-Event-ID` wins over `?after=`; neither = only new events.
pub fn start_seq(store: &Store, headers: &HeaderMap, after: Option<u64>) -> Result<u64, ApiError> {
    if let Some(v) = headers.get("last-event-id") {
        return v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a sequence number"));
    }
    Ok(after.unwrap_or_else(|| store.last_seq()))
}

/// An SSE response of `event: ingest|delete` / `id: seq` / `data: render(asset)`.
pub fn ingest_events(
    store: Store,
    after: u64,
    render: fn(&AssetMeta) -> String,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = store.subscribe();
    let state = (store, after, rx, VecDeque::<AssetMeta>::new());
    let stream = futures_util::stream::unfold(
        state,
        move |(store, mut cursor, mut rx, mut buf)| async move {
            loop {
                if let Some(asset) = buf.pop_front() {
                    let event = Event::default()
                        .event(if asset.is_deleted() {
                            "delete"
                        } else {
                            "ingest"
                        })
                        .id(asset.seq.to_string())
                        .data(render(&asset));
                    return Some((Ok(event), (store, cursor, rx, buf)));
                }
                rx.borrow_and_update();
                match store.changes(cursor, BATCH).await {
                    Ok((page, _)) if !page.is_empty() => {
                        cursor = page.last().map_or(cursor, |a| a.seq);
                        buf.extend(page);
                    }
                    Ok(_) => {
                        // Caught up: sleep until something is stored (or the store goes away).
                        rx.changed().await.ok()?;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "event stream stopped");
                        return None;
                    }
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
