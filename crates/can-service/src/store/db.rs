//! SQLite schema and statements. `seq` is an AUTOINCREMENT key: strictly increasing and
//! never reused, even after rows are deleted by repair.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{AssetMeta, Deletion};
use crate::hash::AssetHash;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS assets (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    hash         BLOB    NOT NULL UNIQUE,
    size         INTEGER NOT NULL,
    name         TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    origin       TEXT    NOT NULL
);
";

/// Columns added after the first release, with their definitions: added to older
/// databases at open (SQLite's ADD COLUMN is cheap: it does not rewrite rows).
const ADDED_COLUMNS: &[(&str, &str)] = &[
    // The hybrid logical clock stamp of the row's last change (see `clock`); 0 for rows
    // from before deletion existed, which any deletion then outranks.
    ("stamp", "INTEGER NOT NULL DEFAULT 0"),
    // NULL while the asset is live; when it was deleted (here, wall clock ms) otherwise.
    ("deleted_ms", "INTEGER"),
    // 1 while a deleted asset's content is held in trash/.
    ("trashed", "INTEGER NOT NULL DEFAULT 0"),
    // 1 when the row's last change brought a deleted asset back.
    ("restored", "INTEGER NOT NULL DEFAULT 0"),
];

const COLUMNS: &str =
    "hash, size, name, content_type, created_at, origin, seq, stamp, deleted_ms, trashed, restored";

pub(super) fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    // WAL lets readers run beside the writer; synchronous=FULL makes a commit durable
    // before ingest answers 201, so an acknowledged asset survives power loss too.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    add_missing_columns(&conn)?;
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS assets_deleted ON assets (deleted_ms) WHERE deleted_ms IS NOT NULL;",
    )?;
    Ok(conn)
}

fn add_missing_columns(conn: &Connection) -> Result<(), rusqlite::Error> {
    let existing = conn
        .prepare("SELECT name FROM pragma_table_info('assets')")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    for (name, definition) in ADDED_COLUMNS {
        if !existing.iter().any(|c| c == name) {
            conn.execute_batch(&format!(
                "ALTER TABLE assets ADD COLUMN {name} {definition};"
            ))?;
        }
    }
    Ok(())
}

fn meta_from_row(row: &Row<'_>) -> Result<AssetMeta, rusqlite::Error> {
    let bytes: Vec<u8> = row.get(0)?;
    let hash = AssetHash::from_slice(&bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })?;
    Ok(AssetMeta {
        hash,
        size: row.get::<_, i64>(1)? as u64,
        name: row.get(2)?,
        content_type: row.get(3)?,
        created_at: row.get(4)?,
        origin: row.get(5)?,
        seq: row.get::<_, i64>(6)? as u64,
        stamp: row.get::<_, i64>(7)? as u64,
        deleted: row.get::<_, Option<i64>>(8)?.map(|ms| Deletion {
            at_ms: ms.max(0) as u64,
            in_trash: row.get::<_, i64>(9).is_ok_and(|t| t != 0),
        }),
        restored: row.get::<_, i64>(10)? != 0,
    })
}

/// The row of `hash`, live or deleted.
pub(super) fn get(
    conn: &Connection,
    hash: &AssetHash,
) -> Result<Option<AssetMeta>, rusqlite::Error> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM assets WHERE hash = ?1"))?
        .query_row(params![hash.as_bytes().as_slice()], meta_from_row)
        .optional()
}

/// Rows after `after` in seq order; deleted ones only if `deleted`.
pub(super) fn list(
    conn: &Connection,
    after: u64,
    limit: usize,
    deleted: bool,
) -> Result<(Vec<AssetMeta>, bool), rusqlite::Error> {
    let mut stmt = conn.prepare_cached(&if deleted {
        format!("SELECT {COLUMNS} FROM assets WHERE seq > ?1 ORDER BY seq LIMIT ?2")
    } else {
        format!(
            "SELECT {COLUMNS} FROM assets WHERE seq > ?1 AND deleted_ms IS NULL \
             ORDER BY seq LIMIT ?2"
        )
    })?;
    // One extra row tells whether another page follows.
    let mut rows = stmt
        .query_map(params![clamp_i64(after), limit as i64 + 1], meta_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    Ok((rows, more))
}

/// Inserts `row` as a new live row (its seq is ignored); returns the seq it got, or `None`
/// when the hash has a row already.
pub(super) fn insert(conn: &Connection, row: &AssetMeta) -> Result<Option<u64>, rusqlite::Error> {
    let seq = conn
        .prepare_cached(
            "INSERT INTO assets (hash, size, name, content_type, created_at, origin, stamp)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(hash) DO NOTHING RETURNING seq",
        )?
        .query_row(
            params![
                row.hash.as_bytes().as_slice(),
                clamp_i64(row.size),
                row.name,
                row.content_type,
                row.created_at,
                row.origin,
                clamp_i64(row.stamp)
            ],
            |r| r.get::<_, i64>(0),
        )
        .optional()?;
    Ok(seq.map(|s| s as u64))
}

/// Writes `row` as the new state of its hash under a new seq (the old row goes), so that
/// listings and event streams after the old seq see the change. Call inside a transaction.
/// Returns the new seq.
pub(super) fn replace(conn: &Connection, row: &AssetMeta) -> Result<u64, rusqlite::Error> {
    conn.prepare_cached("DELETE FROM assets WHERE hash = ?1")?
        .execute(params![row.hash.as_bytes().as_slice()])?;
    let deletion = row.deleted.as_ref();
    conn.prepare_cached(
        "INSERT INTO assets (hash, size, name, content_type, created_at, origin, stamp,
                             deleted_ms, trashed, restored)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING seq",
    )?
    .query_row(
        params![
            row.hash.as_bytes().as_slice(),
            clamp_i64(row.size),
            row.name,
            row.content_type,
            row.created_at,
            row.origin,
            clamp_i64(row.stamp),
            deletion.map(|d| clamp_i64(d.at_ms)),
            deletion.is_some_and(|d| d.in_trash),
            row.restored,
        ],
        |r| r.get::<_, i64>(0),
    )
    .map(|s| s as u64)
}

/// Sets the stamp of a live row in place (a peer's later upload of the same content: the
/// state does not change, so neither does the seq).
pub(super) fn set_stamp(
    conn: &Connection,
    hash: &AssetHash,
    stamp: u64,
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("UPDATE assets SET stamp = ?2 WHERE hash = ?1 AND stamp < ?2")?
        .execute(params![hash.as_bytes().as_slice(), clamp_i64(stamp)])?;
    Ok(())
}

/// Marks a deleted row's content as gone from the trash (in place: peers see no change).
pub(super) fn set_untrashed(conn: &Connection, hash: &AssetHash) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("UPDATE assets SET trashed = 0 WHERE hash = ?1")?
        .execute(params![hash.as_bytes().as_slice()])?;
    Ok(())
}

/// Deleted rows whose content is in the trash, newest deletion first.
pub(super) fn trash(conn: &Connection, limit: usize) -> Result<Vec<AssetMeta>, rusqlite::Error> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM assets WHERE deleted_ms IS NOT NULL AND trashed = 1 \
         ORDER BY deleted_ms DESC, seq DESC LIMIT ?1"
    ))?
    .query_map(params![limit as i64], meta_from_row)?
    .collect()
}

/// Hashes of trashed content deleted before `before_ms`, at most `limit`.
pub(super) fn trashed_before(
    conn: &Connection,
    before_ms: u64,
    limit: usize,
) -> Result<Vec<AssetHash>, rusqlite::Error> {
    conn.prepare_cached(
        "SELECT hash FROM assets WHERE deleted_ms IS NOT NULL AND trashed = 1 \
         AND deleted_ms < ?1 LIMIT ?2",
    )?
    .query_map(params![clamp_i64(before_ms), limit as i64], |r| {
        r.get::<_, Vec<u8>>(0)
    })?
    .filter_map(|h| h.map(|h| AssetHash::from_slice(&h).ok()).transpose())
    .collect()
}

/// Forgets tombstones (without trashed content) of deletions stamped before `before_ms`.
/// The stamp, not when this store learnt of the deletion, so that every store forgets a
/// deletion at about the same time and none teaches it back to one that forgot it.
pub(super) fn forget_tombstones(
    conn: &Connection,
    before_ms: u64,
) -> Result<usize, rusqlite::Error> {
    conn.prepare_cached(
        "DELETE FROM assets WHERE deleted_ms IS NOT NULL AND trashed = 0 AND stamp < ?1",
    )?
    .execute(params![clamp_i64(super::clock::stamp_of_ms(before_ms))])
}

/// What the store holds: live assets and their bytes, trashed ones and theirs, tombstones.
pub(super) fn totals(conn: &Connection) -> Result<super::Totals, rusqlite::Error> {
    conn.query_row(
        "SELECT
           COALESCE(SUM(deleted_ms IS NULL), 0),
           COALESCE(SUM(CASE WHEN deleted_ms IS NULL THEN size ELSE 0 END), 0),
           COALESCE(SUM(deleted_ms IS NOT NULL AND trashed = 1), 0),
           COALESCE(SUM(CASE WHEN deleted_ms IS NOT NULL AND trashed = 1 THEN size ELSE 0 END), 0),
           COALESCE(SUM(deleted_ms IS NOT NULL), 0)
         FROM assets",
        [],
        |r| {
            Ok(super::Totals {
                assets: r.get::<_, i64>(0)? as u64,
                bytes: r.get::<_, i64>(1)? as u64,
                trash_assets: r.get::<_, i64>(2)? as u64,
                trash_bytes: r.get::<_, i64>(3)? as u64,
                tombstones: r.get::<_, i64>(4)? as u64,
            })
        },
    )
}

/// The highest stamp of any row (the clock starts above it).
pub(super) fn max_stamp(conn: &Connection) -> Result<u64, rusqlite::Error> {
    conn.query_row("SELECT COALESCE(MAX(stamp), 0) FROM assets", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|s| s.max(0) as u64)
}

pub(super) fn last_seq(conn: &Connection) -> Result<u64, rusqlite::Error> {
    // sqlite_sequence remembers the highest seq ever assigned, even if that row is gone.
    let seq: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'assets'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(seq.unwrap_or(0) as u64)
}

pub(super) fn delete(conn: &Connection, seq: u64) -> Result<(), rusqlite::Error> {
    conn.execute("DELETE FROM assets WHERE seq = ?1", params![clamp_i64(seq)])?;
    Ok(())
}

/// Whether `hash` has a live row (its content belongs in objects/).
pub(super) fn exists(conn: &Connection, hash: &[u8]) -> Result<bool, rusqlite::Error> {
    conn.prepare_cached("SELECT 1 FROM assets WHERE hash = ?1 AND deleted_ms IS NULL")?
        .exists(params![hash])
}

/// Whether `hash` has a deleted row whose content is in the trash.
pub(super) fn in_trash(conn: &Connection, hash: &[u8]) -> Result<bool, rusqlite::Error> {
    conn.prepare_cached(
        "SELECT 1 FROM assets WHERE hash = ?1 AND deleted_ms IS NOT NULL AND trashed = 1",
    )?
    .exists(params![hash])
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
