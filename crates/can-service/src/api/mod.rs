//! HTTP routes: the public JSON API, the protobuf sync API, and health.

mod error;
mod public;
mod query;
mod sse;
mod sync;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

pub use error::ApiError;
pub use public::DEFAULT_CONTENT_TYPE;

use crate::secret::Secret;
use crate::store::Store;

/// The whole service's router.
pub fn router(store: Store, sync_api_key: Option<&Secret>) -> Router {
    let auth = sync::SyncAuth::new(sync_api_key);
    let sync_routes = Router::new()
        .route("/hashes", get(sync::hashes))
        .route("/assets", axum::routing::post(sync::ingest))
        .route("/assets/{hash}", get(sync::fetch))
        .route("/events", get(sync::events))
        .fallback(|| async { ApiError::not_found("no such sync route") })
        .route_layer(axum::middleware::from_fn_with_state(auth, sync::authorize));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/assets", get(public::list).post(public::upload))
        .route("/api/assets/{hash}", get(public::content))
        .route("/api/assets/{hash}/meta", get(public::meta))
        .route("/api/events", get(public::events))
        .nest("/sync/v1", sync_routes)
        .fallback(|| async { ApiError::not_found("no such route") })
        // Bodies are streamed to disk and limited by max_asset_bytes, not buffered.
        .layer(DefaultBodyLimit::disable())
        .with_state(store)
}
