//! Deleting assets everywhere, the trash, and the user's answer to held deletions.
//!
//! Deletions and restores go through the store's public API (`DELETE /api/assets/{hash}`,
//! `GET /api/trash`, `POST /api/trash/{hash}/restore`, `DELETE /api/trash`): the store
//! decides and records them, and the engine carries them to every device from the store's
//! event stream (docs/sync-api.md, "Deletion"). The app never tells the engine itself.
//!
//! The webview asks for these with an inline confirmation only, not a native dialog like the
//! passphrase's: nothing here loses data for good everywhere. A deleted asset stays in every
//! device's trash (30 days by default), and restoring it on any of them brings it back to
//! all; emptying the trash empties this device's only. A page that deleted much at once would
//! trip the other devices' mass-deletion guard, which asks their users first.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Backend;
use super::error::{AppError, ErrorCode};
use super::store::{self, check_hash};

/// The most trashed assets listed (the store's API lists the newest deletions first and
/// has no paging beyond its limit; the totals cover the whole trash).
pub const TRASH_LIST_MAX: u32 = 500;

/// One deleted asset whose content this device's store keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrashItem {
    pub hash: String,
    /// As its sender named it: peer-chosen text.
    pub name: String,
    pub size: u64,
    pub content_type: String,
    /// When it was deleted (milliseconds since the epoch).
    pub deleted_at_ms: u64,
    /// The device the deletion came from: this one, a peer's name, or a short id.
    pub device_name: String,
    /// Deleted on this device.
    pub this_device: bool,
}

/// The trash of this device's store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrashView {
    /// Newest deletion first, at most [`TRASH_LIST_MAX`].
    pub items: Vec<TrashItem>,
    /// Of the whole trash.
    pub total_assets: u64,
    pub total_bytes: u64,
}

/// An asset as the store's public API answers it (the fields used here).
#[derive(Debug, Deserialize)]
struct Meta {
    hash: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    origin: String,
    #[serde(default)]
    deleted: Option<Deleted>,
}

#[derive(Debug, Deserialize)]
struct Deleted {
    at_ms: u64,
}

#[derive(Debug, Deserialize)]
struct TrashList {
    assets: Vec<Meta>,
    total_assets: u64,
    total_bytes: u64,
}

#[derive(Debug, Deserialize)]
struct Removed {
    removed: u64,
}

/// The store's `{"error": "..."}`, if it sent one.
#[derive(Debug, Deserialize)]
struct StoreError {
    error: String,
}

/// What a status of the store means for one of these calls.
fn refused(status: reqwest::StatusCode, text: &str, what: &str, base_url: &str) -> AppError {
    let said = serde_json::from_str::<StoreError>(text)
        .map(|e| e.error)
        .unwrap_or_default();
    match status.as_u16() {
        401 => AppError::new(
            ErrorCode::StoreAuth,
            format!(
                "The CAN Service at {base_url} asks for a public API key, which CAN Sync does \
                 not have: delete and restore its assets there."
            ),
        ),
        403 | 421 => AppError::new(
            ErrorCode::StoreAuth,
            format!("The CAN Service at {base_url} refused to {what} ({status}): {said}"),
        ),
        _ => AppError::new(
            ErrorCode::StoreUnreachable,
            format!("The store could not {what} ({status}): {said}"),
        ),
    }
}

async fn send(
    req: reqwest::RequestBuilder,
    what: &str,
) -> Result<(reqwest::StatusCode, String), AppError> {
    let resp = req
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| {
            AppError::new(
                ErrorCode::StoreUnreachable,
                format!("The store could not {what}: {}", e.without_url()),
            )
        })?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    Ok((status, text))
}

/// `DELETE /api/assets/{hash}`: the asset goes to the trash here and, through the engine,
/// everywhere.
pub async fn delete(base_url: &str, hash: &str) -> Result<(), AppError> {
    check_hash(hash)?;
    let what = "delete the asset";
    let (status, text) = send(
        store::http()?.delete(format!("{base_url}/api/assets/{hash}")),
        what,
    )
    .await?;
    match status.as_u16() {
        200..=299 => Ok(()),
        404 => Err(AppError::new(
            ErrorCode::NotFound,
            "This asset is not in the store (any more): nothing to delete.",
        )),
        410 => Err(AppError::new(
            ErrorCode::NotFound,
            "This asset was deleted already: it is in the Trash.",
        )),
        _ => Err(refused(status, &text, what, base_url)),
    }
}

/// `GET /api/trash`: the newest deletions and the trash's totals.
async fn list(base_url: &str, limit: u32) -> Result<TrashList, AppError> {
    let what = "list its trash";
    let (status, text) = send(
        store::http()?.get(format!("{base_url}/api/trash?limit={limit}")),
        what,
    )
    .await?;
    if !status.is_success() {
        return Err(refused(status, &text, what, base_url));
    }
    serde_json::from_str(&text).map_err(|e| {
        AppError::new(
            ErrorCode::StoreUnreachable,
            format!("The store's trash listing is not what CAN Sync expects: {e}"),
        )
    })
}

/// `POST /api/trash/{hash}/restore`: back here and, through the engine, everywhere.
pub async fn restore(base_url: &str, hash: &str) -> Result<(), AppError> {
    check_hash(hash)?;
    let what = "restore the asset";
    let (status, text) = send(
        store::http()?.post(format!("{base_url}/api/trash/{hash}/restore")),
        what,
    )
    .await?;
    match status.as_u16() {
        200..=299 => Ok(()),
        404 => Err(AppError::new(
            ErrorCode::NotFound,
            "This asset is no longer in the trash: it was deleted for good.",
        )),
        409 => Err(AppError::new(
            ErrorCode::InvalidInput,
            "This asset is not deleted (any more): it was restored already.",
        )),
        _ => Err(refused(status, &text, what, base_url)),
    }
}

/// `DELETE /api/trash`: this store's trash is emptied for good; returns how many went.
pub async fn empty(base_url: &str) -> Result<u64, AppError> {
    let what = "empty its trash";
    let (status, text) = send(store::http()?.delete(format!("{base_url}/api/trash")), what).await?;
    if !status.is_success() {
        return Err(refused(status, &text, what, base_url));
    }
    Ok(serde_json::from_str::<Removed>(&text)
        .map(|r| r.removed)
        .unwrap_or(0))
}

impl Backend {
    /// Deletes an asset everywhere: into this store's trash now, on every other device as
    /// the engine carries the deletion (those offline when they next connect).
    pub async fn delete_asset(&self, hash: &str) -> Result<(), AppError> {
        check_hash(hash)?;
        let url = self.store_url().await?;
        delete(&url, hash).await?;
        tracing::info!(%hash, "asset deleted everywhere (by the user)");
        Ok(())
    }

    /// This store's trash, newest deletion first, each with the device it came from.
    pub async fn trash(&self) -> Result<TrashView, AppError> {
        let url = self.store_url().await?;
        let list = list(&url, TRASH_LIST_MAX).await?;
        let me = self.settings().device_name;
        // A peer's name as history last recorded it (one lookup per device, not per asset).
        let mut names: HashMap<String, String> = HashMap::new();
        let items = list
            .assets
            .into_iter()
            .map(|m| {
                let (device_name, this_device) = match m.origin.strip_prefix("peer:") {
                    Some(id) => (
                        names
                            .entry(id.to_owned())
                            .or_insert_with(|| {
                                self.history
                                    .device_name(id)
                                    .unwrap_or_else(|| id.chars().take(10).collect())
                            })
                            .clone(),
                        false,
                    ),
                    None => (me.clone(), true),
                };
                TrashItem {
                    hash: m.hash,
                    name: m.name,
                    size: m.size,
                    content_type: m.content_type,
                    deleted_at_ms: m.deleted.map(|d| d.at_ms).unwrap_or(0),
                    device_name,
                    this_device,
                }
            })
            .collect();
        Ok(TrashView {
            items,
            total_assets: list.total_assets,
            total_bytes: list.total_bytes,
        })
    }

    /// Brings a trashed asset back, here and on every device.
    pub async fn restore_asset(&self, hash: &str) -> Result<(), AppError> {
        check_hash(hash)?;
        let url = self.store_url().await?;
        restore(&url, hash).await?;
        tracing::info!(%hash, "asset restored everywhere (by the user)");
        Ok(())
    }

    /// Empties this store's trash for good (other devices keep theirs); returns how many
    /// assets went.
    pub async fn empty_trash(&self) -> Result<u64, AppError> {
        let url = self.store_url().await?;
        let removed = empty(&url).await?;
        tracing::info!(removed, "trash emptied (by the user)");
        Ok(removed)
    }

    /// The user's answer to deletions the mass-deletion guard holds: `apply` carries them
    /// out here; otherwise this device keeps its assets and the deletions are undone on
    /// every device. Returns how many were held (0: nothing was).
    pub async fn release_deletions(&self, apply: bool) -> Result<usize, AppError> {
        let running = self.running.lock().await;
        let r = running.as_ref().ok_or_else(AppError::not_ready)?;
        let count = r.engine.release_deletions(apply).await?;
        tracing::info!(count, apply, "held deletions released (by the user)");
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stores_refusals_become_sentences() {
        let url = "http://nas.local:3210";
        let e = refused(
            reqwest::StatusCode::UNAUTHORIZED,
            r#"{"error":"missing or wrong bearer key"}"#,
            "delete the asset",
            url,
        );
        assert_eq!(e.code, ErrorCode::StoreAuth);
        assert!(e.message.contains("public API key"), "{e}");
        assert!(e.message.contains(url), "{e}");
        let e = refused(
            reqwest::StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"disk on fire"}"#,
            "empty its trash",
            url,
        );
        assert_eq!(e.code, ErrorCode::StoreUnreachable);
        assert_eq!(
            e.message,
            "The store could not empty its trash (500 Internal Server Error): disk on fire"
        );
    }

    #[test]
    fn a_trash_listing_parses_with_fields_it_does_not_use() {
        let list: TrashList = serde_json::from_str(
            r#"{"assets":[{"hash":"ab","size":3,"name":"a.txt","content_type":"text/plain",
                "created_at":"2026-01-01T00:00:00Z","origin":"peer:ff","seq":9,"stamp":1,
                "deleted":{"at_ms":1700000000000,"in_trash":true}}],
                "total_assets":1,"total_bytes":3}"#,
        )
        .unwrap();
        assert_eq!(
            list.assets[0].deleted.as_ref().unwrap().at_ms,
            1_700_000_000_000
        );
        assert_eq!(list.assets[0].origin, "peer:ff");
        assert_eq!((list.total_assets, list.total_bytes), (1, 3));
    }
}
