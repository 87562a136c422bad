use super::*;
use crate::{
    Decision, ExecEvent, ImageEvent, InjectEvent, LossEvent, Mode, ProcessAction, ProcessEvent,
    ProcessRef, Reason, SourceRef,
};
use serde_json::json;

fn exec() -> ExecEvent {
    crate::exec::sample_exec()
}

fn line(e: &ExecEvent) -> String {
    to_santa(&e.to_ecs()).expect("exec decisions have a line")
}

/// `key=value` pairs of a line, asserting it is one record of well-formed fields.
fn fields(line: &str) -> Vec<(String, String)> {
    assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
    line.split('|')
        .map(|f| {
            let (k, v) = f
                .split_once('=')
                .unwrap_or_else(|| panic!("field {f:?} in {line:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn field(line: &str, key: &str) -> Option<String> {
    fields(line)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[test]
fn exec_deny_line_in_santa_order() {
    let sha = "ab".repeat(32);
    assert_eq!(
        line(&exec()),
        format!(
            "action=EXEC|decision=DENY|reason=BINARY|sha256={sha}|pid=42|ppid=1|uid=1000|mode=M|path=/tmp/x/evil"
        )
    );
}

#[test]
fn user_and_group_names_only_when_present() {
    let mut ecs = exec().to_ecs();
    ecs["user"]["name"] = json!("alice");
    ecs["group"] = json!({ "id": "100", "name": "staff" });
    let l = to_santa(&ecs).unwrap();
    assert!(
        l.contains("|uid=1000|user=alice|gid=100|group=staff|mode=M|"),
        "{l}"
    );
    assert!(!line(&exec()).contains("user="));
    assert!(!line(&exec()).contains("group="));
}

#[test]
fn reasons_map_to_santa_reasons() {
    let cases = [
        (Reason::BinaryRule, "BINARY", None),
        (Reason::PathRule, "SCOPE", None),
        (Reason::ModeDefault, "UNKNOWN", None),
        (Reason::KnownBad, "BINARY", Some("known_bad")),
        (Reason::KnownGood, "BINARY", Some("known_good")),
        (Reason::Deadline, "UNKNOWN", Some("deadline")),
        (Reason::Error, "UNKNOWN", Some("error")),
        (Reason::Overload, "UNKNOWN", Some("overload")),
        (Reason::Shutdown, "UNKNOWN", Some("shutdown")),
        (Reason::KernelBlocked, "UNKNOWN", Some("kernel_blocked")),
        (Reason::Mutable, "UNKNOWN", Some("mutable")),
        (Reason::Traced, "UNKNOWN", Some("traced")),
    ];
    for (reason, santa, explain) in cases {
        let mut e = exec();
        e.reason = reason;
        let l = line(&e);
        assert_eq!(field(&l, "reason").as_deref(), Some(santa), "{l}");
        assert_eq!(field(&l, "explain").as_deref(), explain, "{l}");
    }
}

#[test]
fn explain_carries_source_error_and_would_deny() {
    let mut e = exec();
    e.reason = Reason::KnownBad;
    e.source = Some(SourceRef {
        name: "feeds".into(),
        detail: Some("abuse.ch".into()),
    });
    assert_eq!(
        field(&line(&e), "explain").unwrap(),
        "known_bad; feeds: abuse.ch"
    );

    let mut e = exec();
    e.reason = Reason::Error;
    e.error = Some("read failed".into());
    assert_eq!(field(&line(&e), "explain").unwrap(), "error; read failed");

    let mut e = exec();
    e.decision = Decision::Allow;
    e.would_deny = true;
    e.mode = Mode::Audit;
    let l = line(&e);
    assert_eq!(field(&l, "decision").unwrap(), "ALLOW");
    assert_eq!(field(&l, "explain").unwrap(), "would deny (audit)");
    assert_eq!(field(&l, "mode").unwrap(), "M");
}

#[test]
fn modes() {
    for (mode, letter) in [
        (Mode::Lockdown, "L"),
        (Mode::Monitor, "M"),
        (Mode::Audit, "M"),
    ] {
        let mut e = exec();
        e.mode = mode;
        assert_eq!(field(&line(&e), "mode").unwrap(), letter);
    }
}

#[test]
fn missing_facts_are_left_out() {
    let mut e = exec();
    e.ppid = None;
    e.uid = None;
    e.sha256 = None;
    e.executable = None;
    e.decision = Decision::Allow;
    assert_eq!(
        line(&e),
        "action=EXEC|decision=ALLOW|reason=BINARY|pid=42|mode=M"
    );
}

#[test]
fn pipes_and_newlines_cannot_break_a_line() {
    let mut e = exec();
    e.executable = Some("/tmp/a|b\nc\rd|mode=L".into());
    e.reason = Reason::KnownBad;
    e.source = Some(SourceRef {
        name: "yara".into(),
        detail: Some("rule|x\ny".into()),
    });
    let l = line(&e);
    let f = fields(&l);
    let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "action", "decision", "reason", "explain", "sha256", "pid", "ppid", "uid", "mode",
            "path"
        ]
    );
    assert_eq!(
        field(&l, "path").unwrap(),
        "/tmp/a<pipe>b\\nc\\rd<pipe>mode=L"
    );
    assert_eq!(field(&l, "mode").unwrap(), "M");
    assert_eq!(
        field(&l, "explain").unwrap(),
        "known_bad; yara: rule<pipe>x\\ny"
    );

    // The same holds for file lines and the file-log prefix.
    let mut d = file_doc("rename");
    d["custos"]["original_path"] = json!("/x|y\n");
    let l = to_santa_file_line(&d).unwrap();
    assert_eq!(l.lines().count(), 1);
    assert!(l.contains("|path=/x<pipe>y\\n|newpath=/etc/passwd|"), "{l}");
}

#[test]
fn fork_and_exit_lines() {
    let mut e = ProcessEvent {
        timestamp: "2026-11-22T06:00:00.000000Z".into(),
        action: Some(ProcessAction::Fork),
        pid: 43,
        entity_id: "b:1:43".into(),
        parent_pid: Some(42),
        uid: Some(1000),
        gid: Some(100),
        ..ProcessEvent::default()
    };
    assert_eq!(
        to_santa(&e.to_ecs()).unwrap(),
        "action=FORK|pid=43|ppid=42|uid=1000|gid=100"
    );
    e.action = Some(ProcessAction::Exit);
    e.exit_code = Some(1);
    assert_eq!(
        to_santa(&e.to_ecs()).unwrap(),
        "action=EXIT|pid=43|ppid=42|uid=1000|gid=100"
    );
    e.uid = None;
    e.gid = None;
    e.parent_pid = None;
    assert_eq!(to_santa(&e.to_ecs()).unwrap(), "action=EXIT|pid=43");
}

#[test]
fn events_santa_does_not_log_have_no_line() {
    for action in [
        ProcessAction::Exec,
        ProcessAction::ThreadStart,
        ProcessAction::ThreadEnd,
    ] {
        let e = ProcessEvent {
            action: Some(action),
            pid: 1,
            ..ProcessEvent::default()
        };
        assert_eq!(to_santa(&e.to_ecs()), None, "{action:?}");
    }
    let image = ImageEvent {
        path: "/usr/lib/libz.so.1".into(),
        ..ImageEvent::default()
    };
    assert_eq!(to_santa(&image.to_ecs()), None);
    // A judged library load: Santa does not judge libraries.
    assert_eq!(to_santa(&crate::exec::sample_load().to_ecs()), None);
    let inject = InjectEvent {
        action: "ptrace_attach",
        process: ProcessRef {
            pid: 1,
            ..ProcessRef::default()
        },
        ..InjectEvent::default()
    };
    assert_eq!(to_santa(&inject.to_ecs()), None);
    let loss = LossEvent {
        what: crate::Loss::Records,
        timestamp: "t".into(),
        lost: 1,
        total: 1,
    };
    assert_eq!(to_santa(&loss.to_ecs()), None);
    // santad logs no network flows or DNS answers.
    assert_eq!(to_santa(&crate::net::tests::connect().to_ecs()), None);
    assert_eq!(to_santa(&crate::net::tests::dns().to_ecs()), None);
    assert_eq!(to_santa(&json!({})), None);
    assert_eq!(to_santa(&file_doc("open")), None);
}

fn file_doc(action: &str) -> Value {
    json!({
        "@timestamp": "2026-11-22T06:00:00.000000Z",
        "event": { "kind": "event", "category": ["file"], "action": action, "module": "custos.file" },
        "process": { "pid": 9, "executable": "/usr/bin/vi", "name": "vi", "parent": { "pid": 8 } },
        "file": { "path": "/etc/passwd" },
        "user": { "id": "0", "name": "root" },
        "group": { "id": "0" },
        "custos": {},
    })
}

#[test]
fn file_access_lines() {
    let tail = "|pid=9|ppid=8|process=vi|processpath=/usr/bin/vi|uid=0|user=root|gid=0";
    assert_eq!(
        to_santa(&file_doc("modification")).unwrap(),
        format!("action=WRITE|path=/etc/passwd{tail}")
    );
    assert_eq!(
        to_santa(&file_doc("deletion")).unwrap(),
        format!("action=DELETE|path=/etc/passwd{tail}")
    );

    let mut d = file_doc("rename");
    d["custos"]["original_path"] = json!("/tmp/staged");
    assert_eq!(
        to_santa(&d).unwrap(),
        format!("action=RENAME|path=/tmp/staged|newpath=/etc/passwd{tail}")
    );
    // Without the old name the field is there, as Santa writes an unknown destination.
    assert!(to_santa(&file_doc("rename"))
        .unwrap()
        .starts_with("action=RENAME|path=(null)|newpath=/etc/passwd|"));

    for none in ["creation", "attributes_modified", "open"] {
        assert_eq!(to_santa(&file_doc(none)), None, "{none}");
    }

    // No path, no line.
    let mut d = file_doc("modification");
    d["file"] = json!({});
    assert_eq!(to_santa(&d), None);
}

#[test]
fn file_log_prefix_as_santad_writes_it() {
    let l = to_santa_file_line(&exec().to_ecs()).unwrap();
    assert!(
        l.starts_with("[2026-11-22T05:00:00.123Z] I santad: action=EXEC|decision=DENY|"),
        "{l}"
    );
    assert_eq!(to_santa_file_line(&LossEvent::default().to_ecs()), None);
}
