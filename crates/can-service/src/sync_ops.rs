//! The sync API's operations, independent of HTTP: the `/sync/v1/` routes call them, and so
//! does an engine that embeds the store (the desktop app's built-in store), so both get the
//! same checks, the same verification and the same events.

use bytes::Bytes;
use can_proto::sync_api as pb;
use futures_util::Stream;

use crate::hash::{AssetHash, HashError};
use crate::store::{
    AssetMeta, Begun, IngestError, IngestOutcome, NewAsset, PartsUpload, Record, RecordOutcome,
    Store, StoreError,
};

/// Content type stored when an upload names none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Why a sync operation failed, with the HTTP status the sync API answers it with.
#[derive(Debug, thiserror::Error)]
pub enum SyncOpError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The asset was deleted here.
    #[error("{0}")]
    Gone(String),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<HashError> for SyncOpError {
    fn from(e: HashError) -> Self {
        SyncOpError::BadRequest(format!("malformed hash: {e}"))
    }
}

impl SyncOpError {
    /// The status the sync API answers: 400, 404, 409, 410, 413, 422, 507 or 500.
    pub fn status(&self) -> u16 {
        match self {
            SyncOpError::BadRequest(_) => 400,
            SyncOpError::NotFound(_) => 404,
            SyncOpError::Gone(_) => 410,
            SyncOpError::Ingest(e) => ingest_status(e),
            SyncOpError::Store(_) => 500,
        }
    }
}

/// The HTTP status of a refused upload, on either API: the one table.
pub fn ingest_status(e: &IngestError) -> u16 {
    match e {
        IngestError::Invalid { .. } | IngestError::Interrupted(_) => 400,
        IngestError::TooLarge { .. } => 413,
        IngestError::HashMismatch { .. } | IngestError::SizeMismatch { .. } => 422,
        IngestError::NoSpace { .. } => 507,
        IngestError::Busy | IngestError::BeyondPartial { .. } => 409,
        IngestError::Superseded { .. } => 410,
        IngestError::Store(_) => 500,
    }
}

/// A stored asset's metadata and its content file, positioned at byte `offset`
/// (`GET /sync/v1/assets/{hash}?offset=`): 404 unknown, 410 deleted, 400 past its end.
pub async fn open_content(
    store: &Store,
    hash: AssetHash,
    offset: u64,
) -> Result<(AssetMeta, tokio::fs::File), SyncOpError> {
    let meta = match store.record(hash).await? {
        Some(m) if !m.is_deleted() => m,
        Some(_) => return Err(SyncOpError::Gone(format!("asset {hash} was deleted"))),
        None => return Err(SyncOpError::NotFound(format!("no asset {hash}"))),
    };
    if offset > meta.size {
        return Err(SyncOpError::BadRequest(format!(
            "offset {offset} is past the asset's {} bytes",
            meta.size
        )));
    }
    let path = store.content_path(&hash);
    let io_error = |source| StoreError::Io {
        path: path.clone(),
        source,
    };
    // Deleted between the lookup and the open: the content went to the trash.
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SyncOpError::Gone(format!("asset {hash} was deleted")));
        }
        Err(e) => return Err(io_error(e).into()),
    };
    if offset > 0 {
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(io_error)?;
    }
    Ok((meta, file))
}

pub fn asset_pb(meta: &AssetMeta) -> pb::Asset {
    pb::Asset {
        hash: meta.hash.as_bytes().to_vec(),
        size: meta.size,
        name: meta.name.clone(),
        content_type: meta.content_type.clone(),
        created_at: meta.created_at.clone(),
        origin: meta.origin.clone(),
        seq: meta.seq,
        stamp: meta.stamp,
        deleted: meta.is_deleted(),
    }
}

/// The event stream's message for a change (`event: ingest`, or `delete` when `deleted`).
pub fn event_pb(meta: &AssetMeta) -> pb::IngestEvent {
    pb::IngestEvent {
        hash: meta.hash.as_bytes().to_vec(),
        seq: meta.seq,
        origin: meta.origin.clone(),
        size: meta.size,
        stamp: meta.stamp,
        deleted: meta.is_deleted(),
        restored: meta.restored,
        name: meta.name.clone(),
    }
}

/// One page of the hash listing (deletions too with `deleted`).
pub async fn hash_page(
    store: &Store,
    after: u64,
    limit: usize,
    deleted: bool,
) -> Result<pb::HashPage, StoreError> {
    let (assets, more) = if deleted {
        store.changes(after, limit).await?
    } else {
        store.list(after, limit).await?
    };
    Ok(pb::HashPage {
        next: if more {
            assets.last().map(|a| a.seq)
        } else {
            None
        },
        entries: assets
            .iter()
            .map(|a| pb::HashEntry {
                hash: a.hash.as_bytes().to_vec(),
                seq: a.seq,
                size: a.size,
                stamp: a.stamp,
                deleted: a.is_deleted(),
            })
            .collect(),
        last_seq: store.last_seq(),
    })
}

/// Before an upload's content is read: the stored asset, if the upload need not be read
/// (`created = false`), or a refusal (a deletion here outranks it).
pub async fn ingest_precheck(
    store: &Store,
    asset: &pb::Asset,
) -> Result<Option<pb::IngestResponse>, SyncOpError> {
    let hash = AssetHash::from_slice(&asset.hash)?;
    Ok(store
        .existing_for_upload(hash, Some(asset.stamp))
        .await?
        .map(|existing| pb::IngestResponse {
            asset: Some(asset_pb(&existing)),
            created: false,
        }))
}

/// Stores `content`, the asset from byte `offset` on (see docs/sync-api.md).
pub async fn ingest<S, E>(
    store: &Store,
    asset: pb::Asset,
    offset: u64,
    content: S,
) -> Result<pb::IngestResponse, SyncOpError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let (hash, size) = (AssetHash::from_slice(&asset.hash)?, asset.size);
    let outcome = store
        .ingest_resumable(content, synced_asset(asset), hash, size, offset)
        .await?;
    Ok(ingest_response(outcome))
}

/// Starts storing a synced asset in parts of `part_len` bytes, written at once by several
/// streams (the built-in store only: the sync API takes one body): the upload, or the
/// answer if the asset is stored already.
pub async fn begin_parts(
    store: &Store,
    asset: pb::Asset,
    part_len: u64,
) -> Result<Result<PartsUpload, pb::IngestResponse>, SyncOpError> {
    let (hash, size) = (AssetHash::from_slice(&asset.hash)?, asset.size);
    Ok(
        match store
            .begin_parts(synced_asset(asset), hash, size, part_len)
            .await?
        {
            Begun::Upload(upload) => Ok(upload),
            Begun::Existing(meta) => Err(ingest_response(IngestOutcome::Existing(meta))),
        },
    )
}

/// Stores an upload in parts once every part is written (see [`begin_parts`]).
pub async fn finish_parts(upload: PartsUpload) -> Result<pb::IngestResponse, SyncOpError> {
    Ok(ingest_response(upload.finish().await?))
}

/// A synced asset's metadata as the store takes it.
fn synced_asset(asset: pb::Asset) -> NewAsset {
    NewAsset {
        name: asset.name,
        content_type: if asset.content_type.is_empty() {
            DEFAULT_CONTENT_TYPE.to_owned()
        } else {
            asset.content_type
        },
        created_at: (!asset.created_at.is_empty()).then_some(asset.created_at),
        origin: asset.origin,
        stamp: Some(asset.stamp),
    }
}

fn ingest_response(outcome: IngestOutcome) -> pb::IngestResponse {
    if let IngestOutcome::Created(meta) = &outcome {
        tracing::info!(hash = %meta.hash, size = meta.size, origin = %meta.origin, "stored synced asset");
    }
    pb::IngestResponse {
        asset: Some(asset_pb(outcome.meta())),
        created: matches!(outcome, IngestOutcome::Created(_)),
    }
}

/// A peer's change of one hash (`POST /sync/v1/records`).
pub async fn apply_record(
    store: &Store,
    record: pb::Record,
) -> Result<pb::RecordResponse, SyncOpError> {
    use pb::record_response::Outcome;
    let hash = AssetHash::from_slice(&record.hash)?;
    let new = NewAsset {
        name: record.name,
        content_type: DEFAULT_CONTENT_TYPE.to_owned(),
        created_at: None,
        origin: record.origin,
        stamp: Some(record.stamp),
    }
    .cleaned();
    // The same rules for name and origin as an upload's.
    new.validate()?;
    let outcome = store
        .apply_record(Record {
            hash,
            stamp: record.stamp,
            deleted: record.deleted,
            origin: new.origin,
            size: record.size,
            name: new.name,
        })
        .await?;
    let (outcome, current) = match outcome {
        RecordOutcome::Applied(m) => (Outcome::Applied, Some(m)),
        RecordOutcome::Unchanged(m) => (Outcome::Unchanged, Some(m)),
        RecordOutcome::Superseded(m) => (Outcome::Superseded, Some(m)),
        RecordOutcome::NeedContent => (Outcome::NeedContent, store.record(hash).await?),
        RecordOutcome::Expired => (Outcome::Expired, store.record(hash).await?),
    };
    if outcome == Outcome::Applied
        && let Some(m) = &current
    {
        tracing::info!(hash = %m.hash, deleted = m.is_deleted(), origin = %m.origin, "applied a peer's change");
    }
    Ok(pb::RecordResponse {
        outcome: outcome as i32,
        current: current.as_ref().map(asset_pb),
    })
}

pub async fn totals(store: &Store) -> Result<pb::Totals, StoreError> {
    let t = store.totals().await?;
    Ok(pb::Totals {
        assets: t.assets,
        bytes: t.bytes,
        trash_assets: t.trash_assets,
        trash_bytes: t.trash_bytes,
        tombstones: t.tombstones,
    })
}
