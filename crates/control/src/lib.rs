//! The control socket between `custos` commands and the running agent.
//!
//! A Unix stream socket, mode 0600 and checked for a root peer. One JSON request per line,
//! one JSON reply per line: `{"ok":true,"data":…}` or `{"ok":false,"error":"…"}`.

mod protocol;
mod server;

pub use protocol::{
    AccessStatus, Client, ControlError, FilesStatus, InspectReply, NetStatus, Reply,
    ReputationStatus, Request, SourceAnswer, SourceStatus, StatusReply, TelemetryStatus,
};
pub use server::{bind, serve, Handler};
