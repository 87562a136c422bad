//! What processes do besides starting and ending: map code (image loads), reach into other
//! processes (injection), and the sensor's own record losses.

use serde_json::{json, Value};

/// The process an event is about, as far as the process table knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessRef {
    /// Process (thread-group) id.
    pub pid: u32,
    /// Unique across pid reuse (see `custos-process`).
    pub entity_id: Option<String>,
    /// Resolved path of its program.
    pub executable: Option<String>,
}

impl ProcessRef {
    /// ECS `process` object.
    pub fn to_ecs(&self) -> Value {
        let mut p = json!({ "pid": self.pid });
        if let Some(e) = &self.entity_id {
            p["entity_id"] = json!(e);
        }
        if let Some(x) = &self.executable {
            p["executable"] = json!(x);
            p["name"] = json!(x.rsplit('/').next().unwrap_or(x));
        }
        p
    }
}

pub(crate) fn base(
    timestamp: &str,
    category: &str,
    kind: &str,
    action: &str,
    module: &str,
) -> Value {
    json!({
        "@timestamp": timestamp,
        "event": {
            "kind": "event",
            "category": [category],
            "type": [kind],
            "action": action,
            "module": module,
        },
    })
}

/// A file mapped executable into a process (a shared library, or a program `ld.so` maps).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageEvent {
    /// `@timestamp`, RFC 3339.
    pub timestamp: String,
    /// The mapping process.
    pub process: ProcessRef,
    /// Resolved path of the file.
    pub path: String,
    /// The path was cut at the sensor's limit.
    pub path_truncated: bool,
    /// (dev, ino) of the file (kernel `dev_t`).
    pub dev_ino: (u64, u64),
    /// Mapped at, length, file offset.
    pub addr: u64,
    /// Length of the mapping.
    pub len: u64,
    /// File offset of the mapping.
    pub offset: u64,
}

impl ImageEvent {
    /// ECS: `event.category: library`, `dll.*` (ECS's name for loaded libraries on every OS)
    /// and `file.*`.
    pub fn to_ecs(&self) -> Value {
        let mut v = base(
            &self.timestamp,
            "library",
            "start",
            "image_load",
            "custos.image",
        );
        let name = self.path.rsplit('/').next().unwrap_or(&self.path);
        v["process"] = self.process.to_ecs();
        v["dll"] = json!({ "path": self.path, "name": name });
        v["file"] = json!({ "path": self.path, "name": name, "inode": self.dev_ino.1.to_string() });
        v["custos"] = json!({
            "dev": self.dev_ino.0,
            "ino": self.dev_ino.1,
            "addr": format!("{:#x}", self.addr),
            "len": self.len,
            "offset": self.offset,
        });
        if self.path_truncated {
            v["custos"]["path_truncated"] = json!(true);
        }
        v
    }
}

/// One process acting on another's memory or execution.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InjectEvent {
    /// `@timestamp`, RFC 3339.
    pub timestamp: String,
    /// `ptrace_attach`, `ptrace_seize`, `ptrace_poke`, `ptrace_setregs`, `process_vm_writev`
    /// or `sigcont_held`.
    pub action: &'static str,
    /// Who did it.
    pub process: ProcessRef,
    /// To whom.
    pub target: ProcessRef,
    /// The ptrace request number.
    pub request: Option<u32>,
    /// The syscall's return value (negative errno on failure).
    pub result: i64,
    /// The target was an exec held for judgement; the kernel killed the source (ptrace,
    /// `process_vm_writev`) or the target (SIGCONT).
    pub tamper: bool,
}

impl InjectEvent {
    /// ECS: `event.category: process`, `type: change`, the source as `process`, the target as
    /// `target.process`.
    pub fn to_ecs(&self) -> Value {
        let mut v = base(
            &self.timestamp,
            "process",
            "change",
            self.action,
            "custos.injection",
        );
        v["event"]["outcome"] = json!(if self.result < 0 {
            "failure"
        } else {
            "success"
        });
        v["process"] = self.process.to_ecs();
        v["target"] = json!({ "process": self.target.to_ecs() });
        v["custos"] = json!({ "result": self.result, "tamper": self.tamper });
        if let Some(r) = self.request {
            v["custos"]["ptrace_request"] = json!(r);
        }
        v
    }
}

/// What was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loss {
    /// Sensor records: the eBPF ring buffer was full (`records_lost`, `custos.lost`).
    #[default]
    Records,
    /// Events: the store's queue was full (`events_dropped`, `custos.dropped`).
    StoreEvents,
    /// File events: the kernel's fanotify queue overflowed (`file_queue_overflow`,
    /// `custos.overflows`); how many events were lost the kernel does not say.
    FileOverflow,
    /// File events over a process's rate limit (`file_events_rate_limited`, `custos.dropped`).
    FileRate,
}

/// Something the agent could not keep: a gap anyone reading the events should see.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LossEvent {
    /// `@timestamp`, RFC 3339.
    pub timestamp: String,
    /// What was lost.
    pub what: Loss,
    /// Lost since the previous loss event.
    pub lost: u64,
    /// Lost since the agent started.
    pub total: u64,
}

impl LossEvent {
    /// ECS: an `event.kind: metric` of the agent itself (module `custos.agent`).
    pub fn to_ecs(&self) -> Value {
        let (action, count, total) = match self.what {
            Loss::Records => ("records_lost", "lost", "lost_total"),
            Loss::StoreEvents => ("events_dropped", "dropped", "dropped_total"),
            Loss::FileOverflow => ("file_queue_overflow", "overflows", "overflows_total"),
            Loss::FileRate => ("file_events_rate_limited", "dropped", "dropped_total"),
        };
        let mut v = base(&self.timestamp, "host", "info", action, "custos.agent");
        v["event"]["kind"] = json!("metric");
        v["custos"] = json!({ count: self.lost, total: self.total });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_load_names_the_library() {
        let e = ImageEvent {
            timestamp: "t".into(),
            process: ProcessRef {
                pid: 5,
                entity_id: Some("b:1:5".into()),
                executable: Some("/usr/bin/python3".into()),
            },
            path: "/usr/lib/libz.so.1".into(),
            dev_ino: (8, 99),
            addr: 0x7f00,
            ..ImageEvent::default()
        };
        let v = e.to_ecs();
        assert_eq!(v["event"]["category"][0], "library");
        assert_eq!(v["dll"]["name"], "libz.so.1");
        assert_eq!(v["process"]["name"], "python3");
        assert_eq!(v["process"]["entity_id"], "b:1:5");
        assert_eq!(v["custos"]["addr"], "0x7f00");
    }

    #[test]
    fn injection_has_both_ends() {
        let e = InjectEvent {
            action: "ptrace_attach",
            process: ProcessRef {
                pid: 1,
                ..ProcessRef::default()
            },
            target: ProcessRef {
                pid: 2,
                ..ProcessRef::default()
            },
            request: Some(16),
            result: -1,
            ..InjectEvent::default()
        };
        let v = e.to_ecs();
        assert_eq!(v["process"]["pid"], 1);
        assert_eq!(v["target"]["process"]["pid"], 2);
        assert_eq!(v["event"]["outcome"], "failure");
        assert_eq!(v["custos"]["ptrace_request"], 16);
    }

    #[test]
    fn loss_is_a_metric() {
        let v = LossEvent {
            what: crate::Loss::Records,
            timestamp: "t".into(),
            lost: 3,
            total: 10,
        }
        .to_ecs();
        assert_eq!(v["event"]["kind"], "metric");
        assert_eq!(v["custos"]["lost_total"], 10);
    }
}
