//! Queries: the filters of `custos events`, newest-first with a limit, and following.

use crate::db::open_ro;
use crate::row::{Outcome, Row};
use crate::StoreError;
use rusqlite::types::Value as Sql;
use rusqlite::Connection;
use std::path::{Path, PathBuf};

/// Which events. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// At or after (µs since the epoch).
    pub since_us: Option<i64>,
    /// At or before (µs since the epoch).
    pub until_us: Option<i64>,
    /// Any of these kinds (empty: all).
    pub kinds: Vec<String>,
    /// `process.pid`.
    pub pid: Option<i64>,
    /// The event's path, as an SQLite GLOB (`*` also matches `/`; case-sensitive).
    pub path_glob: Option<String>,
    /// SHA-256, hex (any case).
    pub sha256: Option<String>,
    /// Decision.
    pub outcome: Option<Outcome>,
}

impl Filter {
    /// `WHERE …` and its parameters.
    fn clause(&self) -> (String, Vec<Sql>) {
        let mut conds: Vec<String> = Vec::new();
        let mut args: Vec<Sql> = Vec::new();
        let mut push = |cond: &str, v: Sql| {
            args.push(v);
            conds.push(cond.replace('?', &format!("?{}", args.len())));
        };
        if let Some(t) = self.since_us {
            push("ts >= ?", Sql::Integer(t));
        }
        if let Some(t) = self.until_us {
            push("ts <= ?", Sql::Integer(t));
        }
        if let Some(p) = self.pid {
            push("pid = ?", Sql::Integer(p));
        }
        if let Some(g) = &self.path_glob {
            // Without wildcards a glob is one path: `=` lets `(path, ts)` give the newest
            // first without sorting every match.
            let op = if g.contains(['*', '?', '[']) {
                "path GLOB ?"
            } else {
                "path = ?"
            };
            push(op, Sql::Text(g.clone()));
        }
        if let Some(h) = &self.sha256 {
            push("sha256 = ?", Sql::Text(h.to_ascii_lowercase()));
        }
        if let Some(o) = self.outcome {
            push("outcome = ?", Sql::Text(o.as_str().into()));
        }
        if !self.kinds.is_empty() {
            let marks: Vec<String> = self
                .kinds
                .iter()
                .map(|k| {
                    args.push(Sql::Text(k.clone()));
                    format!("?{}", args.len())
                })
                .collect();
            conds.push(format!("kind IN ({})", marks.join(", ")));
        }
        let clause = if conds.is_empty() {
            "1".to_owned()
        } else {
            conds.join(" AND ")
        };
        (clause, args)
    }
}

/// One stored event: its store id and its row.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Store id: increasing in insertion order, never reused.
    pub id: i64,
    /// The indexed fields and the ECS document.
    pub row: Row,
}

/// The columns [`Stored`] is read from, in its order.
pub(crate) const COLUMNS: &str =
    "id, ts, kind, action, outcome, pid, ppid, entity_id, parent_entity_id, path, sha256, doc";

fn stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
    Ok(Stored {
        id: r.get(0)?,
        row: Row {
            ts_us: r.get(1)?,
            kind: r.get(2)?,
            action: r.get(3)?,
            outcome: r
                .get::<_, Option<String>>(4)?
                .as_deref()
                .and_then(Outcome::parse),
            pid: r.get(5)?,
            ppid: r.get(6)?,
            entity_id: r.get(7)?,
            parent_entity_id: r.get(8)?,
            path: r.get(9)?,
            sha256: r.get(10)?,
            doc: r.get(11)?,
        },
    })
}

/// A read-only view of the store (the agent may be writing at the same time).
pub struct Reader {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
}

impl Reader {
    /// Opens an existing store.
    pub fn open(path: &Path) -> Result<Reader, StoreError> {
        Ok(Reader {
            conn: open_ro(path)?,
            path: path.to_owned(),
        })
    }

    pub(crate) fn select(&self, sql: &str, args: &[Sql]) -> Result<Vec<Stored>, StoreError> {
        let err = |e| StoreError::sqlite(&self.path, "query events", e);
        let mut st = self.conn.prepare_cached(sql).map_err(err)?;
        let rows = st
            .query_map(rusqlite::params_from_iter(args), stored)
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    /// The newest `limit` matching events (all if `None`), oldest first, and whether there
    /// were more.
    pub fn latest(
        &self,
        f: &Filter,
        limit: Option<u64>,
    ) -> Result<(Vec<Stored>, bool), StoreError> {
        let (clause, args) = f.clause();
        let lim = limit.map_or(-1, |n| n.saturating_add(1).min(i64::MAX as u64) as i64);
        // With a limit, ids first: when an index covers the filter (`(path, ts)` for a glob),
        // the newest are found without reading every matching row, and only those are read.
        let sql = if limit.is_some() {
            format!(
                "SELECT {COLUMNS} FROM events WHERE id IN
                   (SELECT id FROM events WHERE {clause} ORDER BY ts DESC, id DESC LIMIT {lim})
                 ORDER BY ts DESC, id DESC"
            )
        } else {
            format!("SELECT {COLUMNS} FROM events WHERE {clause} ORDER BY ts DESC, id DESC")
        };
        let mut rows = self.select(&sql, &args)?;
        let more = limit.is_some_and(|n| rows.len() as u64 > n);
        if more {
            rows.pop();
        }
        rows.reverse();
        Ok((rows, more))
    }

    /// Matching events stored after `after_id`, in insertion order, at most `max`: what
    /// `--follow` prints next.
    pub fn after(&self, f: &Filter, after_id: i64, max: u64) -> Result<Vec<Stored>, StoreError> {
        let (clause, mut args) = f.clause();
        args.push(Sql::Integer(after_id));
        let n = args.len();
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE {clause} AND id > ?{n} ORDER BY id LIMIT {max}"
        );
        self.select(&sql, &args)
    }

    /// The highest id stored (0 when empty): where `--follow` starts.
    pub fn last_id(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT ifnull(max(id), 0) FROM events", [], |r| r.get(0))
            .map_err(|e| StoreError::sqlite(&self.path, "query events", e))
    }

    /// Events stored.
    pub fn count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| StoreError::sqlite(&self.path, "count events", e))
    }
}
