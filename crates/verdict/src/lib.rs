//! The custos verdict engine.
//!
//! Everything between "the kernel holds an exec" and "the kernel is told allow or deny", with
//! the kernel behind the [`Held`] and [`Marks`] traits so all of it runs in plain `cargo test`:
//! file keys and hashing ([`file`]), rules and their store ([`rules`], [`store`]), the pure
//! decision ([`engine`]), the cache ([`cache`]) and the [`Arbiter`], which holds requests,
//! hashes on a worker pool and answers every request exactly once by its deadline.

pub mod arbiter;
pub mod cache;
pub mod engine;
pub mod file;
pub mod held;
pub mod rules;
pub mod source;
pub mod stats;
pub mod store;

pub use arbiter::{Arbiter, Options};
pub use engine::{evaluate, evaluate_rep, fallback, trust_counts, Reputation, Verdict};
pub use file::{
    digests_while, is_image, read_head, read_while, sha256_hex, FileDigests, FileKey, FileType,
    Want, HEAD_LEN,
};
pub use held::{Content, Held, Marks, PositionedFile, ProcessInfo, Sink};
pub use rules::{NewRule, Policy, Rule, RuleError, RuleSet, Target};
pub use source::{Finding, Findings, Need, Opinion, Source, Sources, Subject};
pub use stats::StatsSnapshot;
pub use store::{RuleStore, StoreError};
