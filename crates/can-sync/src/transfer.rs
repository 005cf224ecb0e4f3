//! How an asset transfer ended, and what the engine does about it: pure classification,
//! shared by the fetching side (`peer::fetch`) and the actor that plans transfers.

use std::time::Duration;

use crate::can_client::CanError;

/// A transfer with no bytes for this long is aborted and planned again, from another peer
/// if one has the asset (agent config `transfer_idle_timeout_secs`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a successful fetch stored.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub name: String,
    pub size: u64,
    pub created: bool,
}

/// How a fetch from a peer ended badly.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The peer could not send it (paused, not found, an answer we do not understand).
    #[error("peer refused: {0}")]
    Refused(String),
    /// The peer broke the protocol or sent content that is not what it claimed.
    #[error("peer misbehaved: {0}")]
    Misbehaved(String),
    /// Our store will not take this asset (too large, a name or type it refuses): asking
    /// again, from anyone, would be refused again.
    #[error("the CAN Service refuses the asset ({status}): {message}")]
    StoreRefused { status: u16, message: String },
    /// Our store holds a deletion of it that outranks the peer's copy (HTTP 410).
    #[error("deleted here by a later change: {0}")]
    Deleted(String),
    /// Our store lacks the space for it (HTTP 507).
    #[error("the CAN Service is out of space: {0}")]
    StoreFull(String),
    /// Our store is down or failed: retry with backoff.
    #[error("local CAN Service: {0}")]
    Store(CanError),
    /// The transfer broke off (connection lost, stream reset).
    #[error("transfer failed: {0}")]
    Transport(String),
    /// No bytes arrived for the idle timeout.
    #[error("transfer stalled: no data for {0:?}")]
    Stalled(Duration),
}

/// Sorts a refusal of our own CAN Service into what the engine does next:
/// 400/413 → never again (the store's rules), 422 → the peer's content was wrong,
/// 507 → out of space, 409 → a resume raced another upload (retry), anything else (5xx,
/// unreachable) → retry later.
pub fn classify_store_error(e: CanError) -> FetchError {
    match e {
        CanError::Rejected(message) => {
            FetchError::Misbehaved(format!("content rejected: {message}"))
        }
        CanError::Deleted(message) => FetchError::Deleted(message),
        CanError::Status {
            status: 507,
            message,
        } => FetchError::StoreFull(message),
        CanError::Status {
            status: status @ (400 | 413),
            message,
        } => FetchError::StoreRefused { status, message },
        // Another upload of the asset holds its partial, or the partial changed since we
        // read its length: try again shortly.
        CanError::Status {
            status: 409,
            message,
        } => FetchError::Transport(format!("the store's partial upload is busy: {message}")),
        other => FetchError::Store(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> CanError {
        CanError::Status {
            status,
            message: "m".into(),
        }
    }

    #[test]
    fn store_refusals_are_classified() {
        assert!(matches!(
            classify_store_error(status(413)),
            FetchError::StoreRefused { status: 413, .. }
        ));
        assert!(matches!(
            classify_store_error(status(400)),
            FetchError::StoreRefused { status: 400, .. }
        ));
        assert!(matches!(
            classify_store_error(CanError::Rejected("hash".into())),
            FetchError::Misbehaved(_)
        ));
        assert!(matches!(
            classify_store_error(status(409)),
            FetchError::Transport(_)
        ));
        assert!(matches!(
            classify_store_error(CanError::Deleted("later".into())),
            FetchError::Deleted(_)
        ));
        assert!(matches!(
            classify_store_error(status(507)),
            FetchError::StoreFull(_)
        ));
        assert!(matches!(
            classify_store_error(status(503)),
            FetchError::Store(_)
        ));
        assert!(matches!(
            classify_store_error(CanError::Unreachable {
                url: "u".into(),
                message: "m".into()
            }),
            FetchError::Store(_)
        ));
    }
}
