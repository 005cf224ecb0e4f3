//! Assets as the UI handles them: adding local files to the store, saving and opening
//! assets that came from peers. What a peer names and declares is untrusted
//! ([`super::filetype`]); so is the webview ([`super::grants`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::filetype::{self, HEAD_LEN};
use super::store::{self, check_hash};
use super::{AppError, Backend, lock};

/// What `open_asset` does with an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenAction {
    /// Opened with the OS default app (a type on the allow-list).
    Open,
    /// Shown selected in its folder: anything else, the user decides.
    Reveal,
}

/// An asset written to the app's cache, ready to be opened or revealed.
#[derive(Debug, Clone, Serialize)]
pub struct Opening {
    #[serde(skip)]
    pub path: PathBuf,
    pub action: OpenAction,
    pub file_name: String,
    /// The real type, for people: "a Windows program", "a PNG image".
    pub kind: String,
    pub mime: String,
}

impl Backend {
    pub(super) async fn store_url(&self) -> Result<String, AppError> {
        let running = self.running.lock().await;
        Ok(running
            .as_ref()
            .ok_or_else(AppError::not_ready)?
            .store_url
            .clone())
    }

    /// Records files the user handed over outside the webview: dropped on the window (the
    /// OS event, seen by the shell) or chosen in the backend's own file dialog.
    pub fn allow_paths(&self, paths: &[PathBuf]) {
        lock(&self.grants).grant(Instant::now(), paths);
    }

    /// Adds files to the store; returns how many were added. Only files recorded by
    /// [`Backend::allow_paths`] (each once): a path the webview makes up is refused before
    /// anything is read. Stops at the first failure, naming the file.
    pub async fn add_files(&self, paths: &[PathBuf]) -> Result<usize, AppError> {
        if paths.is_empty() {
            return Ok(0);
        }
        let taken = lock(&self.grants).take(Instant::now(), paths);
        if let Err(refused) = taken {
            let first = refused
                .first()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            tracing::warn!(path = %first, count = refused.len(), "add_files: path not handed over by the user");
            return Err(AppError::invalid(format!(
                "Files: {first} was not dropped on the window or picked with \"Add files…\"; \
                 only those can be added."
            )));
        }
        let url = self.store_url().await?;
        for p in paths {
            store::add_file(&url, p).await?;
        }
        Ok(paths.len())
    }

    /// Downloads an asset to `dest` (whole or not at all).
    pub async fn save_asset(&self, hash: &str, dest: &Path) -> Result<(), AppError> {
        check_hash(hash)?;
        let url = self.store_url().await?;
        store::download(&url, hash, dest).await
    }

    /// The asset's name as its sender gave it (history), if known.
    fn peer_name(&self, hash: &str) -> String {
        self.history
            .find(hash)
            .ok()
            .flatten()
            .map(|i| i.name)
            .unwrap_or_default()
    }

    /// A harmless file name for the save dialog, from history (or the hash).
    pub fn asset_file_name(&self, hash: &str) -> Result<String, AppError> {
        check_hash(hash)?;
        Ok(filetype::safe_name(&self.peer_name(hash), hash))
    }

    /// Writes an asset into the app's cache under a harmless name and says whether it may
    /// be opened (by what its content is) or only revealed. The shell does the opening.
    pub async fn prepare_open(&self, hash: &str) -> Result<Opening, AppError> {
        check_hash(hash)?;
        let url = self.store_url().await?;
        let head = store::head(&url, hash, HEAD_LEN).await?;
        let name = self.peer_name(hash);
        let class = filetype::classify(&name, head.content_type.as_deref(), &head.bytes);
        let file_name = filetype::file_name(&name, hash, &class);
        let dir = self.paths.data_dir.join("open").join(hash);
        std::fs::create_dir_all(&dir).map_err(|e| AppError::io("cannot create a cache dir", e))?;
        let path = dir.join(&file_name);
        // Content is immutable under its hash, and the name follows from it: a file already
        // there is this asset.
        if !path.exists() {
            store::download(&url, hash, &path).await?;
        }
        let action = if class.safe_to_open() {
            OpenAction::Open
        } else {
            OpenAction::Reveal
        };
        tracing::info!(%hash, ?action, mime = %class.mime, "asset ready to open");
        Ok(Opening {
            path,
            action,
            file_name,
            kind: class.label,
            mime: class.mime,
        })
    }
}
