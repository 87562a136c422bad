//! Store errors, each naming the database.

use rusqlite::ErrorCode;
use std::path::PathBuf;

/// What went wrong with the event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// There is no store at the path.
    #[error("no event store at {path} (the agent creates it when it runs with the store on)")]
    Missing {
        /// The database file.
        path: PathBuf,
    },
    /// The file is not an SQLite database at all.
    #[error("{path} is not an SQLite database; move it away or set store.path")]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },
    /// SQLite found the database damaged.
    #[error("event store {path} is corrupt")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Another process holds a lock on the database past the busy timeout.
    #[error("event store {path} is locked by another process")]
    Locked {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer custos.
    #[error("event store {path} has schema version {found}; this custos reads version {known}")]
    Schema {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// [`crate::SCHEMA_VERSION`].
        known: i64,
    },
    /// Any other SQLite failure.
    #[error("event store {path}: cannot {op}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file operation around the database failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Classifies an SQLite error: corrupt, not a database, locked, or other (`op`).
    pub(crate) fn sqlite(path: &std::path::Path, op: &'static str, e: rusqlite::Error) -> Self {
        let path = path.to_owned();
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => StoreError::NotADatabase { path },
            Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt { path, source: e },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Locked { path, source: e }
            }
            _ => StoreError::Sqlite {
                path,
                op,
                source: e,
            },
        }
    }

    /// The message with its causes, `a: b: c`, for status lines and logs.
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            s += &format!(": {c}");
            cause = c.source();
        }
        s
    }

    /// Worth retrying later as is (a lock, a full disk), as opposed to needing a new database.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            StoreError::NotADatabase { .. }
                | StoreError::Corrupt { .. }
                | StoreError::Schema { .. }
        )
    }
}
