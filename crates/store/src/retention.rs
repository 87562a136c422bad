//! Retention: a maximum age and a maximum size, applied by the writer between batches.

use crate::StoreError;
use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

/// How much the store keeps. Both bounds apply; `None` is no bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Events older than this are deleted (checked once a minute).
    pub max_age: Option<Duration>,
    /// The database file is kept at or under this many bytes: when the live data exceeds it,
    /// the oldest events are deleted down to 90 % of it (so the next batches reuse the freed
    /// pages instead of growing the file), and free pages beyond the bound are given back.
    /// Checked after every batch, so the bound can be passed by at most one batch in between.
    pub max_bytes: Option<u64>,
}

/// Rows deleted per statement, so a prune never holds the write lock for long.
const CHUNK: i64 = 20_000;

/// Page counts: (pages in the file, free pages, page size).
pub(crate) fn pages(conn: &Connection, path: &Path) -> Result<(u64, u64, u64), StoreError> {
    let get = |name: &str| -> Result<u64, StoreError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(|e| StoreError::sqlite(path, "read the page counts", e))
    };
    Ok((
        get("page_count")?,
        get("freelist_count")?,
        get("page_size")?,
    ))
}

/// Deletes events older than `cutoff_us`, in chunks. Returns how many.
pub(crate) fn prune_age(conn: &Connection, path: &Path, cutoff_us: i64) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = conn
            .execute(
                "DELETE FROM events WHERE id IN
                   (SELECT id FROM events WHERE ts < ?1 ORDER BY ts LIMIT ?2)",
                rusqlite::params![cutoff_us, CHUNK],
            )
            .map_err(|e| StoreError::sqlite(path, "delete old events", e))?;
        total += n as u64;
        if (n as i64) < CHUNK {
            return Ok(total);
        }
    }
}

/// Deletes the oldest events while the live data exceeds `max_bytes` (down to 90 % of it),
/// then returns free pages beyond `max_bytes` to the file system. Returns events deleted.
pub(crate) fn prune_size(
    conn: &Connection,
    path: &Path,
    max_bytes: u64,
) -> Result<u64, StoreError> {
    let (count, free, size) = pages(conn, path)?;
    if (count - free.min(count)) * size <= max_bytes && count * size <= max_bytes {
        return Ok(0);
    }
    let target = max_bytes / 10 * 9;
    let mut total = 0u64;
    loop {
        let (count, free, size) = pages(conn, path)?;
        let used = (count - free.min(count)) * size;
        if used <= target {
            break;
        }
        // Rows in the table (ids are dense but for pruned ranges): delete the share of them
        // that the excess is of the live data, at least a few pages' worth.
        let (lo, hi): (i64, i64) = conn
            .query_row(
                "SELECT ifnull(min(id), 0), ifnull(max(id), 0) FROM events",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| StoreError::sqlite(path, "count events", e))?;
        let rows = (hi - lo + 1).max(1) as u64;
        let share = (rows as u128 * (used - target) as u128 / used as u128) as i64;
        let n = conn
            .execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?1)",
                [share.clamp(64, CHUNK)],
            )
            .map_err(|e| StoreError::sqlite(path, "delete the oldest events", e))?;
        total += n as u64;
        if n == 0 {
            break;
        }
    }
    let (count, _, size) = pages(conn, path)?;
    if count * size > max_bytes {
        let excess = count - max_bytes / size;
        // One page per step: the pragma yields a row for each page it frees.
        let vacuum = |conn: &Connection| -> rusqlite::Result<()> {
            let mut st = conn.prepare(&format!("PRAGMA incremental_vacuum({excess})"))?;
            let mut rows = st.query([])?;
            while rows.next()?.is_some() {}
            Ok(())
        };
        vacuum(conn).map_err(|e| StoreError::sqlite(path, "give free pages back", e))?;
    }
    Ok(total)
}
