//! File access authorization (Santa calls it FAA): rules saying which programs may open which
//! files, judged on fanotify `FAN_OPEN_PERM` events for the protected inodes.
//!
//! Pure logic, no root needed: the fanotify group is in `custos-sensor-fanotify`, the wiring
//! in the agent.

pub mod intent;
mod policy;
mod protected;

pub use intent::Intent;
pub use policy::{path_globs, DecisionCache, FileId, Policy, Rule, SelfFiles, Verdict, SELF_RULE};
pub use protected::{scan, Entry, Protected, Scan};

/// Errors compiling the rules.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A glob does not compile (config validation catches this first).
    #[error("{what}: bad glob {glob:?}: {problem}")]
    Glob {
        /// Whose glob: a rule (`file access rule "name"`) or a config key.
        what: String,
        /// The glob.
        glob: String,
        /// What is wrong.
        problem: String,
    },
}
