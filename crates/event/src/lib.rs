//! The custos event model.
//!
//! One Rust definition per event kind, serialised as one JSON object per line with
//! Elastic Common Schema (ECS) field names, nested the way ECS documents are
//! (`{"event":{"action":"exec"}}` rather than dotted keys), so shippers ingest it as is.
//! Fields that are not ECS live under `custos.*`.

mod activity;
mod exec;
mod file;
mod net;
mod ocsf;
mod process;
mod santa;

pub use activity::{ImageEvent, InjectEvent, Loss, LossEvent, ProcessRef};
pub use exec::{Access, Decision, ExecEvent, Mode, Reason, SourceRef};
pub use file::{AccessEvent, Actor, FileAction, FileEvent};
pub use net::{DnsEvent, Endpoint, NetAction, NetPolicy, NetTransport, NetworkEvent};
/// OCSF 1.7.0 from an ECS document: the second output format, for OCSF-native tools.
pub use ocsf::{to_ocsf, OCSF_VERSION};
pub use process::{ProcessAction, ProcessEvent};
/// Santa log lines from an ECS document, for tools that already parse santad's log.
pub use santa::{to_santa, to_santa_file_line};

use std::time::SystemTime;

/// RFC 3339 timestamp with microseconds in UTC, as ECS `@timestamp` wants it.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}
