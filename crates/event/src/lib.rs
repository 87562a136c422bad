//! The custos event model.
//!
//! One Rust definition per event kind, serialised as one JSON object per line with
//! Elastic Common Schema (ECS) field names, nested the way ECS documents are
//! (`{"event":{"action":"exec"}}` rather than dotted keys), so shippers ingest it as is.
//! Fields that are not ECS live under `custos.*`.

mod activity;
mod exec;
mod process;

pub use activity::{ImageEvent, InjectEvent, LossEvent, ProcessRef};
pub use exec::{Decision, ExecEvent, Mode, Reason, SourceRef};
pub use process::{ProcessAction, ProcessEvent};

use std::time::SystemTime;

/// RFC 3339 timestamp with microseconds in UTC, as ECS `@timestamp` wants it.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}
