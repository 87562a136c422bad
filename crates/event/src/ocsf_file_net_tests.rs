//! File System and Network Activity, built from hand-written ECS documents until custos has
//! file and network event types.

use super::tests::assert_common;
use super::*;

fn file_doc(action: &str, decision: Option<&str>) -> Value {
    let mut v = json!({
        "@timestamp": "2026-11-22T06:00:00.000000Z",
        "event": { "kind": "event", "category": ["file"], "type": ["change"], "action": action,
                   "module": "custos.file" },
        "process": { "pid": 9, "entity_id": "b:1:9", "executable": "/usr/bin/vi", "name": "vi" },
        "file": { "path": "/etc/passwd", "name": "passwd", "hash": { "sha256": "cd".repeat(32) },
                  "size": 1234 },
        "user": { "id": "0" },
        "custos": {},
    });
    if let Some(d) = decision {
        v["custos"]["decision"] = json!(d);
        v["event"]["outcome"] = json!(if d == "deny" { "failure" } else { "success" });
    }
    v
}

#[test]
fn file_events_are_file_system_activity() {
    let o = to_ocsf(&file_doc("modification", None));
    assert_common(&o);
    assert_eq!(o["class_uid"], 1001);
    assert_eq!(o["class_name"], "File System Activity");
    assert_eq!(o["activity_id"], 3);
    assert_eq!(o["activity_name"], "Update");
    assert_eq!(o["type_uid"], 100103);
    assert_eq!(o["file"]["path"], "/etc/passwd");
    assert_eq!(o["file"]["size"], 1234);
    assert_eq!(o["file"]["hashes"][0]["value"], "cd".repeat(32));
    assert_eq!(o["actor"]["process"]["pid"], 9);
    assert_eq!(o["actor"]["process"]["user"]["uid"], "0");

    for (action, id) in [
        ("creation", 1),
        ("deletion", 4),
        ("attributes_modified", 6),
        ("open", 14),
    ] {
        assert_eq!(
            to_ocsf(&file_doc(action, None))["activity_id"],
            id,
            "{action}"
        );
    }
    // An unknown action falls back to the ECS event type.
    let mut d = file_doc("weird", None);
    d["event"]["type"] = json!(["deletion"]);
    assert_eq!(to_ocsf(&d)["activity_id"], 4);
    d["event"]["type"] = json!(["info"]);
    let o = to_ocsf(&d);
    assert_eq!(
        (o["activity_id"].clone(), o["activity_name"].clone()),
        (json!(99), json!("weird"))
    );
}

#[test]
fn file_rename_has_a_result_and_denies_are_blocked() {
    let mut d = file_doc("rename", None);
    d["custos"]["original_path"] = json!("/tmp/staged");
    let o = to_ocsf(&d);
    assert_eq!(o["activity_id"], 5);
    assert_eq!(o["file"]["path"], "/tmp/staged");
    assert_eq!(o["file_result"]["path"], "/etc/passwd");

    let o = to_ocsf(&file_doc("open", Some("deny")));
    assert_eq!(o["action_id"], 2);
    assert_eq!(o["disposition_id"], 2);
    assert_eq!(o["severity_id"], 3);
    assert_eq!(o["status_id"], 2);
}

fn net_doc(action: &str) -> Value {
    json!({
        "@timestamp": "2026-11-22T06:00:00.000000Z",
        "event": { "kind": "event", "category": ["network"], "type": ["connection"],
                   "action": action, "module": "custos.network" },
        "process": { "pid": 9, "executable": "/usr/bin/curl", "name": "curl" },
        "source": { "ip": "10.0.0.2", "port": 40000 },
        "destination": { "ip": "93.184.216.34", "port": 443 },
        "network": { "transport": "tcp", "direction": "egress" },
        "custos": {},
    })
}

#[test]
fn network_events_are_network_activity() {
    let o = to_ocsf(&net_doc("connect"));
    assert_common(&o);
    assert_eq!(o["class_uid"], 4001);
    assert_eq!(o["category_uid"], 4);
    assert_eq!(o["category_name"], "Network Activity");
    assert_eq!(o["activity_id"], 1);
    assert_eq!(o["type_uid"], 400101);
    assert_eq!(
        o["src_endpoint"],
        json!({ "ip": "10.0.0.2", "port": 40000 })
    );
    assert_eq!(
        o["dst_endpoint"],
        json!({ "ip": "93.184.216.34", "port": 443 })
    );
    let c = &o["connection_info"];
    assert_eq!(c["direction_id"], 2);
    assert_eq!(c["direction"], "Outbound");
    assert_eq!(c["protocol_name"], "tcp");
    assert_eq!(c["protocol_num"], 6);
    assert_eq!(c["protocol_ver_id"], 4);
    assert_eq!(o["actor"]["process"]["name"], "curl");
    assert_eq!(o["metadata"]["profiles"], json!(["host"]));
    assert!(o.get("unmapped").is_none(), "everything is mapped: {o}");

    assert_eq!(to_ocsf(&net_doc("accept"))["activity_id"], 1);
    assert_eq!(to_ocsf(&net_doc("close"))["activity_id"], 2);
    assert_eq!(to_ocsf(&net_doc("traffic"))["activity_id"], 6);

    let mut d = net_doc("connect");
    d["custos"]["decision"] = json!("deny");
    d["network"] = json!({ "transport": "udp", "direction": "ingress" });
    d["destination"]["ip"] = json!("::1");
    let o = to_ocsf(&d);
    assert_eq!(o["activity_id"], 5);
    assert_eq!(o["activity_name"], "Refuse");
    assert_eq!(o["type_uid"], 400105);
    assert_eq!(o["action_id"], 2);
    assert_eq!(o["disposition_id"], 2);
    assert_eq!(o["severity_id"], 3);
    assert_eq!(o["connection_info"]["direction_id"], 1);
    assert_eq!(o["connection_info"]["protocol_num"], 17);
    assert_eq!(o["connection_info"]["protocol_ver_id"], 6);
    assert_eq!(
        o["metadata"]["profiles"],
        json!(["host", "security_control"])
    );
}
