//! The custos event store.
//!
//! Every event from every sensor, as the ECS document the outputs write, in one SQLite table
//! (WAL) in the state dir, with the fields people search by pulled out into indexed columns:
//! time, kind, action, outcome, pid, entity id, path and SHA-256 ([`Row`]).
//!
//! - [`Writer`]: batched inserts on their own thread behind a bounded queue. Senders never
//!   wait; an event that does not fit is counted as dropped, and the count is written into the
//!   store itself at the next commit, so a gap is visible to whoever queries it. Retention
//!   ([`Retention`]: a maximum age and a maximum size) is applied by the same thread between
//!   batches. A locked or failing database is retried; the queue absorbs the wait.
//! - [`Reader`]: the queries behind `custos events` ([`Filter`]), following new events, and
//!   process trees ([`Reader::tree`]).
//!
//! Crash safety is SQLite's: in WAL mode with `synchronous=NORMAL` a committed batch survives
//! the death of the process (`kill -9`); after a power loss the last batches may be missing but
//! the database is consistent.

mod db;
mod error;
mod query;
mod retention;
mod row;
mod tree;
mod writer;

pub use db::{integrity_check, SCHEMA_VERSION};
pub use error::StoreError;
pub use query::{Filter, Reader, Stored};
pub use retention::Retention;
pub use row::{from_us, kind_of, to_us, Outcome, Row, KINDS};
pub use tree::{ProcessNode, Tree, TreeKey};
pub use writer::{StoreStatus, Writer, WriterOptions};
