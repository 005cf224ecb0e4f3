//! SQLite schema and statements. `seq` is an AUTOINCREMENT key: strictly increasing and
//! never reused, even after rows are deleted by repair.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::AssetMeta;
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

const COLUMNS: &str = "hash, size, name, content_type, created_at, origin, seq";

pub(super) fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    // WAL lets readers run beside the writer; synchronous=FULL makes a commit durable
    // before ingest answers 201, so an acknowledged asset survives power loss too.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
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
    })
}

pub(super) fn get(
    conn: &Connection,
    hash: &AssetHash,
) -> Result<Option<AssetMeta>, rusqlite::Error> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM assets WHERE hash = ?1"))?
        .query_row(params![hash.as_bytes().as_slice()], meta_from_row)
        .optional()
}

pub(super) fn list(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<(Vec<AssetMeta>, bool), rusqlite::Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM assets WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    // One extra row tells whether another page follows.
    let mut rows = stmt
        .query_map(params![clamp_i64(after), limit as i64 + 1], meta_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    Ok((rows, more))
}

/// Inserts a new row; returns `None` when the hash is already stored.
pub(super) fn insert(
    conn: &Connection,
    hash: &AssetHash,
    size: u64,
    name: &str,
    content_type: &str,
    created_at: &str,
    origin: &str,
) -> Result<Option<u64>, rusqlite::Error> {
    let seq = conn
        .prepare_cached(
            "INSERT INTO assets (hash, size, name, content_type, created_at, origin)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(hash) DO NOTHING RETURNING seq",
        )?
        .query_row(
            params![
                hash.as_bytes().as_slice(),
                clamp_i64(size),
                name,
                content_type,
                created_at,
                origin
            ],
            |r| r.get::<_, i64>(0),
        )
        .optional()?;
    Ok(seq.map(|s| s as u64))
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

pub(super) fn exists(conn: &Connection, hash: &[u8]) -> Result<bool, rusqlite::Error> {
    conn.prepare_cached("SELECT 1 FROM assets WHERE hash = ?1")?
        .exists(params![hash])
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
