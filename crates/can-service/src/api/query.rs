//! Query-string extraction whose failures are JSON errors like every other.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// `Query<T>` with a JSON 400 that names the bad parameter.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// `?after=SEQ&limit=N` of the listing routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    #[serde(default)]
    pub after: u64,
    pub limit: Option<usize>,
}

impl Page {
    /// The limit, defaulted and clamped to `1..=max`.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(default),
            Some(0) => Err(ApiError::bad_request("limit must be at least 1")),
            Some(n) => Ok(n.min(max)),
        }
    }
}

/// `?after=SEQ` of the event streams.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct After {
    pub after: Option<u64>,
}
