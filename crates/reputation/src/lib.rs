//! Hash reputation for custos: known-bad feeds (plain hash lists, MalwareBazaar CSV exports)
//! parsed into compact, sorted, memory-mapped digest sets so lookups cost a binary search and
//! no resident copy. Pure logic and files; nothing here needs root.
//!
//! [`hashset`] is the on-disk set format, [`feed`] parses feed files, [`feeds`] is the store of
//! named feeds under the state dir.

mod atomic;
mod bazaar;
pub mod dpkg;
mod feed;
pub mod feeds;
pub mod hashset;

pub use dpkg::{DpkgError, DpkgIndex, DPKG_INFO};
pub use feed::{parse_feed, FeedError, ParseSummary};
pub use feeds::{import_feed, list, FeedInfo, Feeds};
pub use hashset::{write_atomic, DigestSet, Digests, SetError, WriteStats};
