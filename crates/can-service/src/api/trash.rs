//! Deletion and the trash on the public API: `DELETE /api/assets/{hash}`, `GET /api/trash`,
//! `POST /api/trash/{hash}/restore`, `DELETE /api/trash/{hash}`, `DELETE /api/trash`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::query::{ApiQuery, Page};
use crate::hash::AssetHash;
use crate::store::{AssetMeta, Store};

/// Deletes a stored asset everywhere (its tombstone replicates): 200 with the tombstone,
/// 404 unknown, 410 deleted already.
pub async fn delete(
    State(store): State<Store>,
    Path(hash): Path<String>,
) -> Result<Json<AssetMeta>, ApiError> {
    let hash = AssetHash::from_hex(&hash)?;
    let meta = store.delete(hash, "local").await?;
    tracing::info!(%hash, seq = meta.seq, "deleted asset");
    Ok(Json(meta))
}

/// `?limit=N` of the trash listing. It has no paging (`after` is refused, not ignored): the
/// newest deletions come first, and the totals cover the whole trash.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrashQuery {
    limit: Option<usize>,
}

#[derive(serde::Serialize)]
pub struct TrashList {
    /// Newest deletion first.
    assets: Vec<AssetMeta>,
    /// Of the whole trash, not only this page.
    total_assets: u64,
    total_bytes: u64,
}

/// The trash: deleted assets whose content is kept, most recently deleted first
/// (`?limit=`, default 100, at most 1000).
pub async fn list(
    State(store): State<Store>,
    ApiQuery(page): ApiQuery<TrashQuery>,
) -> Result<Json<TrashList>, ApiError> {
    let limit = Page {
        after: 0,
        limit: page.limit,
    }
    .limit(100, 1000)?;
    let assets = store.trash(limit).await?;
    let totals = store.totals().await?;
    Ok(Json(TrashList {
        assets,
        total_assets: totals.trash_assets,
        total_bytes: totals.trash_bytes,
    }))
}

/// Brings a trashed asset back (everywhere): 200 with the asset under its new seq.
pub async fn restore(
    State(store): State<Store>,
    Path(hash): Path<String>,
) -> Result<Json<AssetMeta>, ApiError> {
    let hash = AssetHash::from_hex(&hash)?;
    let meta = store.restore(hash, "local").await?;
    tracing::info!(%hash, seq = meta.seq, "restored asset");
    Ok(Json(meta))
}

/// Deletes one trashed asset's content for good: 204.
pub async fn purge(
    State(store): State<Store>,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    let hash = AssetHash::from_hex(&hash)?;
    store.purge(hash).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Empties the trash: 200 `{"removed": n}`.
pub async fn empty(State(store): State<Store>) -> Result<Response, ApiError> {
    let removed = store.empty_trash().await?;
    Ok(Json(serde_json::json!({ "removed": removed })).into_response())
}
