//! Filling a store fast with many small assets, for benchmarks and tests (a store of
//! 100,000 or 1,000,000 assets in seconds, not the hours one fsync per asset would take).

use std::collections::HashSet;

use super::ingest::now_rfc3339;
use super::{AssetMeta, Store, StoreError, content_path, db};
use crate::hash::AssetHash;

impl Store {
    /// Stores `(name, content)` pairs in bulk, as `origin: local`; returns how many were new.
    ///
    /// Content files are written without an fsync each; one `sync(2)` then makes the whole
    /// batch durable before its rows are committed in one transaction, so the store's
    /// invariant holds (a row only for content that is complete and on disk). A crash before
    /// the commit leaves files without rows, which [`Store::open`] removes. Blocking: call
    /// it outside an async runtime, or from `spawn_blocking`.
    pub fn seed_blocking(
        &self,
        assets: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<usize, StoreError> {
        let pending = self.inner.clean_stop.pending();
        let seeded = self.seed_rows(assets);
        pending.done(seeded.is_err());
        seeded
    }

    fn seed_rows(
        &self,
        assets: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<usize, StoreError> {
        let mut rows = Vec::new();
        let mut seen = HashSet::new();
        for (name, content) in assets {
            let hash = AssetHash::from(blake3::hash(&content));
            if !seen.insert(hash) {
                continue;
            }
            let path = content_path(&self.inner.objects, &hash);
            if let Some(shard) = path.parent() {
                std::fs::create_dir_all(shard).map_err(StoreError::io(shard))?;
            }
            if !path.exists() {
                std::fs::write(&path, &content).map_err(StoreError::io(&path))?;
            }
            rows.push((hash, content.len() as u64, name));
        }
        // SAFETY: sync(2) takes no arguments and cannot fail; it flushes every filesystem,
        // which covers the content files and their directory entries.
        #[cfg(unix)]
        unsafe {
            libc::sync()
        };
        let conn = self
            .inner
            .db
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let tx = conn.unchecked_transaction()?;
        let created_at = now_rfc3339();
        let mut new = 0;
        for (hash, size, name) in &rows {
            let row = AssetMeta {
                hash: *hash,
                size: *size,
                name: name.clone(),
                content_type: "application/octet-stream".into(),
                created_at: created_at.clone(),
                origin: "local".into(),
                seq: 0,
                stamp: 0,
                deleted: None,
                restored: false,
            };
            if db::insert(&tx, &row)?.is_some() {
                new += 1;
            }
        }
        tx.commit()?;
        let last = db::last_seq(&conn)?;
        self.inner.latest.send_replace(last);
        Ok(new)
    }
}
