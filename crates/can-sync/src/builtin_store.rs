//! The engine's side of an embedded store (feature `builtin-store`): the sync API's
//! operations called on the library, with its errors turned into the same [`CanError`]s
//! the HTTP client reports, so the engine treats both alike.

use bytes::Bytes;
use can_proto::sync_api as pb;
use can_service::sync_ops::{self, SyncOpError};
use can_service::{AssetHash, Store};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};

use crate::can_client::{CanError, Ingested};

/// Entries per listing page, and changes read per batch by the event stream.
const PAGE: usize = 10_000;
const EVENT_BATCH: usize = 500;

/// An embedded store, for `EngineConfig::builtin_store`.
#[derive(Clone)]
pub struct BuiltinStore {
    store: Store,
}

impl std::fmt::Debug for BuiltinStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BuiltinStore")
    }
}

impl BuiltinStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub async fn all_hashes(&self, after: u64) -> Result<(Vec<pb::HashEntry>, u64), CanError> {
        crate::store_link::collect_pages(after, |cursor| async move {
            sync_ops::hash_page(&self.store, cursor, PAGE, true)
                .await
                .map_err(store_error)
        })
        .await
    }

    /// Changes after `after`, read from the index as the SSE route does: nothing is missed,
    /// and a caught-up stream sleeps until the store's latest seq moves.
    pub fn events(&self, after: u64) -> BoxStream<'static, Result<pb::IngestEvent, CanError>> {
        let store = self.store.clone();
        let rx = store.subscribe();
        let state = (store, after, rx, std::collections::VecDeque::new());
        futures_util::stream::unfold(state, |(store, mut cursor, mut rx, mut buf)| async move {
            loop {
                if let Some(meta) = buf.pop_front() {
                    let event = sync_ops::event_pb(&meta);
                    return Some((Ok(event), (store, cursor, rx, buf)));
                }
                rx.borrow_and_update();
                match store.changes(cursor, EVENT_BATCH).await {
                    Ok((page, _)) if !page.is_empty() => {
                        cursor = page.last().map_or(cursor, |a| a.seq);
                        buf.extend(page);
                    }
                    Ok(_) => rx.changed().await.ok()?,
                    Err(e) => {
                        let e = store_error(e);
                        return Some((Err(e), (store, cursor, rx, buf)));
                    }
                }
            }
        })
        .boxed()
    }

    pub fn partial(&self, hash: &[u8; 32]) -> Option<u64> {
        self.store
            .partial_received(&AssetHash::from(blake3::Hash::from_bytes(*hash)))
    }

    pub async fn fetch(
        &self,
        hash: &[u8; 32],
        offset: u64,
    ) -> Result<(pb::Asset, BoxStream<'static, Result<Bytes, CanError>>), CanError> {
        let hash = AssetHash::from(blake3::Hash::from_bytes(*hash));
        let meta = match self.store.record(hash).await.map_err(store_error)? {
            Some(m) if !m.is_deleted() => m,
            Some(_) => return Err(CanError::Deleted(format!("asset {hash} was deleted"))),
            None => return Err(CanError::NotFound),
        };
        if offset > meta.size {
            return Err(CanError::Status {
                status: 400,
                message: format!("offset {offset} is past the asset's {} bytes", meta.size),
            });
        }
        let path = self.store.content_path(&hash);
        let io = |e: std::io::Error| CanError::Status {
            status: 500,
            message: e.to_string(),
        };
        let mut file = tokio::fs::File::open(&path).await.map_err(io)?;
        if offset > 0 {
            use tokio::io::AsyncSeekExt;
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(io)?;
        }
        let content = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
            .map(move |r| r.map_err(io));
        Ok((sync_ops::asset_pb(&meta), content.boxed()))
    }

    pub async fn ingest<S>(
        &self,
        asset: pb::Asset,
        offset: u64,
        content: S,
    ) -> Result<Ingested, CanError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        if let Some(reply) = sync_ops::ingest_precheck(&self.store, &asset)
            .await
            .map_err(op_error)?
        {
            return ingested(reply);
        }
        let reply = sync_ops::ingest(&self.store, asset, offset, content)
            .await
            .map_err(op_error)?;
        ingested(reply)
    }

    pub async fn apply_record(&self, record: pb::Record) -> Result<pb::RecordResponse, CanError> {
        sync_ops::apply_record(&self.store, record)
            .await
            .map_err(op_error)
    }

    pub async fn totals(&self) -> Result<pb::Totals, CanError> {
        sync_ops::totals(&self.store).await.map_err(store_error)
    }
}

fn ingested(reply: pb::IngestResponse) -> Result<Ingested, CanError> {
    let asset = reply
        .asset
        .ok_or_else(|| CanError::Protocol("IngestResponse without asset".into()))?;
    Ok(Ingested {
        asset,
        created: reply.created,
    })
}

fn store_error(e: can_service::store::StoreError) -> CanError {
    CanError::Status {
        status: 500,
        message: e.to_string(),
    }
}

/// The error the HTTP client would report for the status the sync API answers.
fn op_error(e: SyncOpError) -> CanError {
    let status = e.status();
    let message = e.to_string();
    match status {
        410 => CanError::Deleted(message),
        422 => CanError::Rejected(message),
        _ => CanError::Status { status, message },
    }
}
