use super::*;
use crate::{
    Decision, ExecEvent, ImageEvent, InjectEvent, LossEvent, Mode, ProcessAction, ProcessEvent,
    ProcessRef, Reason, SourceRef,
};

fn exec() -> ExecEvent {
    crate::exec::sample_exec()
}

fn proc_event(action: ProcessAction) -> ProcessEvent {
    ProcessEvent {
        timestamp: "2026-11-22T06:00:00.000000Z".into(),
        action: Some(action),
        pid: 42,
        tid: Some(42),
        entity_id: "b:1:42".into(),
        parent_pid: Some(1),
        parent_entity_id: Some("b:0:1".into()),
        ..ProcessEvent::default()
    }
}

/// Fields every converted document carries, whatever its class.
pub(super) fn assert_common(o: &Value) {
    let class = o["class_uid"].as_u64().unwrap();
    let activity = o["activity_id"].as_u64().unwrap();
    assert_eq!(
        o["type_uid"].as_u64().unwrap(),
        class * 100 + activity,
        "{o}"
    );
    assert!(
        o["class_name"].is_string() && o["category_name"].is_string(),
        "{o}"
    );
    assert!(
        o["activity_name"].is_string() && o["type_name"].is_string(),
        "{o}"
    );
    assert_eq!(o["metadata"]["version"], "1.7.0");
    assert_eq!(o["metadata"]["product"]["name"], "custos");
    assert_eq!(o["metadata"]["product"]["vendor_name"], "custos");
    assert_eq!(
        o["metadata"]["product"]["version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(o["device"]["os"]["type_id"], 200);
    assert_eq!(o["device"]["type_id"], 0);
    assert!(o["severity_id"].is_u64(), "{o}");
}

#[test]
fn exec_deny_is_a_blocked_launch() {
    let o = to_ocsf(&exec().to_ecs());
    assert_common(&o);
    assert_eq!(o["class_uid"], 1007);
    assert_eq!(o["class_name"], "Process Activity");
    assert_eq!(o["category_uid"], 1);
    assert_eq!(o["category_name"], "System Activity");
    assert_eq!(o["activity_id"], 1);
    assert_eq!(o["activity_name"], "Launch");
    assert_eq!(o["type_uid"], 100701);
    assert_eq!(o["type_name"], "Process Activity: Launch");
    assert_eq!(o["time"], 1_795_323_600_123_i64);
    assert_eq!(o["severity_id"], 3);
    assert_eq!(o["severity"], "Medium");
    assert_eq!(o["status_id"], 2);
    assert_eq!(o["status"], "Failure");
    assert_eq!(o["action_id"], 2);
    assert_eq!(o["action"], "Denied");
    assert_eq!(o["disposition_id"], 2);
    assert_eq!(o["disposition"], "Blocked");
    assert_eq!(o["launch_type_id"], 3);
    assert_eq!(o["launch_type"], "Exec");
    let p = &o["process"];
    assert_eq!(p["pid"], 42);
    assert_eq!(p["name"], "evil");
    assert_eq!(p["file"]["path"], "/tmp/x/evil");
    assert_eq!(p["file"]["name"], "evil");
    assert_eq!(p["file"]["type_id"], 1);
    let h = &p["file"]["hashes"][0];
    assert_eq!(h["algorithm_id"], 3);
    assert_eq!(h["algorithm"], "SHA-256");
    assert_eq!(h["value"], "ab".repeat(32));
    assert_eq!(p["parent_process"]["pid"], 1);
    assert_eq!(p["user"]["uid"], "1000");
    assert_eq!(o["actor"]["process"]["pid"], 1, "the creator is the parent");
    assert_eq!(o["metadata"]["log_name"], "custos.exec");
    assert_eq!(o["metadata"]["event_code"], "exec");
    assert_eq!(
        o["metadata"]["original_time"],
        "2026-11-22T05:00:00.123456Z"
    );
    assert_eq!(o["metadata"]["profiles"], json!(["security_control"]));
    assert_eq!(o["message"], "denied exec of /tmp/x/evil: binary_rule");
    let u = &o["unmapped"];
    assert_eq!(u["reason"], "binary_rule");
    assert_eq!(u["mode"], "monitor");
    assert_eq!(u["cached"], false);
    assert_eq!(u["decision"], "deny");
    assert_eq!(u["rule.id"], "7");
    // Mapped ECS leaves are not repeated.
    assert!(
        u.get("process.pid").is_none() && u.get("@timestamp").is_none(),
        "{u}"
    );
    assert!(u.get("event.reason").is_none(), "{u}");
}

#[test]
fn exec_allow_and_audit_would_deny() {
    let mut e = exec();
    e.decision = Decision::Allow;
    e.rule_id = None;
    e.ppid = None;
    let o = to_ocsf(&e.to_ecs());
    assert_eq!(o["severity_id"], 1);
    assert_eq!(o["severity"], "Informational");
    assert_eq!(o["status_id"], 1);
    assert_eq!(
        (o["action_id"].clone(), o["disposition_id"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(
        o["actor"]["process"]["pid"], 42,
        "no parent: the exec is reflexive"
    );
    assert!(o["process"].get("parent_process").is_none());
    assert!(o["unmapped"].get("rule.id").is_none());

    e.would_deny = true;
    e.mode = Mode::Audit;
    let o = to_ocsf(&e.to_ecs());
    assert_eq!(o["action_id"], 1);
    assert_eq!(o["disposition_id"], 15);
    assert_eq!(o["disposition"], "Detected");
    assert_eq!(o["severity_id"], 3);
    assert_eq!(o["unmapped"]["would_deny"], true);
}

#[test]
fn exec_source_and_error_are_kept() {
    let mut e = exec();
    e.reason = Reason::KnownBad;
    e.source = Some(SourceRef {
        name: "feeds".into(),
        detail: Some("abuse.ch".into()),
    });
    e.error = Some("read failed".into());
    let u = to_ocsf(&e.to_ecs())["unmapped"].clone();
    assert_eq!(
        u["source"],
        json!({ "name": "feeds", "detail": "abuse.ch" })
    );
    assert_eq!(u["rule.ruleset"], "feeds");
    assert_eq!(u["error.message"], "read failed");
    assert_eq!(u["reason"], "known_bad");
}

#[test]
fn process_exec_and_fork_are_launches() {
    let mut e = proc_event(ProcessAction::Exec);
    e.executable = Some("/usr/bin/ls".into());
    e.args = Some(vec!["ls".into(), "-l".into()]);
    e.uid = Some(1000);
    e.euid = Some(0);
    e.gid = Some(100);
    e.working_directory = Some("/home/u".into());
    e.start = Some("2026-11-22T05:59:59.500000Z".into());
    let o = to_ocsf(&e.to_ecs());
    assert_common(&o);
    assert_eq!(o["type_uid"], 100701);
    assert_eq!(o["launch_type_id"], 3);
    assert_eq!(o["time"], 1_795_327_200_000_i64);
    let p = &o["process"];
    assert_eq!(p["uid"], "b:1:42");
    assert_eq!(p["tid"], 42);
    assert_eq!(p["cmd_line"], "ls -l");
    assert_eq!(p["name"], "ls");
    assert_eq!(p["working_directory"], "/home/u");
    assert_eq!(p["created_time"], 1_795_327_199_500_i64);
    assert_eq!(p["parent_process"]["uid"], "b:0:1");
    assert_eq!(o["actor"]["process"]["uid"], "b:0:1");
    assert!(p["file"].get("hashes").is_none());
    assert!(o.get("action_id").is_none() && o.get("status_id").is_none());
    assert_eq!(o["severity_id"], 1);
    let u = &o["unmapped"];
    assert_eq!(u["process.args"], json!(["ls", "-l"]));
    assert_eq!(u["user.effective.id"], "0");
    assert_eq!(u["group.id"], "100");
    assert!(o["metadata"].get("profiles").is_none());

    let o = to_ocsf(&proc_event(ProcessAction::Fork).to_ecs());
    assert_eq!(o["activity_id"], 1);
    assert_eq!(o["launch_type_id"], 2);
    assert_eq!(o["launch_type"], "Fork");
    assert_eq!(o["actor"]["process"]["pid"], 1);
}

#[test]
fn exit_is_terminate() {
    let mut e = proc_event(ProcessAction::Exit);
    e.exit_code = Some(3);
    e.signal = Some(9);
    let o = to_ocsf(&e.to_ecs());
    assert_common(&o);
    assert_eq!(o["activity_id"], 2);
    assert_eq!(o["activity_name"], "Terminate");
    assert_eq!(o["type_uid"], 100702);
    assert_eq!(o["type_name"], "Process Activity: Terminate");
    assert_eq!(o["exit_code"], 3);
    assert_eq!(o["actor"]["process"]["pid"], 42, "exits are reflexive");
    assert_eq!(o["unmapped"]["signal"], 9);
    assert!(o.get("launch_type_id").is_none());
}

#[test]
fn threads_and_snapshots_are_other() {
    for action in [ProcessAction::ThreadStart, ProcessAction::ThreadEnd] {
        let mut e = proc_event(action);
        e.tid = Some(43);
        let o = to_ocsf(&e.to_ecs());
        assert_common(&o);
        assert_eq!(o["class_uid"], 1007);
        assert_eq!(o["activity_id"], 99);
        assert_eq!(o["activity_name"], action.as_str());
        assert_eq!(o["type_uid"], 100799);
        assert_eq!(o["type_name"], "Process Activity: Other");
        assert_eq!(o["process"]["tid"], 43);
    }
    let mut ecs = proc_event(ProcessAction::Exec).to_ecs();
    ecs["event"]["action"] = json!("snapshot");
    let o = to_ocsf(&ecs);
    assert_eq!(
        (o["activity_id"].clone(), o["activity_name"].clone()),
        (json!(99), json!("snapshot"))
    );
}

#[test]
fn image_load_is_module_activity() {
    let e = ImageEvent {
        timestamp: "2026-11-22T06:00:00.000000Z".into(),
        process: ProcessRef {
            pid: 5,
            entity_id: Some("b:1:5".into()),
            executable: Some("/usr/bin/python3".into()),
        },
        path: "/usr/lib/libz.so.1".into(),
        dev_ino: (8, 99),
        addr: 0x7f00,
        len: 4096,
        ..ImageEvent::default()
    };
    let o = to_ocsf(&e.to_ecs());
    assert_common(&o);
    assert_eq!(o["class_uid"], 1005);
    assert_eq!(o["class_name"], "Module Activity");
    assert_eq!(o["activity_id"], 1);
    assert_eq!(o["activity_name"], "Load");
    assert_eq!(o["type_uid"], 100501);
    let m = &o["module"];
    assert_eq!(m["file"]["path"], "/usr/lib/libz.so.1");
    assert_eq!(m["file"]["name"], "libz.so.1");
    assert_eq!(m["base_address"], "0x7f00");
    assert_eq!(m["load_type_id"], 4);
    assert_eq!(o["actor"]["process"]["uid"], "b:1:5");
    assert_eq!(o["actor"]["process"]["file"]["path"], "/usr/bin/python3");
    assert_eq!(o["unmapped"]["ino"], 99);
    assert_eq!(o["unmapped"]["len"], 4096);
    assert_eq!(o["unmapped"]["file.inode"], "99");
    assert!(o.get("process").is_none());
}

#[test]
fn load_decision_is_a_blocked_module_load() {
    let o = to_ocsf(&crate::exec::sample_load().to_ecs());
    assert_common(&o);
    assert_eq!(o["class_uid"], 1005);
    assert_eq!(
        (o["activity_id"].clone(), o["type_uid"].clone()),
        (json!(1), json!(100501))
    );
    let m = &o["module"];
    assert_eq!(m["file"]["path"], "/tmp/x/evil.so");
    assert_eq!(m["file"]["hashes"][0]["value"], "ab".repeat(32));
    assert_eq!(
        (m["load_type_id"].clone(), m["load_type"].clone()),
        (json!(1), json!("Standard"))
    );
    assert_eq!(o["actor"]["process"]["file"]["path"], "/usr/bin/python3");
    assert_eq!(o["actor"]["process"]["pid"], 42);
    // The decision: denied, blocked, as for an exec.
    assert_eq!(
        (o["action_id"].clone(), o["disposition_id"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(o["severity_id"], 3);
    assert!(o["metadata"]["profiles"]
        .as_array()
        .unwrap()
        .contains(&json!("security_control")));
    assert_eq!(
        o["message"],
        "denied load of /tmp/x/evil.so by /usr/bin/python3: mode_default"
    );
    assert_eq!(o["unmapped"]["reason"], "mode_default");
    assert!(o.get("process").is_none());
}

#[test]
fn injection_is_inject_with_source_as_actor() {
    let mut e = InjectEvent {
        timestamp: "2026-11-22T06:00:00.000000Z".into(),
        action: "ptrace_attach",
        process: ProcessRef {
            pid: 1,
            executable: Some("/usr/bin/gdb".into()),
            ..ProcessRef::default()
        },
        target: ProcessRef {
            pid: 2,
            entity_id: Some("b:1:2".into()),
            ..ProcessRef::default()
        },
        request: Some(16),
        result: -1,
        tamper: true,
    };
    let o = to_ocsf(&e.to_ecs());
    assert_common(&o);
    assert_eq!(o["class_uid"], 1007);
    assert_eq!(o["activity_id"], 4);
    assert_eq!(o["activity_name"], "Inject");
    assert_eq!(o["type_uid"], 100704);
    assert_eq!(o["process"]["pid"], 2);
    assert_eq!(o["process"]["uid"], "b:1:2");
    assert_eq!(o["actor"]["process"]["pid"], 1);
    assert_eq!(o["actor"]["process"]["name"], "gdb");
    assert_eq!(o["injection_type_id"], 99);
    assert_eq!(o["injection_type"], "ptrace_attach");
    assert_eq!(o["status_id"], 2);
    assert_eq!(o["severity_id"], 3);
    assert_eq!(o["unmapped"]["ptrace_request"], 16);
    assert_eq!(o["unmapped"]["tamper"], true);
    assert!(o["unmapped"].get("target.process.pid").is_none());

    e.tamper = false;
    e.result = 0;
    let o = to_ocsf(&e.to_ecs());
    assert_eq!(o["severity_id"], 1);
    assert_eq!(o["status_id"], 1);
}

#[test]
fn loss_metric_is_a_base_event_keeping_everything() {
    let ecs = LossEvent {
        what: crate::Loss::Records,
        timestamp: "2026-11-22T06:00:00.000000Z".into(),
        lost: 3,
        total: 10,
    }
    .to_ecs();
    let o = to_ocsf(&ecs);
    assert_common(&o);
    assert_eq!(o["class_uid"], 0);
    assert_eq!(o["class_name"], "Base Event");
    assert_eq!(o["category_uid"], 0);
    assert_eq!(o["category_name"], "Uncategorized");
    assert_eq!(o["activity_id"], 99);
    assert_eq!(o["activity_name"], "records_lost");
    assert_eq!(o["type_uid"], 99);
    assert_eq!(o["type_name"], "Base Event: Other");
    assert_eq!(o["message"], "sensor lost 3 records (10 since start)");
    assert_eq!(o["unmapped"], ecs);
    assert_eq!(o["time"], 1_795_327_200_000_i64);
    assert_eq!(o["metadata"]["profiles"], json!(["host"]));
}

#[test]
fn unknown_events_become_base_events() {
    let ecs = json!({
        "@timestamp": "2026-11-22T06:00:00Z",
        "event": { "kind": "event", "action": "usb_insert", "module": "custos.device" },
        "custos": { "serial": "X1" },
    });
    let o = to_ocsf(&ecs);
    assert_common(&o);
    assert_eq!(o["class_uid"], 0);
    assert_eq!(o["message"], "custos.device usb_insert");
    assert_eq!(o["unmapped"], ecs);
    // An unknown process action is not forced into Process Activity either.
    let mut p = proc_event(ProcessAction::Exec).to_ecs();
    p["event"]["action"] = json!("setuid");
    assert_eq!(to_ocsf(&p)["class_uid"], 0);
}

#[test]
fn unparseable_timestamp_leaves_time_out() {
    let mut e = exec();
    e.timestamp = "t".into();
    let o = to_ocsf(&e.to_ecs());
    assert!(o.get("time").is_none());
    assert_eq!(o["metadata"]["original_time"], "t");
}

#[test]
fn host_fields_fill_the_device() {
    let mut ecs = exec().to_ecs();
    ecs["host"] = json!({ "name": "ws1", "id": "abc" });
    let o = to_ocsf(&ecs);
    assert_eq!(o["device"]["hostname"], "ws1");
    assert_eq!(o["device"]["uid"], "abc");
    assert!(o["unmapped"].get("host.name").is_none());
}
