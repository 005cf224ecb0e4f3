//! The sync API under `/sync/v1/` (protobuf bodies), for the sync agent.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use can_proto::frame::read_head;
use can_proto::sync_api as pb;
use can_proto::{MAX_META_FRAME, PROTOBUF_MEDIA_TYPE};
use futures_util::StreamExt;
use prost::Message;
use serde::Deserialize;
use tokio_util::io::ReaderStream;

use super::auth::BearerKey;
use super::error::{ApiError, closing};
use super::public::{check_content_length, find};
use super::query::{After, ApiQuery};
use super::sse;
use crate::hash::AssetHash;
use crate::store::{AssetMeta, IngestOutcome, NewAsset, Record, RecordOutcome, Store};

/// 404 when no key is configured (the API does not exist), 401 on a wrong or missing key.
pub async fn authorize(State(key): State<BearerKey>, request: Request, next: Next) -> Response {
    if !key.is_set() {
        return ApiError::not_found("the sync API is not enabled on this service").into_response();
    }
    if !key.admits(request.headers()) {
        return ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong sync API key")
            .into_response();
    }
    next.run(request).await
}

fn to_pb(meta: &AssetMeta) -> pb::Asset {
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

fn protobuf(status: StatusCode, msg: &impl Message) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, PROTOBUF_MEDIA_TYPE)],
        msg.encode_to_vec(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
    /// List deletions (tombstones) too.
    #[serde(default)]
    deleted: bool,
}

/// Hash listing in seq order: at most 10,000 entries (≈ 450 KB) a page.
pub async fn hashes(
    State(store): State<Store>,
    ApiQuery(q): ApiQuery<HashQuery>,
) -> Result<Response, ApiError> {
    let limit = match q.limit {
        None => 10_000,
        Some(0) => return Err(ApiError::bad_request("limit must be at least 1")),
        Some(n) => n.min(10_000),
    };
    let (assets, more) = if q.deleted {
        store.changes(q.after, limit).await?
    } else {
        store.list(q.after, limit).await?
    };
    let page = pb::HashPage {
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
    };
    Ok(protobuf(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchQuery {
    #[serde(default)]
    offset: u64,
}

/// One asset: a length-delimited `Asset`, then its content from byte `?offset=` (default 0)
/// on, streamed from disk.
pub async fn fetch(
    State(store): State<Store>,
    Path(hash): Path<String>,
    ApiQuery(q): ApiQuery<FetchQuery>,
) -> Result<Response, ApiError> {
    let meta = find(&store, &hash).await?;
    if q.offset > meta.size {
        return Err(ApiError::bad_request(format!(
            "offset {} is past the asset's {} bytes",
            q.offset, meta.size
        )));
    }
    let path = store.content_path(&meta.hash);
    let io_error = |path, source| crate::store::StoreError::Io { path, source };
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| io_error(path.clone(), e))?;
    if q.offset > 0 {
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(q.offset))
            .await
            .map_err(|e| io_error(path.clone(), e))?;
    }
    let head = Bytes::from(to_pb(&meta).encode_length_delimited_to_vec());
    let length = head.len() as u64 + meta.size - q.offset;
    let body = futures_util::stream::once(async move { Ok(head) })
        .chain(ReaderStream::with_capacity(file, 256 * 1024));
    Ok((
        [
            (header::CONTENT_TYPE, PROTOBUF_MEDIA_TYPE.to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// Ingest from a peer: a length-delimited `IngestRequest`, then exactly `asset.size` bytes.
pub async fn ingest(State(store): State<Store>, headers: HeaderMap, body: Body) -> Response {
    match store_ingest(store, headers, body).await {
        Ok((response, true)) => response,
        Ok((response, false)) => closing(response),
        Err(e) => closing(e.into_response()),
    }
}

/// Returns the response and whether the request body was read to its end.
async fn store_ingest(
    store: Store,
    headers: HeaderMap,
    body: Body,
) -> Result<(Response, bool), ApiError> {
    let mut stream = body.into_data_stream();
    let (request, rest): (pb::IngestRequest, _) =
        read_head(&mut stream, MAX_META_FRAME, "IngestRequest")
            .await
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let asset = request
        .asset
        .ok_or_else(|| ApiError::bad_request("IngestRequest.asset is missing"))?;
    let hash = AssetHash::from_slice(&asset.hash)?;
    // The claimed size against max_asset_bytes is checked by the store's ingest.
    let limit = store.max_asset_bytes();
    check_content_length(&headers, limit.saturating_add(MAX_META_FRAME as u64 + 10))?;
    if let Some(existing) = store.existing_for_upload(hash, Some(asset.stamp)).await? {
        // Idempotent: the content is already here, so it need not be read.
        let reply = pb::IngestResponse {
            asset: Some(to_pb(&existing)),
            created: false,
        };
        return Ok((protobuf(StatusCode::OK, &reply), false));
    }
    let new = NewAsset {
        name: asset.name,
        content_type: if asset.content_type.is_empty() {
            super::public::DEFAULT_CONTENT_TYPE.to_owned()
        } else {
            asset.content_type
        },
        created_at: (!asset.created_at.is_empty()).then_some(asset.created_at),
        origin: asset.origin,
        stamp: Some(asset.stamp),
    };
    let content = futures_util::stream::iter((!rest.is_empty()).then(|| Ok(rest))).chain(stream);
    let outcome = store
        .ingest_resumable(content, new, hash, asset.size, request.offset)
        .await?;
    let (status, created) = match &outcome {
        IngestOutcome::Created(meta) => {
            tracing::info!(hash = %meta.hash, size = meta.size, origin = %meta.origin, "stored synced asset");
            (StatusCode::CREATED, true)
        }
        IngestOutcome::Existing(_) => (StatusCode::OK, false),
    };
    let reply = pb::IngestResponse {
        asset: Some(to_pb(outcome.meta())),
        created,
    };
    Ok((protobuf(status, &reply), true))
}

/// What is kept of an interrupted upload of `hash`: `Partial{hash, received}`, or 404.
pub async fn partial(
    State(store): State<Store>,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    let hash = AssetHash::from_hex(&hash)?;
    match store.partial_received(&hash) {
        Some(received) => Ok(protobuf(
            StatusCode::OK,
            &pb::Partial {
                hash: hash.as_bytes().to_vec(),
                received,
            },
        )),
        None => Err(ApiError::not_found("no partial upload of this asset")),
    }
}

pub async fn events(
    State(store): State<Store>,
    headers: HeaderMap,
    ApiQuery(after): ApiQuery<After>,
) -> Result<Response, ApiError> {
    let start = sse::start_seq(&store, &headers, after.after)?;
    Ok(sse::ingest_events(store, start, |asset| {
        let event = pb::IngestEvent {
            hash: asset.hash.as_bytes().to_vec(),
            seq: asset.seq,
            origin: asset.origin.clone(),
            size: asset.size,
            stamp: asset.stamp,
            deleted: asset.is_deleted(),
            restored: asset.restored,
            name: asset.name.clone(),
        };
        base64::engine::general_purpose::STANDARD.encode(event.encode_to_vec())
    })
    .into_response())
}

/// A peer's change of one hash: `Record` → `RecordResponse`.
pub async fn record(State(store): State<Store>, body: Bytes) -> Result<Response, ApiError> {
    use pb::record_response::Outcome;
    if body.len() > MAX_META_FRAME {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Record is too large",
        ));
    }
    let record = pb::Record::decode(body)
        .map_err(|e| ApiError::bad_request(format!("malformed Record: {e}")))?;
    let hash = AssetHash::from_slice(&record.hash)?;
    let new = NewAsset {
        name: record.name,
        content_type: super::public::DEFAULT_CONTENT_TYPE.to_owned(),
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
    Ok(protobuf(
        StatusCode::OK,
        &pb::RecordResponse {
            outcome: outcome as i32,
            current: current.as_ref().map(to_pb),
        },
    ))
}

/// Counts and bytes of stored assets, the trash and tombstones.
pub async fn totals(State(store): State<Store>) -> Result<Response, ApiError> {
    let t = store.totals().await?;
    Ok(protobuf(
        StatusCode::OK,
        &pb::Totals {
            assets: t.assets,
            bytes: t.bytes,
            trash_assets: t.trash_assets,
            trash_bytes: t.trash_bytes,
            tombstones: t.tombstones,
        },
    ))
}
