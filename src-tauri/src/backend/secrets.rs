//! The OS keychain (Secret Service on Linux, Keychain on macOS, Credential Manager on
//! Windows) through `keyring`. There is deliberately no fallback: if no keychain is
//! reachable the caller gets an error with a remedy, never a plaintext file.

use can_sync::Secret;
use keyring::{Entry, Error};

use super::error::{AppError, ErrorCode};

/// Which secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    Passphrase,
    /// An external CAN Service's sync API key.
    SyncApiKey,
}

impl SecretKind {
    fn user(self) -> &'static str {
        match self {
            SecretKind::Passphrase => "sync-passphrase",
            SecretKind::SyncApiKey => "sync-api-key",
        }
    }
}

/// The app's entries in the keychain, all under one service name.
#[derive(Debug, Clone)]
pub struct Keychain {
    service: String,
}

impl Keychain {
    /// `service` is the keychain's "service" attribute (the app identifier; tests use
    /// their own so they never touch a person's entries).
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
        }
    }

    fn entry(&self, kind: SecretKind) -> Result<Entry, AppError> {
        Entry::new(&self.service, kind.user()).map_err(map_error)
    }

    /// Blocking (D-Bus / OS calls): call from a blocking context.
    pub fn get(&self, kind: SecretKind) -> Result<Option<Secret>, AppError> {
        match self.entry(kind)?.get_password() {
            Ok(v) => Ok(Some(Secret::new(v))),
            Err(Error::NoEntry) => Ok(None),
            Err(e) => Err(map_error(e)),
        }
    }

    pub fn set(&self, kind: SecretKind, value: &Secret) -> Result<(), AppError> {
        self.entry(kind)?
            .set_password(value.expose())
            .map_err(map_error)
    }

    /// Deleting what is not there is fine.
    pub fn delete(&self, kind: SecretKind) -> Result<(), AppError> {
        match self.entry(kind)?.delete_credential() {
            Ok(()) | Err(Error::NoEntry) => Ok(()),
            Err(e) => Err(map_error(e)),
        }
    }
}

fn remedy() -> &'static str {
    if cfg!(target_os = "linux") {
        "Install and start a Secret Service keyring (GNOME Keyring or KWallet), unlock it, then restart CAN Sync."
    } else if cfg!(target_os = "macos") {
        "Unlock your login keychain (Keychain Access), then try again."
    } else {
        "Make sure Windows Credential Manager is available for your account, then try again."
    }
}

/// keyring's errors carry platform details that may be long; the UI gets a sentence and a
/// remedy. The secret's value is never part of a keyring error.
fn map_error(e: Error) -> AppError {
    match e {
        Error::NoDefaultStore | Error::PlatformFailure(_) => AppError::new(
            ErrorCode::KeychainUnavailable,
            format!(
                "No keychain is reachable, so CAN Sync cannot keep your passphrase safely ({e}). {}",
                remedy()
            ),
        ),
        Error::NoStorageAccess(_) => AppError::new(
            ErrorCode::KeychainLocked,
            format!("The keychain is locked or refused access ({e}). Unlock it and try again."),
        ),
        other => AppError::new(
            ErrorCode::KeychainUnavailable,
            format!("The keychain failed: {other}"),
        ),
    }
}
