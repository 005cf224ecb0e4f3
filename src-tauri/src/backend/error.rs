//! The one error type the UI sees: `{code, message}`. Codes are stable strings the UI can
//! branch on; messages are sentences for people and never contain a secret.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    KeychainUnavailable,
    KeychainLocked,
    InvalidInput,
    WeakPassphrase,
    StoreUnreachable,
    StoreAuth,
    NotReady,
    NotFound,
    Engine,
    Io,
    /// Checking for, downloading or installing an app update failed (network, disk).
    Update,
    /// A downloaded update's signature does not verify against the app's updater key: it
    /// was not installed.
    UpdateSignature,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    pub fn io(what: &str, e: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Io, format!("{what}: {e}"))
    }

    pub fn not_ready() -> Self {
        Self::new(
            ErrorCode::NotReady,
            "CAN Sync is not set up yet: finish the setup first",
        )
    }
}

impl From<can_sync::can_client::CanError> for AppError {
    fn from(e: can_sync::can_client::CanError) -> Self {
        use can_sync::can_client::CanError;
        let code = match &e {
            CanError::Unauthorized | CanError::NoSyncApi => ErrorCode::StoreAuth,
            e if e.is_unavailable() => ErrorCode::StoreUnreachable,
            CanError::NotFound => ErrorCode::NotFound,
            _ => ErrorCode::StoreUnreachable,
        };
        // CanError's messages name the URL and the status, never the key.
        Self::new(code, e.to_string())
    }
}

impl From<can_sync::EngineError> for AppError {
    fn from(e: can_sync::EngineError) -> Self {
        Self::new(ErrorCode::Engine, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_code_and_message() {
        let e = AppError::new(ErrorCode::KeychainUnavailable, "no keychain");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"code": "keychain_unavailable", "message": "no keychain"})
        );
    }

    #[test]
    fn store_errors_map_to_codes() {
        use can_sync::can_client::CanError;
        assert_eq!(
            AppError::from(CanError::Unauthorized).code,
            ErrorCode::StoreAuth
        );
        let e = AppError::from(CanError::Unreachable {
            url: "http://127.0.0.1:1".into(),
            message: "connection refused".into(),
        });
        assert_eq!(e.code, ErrorCode::StoreUnreachable);
        assert!(e.message.contains("127.0.0.1:1"), "{e}");
    }
}
