//! A live stream of the store's changes (stored, restored and deleted assets) after a seq,
//! driven by the index: it reads rows after its cursor, and when it has caught up waits for
//! the store's latest seq to move. A slow reader never loses a change and a resumed one gets
//! exactly what it missed (an asset changed again meanwhile: once, in its latest state).
//! The SSE routes and an embedding engine read it.

use std::collections::VecDeque;

use futures_util::Stream;

use super::{AssetMeta, Store, StoreError};

/// Rows read per batch.
const BATCH: usize = 500;

impl Store {
    /// Changes with seq > `after`, in seq order, then live ones as they happen. Ends after
    /// the first error (reported) or when the store goes away.
    pub fn change_stream(
        &self,
        after: u64,
    ) -> impl Stream<Item = Result<AssetMeta, StoreError>> + Send + use<> {
        let store = self.clone();
        let rx = store.subscribe();
        let state = Some((store, after, rx, VecDeque::<AssetMeta>::new()));
        futures_util::stream::unfold(state, |state| async move {
            let (store, mut cursor, mut rx, mut buf) = state?;
            loop {
                if let Some(meta) = buf.pop_front() {
                    return Some((Ok(meta), Some((store, cursor, rx, buf))));
                }
                rx.borrow_and_update();
                match store.changes(cursor, BATCH).await {
                    Ok((page, _)) if !page.is_empty() => {
                        cursor = page.last().map_or(cursor, |a| a.seq);
                        buf.extend(page);
                    }
                    // Caught up: sleep until something changes (or the store goes away).
                    Ok(_) => rx.changed().await.ok()?,
                    Err(e) => return Some((Err(e), None)),
                }
            }
        })
    }
}
