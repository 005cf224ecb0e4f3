//! The engine's side of an embedded store (feature `builtin-store`): the sync API's
//! operations called on the library, with its errors turned into the same [`CanError`]s
//! the HTTP client reports, so the engine treats both alike.

use bytes::Bytes;
use can_proto::sync_api as pb;
use can_service::sync_ops::{self, SyncOpError};
use can_service::{AssetHash, Store};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};

pub use can_service::store::{PartWriter, PartsUpload};

use crate::can_client::{CanError, Ingested};

/// Entries per listing page.
const PAGE: usize = 10_000;

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

    /// Changes after `after`, live: the store's change stream (as the SSE route sends it).
    pub fn events(&self, after: u64) -> BoxStream<'static, Result<pb::IngestEvent, CanError>> {
        self.store
            .change_stream(after)
            .map(|change| change.map(|m| sync_ops::event_pb(&m)).map_err(store_error))
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
        let (meta, file) = sync_ops::open_content(&self.store, hash, offset)
            .await
            .map_err(op_error)?;
        let io = |e: std::io::Error| CanError::Status {
            status: 500,
            message: e.to_string(),
        };
        let content =
            can_service::content::read_ahead(file.into_std().await).map(move |r| r.map_err(io));
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

    /// Starts storing `asset` in parts of `part_len` bytes, written at once by several
    /// streams (`crate::peer::split`): the upload, or what the store holds already.
    pub async fn begin_parts(
        &self,
        asset: pb::Asset,
        part_len: u64,
    ) -> Result<Result<PartsUpload, Ingested>, CanError> {
        match sync_ops::begin_parts(&self.store, asset, part_len)
            .await
            .map_err(op_error)?
        {
            Ok(upload) => Ok(Ok(upload)),
            Err(reply) => ingested(reply).map(Err),
        }
    }

    /// Stores an upload in parts once every part is written.
    pub async fn finish_parts(upload: PartsUpload) -> Result<Ingested, CanError> {
        ingested(sync_ops::finish_parts(upload).await.map_err(op_error)?)
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

/// A part writer's error, as the sync API would report it.
pub fn part_error(e: can_service::store::IngestError) -> CanError {
    op_error(SyncOpError::from(e))
}

fn store_error(e: can_service::store::StoreError) -> CanError {
    CanError::Status {
        status: 500,
        message: e.to_string(),
    }
}

/// The error the HTTP client would report for the status the sync API answers.
fn op_error(e: SyncOpError) -> CanError {
    CanError::from_status(e.status(), e.to_string())
}
