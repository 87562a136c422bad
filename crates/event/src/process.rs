//! Process telemetry events: exec, fork (process or thread) and exit, from the eBPF sensor.

use serde_json::{json, Value};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessAction {
    /// A program started in an existing process.
    Exec,
    /// A new process.
    Fork,
    /// A new thread in an existing process (`CLONE_THREAD`).
    ThreadStart,
    /// A process ended.
    Exit,
    /// One thread of a process ended.
    ThreadEnd,
    /// A process that was already running when the agent started (from /proc), so that
    /// lineage reaches back past the start.
    Snapshot,
}

impl ProcessAction {
    /// ECS `event.action`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessAction::Exec => "exec",
            ProcessAction::Fork => "fork",
            ProcessAction::ThreadStart => "thread_start",
            ProcessAction::Exit => "exit",
            ProcessAction::ThreadEnd => "thread_end",
            ProcessAction::Snapshot => "snapshot",
        }
    }

    fn ecs_type(self) -> &'static str {
        match self {
            ProcessAction::Exec | ProcessAction::Fork | ProcessAction::ThreadStart => "start",
            ProcessAction::Exit | ProcessAction::ThreadEnd => "end",
            ProcessAction::Snapshot => "info",
        }
    }
}

/// One process event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcessEvent {
    /// `@timestamp`, RFC 3339.
    pub timestamp: String,
    /// What happened (required; `None` only in `Default`).
    pub action: Option<ProcessAction>,
    /// Process (thread-group) id.
    pub pid: u32,
    /// Thread id, for thread events and execs.
    pub tid: Option<u32>,
    /// Unique across pid reuse: boot id, start time, pid.
    pub entity_id: String,
    /// Parent pid.
    pub parent_pid: Option<u32>,
    /// Parent's entity id.
    pub parent_entity_id: Option<String>,
    /// Resolved path of the program (exec).
    pub executable: Option<String>,
    /// argv (exec).
    pub args: Option<Vec<String>>,
    /// argv was cut at the sensor's limit.
    pub args_truncated: bool,
    /// The path was cut at the sensor's limit.
    pub path_truncated: bool,
    /// Real and effective uid / gid (exec).
    pub uid: Option<u32>,
    /// Effective uid.
    pub euid: Option<u32>,
    /// Real gid.
    pub gid: Option<u32>,
    /// Effective gid.
    pub egid: Option<u32>,
    /// Exit code (exit).
    pub exit_code: Option<u8>,
    /// Killing signal (exit).
    pub signal: Option<u8>,
    /// (dev, ino) of the executable (exec).
    pub dev_ino: Option<(u64, u64)>,
    /// Cgroup v2 id (exec).
    pub cgroup_id: Option<u64>,
    /// Working directory (exec).
    pub working_directory: Option<String>,
    /// The working directory was cut at the sensor's limit.
    pub cwd_truncated: bool,
    /// What the kernel did about an exec fanotify cannot see: `held`, `killed`, `unheld`,
    /// `overload_killed`.
    pub hold: Option<&'static str>,
    /// fanotify cannot see this exec (memfd, unwatched filesystem).
    pub unseen: bool,
    /// When the process started, RFC 3339 (exec, fork).
    pub start: Option<String>,
}

impl ProcessEvent {
    /// The event as an ECS JSON object.
    pub fn to_ecs(&self) -> Value {
        let action = self.action.unwrap_or(ProcessAction::Exec);
        let mut process = json!({ "pid": self.pid });
        if !self.entity_id.is_empty() {
            process["entity_id"] = json!(self.entity_id);
        }
        if let Some(t) = self.tid {
            process["thread"] = json!({ "id": t });
        }
        if let Some(p) = &self.executable {
            process["executable"] = json!(p);
            process["name"] = json!(p.rsplit('/').next().unwrap_or(p));
        }
        if let Some(a) = &self.args {
            process["args"] = json!(a);
            process["args_count"] = json!(a.len());
            process["command_line"] = json!(a.join(" "));
        }
        if let Some(ppid) = self.parent_pid {
            process["parent"] = json!({ "pid": ppid });
            if let Some(pe) = &self.parent_entity_id {
                process["parent"]["entity_id"] = json!(pe);
            }
        }
        if let Some(t) = &self.start {
            process["start"] = json!(t);
        }
        if let Some(d) = &self.working_directory {
            process["working_directory"] = json!(d);
        }
        if let Some(c) = self.exit_code {
            process["exit_code"] = json!(c);
        }
        let mut custos = json!({});
        if self.args_truncated {
            custos["args_truncated"] = json!(true);
        }
        if self.path_truncated {
            custos["path_truncated"] = json!(true);
        }
        if let Some(s) = self.signal {
            custos["signal"] = json!(s);
        }
        if let Some((dev, ino)) = self.dev_ino {
            custos["dev"] = json!(dev);
            custos["ino"] = json!(ino);
        }
        if let Some(c) = self.cgroup_id {
            custos["cgroup_id"] = json!(c);
        }
        if self.cwd_truncated {
            custos["cwd_truncated"] = json!(true);
        }
        if let Some(h) = self.hold {
            custos["hold"] = json!(h);
        }
        if self.unseen {
            custos["unseen"] = json!(true);
        }
        let mut v = json!({
            "@timestamp": self.timestamp,
            "event": {
                "kind": "event",
                "category": ["process"],
                "type": [action.ecs_type()],
                "action": action.as_str(),
                "module": "custos.process",
            },
            "process": process,
            "custos": custos,
        });
        if let Some(uid) = self.uid {
            v["user"] = json!({ "id": uid.to_string() });
            if let Some(e) = self.euid {
                v["user"]["effective"] = json!({ "id": e.to_string() });
            }
        }
        if let Some(gid) = self.gid {
            v["group"] = json!({ "id": gid.to_string() });
            if let Some(e) = self.egid {
                v["group"]["effective"] = json!({ "id": e.to_string() });
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_has_ecs_process_fields() {
        let e = ProcessEvent {
            timestamp: "2026-11-22T06:00:00.000000Z".into(),
            action: Some(ProcessAction::Exec),
            pid: 42,
            tid: Some(42),
            entity_id: "b:1:42".into(),
            parent_pid: Some(1),
            parent_entity_id: Some("b:0:1".into()),
            executable: Some("/usr/bin/ls".into()),
            args: Some(vec!["ls".into(), "-l".into()]),
            uid: Some(1000),
            euid: Some(0),
            ..ProcessEvent::default()
        };
        let v = e.to_ecs();
        assert_eq!(v["event"]["action"], "exec");
        assert_eq!(v["event"]["type"][0], "start");
        assert_eq!(v["process"]["name"], "ls");
        assert_eq!(v["process"]["command_line"], "ls -l");
        assert_eq!(v["process"]["args_count"], 2);
        assert_eq!(v["process"]["parent"]["entity_id"], "b:0:1");
        assert_eq!(v["user"]["effective"]["id"], "0");
        assert!(v["process"].get("exit_code").is_none());
    }

    #[test]
    fn exit_and_threads() {
        let e = ProcessEvent {
            action: Some(ProcessAction::Exit),
            pid: 7,
            entity_id: "x".into(),
            signal: Some(9),
            ..ProcessEvent::default()
        };
        let v = e.to_ecs();
        assert_eq!(v["event"]["type"][0], "end");
        assert_eq!(v["custos"]["signal"], 9);
        let t = ProcessEvent {
            action: Some(ProcessAction::ThreadStart),
            pid: 7,
            tid: Some(8),
            ..ProcessEvent::default()
        };
        let v = t.to_ecs();
        assert_eq!(v["event"]["action"], "thread_start");
        assert_eq!(v["process"]["thread"]["id"], 8);
    }
}
