//! Root-only: eBPF process telemetry from `custos run` into the event output.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

fn telemetry_events(sb: &Sandbox, pid: u32, action: &str) -> Vec<Value> {
    sb.events_at_least(0)
        .into_iter()
        .filter(|e| {
            e["event"]["module"] == "custos.process"
                && e["event"]["action"] == action
                && e["process"]["pid"] == pid
        })
        .collect()
}

fn wait_event(sb: &Sandbox, pid: u32, action: &str) -> Value {
    let mut found = None;
    wait_until(
        Duration::from_secs(10),
        format!("no {action} event for {pid}"),
        || {
            found = telemetry_events(sb, pid, action).pop();
            found.is_some()
        },
    );
    found.unwrap()
}

#[test]
fn process_telemetry_reports_fork_exec_and_exit_with_one_entity_id() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("monitor", "[telemetry]\nprocess = true\n");
    wait_until(
        Duration::from_secs(10),
        "process telemetry not running",
        || sb.status()["telemetry"]["process"] == "running",
    );
    let prog = sb.install("/bin/true", "tele");
    let child = std::process::Command::new(&prog)
        .args(["--x", "y z"])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());

    let exec = wait_event(&sb, pid, "exec");
    assert_eq!(exec["process"]["executable"], prog.to_str().unwrap());
    assert_eq!(
        exec["process"]["args"],
        serde_json::json!([prog.to_str().unwrap(), "--x", "y z"])
    );
    assert_eq!(exec["process"]["parent"]["pid"], std::process::id());
    assert_eq!(exec["user"]["id"], "0");
    let entity = exec["process"]["entity_id"].as_str().unwrap().to_owned();
    assert!(entity.ends_with(&format!(":{pid}")), "{entity}");
    assert!(exec["process"]["parent"]["entity_id"].is_string());
    assert!(exec["process"]["start"].is_string());
    assert_eq!(
        exec["process"]["working_directory"],
        std::env::current_dir().unwrap().to_str().unwrap()
    );
    // The libraries it mapped, attributed to the same entity.
    let mut libc = None;
    wait_until(Duration::from_secs(10), "no image_load of libc", || {
        libc = sb.events_at_least(0).into_iter().find(|e| {
            e["event"]["action"] == "image_load"
                && e["process"]["pid"] == pid
                && e["dll"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("libc.so"))
        });
        libc.is_some()
    });
    assert_eq!(libc.unwrap()["process"]["entity_id"], entity.as_str());

    let fork = wait_event(&sb, pid, "fork");
    assert_eq!(
        fork["process"]["entity_id"],
        entity.as_str(),
        "same process across exec"
    );
    let exit = wait_event(&sb, pid, "exit");
    assert_eq!(exit["process"]["entity_id"], entity.as_str());
    assert_eq!(exit["process"]["exit_code"], 0);
    assert_eq!(exit["event"]["type"][0], "end");

    // The exec decision for the same program is there too, from the fanotify loop.
    assert!(!sb.events_of(&prog, 1).is_empty());
    let t = sb.status()["telemetry"].clone();
    assert!(t["records"].as_u64().unwrap() >= 3, "{t}");
    assert_eq!(t["lost"], 0, "{t}");
}

#[test]
fn process_telemetry_can_be_switched_off() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("monitor", "[telemetry]\nprocess = false\n");
    assert_eq!(sb.status()["telemetry"]["process"], "off");
    assert_runs(&sb.install("/bin/true", "t"));
    let e = sb.events_at_least(1);
    assert!(e.iter().all(|e| e["event"]["module"] != "custos.process"));
}
