//! Start-up repair: whatever a crash left behind becomes consistent again.
//!
//! - `tmp/` is emptied: temp files are uploads that never finished.
//! - A row whose content file is missing or has the wrong size is deleted (only outside
//!   damage can cause it; serving it would hand out a broken asset).
//! - A content file without a row is deleted: the crash came between the rename and the
//!   commit, so its upload was never acknowledged.

use std::path::Path;

use rusqlite::Connection;

use super::{StoreError, content_path, db};
use crate::hash::AssetHash;

#[derive(Debug, Default)]
pub(super) struct RepairReport {
    pub temp_files_removed: usize,
    pub rows_without_content: usize,
    pub content_without_rows: usize,
}

impl RepairReport {
    pub fn is_clean(&self) -> bool {
        self.temp_files_removed == 0
            && self.rows_without_content == 0
            && self.content_without_rows == 0
    }
}

pub(super) fn repair(
    conn: &Connection,
    objects: &Path,
    tmp: &Path,
) -> Result<RepairReport, StoreError> {
    let mut report = RepairReport::default();
    for entry in std::fs::read_dir(tmp).map_err(StoreError::io(tmp))? {
        let path = entry.map_err(StoreError::io(tmp))?.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(StoreError::io(&path))?;
        report.temp_files_removed += 1;
    }

    // Rows first, streamed, so memory does not grow with the number of assets.
    let mut broken = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT seq, hash, size FROM assets")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let hash: Vec<u8> = row.get(1)?;
            let size: i64 = row.get(2)?;
            let ok = AssetHash::from_slice(&hash)
                .ok()
                .and_then(|h| std::fs::metadata(content_path(objects, &h)).ok())
                .is_some_and(|m| m.is_file() && m.len() == size as u64);
            if !ok {
                broken.push(seq as u64);
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
