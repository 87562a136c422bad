//! Opening the database: pragmas, schema, version.

use crate::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Schema version in `PRAGMA user_version`. A newer database is refused, not guessed at.
pub const SCHEMA_VERSION: i64 = 1;

/// One table for every kind; the document is the ECS JSON line. `AUTOINCREMENT` so an id is
/// never reused, even after pruning has emptied the table: `--follow` keeps its place by id.
/// Partial indexes where most events have no value (hash, outcome), and for process trees,
/// which only read process events by entity (most events are image loads).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT,
    pid INTEGER,
    ppid INTEGER,
    entity_id TEXT,
    parent_entity_id TEXT,
    path TEXT,
    sha256 TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS events_kind_ts ON events(kind, ts);
CREATE INDEX IF NOT EXISTS events_pid_ts ON events(pid, ts);
CREATE INDEX IF NOT EXISTS events_path ON events(path, ts);
CREATE INDEX IF NOT EXISTS events_outcome_ts ON events(outcome, ts) WHERE outcome IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_sha256 ON events(sha256, ts) WHERE sha256 IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_lifecycle ON events(entity_id, ts) WHERE kind = 'process';
CREATE INDEX IF NOT EXISTS events_children ON events(parent_entity_id, ts) WHERE kind = 'process';
";

fn pragma(conn: &Connection, path: &Path, sql: &str) -> Result<(), StoreError> {
    conn.execute_batch(sql)
        .map_err(|e| StoreError::sqlite(path, "set pragmas", e))
}

/// Opens (creating if needed, mode 0600) the database for writing: WAL, `synchronous=NORMAL`
/// (a commit survives a crash of the process), incremental auto-vacuum (so retention can give
/// space back), the schema. The directory must exist.
///
/// Checkpoints every 16,384 WAL pages (64 MiB), not SQLite's 1,000: a 4,096-event batch
/// dirties more than 1,000 pages, so the default checkpointed (and synced) after every batch,
/// and index pages touched by many batches were written back once per batch.
pub(crate) fn open_rw(path: &Path, busy: Duration) -> Result<Connection, StoreError> {
    // Created by us first, 0600: events hold command lines. SQLite gives its -wal and -shm
    // files the database file's mode.
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(StoreError::Io {
                    op: "create",
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::sqlite(path, "open", e))?;
    conn.busy_timeout(busy)
        .map_err(|e| StoreError::sqlite(path, "set the busy timeout", e))?;
    // Before the first table exists, or it has no effect.
    pragma(&conn, path, "PRAGMA auto_vacuum = INCREMENTAL;")?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| StoreError::sqlite(path, "switch to WAL", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Sqlite {
            path: path.to_owned(),
            op: "switch to WAL",
            source: rusqlite::Error::InvalidQuery,
        });
    }
    pragma(
        &conn,
        path,
        "PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -65536; PRAGMA mmap_size = 268435456;
         PRAGMA journal_size_limit = 67108864; PRAGMA wal_autocheckpoint = 16384;",
    )?;
    check_version(&conn, path, true)?;
    conn.execute_batch(SCHEMA)
        .map_err(|e| StoreError::sqlite(path, "create the schema", e))?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|e| StoreError::sqlite(path, "set the schema version", e))?;
    Ok(conn)
}

/// Opens an existing database for reading.
pub(crate) fn open_ro(path: &Path) -> Result<Connection, StoreError> {
    match std::fs::metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Missing {
                path: path.to_owned(),
            })
        }
        // Most often: not root, and the state dir is 0700.
        Err(source) => {
            return Err(StoreError::Io {
                op: "read",
                path: path.to_owned(),
                source,
            })
        }
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::sqlite(path, "open", e))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| StoreError::sqlite(path, "set the busy timeout", e))?;
    check_version(&conn, path, false)?;
    Ok(conn)
}

/// Reads `user_version` (which also makes SQLite read the header: a file that is not a
/// database fails here). A newer schema is refused; when reading, so is a database without
/// the events table (version 0: not a custos store).
fn check_version(conn: &Connection, path: &Path, writing: bool) -> Result<(), StoreError> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::sqlite(path, "read the schema version", e))?;
    if !writing && found == 0 && tables(conn, path)? == 0 {
        // An empty database: the agent has created the file but not the schema yet.
        return Err(StoreError::Missing {
            path: path.to_owned(),
        });
    }
    if found > SCHEMA_VERSION || (!writing && found == 0) {
        return Err(StoreError::Schema {
            path: path.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(())
}

fn tables(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| StoreError::sqlite(path, "read the schema", e))
}

/// `PRAGMA integrity_check` on the database at `path`: `Ok(())` or the problems SQLite lists.
pub fn integrity_check(path: &Path) -> Result<Result<(), Vec<String>>, StoreError> {
    let conn = open_ro(path)?;
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| StoreError::sqlite(path, "check integrity", e))?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| StoreError::sqlite(path, "check integrity", e))?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(Ok(()))
    } else {
        Ok(Err(lines))
    }
}
