//! Server-Sent Events of ingests and deletions, shared by `/api/events` and
//! `/sync/v1/events`: `event: ingest` for a stored (or restored) asset, `event: delete` for a
//! deletion.
//!
//! Each stream is the store's change stream ([`Store::change_stream`]): driven by the index,
//! not by an in-memory queue, so a slow client never loses events and a resumed one gets
//! exactly what it missed.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};

use super::error::ApiError;
use crate::store::{AssetMeta, Store};

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
    // The change stream ends after an error, so the SSE response ends with it.
    let stream = store
        .change_stream(after)
        .filter_map(move |change| async move {
            match change {
                Ok(asset) => Some(Ok(Event::default()
                    .event(if asset.is_deleted() {
                        "delete"
                    } else {
                        "ingest"
                    })
                    .id(asset.seq.to_string())
                    .data(render(&asset)))),
                Err(e) => {
                    tracing::error!(error = %e, "event stream stopped");
                    None
                }
            }
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
