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
use std::time::Duration;

use super::auth::BearerKey;
use super::error::{ApiError, closing};
use super::public::check_content_length;
use super::query::{After, ApiQuery};
use super::sse;
use crate::hash::AssetHash;
use crate::store::Store;
use crate::sync_ops::{self, asset_pb};

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
    let page = sync_ops::hash_page(&store, q.after, limit, q.deleted).await?;
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
    let hash = AssetHash::from_hex(&hash)?;
    let (meta, file) = sync_ops::open_content(&store, hash, q.offset).await?;
    let head = Bytes::from(asset_pb(&meta).encode_length_delimited_to_vec());
    let length = head.len() as u64 + meta.size - q.offset;
    let body = futures_util::stream::once(async move { Ok(head) })
        .chain(crate::content::read_ahead(file.into_std().await));
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
    let mut stream = body.into_data_stream();
    let mut claimed = None;
    let response = match store_ingest(store, headers, &mut stream, &mut claimed).await {
        Ok((response, true)) => return response,
        Ok((response, false)) => response,
        Err(e) => e.into_response(),
    };
    // Only a body known to be small is drained; a large or unknown rest is cut off at
    // once, as reading it would cost more than the client's retry.
    if claimed.is_some_and(|left| left <= DRAIN_BYTES) {
        drain(&mut stream).await;
    }
    closing(response)
}

/// Most of an answered request's body read and dropped before the connection closes.
const DRAIN_BYTES: u64 = 16 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(3);

/// Reads what the client is still sending after we answered early (a refusal, or content
/// we already hold), within bounds, before the answer goes out. Closing a socket with request bytes unread makes the
/// kernel reset the connection, and the reset can reach the client before our answer: it
/// would see a broken connection instead of the 413 and retry as if the store were down.
async fn drain<S>(stream: &mut S)
where
    S: futures_util::Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    let read_all = async {
        let mut read = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len() as u64;
            if read > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read_all).await;
}

/// Returns the response and whether the request body was read to its end. `claimed`: the
/// content bytes the request said would follow its head, once the head is read.
async fn store_ingest(
    store: Store,
    headers: HeaderMap,
    stream: &mut axum::body::BodyDataStream,
    claimed: &mut Option<u64>,
) -> Result<(Response, bool), ApiError> {
    let (request, rest): (pb::IngestRequest, _) =
        read_head(&mut *stream, MAX_META_FRAME, "IngestRequest")
            .await
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let asset = request
        .asset
        .ok_or_else(|| ApiError::bad_request("IngestRequest.asset is missing"))?;
    *claimed = Some(
        asset
            .size
            .saturating_sub(request.offset)
            .saturating_sub(rest.len() as u64),
    );
    // A malformed hash is a 400 before anything else.
    AssetHash::from_slice(&asset.hash)?;
    // The claimed size against max_asset_bytes is checked by the store's ingest.
    let limit = store.max_asset_bytes();
    check_content_length(&headers, limit.saturating_add(MAX_META_FRAME as u64 + 10))?;
    if let Some(reply) = sync_ops::ingest_precheck(&store, &asset).await? {
        // Idempotent: the content is already here, so it need not be read.
        return Ok((protobuf(StatusCode::OK, &reply), false));
    }
    let content = futures_util::stream::iter((!rest.is_empty()).then(|| Ok(rest))).chain(stream);
    let reply = sync_ops::ingest(&store, asset, request.offset, content).await?;
    let status = if reply.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
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
        let event = sync_ops::event_pb(asset);
        base64::engine::general_purpose::STANDARD.encode(event.encode_to_vec())
    })
    .into_response())
}

/// A peer's change of one hash: `Record` → `RecordResponse`.
pub async fn record(State(store): State<Store>, body: Body) -> Response {
    match apply_record(store, body).await {
        Ok(r) => r,
        // The body may not have been read to its end.
        Err(e) => closing(e.into_response()),
    }
}

async fn apply_record(store: Store, body: Body) -> Result<Response, ApiError> {
    // Read at most one frame's worth: bodies are not limited by the router (uploads stream).
    let body = axum::body::to_bytes(body, MAX_META_FRAME)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Record is larger than 64 KiB, or its body broke off",
            )
        })?;
    let record = pb::Record::decode(body)
        .map_err(|e| ApiError::bad_request(format!("malformed Record: {e}")))?;
    let reply = sync_ops::apply_record(&store, record).await?;
    Ok(protobuf(StatusCode::OK, &reply))
}

/// Counts and bytes of stored assets, the trash and tombstones.
pub async fn totals(State(store): State<Store>) -> Result<Response, ApiError> {
    Ok(protobuf(StatusCode::OK, &sync_ops::totals(&store).await?))
}
