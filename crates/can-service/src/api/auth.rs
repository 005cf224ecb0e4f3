//! Bearer keys: the sync API's (`/sync/v1/`) and the optional public API's (`/api/`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::{ApiError, closing};
use crate::secret::Secret;

/// The digest a bearer token is compared against; `None` = no key configured.
#[derive(Clone)]
pub struct BearerKey {
    digest: Option<Arc<[u8; 32]>>,
}

impl BearerKey {
    pub fn new(key: Option<&Secret>) -> Self {
        Self {
            digest: key.map(|k| Arc::new(*blake3::hash(k.expose().as_bytes()).as_bytes())),
        }
    }

    pub fn is_set(&self) -> bool {
        self.digest.is_some()
    }

    /// Whether `Authorization: Bearer <key>` carries the key. Digests are compared in
    /// constant time, so neither content nor length leaks by timing.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.digest else {
            return false;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|token| blake3::hash(token.trim().as_bytes()))
            .is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_ref())))
    }
}

/// The public API's key: without `public_api_key` everything passes; with it, a request
/// without the key is answered 401 before its body is read.
pub async fn require_public_key(
    State(key): State<BearerKey>,
    request: Request,
    next: Next,
) -> Response {
    if !key.is_set() || key.admits(request.headers()) {
        return next.run(request).await;
    }
    let mut response = closing(
        ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong public API key").into_response(),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"can-service\""),
    );
    response
}
