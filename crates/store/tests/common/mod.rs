//! Events as the agent builds them, and a writer to put them in a fresh store.

#![allow(dead_code)]

use custos_event::{
    Decision, ExecEvent, ImageEvent, Mode, ProcessAction, ProcessEvent, ProcessRef, Reason,
};
use custos_store::{Retention, Writer, WriterOptions};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn ts(secs: u64) -> String {
    custos_event::timestamp(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

pub fn exec(t: u64, pid: i32, path: &str, sha: &str, decision: Decision) -> Value {
    ExecEvent {
        access: custos_event::Access::Exec,
        opener: None,
        timestamp: ts(t),
        decision,
        would_deny: false,
        reason: Reason::BinaryRule,
        rule_id: Some(1),
        mode: Mode::Monitor,
        cached: false,
        pid,
        ppid: Some(1),
        uid: Some(0),
        executable: Some(path.into()),
        sha256: Some(sha.into()),
        error: None,
        source: None,
    }
    .to_ecs()
}

pub fn process(
    t: u64,
    action: ProcessAction,
    pid: u32,
    entity: &str,
    parent: Option<(u32, &str)>,
    exe: &str,
) -> Value {
    ProcessEvent {
        timestamp: ts(t),
        action: Some(action),
        pid,
        entity_id: entity.into(),
        parent_pid: parent.map(|p| p.0),
        parent_entity_id: parent.map(|p| p.1.to_owned()),
        executable: Some(exe.into()),
        args: (action == ProcessAction::Exec).then(|| vec![exe.into(), "-x".into()]),
        exit_code: (action == ProcessAction::Exit).then_some(3),
        ..ProcessEvent::default()
    }
    .to_ecs()
}

pub fn image(t: u64, pid: u32, lib: &str) -> Value {
    ImageEvent {
        timestamp: ts(t),
        process: ProcessRef {
            pid,
            entity_id: Some(format!("b:1:{pid}")),
            executable: Some("/usr/bin/python3".into()),
        },
        path: lib.into(),
        dev_ino: (8, 99),
        ..ImageEvent::default()
    }
    .to_ecs()
}

pub fn writer(path: &Path, retention: Retention) -> Writer {
    Writer::start(WriterOptions::new(path.to_owned(), retention)).expect("writer starts")
}

pub fn write_all(path: &Path, events: Vec<Value>) {
    let w = writer(path, Retention::default());
    for e in events {
        assert!(w.send(Arc::new(e)));
    }
    assert!(w.close(Duration::from_secs(20)), "writer finished");
    assert_eq!(w.status().state, "stopped");
}

/// Polls `f` until true or `limit` passes.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
