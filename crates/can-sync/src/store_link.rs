//! How the engine reaches its CAN Service: the sync API over HTTP (any CAN Service; the
//! headless agent), or — with the `builtin-store` feature, for the desktop app's built-in
//! store — the store's library in the same process, through the same operations the sync
//! API runs ([`can_service::sync_ops`]): the same checks, verification, crash safety and
//! events, without two loopback HTTP hops per transfer.

use bytes::Bytes;
use can_proto::sync_api as pb;
use futures_util::Stream;
use futures_util::stream::BoxStream;

use crate::can_client::{CanClient, CanError, Ingested};

/// The engine's CAN Service. Cheap to clone.
#[derive(Clone)]
pub enum StoreLink {
    Http(CanClient),
    #[cfg(feature = "builtin-store")]
    Builtin(crate::builtin_store::BuiltinStore),
}

/// Every entry after `after`, following a paged listing (`page(cursor)`) to its end; and
/// the last seq seen. Shared by both links.
pub(crate) async fn collect_pages<F, Fut>(
    after: u64,
    mut page: F,
) -> Result<(Vec<pb::HashEntry>, u64), CanError>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<pb::HashPage, CanError>>,
{
    let mut out = Vec::new();
    let mut cursor = after;
    let mut last_seq = after;
    loop {
        let p = page(cursor).await?;
        last_seq = last_seq.max(p.last_seq);
        if let Some(last) = p.entries.last() {
            last_seq = last_seq.max(last.seq);
        }
        out.extend(p.entries);
        match p.next {
            Some(n) => cursor = n,
            None => return Ok((out, last_seq)),
        }
    }
}

impl StoreLink {
    /// For logs: the service's URL, or "built-in".
    pub fn base_url(&self) -> &str {
        match self {
            StoreLink::Http(c) => c.base_url(),
            #[cfg(feature = "builtin-store")]
            StoreLink::Builtin(_) => "built-in",
        }
    }

    /// Every entry (assets and deletions) after `after`, and the last seq seen.
    pub async fn all_hashes(&self, after: u64) -> Result<(Vec<pb::HashEntry>, u64), CanError> {
        match self {
            StoreLink::Http(c) => c.all_hashes(after).await,
            #[cfg(feature = "builtin-store")]
            StoreLink::Builtin(s) => s.all_hashes(after).await,
        }
    }

    /// Ingest and delete events after `after`, live.
    pub async fn events(
        &self,
        after: u64,
    ) -> Result<BoxStream<'static, Result<pb::IngestEvent, CanError>>, CanError> {
        match self {
            StoreLink::Http(c) => c.events(after).await,
            #[cfg(feature = "builtin-store")]
            StoreLink::Builtin(s) => Ok(s.events(after)),
        }
    }

    pub async fn partial(&self, hash: &[u8; 32]) -> Result<Option<u64>, CanError> {
        match self {
            StoreLink::Http(c) => c.partial(hash).await,
            #[cfg(feature = "builtin-store")]
            StoreLink::Builtin(s) => Ok(s.partial(hash)),
        }
    }

    pub async fn fetch(
        &self,
        hash: &[u8; 32],
        offset: u64,
    ) -> Result<(pb::Asset, BoxStream<'static, Result<Bytes, CanError>>), CanError> {
        match self {
            StoreLink::Http(c) => c.fetch(hash, offset).await,
            #[cfg(feature = "builtin-store")]
            StoreLink::Builtin(s) => s.fetch(hash, offset).await,
        }
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
        match self {
            StoreLink::Http(c) => c.ingest(asset, offset, content).await,
            #[cfg(feature = "builtin-store")]
            StoreLink::Builtin(s) => s.ingest(asset, offset, content).await,
        }
    }

    pub async fn apply_record(&self, record: pb::Record) -> Result<pb::RecordResponse, CanError> {
        match self {
            StoreLink::Http(c) => c.apply_record(record).await,
            #[cfg(feature = "builtin-store")]
            StoreLink::Builtin(s) => s.apply_record(record).await,
        }
    }

    pub async fn totals(&self) -> Result<pb::Totals, CanError> {
        match self {
            StoreLink::Http(c) => c.totals().await,
            #[cfg(feature = "builtin-store")]
            StoreLink::Builtin(s) => s.totals().await,
        }
    }
}
