//! Sync history: every mirrored asset, in either direction, and every deletion and restore,
//! persisted in SQLite under the app's data dir and bounded (oldest rows pruned first).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::error::AppError;

pub const DEFAULT_MAX_ROWS: u64 = 10_000;
pub const MAX_PAGE: u32 = 500;

/// What happened to the asset (the IPC calls it `direction`, from when only transfers were
/// recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Arrived from a peer.
    Received,
    /// Sent to a peer.
    Sent,
    /// Deleted here: on this device (the row's device is this one) or by a peer's deletion.
    Deleted,
    /// Back after a deletion: restored from the trash or uploaded again, here or by a peer.
    Restored,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Received => "received",
            Direction::Sent => "sent",
            Direction::Deleted => "deleted",
            Direction::Restored => "restored",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "sent" => Direction::Sent,
            "deleted" => Direction::Deleted,
            "restored" => Direction::Restored,
            _ => Direction::Received,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryItem {
    pub id: i64,
    /// RFC 3339.
    pub time: String,
    pub hash: String,
    pub name: String,
    pub size: u64,
    pub direction: Direction,
    pub peer_id: String,
    pub peer_name: String,
}

/// A row to add (the id and time are assigned here).
#[derive(Debug, Clone)]
pub struct NewItem {
    pub hash: String,
    pub name: String,
    pub size: u64,
    pub direction: Direction,
    pub peer_id: String,
    pub peer_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectionFilter {
    All,
    Received,
    Sent,
    Deleted,
    Restored,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Query {
    #[serde(default)]
    pub text: String,
    pub direction: DirectionFilter,
    #[serde(default)]
    pub offset: u32,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    pub items: Vec<HistoryItem>,
    pub total: u64,
    /// The highest id in the whole history when this page was read (0: none). A row the
    /// page learns of later (`history-added`) with a higher id is not in `total` yet.
    pub newest_id: i64,
}

pub struct History {
    db: Mutex<Connection>,
    max_rows: u64,
}

impl History {
    pub fn open(path: &Path, max_rows: u64) -> Result<Self, AppError> {
        let fail = |e: rusqlite::Error| AppError::io(&format!("history {}", path.display()), e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| AppError::io("history dir", e))?;
        }
        let mut db = Connection::open(path).map_err(fail)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;",
        )
        .map_err(fail)?;
        migrate(&mut db).map_err(fail)?;
        Ok(Self {
            db: Mutex::new(db),
            max_rows: max_rows.max(1),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, AppError> {
        self.db
            .lock()
            .map_err(|_| AppError::io("history", "database lock poisoned"))
    }

    /// Adds a row and prunes the oldest beyond the bound.
    pub fn add(&self, item: NewItem) -> Result<HistoryItem, AppError> {
        let time = can_sync::now_rfc3339();
        let db = self.lock()?;
        let fail = |e: rusqlite::Error| AppError::io("history", e);
        db.execute(
            "INSERT INTO history (time, hash, name, size, direction, peer_id, peer_name)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                time,
                item.hash,
                item.name,
                item.size as i64,
                item.direction.as_str(),
                item.peer_id,
                item.peer_name
            ],
        )
        .map_err(fail)?;
        let id = db.last_insert_rowid();
        db.execute(
            "DELETE FROM history WHERE id <= ?1 - ?2",
            params![id, self.max_rows as i64],
        )
        .map_err(fail)?;
        Ok(HistoryItem {
            id,
            time,
            hash: item.hash,
            name: item.name,
            size: item.size,
            direction: item.direction,
            peer_id: item.peer_id,
            peer_name: item.peer_name,
        })
    }

    /// Newest first. `text` matches name, peer name or hash prefix, case-insensitively.
    pub fn query(&self, q: &Query) -> Result<Page, AppError> {
        let limit = q.limit.clamp(1, MAX_PAGE);
        let pattern = format!("%{}%", escape_like(q.text.trim()));
        let prefix = format!("{}%", escape_like(&q.text.trim().to_lowercase()));
        let direction = match q.direction {
            DirectionFilter::All => None,
            DirectionFilter::Received => Some(Direction::Received.as_str()),
            DirectionFilter::Sent => Some(Direction::Sent.as_str()),
            DirectionFilter::Deleted => Some(Direction::Deleted.as_str()),
            DirectionFilter::Restored => Some(Direction::Restored.as_str()),
        };
        let filter = "(?1 IS NULL OR direction = ?1)
             AND (name LIKE ?2 ESCAPE '\\' OR peer_name LIKE ?2 ESCAPE '\\' OR hash LIKE ?3 ESCAPE '\\')";
        let db = self.lock()?;
        let fail = |e: rusqlite::Error| AppError::io("history", e);
        let total: i64 = db
            .query_row(
                &format!("SELECT COUNT(*) FROM history WHERE {filter}"),
                params![direction, pattern, prefix],
                |r| r.get(0),
            )
            .map_err(fail)?;
        let newest_id: i64 = db
            .query_row("SELECT COALESCE(MAX(id), 0) FROM history", [], |r| r.get(0))
            .map_err(fail)?;
        let mut stmt = db
            .prepare(&format!(
                "SELECT id, time, hash, name, size, direction, peer_id, peer_name FROM history
                 WHERE {filter} ORDER BY id DESC LIMIT ?4 OFFSET ?5"
            ))
            .map_err(fail)?;
        let items = stmt
            .query_map(params![direction, pattern, prefix, limit, q.offset], |r| {
                let dir: String = r.get(5)?;
                Ok(HistoryItem {
                    id: r.get(0)?,
                    time: r.get(1)?,
                    hash: r.get(2)?,
                    name: r.get(3)?,
                    size: r.get::<_, i64>(4)?.max(0) as u64,
                    direction: Direction::parse(&dir),
                    peer_id: r.get(6)?,
                    peer_name: r.get(7)?,
                })
            })
            .map_err(fail)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        Ok(Page {
            items,
            total: total.max(0) as u64,
            newest_id,
        })
    }

    /// The name a device had in its newest row (for the trash's "deleted on" column).
    pub fn device_name(&self, peer_id: &str) -> Option<String> {
        self.lock()
            .ok()?
            .query_row(
                "SELECT peer_name FROM history WHERE peer_id = ?1 ORDER BY id DESC LIMIT 1",
                params![peer_id],
                |r| r.get(0),
            )
            .ok()
    }

    /// The newest row for `hash` (to name a file when opening or saving it).
    pub fn find(&self, hash: &str) -> Result<Option<HistoryItem>, AppError> {
        let page = self.query(&Query {
            text: hash.to_owned(),
            direction: DirectionFilter::All,
            offset: 0,
            limit: 1,
        })?;
        Ok(page.items.into_iter().find(|i| i.hash == hash))
    }

    pub fn clear(&self) -> Result<(), AppError> {
        self.lock()?
            .execute("DELETE FROM history", [])
            .map_err(|e| AppError::io("history", e))?;
        Ok(())
    }
}

/// The table as of schema version 1 (deletions and restores).
const SCHEMA_V1: &str = "CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    hash TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('received', 'sent', 'deleted', 'restored')),
    peer_id TEXT NOT NULL,
    peer_name TEXT NOT NULL
)";

/// Brings the database to the current schema (`PRAGMA user_version`), in one transaction:
/// version 0 (no table, or the table from before deletions, whose CHECK allowed only
/// received and sent) becomes version 1 with every row kept, ids included.
fn migrate(db: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= 1 {
        return Ok(());
    }
    let tx = db.transaction()?;
    let old: bool = tx.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'history'",
        [],
        |r| r.get(0),
    )?;
    if old {
        tx.execute_batch("ALTER TABLE history RENAME TO history_v0")?;
    }
    tx.execute_batch(SCHEMA_V1)?;
    if old {
        tx.execute_batch(
            "INSERT INTO history (id, time, hash, name, size, direction, peer_id, peer_name)
                 SELECT id, time, hash, name, size, direction, peer_id, peer_name FROM history_v0;
             DROP TABLE history_v0;",
        )?;
    }
    tx.execute_batch("PRAGMA user_version = 1")?;
    tx.commit()
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(i: usize, direction: Direction) -> NewItem {
        NewItem {
            hash: format!("{i:064x}"),
            name: format!("file-{i}.txt"),
            size: i as u64,
            direction,
            peer_id: "peer".into(),
            peer_name: if i.is_multiple_of(2) {
                "Laptop"
            } else {
                "Desktop"
            }
            .into(),
        }
    }

    fn q(text: &str, direction: DirectionFilter, offset: u32, limit: u32) -> Query {
        Query {
            text: text.into(),
            direction,
            offset,
            limit,
        }
    }

    #[test]
    fn persists_across_reopen_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        {
            let h = History::open(&path, 100).unwrap();
            for i in 0..5 {
                h.add(item(i, Direction::Received)).unwrap();
            }
        }
        let h = History::open(&path, 100).unwrap();
        let page = h.query(&q("", DirectionFilter::All, 0, 50)).unwrap();
        assert_eq!(page.total, 5);
        assert_eq!(page.items[0].name, "file-4.txt");
        assert_eq!(page.items[4].name, "file-0.txt");
    }

    #[test]
    fn prunes_oldest_first_beyond_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("h.sqlite"), 10).unwrap();
        for i in 0..25 {
            h.add(item(i, Direction::Sent)).unwrap();
        }
        let page = h.query(&q("", DirectionFilter::All, 0, 50)).unwrap();
        assert_eq!(page.total, 10);
        assert_eq!(page.items.last().unwrap().name, "file-15.txt");
        assert_eq!(page.items[0].name, "file-24.txt");
    }

    #[test]
    fn filters_by_text_and_direction_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("h.sqlite"), 1000).unwrap();
        for i in 0..120usize {
            let d = if i.is_multiple_of(3) {
                Direction::Sent
            } else {
                Direction::Received
            };
            h.add(item(i, d)).unwrap();
        }
        let sent = h.query(&q("", DirectionFilter::Sent, 0, 50)).unwrap();
        assert_eq!(sent.total, 40);
        assert!(sent.items.iter().all(|i| i.direction == Direction::Sent));
        let p2 = h.query(&q("", DirectionFilter::All, 50, 50)).unwrap();
        assert_eq!(p2.items.len(), 50);
        assert_eq!(p2.items[0].name, "file-69.txt");
        let p3 = h.query(&q("", DirectionFilter::All, 100, 50)).unwrap();
        assert_eq!(p3.items.len(), 20);
        // The newest id of the whole history, whatever page or filter: the UI counts a
        // history-added row above it as not yet in `total`.
        let newest = h.query(&q("", DirectionFilter::All, 0, 1)).unwrap().items[0].id;
        assert_eq!(p3.newest_id, newest);
        assert_eq!(sent.newest_id, newest);
        let text = h.query(&q("FILE-11", DirectionFilter::All, 0, 50)).unwrap();
        // file-11, file-110..119
        assert_eq!(text.total, 11);
        let peer = h
            .query(&q("desk", DirectionFilter::Received, 0, 500))
            .unwrap();
        assert!(peer.items.iter().all(|i| i.peer_name == "Desktop"));
        // LIKE wildcards in the filter are literal.
        assert_eq!(
            h.query(&q("%", DirectionFilter::All, 0, 5)).unwrap().total,
            0
        );
        assert!(h.find(&format!("{:064x}", 7)).unwrap().is_some());
    }

    #[test]
    fn deletions_and_restores_are_rows_too_and_old_databases_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        // A database from before deletions: its CHECK allowed received and sent only.
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE history (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     time TEXT NOT NULL, hash TEXT NOT NULL, name TEXT NOT NULL,
                     size INTEGER NOT NULL,
                     direction TEXT NOT NULL CHECK (direction IN ('received', 'sent')),
                     peer_id TEXT NOT NULL, peer_name TEXT NOT NULL
                 );
                 INSERT INTO history (time, hash, name, size, direction, peer_id, peer_name)
                 VALUES ('2026-01-01T00:00:00Z', 'aa', 'old.txt', 3, 'received', 'p', 'Laptop'),
                        ('2026-01-01T00:00:01Z', 'bb', 'mine.txt', 4, 'sent', 'p', 'Laptop');",
            )
            .unwrap();
        }
        let h = History::open(&path, 100).unwrap();
        let deleted = h.add(item(7, Direction::Deleted)).unwrap();
        assert_eq!(deleted.id, 3, "ids go on after the old rows");
        h.add(item(8, Direction::Restored)).unwrap();
        drop(h);
        // Opened again: migrated once, nothing lost.
        let h = History::open(&path, 100).unwrap();
        let all = h.query(&q("", DirectionFilter::All, 0, 50)).unwrap();
        assert_eq!(all.total, 4);
        assert_eq!(
            all.items.iter().map(|i| i.direction).collect::<Vec<_>>(),
            [
                Direction::Restored,
                Direction::Deleted,
                Direction::Sent,
                Direction::Received
            ]
        );
        let only = h.query(&q("", DirectionFilter::Deleted, 0, 50)).unwrap();
        assert_eq!(only.total, 1);
        assert_eq!(only.items[0].name, "file-7.txt");
        assert_eq!(
            h.query(&q("", DirectionFilter::Restored, 0, 50))
                .unwrap()
                .total,
            1
        );
        // The newest row's name: item 8's device (even: "Laptop"), the old rows' device.
        assert_eq!(h.device_name("peer").as_deref(), Some("Laptop"));
        assert_eq!(h.device_name("p").as_deref(), Some("Laptop"));
        assert_eq!(h.device_name("nobody"), None);
    }
}
