//! One error type for every route: JSON `{"error": "..."}` with a fitting status.
//! Internal failures are logged here and answered without internals.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::hash::HashError;
use crate::store::{DeleteError, IngestError, StoreError};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

/// Marks a response to an upload that may not have been read to its end: the client must
/// not reuse the connection, whose unread request bytes would otherwise be taken for the
/// next request.
pub fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<HashError> for ApiError {
    fn from(e: HashError) -> Self {
        Self::bad_request(format!("malformed hash: {e}"))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        if let IngestError::Store(_) = &e {
            tracing::error!(error = %e, "store failure during ingest");
            return Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
        let status = StatusCode::from_u16(crate::sync_ops::ingest_status(&e))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, e.to_string())
    }
}

impl From<DeleteError> for ApiError {
    fn from(e: DeleteError) -> Self {
        let status = match &e {
            DeleteError::NotFound(_) | DeleteError::NotInTrash(_) => StatusCode::NOT_FOUND,
            DeleteError::AlreadyDeleted(_) => StatusCode::GONE,
            DeleteError::NotDeleted(_) => StatusCode::CONFLICT,
            DeleteError::Store(e) => {
                tracing::error!(error = %e, "store failure during a deletion");
                return Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        };
        Self::new(status, e.to_string())
    }
}

impl From<crate::sync_ops::SyncOpError> for ApiError {
    fn from(e: crate::sync_ops::SyncOpError) -> Self {
        use crate::sync_ops::SyncOpError;
        match e {
            SyncOpError::BadRequest(m) => Self::bad_request(m),
            SyncOpError::NotFound(m) => Self::not_found(m),
            SyncOpError::Gone(m) => Self::new(StatusCode::GONE, m),
            SyncOpError::Ingest(e) => e.into(),
            SyncOpError::Store(e) => e.into(),
        }
    }
}
