//! Start-up repair: whatever a crash left behind becomes consistent again.
//!
//! - `tmp/` is emptied: temp files are uploads that never finished.
//! - A row whose content file is missing or has the wrong size is deleted (only outside
//!   damage can cause it; serving it would hand out a broken asset).
//! - A content file without a row is deleted: the crash came between the rename and the
//!   commit, so its upload was never acknowledged.
//! - Deletions and restores move a file between `objects/` and `trash/` before their row is
//!   committed: a file found where its row does not put it goes back (the change was never
//!   acknowledged, so it is absent); a trashed file without a deleted row is deleted.

use std::path::Path;

use rusqlite::Connection;

use super::{StoreError, content_path, db};
use crate::hash::AssetHash;

#[derive(Debug, Default)]
pub(super) struct RepairReport {
    pub temp_files_removed: usize,
    pub rows_without_content: usize,
    pub content_without_rows: usize,
    pub moves_undone: usize,
    pub trash_without_rows: usize,
}

impl RepairReport {
    pub fn is_clean(&self) -> bool {
        self.temp_files_removed == 0
            && self.rows_without_content == 0
            && self.content_without_rows == 0
            && self.moves_undone == 0
            && self.trash_without_rows == 0
    }
}

/// Empties `tmp/` (uploads that never finished; a clean stop can leave them too): how many
/// entries it removed.
pub(super) fn empty_tmp(tmp: &Path) -> Result<usize, StoreError> {
    let mut removed_count = 0;
    for entry in std::fs::read_dir(tmp).map_err(StoreError::io(tmp))? {
        let path = entry.map_err(StoreError::io(tmp))?.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(StoreError::io(&path))?;
        removed_count += 1;
    }
    Ok(removed_count)
}

/// The full scan (see the module doc), after a crash or when no clean stop was recorded.
pub(super) fn repair(
    conn: &Connection,
    objects: &Path,
    tmp: &Path,
    trash: &Path,
) -> Result<RepairReport, StoreError> {
    let mut report = RepairReport {
        temp_files_removed: empty_tmp(tmp)?,
        ..RepairReport::default()
    };

    // Rows first, streamed, so memory does not grow with the number of assets.
    let mut broken = Vec::new();
    let mut untrashed = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT seq, hash, size, deleted_ms, trashed FROM assets")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let hash: Vec<u8> = row.get(1)?;
            let size = row.get::<_, i64>(2)? as u64;
            let deleted = row.get::<_, Option<i64>>(3)?.is_some();
            let trashed = row.get::<_, i64>(4)? != 0;
            let Ok(hash) = AssetHash::from_slice(&hash) else {
                broken.push(seq as u64);
                continue;
            };
            let in_objects = content_path(objects, &hash);
            let in_trash = trash.join(hash.to_hex());
            let whole =
                |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() == size);
            match (deleted, trashed) {
                (false, _) => {
                    if whole(&in_objects) {
                        continue;
                    }
                    // A deletion that never committed: the content goes back.
                    if whole(&in_trash)
                        && super::trash::move_durably(&in_trash, &in_objects).is_ok()
                    {
                        report.moves_undone += 1;
                    } else {
                        broken.push(seq as u64);
                    }
                }
                (true, true) => {
                    if whole(&in_trash) {
                        continue;
                    }
                    // A restore that never committed: the content goes back to the trash.
                    if whole(&in_objects)
                        && super::trash::move_durably(&in_objects, &in_trash).is_ok()
                    {
                        report.moves_undone += 1;
                    } else {
                        untrashed.push(hash);
                    }
                }
                (true, false) => {}
            }
        }
    }
    for seq in &broken {
        tracing::warn!(
            seq,
            "removing an index row whose content is missing or damaged"
        );
        db::delete(conn, *seq)?;
    }
    report.rows_without_content = broken.len();
    for hash in &untrashed {
        tracing::warn!(%hash, "a trashed asset's content is missing");
        db::set_untrashed(conn, hash)?;
    }

    for entry in std::fs::read_dir(trash).map_err(StoreError::io(trash))? {
        let path = entry.map_err(StoreError::io(trash))?.path();
        let kept = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| AssetHash::from_hex(n).ok())
            .map(|h| db::in_trash(conn, h.as_bytes()))
            .transpose()?
            .unwrap_or(false);
        if !kept {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(StoreError::io(&path))?;
            report.trash_without_rows += 1;
        }
    }

    for shard in std::fs::read_dir(objects).map_err(StoreError::io(objects))? {
        let shard = shard.map_err(StoreError::io(objects))?.path();
        if !shard.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&shard).map_err(StoreError::io(&shard))? {
            let path = entry.map_err(StoreError::io(&shard))?.path();
            let known = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| AssetHash::from_hex(n).ok())
                .filter(|h| content_path(objects, h) == path)
                .map(|h| db::exists(conn, h.as_bytes()))
                .transpose()?
                .unwrap_or(false);
            if !known {
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(StoreError::io(&path))?;
                report.content_without_rows += 1;
            }
        }
    }
    Ok(report)
}
