//! The public JSON API under `/api/`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::disposition::{CONTENT_CSP, content_disposition};
use super::error::{ApiError, closing};
use super::query::{After, ApiQuery, Page};
use super::sse;
use crate::hash::AssetHash;
use crate::store::{AssetMeta, IngestOutcome, NewAsset, Store};

pub use crate::sync_ops::DEFAULT_CONTENT_TYPE;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    name: Option<String>,
}

pub async fn upload(
    State(store): State<Store>,
    headers: HeaderMap,
    query: ApiQuery<UploadQuery>,
    body: Body,
) -> Response {
    match store_upload(store, headers, query, body).await {
        Ok(r) => r,
        Err(e) => closing(e.into_response()),
    }
}

async fn store_upload(
    store: Store,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<UploadQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = match headers.get("x-filename") {
        Some(v) => {
            let raw = v
                .to_str()
                .map_err(|_| ApiError::bad_request("X-Filename must be percent-encoded ASCII"))?;
            percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| ApiError::bad_request("X-Filename is not percent-encoded UTF-8"))?
                .into_owned()
        }
        None => query.name.unwrap_or_default(),
    };
    let content_type = match headers.get(header::CONTENT_TYPE) {
        Some(v) => v
            .to_str()
            .map_err(|_| ApiError::bad_request("Content-Type is not valid"))?
            .to_owned(),
        None => DEFAULT_CONTENT_TYPE.to_owned(),
    };
    check_content_length(&headers, store.max_asset_bytes())?;
    // The announced size must fit above the free-space reserve before a byte is read; a
    // body without Content-Length is checked as it streams.
    if let Some(n) = content_length(&headers) {
        store.check_space(n)?;
    }
    let new = NewAsset {
        name,
        content_type,
        created_at: None,
        origin: "local".to_owned(),
        stamp: None,
    };
    let outcome = store.ingest(body.into_data_stream(), new, None).await?;
    Ok(match outcome {
        IngestOutcome::Created(meta) => {
            tracing::info!(hash = %meta.hash, size = meta.size, seq = meta.seq, "stored asset");
            (StatusCode::CREATED, Json(meta)).into_response()
        }
        IngestOutcome::Existing(meta) => (StatusCode::OK, Json(meta)).into_response(),
    })
}

/// Refuses an announced body over the limit before reading a byte of it.
pub fn check_content_length(headers: &HeaderMap, limit: u64) -> Result<(), ApiError> {
    match content_length(headers) {
        Some(n) if n > limit => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("asset is larger than the limit of {limit} bytes"),
        )),
        _ => Ok(()),
    }
}

/// The announced body length, if any and well formed (hyper refuses a malformed one).
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

#[derive(serde::Serialize)]
pub struct AssetList {
    assets: Vec<AssetMeta>,
    next: Option<u64>,
}

pub async fn list(
    State(store): State<Store>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<AssetList>, ApiError> {
    let limit = page.limit(100, 1000)?;
    let (assets, more) = store.list(page.after, limit).await?;
    let next = if more {
        assets.last().map(|a| a.seq)
    } else {
        None
    };
    Ok(Json(AssetList { assets, next }))
}

pub async fn meta(
    State(store): State<Store>,
    Path(hash): Path<String>,
) -> Result<Json<AssetMeta>, ApiError> {
    Ok(Json(find(&store, &hash).await?))
}

/// A stored asset: 404 if unknown, 410 if deleted.
pub async fn find(store: &Store, hash: &str) -> Result<AssetMeta, ApiError> {
    let hash = AssetHash::from_hex(hash)?;
    match store.record(hash).await? {
        Some(meta) if !meta.is_deleted() => Ok(meta),
        Some(_) => Err(ApiError::new(
            StatusCode::GONE,
            format!("asset {hash} was deleted"),
        )),
        None => Err(ApiError::not_found(format!("no asset {hash}"))),
    }
}

/// The content, with Range support from tower-http's `ServeFile`.
pub async fn content(
    State(store): State<Store>,
    Path(hash): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let meta = find(&store, &hash).await?;
    let etag = format!("\"{}\"", meta.hash);
    if request
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes() || v.as_bytes() == b"*")
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let mime: mime::Mime = meta
        .content_type
        .parse()
        .unwrap_or(mime::APPLICATION_OCTET_STREAM);
    let path = store.content_path(&meta.hash);
    let mut request = request;
    if meta.size == 0 {
        // tower-http answers any satisfiable-looking Range on an empty file with
        // `206 Content-Range: bytes 0-0/0`, a range that cannot exist (found by fuzzing).
        // Empty content has no ranges, and a server may ignore Range (RFC 9110 §14.2):
        // serve it whole, 200 with no body.
        request.headers_mut().remove(header::RANGE);
    }
    let served = ServeFile::new_with_mime(path, &mime)
        .oneshot(request)
        .await
        .map_err(|e| ApiError::from(crate::store::StoreError::Task(e.to_string())))?;
    let mut response = served.map(Body::new);
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    // Never run or render content as the store's own origin (see `disposition`).
    headers.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(&meta.content_type, &meta.name),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_CSP),
    );
    // Content is immutable under its hash.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(response)
}

pub async fn events(
    State(store): State<Store>,
    headers: HeaderMap,
    ApiQuery(after): ApiQuery<After>,
) -> Result<Response, ApiError> {
    let start = sse::start_seq(&store, &headers, after.after)?;
    Ok(sse::ingest_events(store, start, |asset| {
        serde_json::to_string(asset).unwrap_or_default()
    })
    .into_response())
}
