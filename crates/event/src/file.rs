//! File activity (module `custos.file`): what happened to a file, and file access decisions.

use crate::activity::{base, ProcessRef};
use crate::Decision;
use serde_json::{json, Value};

/// What happened to a file. ECS `event.action` is [`FileAction::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAction {
    /// Created (a file, directory, link or node).
    Creation,
    /// Closed after being written.
    Modification,
    /// Deleted (its last name removed).
    Deletion,
    /// Renamed or moved; the old path is `custos.original_path`.
    Rename,
    /// Mode, owner, times or extended attributes changed.
    AttributesModified,
}

impl FileAction {
    /// ECS `event.action`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileAction::Creation => "creation",
            FileAction::Modification => "modification",
            FileAction::Deletion => "deletion",
            FileAction::Rename => "rename",
            FileAction::AttributesModified => "attributes_modified",
        }
    }

    /// ECS `event.type`.
    fn ecs_type(self) -> &'static str {
        match self {
            FileAction::Creation => "creation",
            FileAction::Deletion => "deletion",
            _ => "change",
        }
    }
}

/// The process behind a file event or access, as far as `/proc` still knew it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    /// Pid, entity id and executable.
    pub process: ProcessRef,
    /// Effective uid.
    pub uid: Option<u32>,
}

impl Actor {
    fn add_to(&self, v: &mut Value) {
        v["process"] = self.process.to_ecs();
        if let Some(uid) = self.uid {
            v["user"] = json!({ "id": uid.to_string() });
        }
    }
}

/// One file event from the filesystem-wide sensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEvent {
    /// `@timestamp`, RFC 3339.
    pub timestamp: String,
    /// What happened.
    pub action: FileAction,
    /// Full path (for a rename, the new one). `None` when the kernel's handle could not be
    /// resolved any more (the directory was removed meanwhile).
    pub path: Option<String>,
    /// A rename's old path.
    pub original_path: Option<String>,
    /// A directory rather than a file.
    pub dir: bool,
    /// Who did it.
    pub actor: Actor,
}

impl FileEvent {
    /// The event as an ECS object.
    pub fn to_ecs(&self) -> Value {
        let action = self.action;
        let mut v = base(
            &self.timestamp,
            "file",
            action.ecs_type(),
            action.as_str(),
            "custos.file",
        );
        let mut file = json!({ "type": if self.dir { "dir" } else { "file" } });
        if let Some(p) = &self.path {
            add_path(&mut file, p);
        }
        v["file"] = file;
        self.actor.add_to(&mut v);
        v["custos"] = json!({});
        if let Some(o) = &self.original_path {
            v["custos"]["original_path"] = json!(o);
        }
        v
    }
}

fn add_path(file: &mut Value, path: &str) {
    file["path"] = json!(path);
    if let Some((dir, name)) = path.rsplit_once('/') {
        file["name"] = json!(name);
        file["directory"] = json!(if dir.is_empty() { "/" } else { dir });
    }
}

/// A file access rule's decision on one open (`FAN_OPEN_PERM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEvent {
    /// `@timestamp`, RFC 3339.
    pub timestamp: String,
    /// What the kernel was told.
    pub decision: Decision,
    /// The rule would have denied, but it is audit-only (or the agent is in audit mode).
    pub would_deny: bool,
    /// Name of the deciding rule.
    pub rule: String,
    /// The open was for writing (or its mode could not be read, which counts as writing).
    pub write: bool,
    /// The path the process opened (a hard link shows here as itself).
    pub path: Option<String>,
    /// The path the rule protects this file under.
    pub protected_path: String,
    /// (dev, ino) of the file.
    pub dev_ino: (u64, u64),
    /// Who opened it.
    pub actor: Actor,
}

impl AccessEvent {
    /// ECS `event.outcome`.
    pub fn outcome(&self) -> &'static str {
        match self.decision {
            Decision::Allow => "success",
            Decision::Deny => "failure",
        }
    }

    /// The event as an ECS object.
    pub fn to_ecs(&self) -> Value {
        let mut v = base(&self.timestamp, "file", "access", "open", "custos.file");
        v["event"]["outcome"] = json!(self.outcome());
        let mut file = json!({ "type": "file", "inode": self.dev_ino.1.to_string() });
        if let Some(p) = &self.path {
            add_path(&mut file, p);
        }
        v["file"] = file;
        self.actor.add_to(&mut v);
        v["rule"] = json!({ "name": self.rule, "ruleset": "files" });
        v["custos"] = json!({
            "decision": self.decision,
            "would_deny": self.would_deny,
            "access": if self.write { "write" } else { "read" },
            "protected_path": self.protected_path,
            "dev": self.dev_ino.0,
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor() -> Actor {
        Actor {
            process: ProcessRef {
                pid: 7,
                entity_id: Some("b:1:7".into()),
                executable: Some("/usr/bin/mv".into()),
            },
            uid: Some(0),
        }
    }

    #[test]
    fn rename_names_both_paths() {
        let e = FileEvent {
            timestamp: "t".into(),
            action: FileAction::Rename,
            path: Some("/etc/new".into()),
            original_path: Some("/tmp/old".into()),
            dir: false,
            actor: actor(),
        };
        let v = e.to_ecs();
        assert_eq!(v["event"]["module"], "custos.file");
        assert_eq!(v["event"]["action"], "rename");
        assert_eq!(v["event"]["type"][0], "change");
        assert_eq!(v["file"]["path"], "/etc/new");
        assert_eq!(v["file"]["name"], "new");
        assert_eq!(v["file"]["directory"], "/etc");
        assert_eq!(v["custos"]["original_path"], "/tmp/old");
        assert_eq!(v["process"]["entity_id"], "b:1:7");
        assert_eq!(v["user"]["id"], "0");
        let santa = crate::to_santa(&v).expect("a santa line");
        assert!(
            santa.contains("RENAME") && santa.contains("/tmp/old"),
            "{santa}"
        );
        let o = crate::to_ocsf(&v);
        assert_eq!(o["activity_id"], 5);
        assert_eq!(o["file"]["path"], "/tmp/old");
    }

    #[test]
    fn every_action_maps_to_ocsf() {
        for (a, id) in [
            (FileAction::Creation, 1),
            (FileAction::Modification, 3),
            (FileAction::Deletion, 4),
            (FileAction::AttributesModified, 6),
        ] {
            let e = FileEvent {
                timestamp: "t".into(),
                action: a,
                path: Some("/d".into()),
                original_path: None,
                dir: true,
                actor: actor(),
            };
            let v = e.to_ecs();
            assert_eq!(v["file"]["type"], "dir");
            assert_eq!(v["file"]["directory"], "/");
            assert_eq!(crate::to_ocsf(&v)["activity_id"], id, "{a:?}");
        }
    }

    #[test]
    fn access_deny_names_both_sides() {
        let e = AccessEvent {
            timestamp: "t".into(),
            decision: Decision::Deny,
            would_deny: false,
            rule: "ssh keys".into(),
            write: false,
            path: Some("/tmp/link".into()),
            protected_path: "/etc/ssh/key".into(),
            dev_ino: (8, 42),
            actor: actor(),
        };
        let v = e.to_ecs();
        assert_eq!(v["event"]["outcome"], "failure");
        assert_eq!(v["event"]["action"], "open");
        assert_eq!(v["custos"]["decision"], "deny");
        assert_eq!(v["custos"]["protected_path"], "/etc/ssh/key");
        assert_eq!(v["file"]["path"], "/tmp/link");
        assert_eq!(v["file"]["inode"], "42");
        assert_eq!(v["rule"]["name"], "ssh keys");
        assert_eq!(v["process"]["executable"], "/usr/bin/mv");
        let o = crate::to_ocsf(&v);
        assert_eq!(o["activity_id"], 14);
        assert_eq!(o["disposition_id"], 2);
    }
}
