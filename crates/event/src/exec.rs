//! The decision event: one per answered program start, or (in lockdown with `[exec] images`)
//! per judged load of an ELF image through a plain open.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fmt;
use std::str::FromStr;

/// Enforcement mode of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Never block; log what would have been denied.
    Audit,
    /// Block only what a block rule or a known-bad source names.
    #[default]
    Monitor,
    /// Allow only what a rule or a trust source allows.
    Lockdown,
}

impl Mode {
    /// Every mode, for help texts and parsing.
    pub const ALL: [Mode; 3] = [Mode::Audit, Mode::Monitor, Mode::Lockdown];

    /// Lower-case name as used in config, CLI and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Audit => "audit",
            Mode::Monitor => "monitor",
            Mode::Lockdown => "lockdown",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown mode {s:?} (expected audit, monitor or lockdown)"))
    }
}

/// What the kernel was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// `FAN_ALLOW`.
    Allow,
    /// `FAN_DENY`: the exec fails with EPERM.
    Deny,
}

/// Why a decision was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A SHA-256 rule matched.
    BinaryRule,
    /// A path-glob rule matched.
    PathRule,
    /// No rule matched; the mode's default applied.
    ModeDefault,
    /// The verdict was not ready by the deadline; the mode's fallback applied.
    Deadline,
    /// The file could not be examined (stat or read failed, or too large to hash); the mode's
    /// fallback applied.
    Error,
    /// Too many execs were already held; the mode's fallback applied at once.
    Overload,
    /// The agent was stopping; the mode's fallback applied.
    Shutdown,
    /// Killed in the kernel: an earlier verdict denied this unchanged file.
    KernelBlocked,
    /// The content could change after the verdict (an unsealed memfd); the mode's fallback
    /// applied to the allow.
    Mutable,
    /// Not seen by fanotify and run under ptrace, so it could not be held; the mode's
    /// fallback applied (killed in monitor and lockdown).
    Traced,
    /// A reputation source knows the file as bad: a feed lists a digest, a YARA rule matched,
    /// a remote service calls it malicious (`custos.source` names it and why).
    KnownBad,
    /// A trusted reputation source vouches for the file (Debian package trust: this path with
    /// this content; NSRL when trusted), in a mode whose default denies.
    KnownGood,
}

impl Reason {
    /// Snake-case name as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BinaryRule => "binary_rule",
            Reason::PathRule => "path_rule",
            Reason::ModeDefault => "mode_default",
            Reason::Deadline => "deadline",
            Reason::Error => "error",
            Reason::Overload => "overload",
            Reason::Shutdown => "shutdown",
            Reason::KernelBlocked => "kernel_blocked",
            Reason::Mutable => "mutable",
            Reason::Traced => "traced",
            Reason::KnownBad => "known_bad",
            Reason::KnownGood => "known_good",
        }
    }
}

/// The reputation source behind a decision, and its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// The source (`feeds`, `dpkg`, `nsrl`, `yara`, `hashlookup`).
    pub name: String,
    /// Its reason: the feed's name, the YARA rule, the service's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How the judged file was about to be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Run as a program (`execve`: an exec open).
    #[default]
    Exec,
    /// Opened by a loader (`ld.so`, `dlopen`) to map it: an ELF executable or shared object
    /// opened with a plain open.
    Load,
}

impl Access {
    /// ECS `event.action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Exec => "exec",
            Access::Load => "load",
        }
    }
}

/// One decision, as written to the event output.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecEvent {
    /// Exec of a program or load of an image.
    pub access: Access,
    /// `@timestamp`, RFC 3339.
    pub timestamp: String,
    /// What the kernel was told.
    pub decision: Decision,
    /// In audit mode, the decision that enforcing would have taken, when it is a deny.
    pub would_deny: bool,
    /// Why.
    pub reason: Reason,
    /// Id of the matching rule, if a rule decided.
    pub rule_id: Option<u64>,
    /// Mode at decision time.
    pub mode: Mode,
    /// Whether the answer came from the decision cache.
    pub cached: bool,
    /// Pid of the process that is exec'ing (or opening the image).
    pub pid: i32,
    /// Its parent pid, if it could be read.
    pub ppid: Option<i32>,
    /// Its real uid, if it could be read.
    pub uid: Option<u32>,
    /// Resolved path of the file judged: the program being executed, or the image being
    /// loaded.
    pub executable: Option<String>,
    /// For a load: the program of the process opening the image (`/proc/PID/exe`).
    pub opener: Option<String>,
    /// SHA-256 of the file, hex, when it was hashed.
    pub sha256: Option<String>,
    /// Error text, when `reason` is `Error`.
    pub error: Option<String>,
    /// The reputation source that decided (reasons `known_bad`, `known_good`).
    pub source: Option<SourceRef>,
}

impl ExecEvent {
    /// ECS `event.outcome`: `success` when the exec may proceed, `failure` when denied.
    pub fn outcome(&self) -> &'static str {
        match self.decision {
            Decision::Allow => "success",
            Decision::Deny => "failure",
        }
    }

    /// The event as an ECS JSON object. An exec is `event.category: process` with the program
    /// in `process.*`; a load is `event.category: library` with the image in `dll.*` and the
    /// opening process's program in `process.executable`.
    pub fn to_ecs(&self) -> Value {
        let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
        let (program, category) = match self.access {
            Access::Exec => (&self.executable, "process"),
            Access::Load => (&self.opener, "library"),
        };
        let mut process = json!({
            "pid": self.pid,
            "executable": program,
            "name": program.as_deref().map(base),
        });
        if let Some(ppid) = self.ppid {
            process["parent"] = json!({ "pid": ppid });
        }
        let mut v = json!({
            "@timestamp": self.timestamp,
            "event": {
                "kind": "event",
                "category": [category],
                "type": ["start"],
                "action": self.access.as_str(),
                "module": "custos.exec",
                "outcome": self.outcome(),
                "reason": self.reason.as_str(),
            },
            "process": process,
            "custos": {
                "decision": self.decision,
                "would_deny": self.would_deny,
                "reason": self.reason,
                "mode": self.mode,
                "cached": self.cached,
            },
        });
        let hash = self.sha256.as_ref().map(|sha| json!({ "sha256": sha }));
        match self.access {
            Access::Exec => {
                if let Some(h) = hash {
                    v["process"]["hash"] = h;
                }
            }
            Access::Load => {
                let path = self.executable.as_deref();
                v["dll"] = json!({ "path": path, "name": path.map(base) });
                if let Some(h) = hash {
                    v["dll"]["hash"] = h;
                }
            }
        }
        if let Some(uid) = self.uid {
            v["user"] = json!({ "id": uid.to_string() });
        }
        if let Some(id) = self.rule_id {
            v["rule"] = json!({ "id": id.to_string() });
        }
        if let Some(s) = &self.source {
            v["custos"]["source"] = json!(s);
            v["rule"] = json!({ "ruleset": s.name, "name": s.detail });
        }
        if let Some(e) = &self.error {
            v["error"] = json!({ "message": e });
        }
        v
    }

    /// One JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        self.to_ecs().to_string()
    }
}

/// A denied load of a library by `/usr/bin/python3`, for the tests of every format.
#[cfg(test)]
pub(crate) fn sample_load() -> ExecEvent {
    ExecEvent {
        access: Access::Load,
        executable: Some("/tmp/x/evil.so".into()),
        opener: Some("/usr/bin/python3".into()),
        mode: Mode::Lockdown,
        reason: Reason::ModeDefault,
        rule_id: None,
        ..sample_exec()
    }
}

/// A denied exec, for the tests of every format.
#[cfg(test)]
pub(crate) fn sample_exec() -> ExecEvent {
    ExecEvent {
        access: Access::Exec,
        timestamp: "2026-11-22T05:00:00.123456Z".into(),
        decision: Decision::Deny,
        would_deny: false,
        reason: Reason::BinaryRule,
        rule_id: Some(7),
        mode: Mode::Monitor,
        cached: false,
        pid: 42,
        ppid: Some(1),
        uid: Some(1000),
        executable: Some("/tmp/x/evil".into()),
        opener: None,
        sha256: Some("ab".repeat(32)),
        error: None,
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ExecEvent {
        sample_exec()
    }

    #[test]
    fn ecs_field_names() {
        let v = sample().to_ecs();
        assert_eq!(v["event"]["action"], "exec");
        assert_eq!(v["event"]["outcome"], "failure");
        assert_eq!(v["process"]["pid"], 42);
        assert_eq!(v["process"]["name"], "evil");
        assert_eq!(v["process"]["executable"], "/tmp/x/evil");
        assert_eq!(v["process"]["hash"]["sha256"], "ab".repeat(32));
        assert_eq!(v["process"]["parent"]["pid"], 1);
        assert_eq!(v["user"]["id"], "1000");
        assert_eq!(v["rule"]["id"], "7");
        assert_eq!(v["custos"]["mode"], "monitor");
        assert_eq!(v["custos"]["decision"], "deny");
        assert_eq!(v["custos"]["reason"], "binary_rule");
        assert!(v.get("error").is_none());
    }

    #[test]
    fn a_load_names_the_image_in_dll_and_the_opener_in_process() {
        let v = sample_load().to_ecs();
        assert_eq!(v["event"]["category"], json!(["library"]));
        assert_eq!(v["event"]["type"], json!(["start"]));
        assert_eq!(v["event"]["action"], "load");
        assert_eq!(v["event"]["module"], "custos.exec");
        assert_eq!(v["event"]["outcome"], "failure");
        assert_eq!(v["dll"]["path"], "/tmp/x/evil.so");
        assert_eq!(v["dll"]["name"], "evil.so");
        assert_eq!(v["dll"]["hash"]["sha256"], "ab".repeat(32));
        assert_eq!(v["process"]["executable"], "/usr/bin/python3");
        assert_eq!(v["process"]["name"], "python3");
        assert_eq!(v["process"]["pid"], 42);
        assert!(
            v["process"].get("hash").is_none(),
            "the hash is the image's"
        );
        assert_eq!(v["custos"]["mode"], "lockdown");
        // An exec has no dll.
        assert!(sample().to_ecs().get("dll").is_none());
    }

    #[test]
    fn allow_is_success_and_optional_fields_absent() {
        let mut e = sample();
        e.decision = Decision::Allow;
        e.rule_id = None;
        e.ppid = None;
        e.uid = None;
        let v = e.to_ecs();
        assert_eq!(v["event"]["outcome"], "success");
        assert!(v.get("rule").is_none());
        assert!(v.get("user").is_none());
        assert!(v["process"].get("parent").is_none());
    }

    #[test]
    fn mode_parses_and_rejects() {
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>(), Ok(m));
        }
        let err = "Lockdown".parse::<Mode>().unwrap_err();
        assert!(err.contains("\"Lockdown\""), "{err}");
    }

    #[test]
    fn line_is_single_line_json() {
        let line = sample().to_json_line();
        assert!(!line.contains('\n'));
        let back: Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(back["@timestamp"], "2026-11-22T05:00:00.123456Z");
    }
}
