//! Hash reputation for custos: known-bad feeds (plain hash lists, MalwareBazaar CSV exports)
//! parsed into compact, sorted, memory-mapped digest sets so lookups cost a binary search and
//! no resident copy. Pure logic and files; nothing here needs root.
//!
//! [`hashset`] is the on-disk set format, [`feed`] parses feed files, [`feeds`] is the store of
//! named feeds under the state dir, [`nsrl`] imports the NIST NSRL into one large set (external
//! sort, sampled validation at load).
//!
//! [`hashlookup`] asks a remote CIRCL-hashlookup service about a hash (deadline, expiring cache,
//! circuit breaker); it is the only module that touches the network.

mod atomic;
mod bazaar;
pub mod dpkg;
mod feed;
pub mod feeds;
pub mod hashlookup;
pub mod hashset;
pub mod nsrl;
mod nsrl_import;
mod nsrl_read;
mod sorter;

pub use dpkg::{DpkgError, DpkgIndex, DPKG_INFO};
pub use feed::{parse_feed, FeedError, ParseSummary};
pub use feeds::{import_feed, list, FeedInfo, Feeds};
pub use hashset::{write_atomic, DigestSet, Digests, SetError, Validation, WriteStats};
pub use nsrl::{
    import_nsrl, DigestKind, ImportOptions, Nsrl, NsrlError, NsrlFormat, NsrlInfo, Phase, Progress,
};
