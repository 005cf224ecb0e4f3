//! HTTP routes: the public JSON API, the protobuf sync API, and health.

mod auth;
pub mod disposition;
mod error;
mod guard;
mod public;
mod query;
mod sse;
mod sync;
mod trash;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;

pub use error::ApiError;
pub use public::DEFAULT_CONTENT_TYPE;

use crate::config::{Config, ConfigError};
use crate::store::Store;

/// The whole service's router, for a service listening on `listen` (the bound address).
/// Fails only on settings that [`Config::validate`] refuses.
pub fn router(store: Store, config: &Config, listen: SocketAddr) -> Result<Router, ConfigError> {
    let guard = guard::WebGuard::new(config, listen)?;
    let public_key = auth::BearerKey::new(config.public_api_key.as_ref());
    let sync_key = auth::BearerKey::new(config.sync_api_key.as_ref());
    let public_routes = Router::new()
        .route("/api/assets", get(public::list).post(public::upload))
        .route(
            "/api/assets/{hash}",
            get(public::content).delete(trash::delete),
        )
        .route("/api/trash", get(trash::list).delete(trash::empty))
        .route("/api/trash/{hash}", axum::routing::delete(trash::purge))
        .route(
            "/api/trash/{hash}/restore",
            axum::routing::post(trash::restore),
        )
        .route("/api/assets/{hash}/meta", get(public::meta))
        .route("/api/events", get(public::events))
        .route_layer(from_fn_with_state(public_key, auth::require_public_key))
        // Outermost, so Host and Origin are judged before the key (421/403 before 401).
        .route_layer(from_fn_with_state(guard.clone(), guard::check));
    let sync_routes = Router::new()
        .route("/hashes", get(sync::hashes))
        .route("/assets", axum::routing::post(sync::ingest))
        .route("/assets/{hash}", get(sync::fetch))
        .route("/partials/{hash}", get(sync::partial))
        .route("/records", axum::routing::post(sync::record))
        .route("/totals", get(sync::totals))
        .route("/events", get(sync::events))
        .fallback(|| async { ApiError::not_found("no such sync route") })
        .route_layer(from_fn_with_state(sync_key, sync::authorize))
        // The same Host and Origin rules as /api/, for the whole subtree: agents send no
        // Origin, and one configured with a name needs that name in allowed_hosts.
        .layer(from_fn_with_state(guard, guard::check));
    Ok(Router::new()
        // Health stays open to any Host and Origin: it reveals nothing and changes nothing.
        .route("/healthz", get(|| async { "ok" }))
        .merge(public_routes)
        .nest("/sync/v1", sync_routes)
        .fallback(|| async { ApiError::not_found("no such route") })
        // Bodies are streamed to disk and limited by max_asset_bytes, not buffered.
        .layer(DefaultBodyLimit::disable())
        // Every response: never sniff a type other than the declared one, and never be
        // embedded by a page of another origin (<img>, <script> and the like).
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .with_state(store))
}
