//! File System, Network and DNS Activity: from hand-written ECS documents (what any producer
//! of these modules may write) and from custos's own network events.

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
    assert!(o.get("traffic").is_none() && o.get("firewall_rule").is_none());

    for (action, id, name) in [
        ("accept", 1, "Open"),
        ("close", 2, "Close"),
        ("send", 6, "Traffic"),
        ("listen", 7, "Listen"),
        ("bind", 99, "Bind"),
        ("weird", 99, "weird"),
    ] {
        let o = to_ocsf(&net_doc(action));
        assert_common(&o);
        assert_eq!(
            (o["activity_id"].clone(), o["activity_name"].clone()),
            (json!(id), json!(name)),
            "{action}"
        );
    }
    assert_eq!(
        to_ocsf(&net_doc("bind"))["type_name"],
        "Network Activity: Other"
    );

    // A connect that failed without a deny: Fail.
    let mut d = net_doc("connect");
    d["event"]["outcome"] = json!("failure");
    d["error"] = json!({ "message": "refused or unreachable" });
    let o = to_ocsf(&d);
    assert_eq!(o["activity_id"], 4);
    assert_eq!(o["status_id"], 2);
    assert_eq!(o["status_detail"], "refused or unreachable");

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

#[test]
fn custos_network_events_map_bytes_names_and_rules() {
    use crate::net::tests::connect;
    use crate::{Decision, NetAction, NetPolicy, NetworkEvent};

    let close = NetworkEvent {
        action: NetAction::Close,
        bytes_out: Some(100),
        bytes_in: Some(5000),
        ..connect()
    };
    let o = to_ocsf(&close.to_ecs());
    assert_common(&o);
    assert_eq!(o["activity_id"], 2);
    assert_eq!(
        o["traffic"],
        json!({ "bytes_out": 100, "bytes_in": 5000, "bytes": 5100 })
    );
    assert_eq!(o["dst_endpoint"]["hostname"], "example.com");
    assert_eq!(o["connection_info"]["direction_id"], 0);
    assert!(o.get("unmapped").is_none(), "everything is mapped: {o}");

    let policy = NetPolicy {
        decision: Decision::Deny,
        would_deny: false,
        rule_id: Some(7),
        rule_name: Some("no smtp".into()),
        quarantine: false,
    };
    let denied = NetworkEvent {
        success: Some(false),
        error: Some("denied by network rule".into()),
        policy: Some(policy.clone()),
        ..connect()
    };
    let o = to_ocsf(&denied.to_ecs());
    assert_eq!(o["activity_id"], 5);
    assert_eq!(o["firewall_rule"], json!({ "uid": "7", "name": "no smtp" }));
    assert_eq!(
        (o["action_id"].clone(), o["disposition_id"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(o["unmapped"]["decision"], "deny");
    assert_eq!(o["unmapped"]["rule.ruleset"], "network");

    let audit = NetworkEvent {
        policy: Some(NetPolicy {
            decision: Decision::Allow,
            would_deny: true,
            ..policy.clone()
        }),
        ..connect()
    };
    let o = to_ocsf(&audit.to_ecs());
    assert_eq!(o["activity_id"], 1);
    assert_eq!(
        (o["action_id"].clone(), o["disposition_id"].clone()),
        (json!(1), json!(15))
    );
    assert_eq!(o["severity_id"], 3);

    let quarantined = NetworkEvent {
        policy: Some(NetPolicy {
            rule_id: None,
            rule_name: None,
            quarantine: true,
            ..policy
        }),
        ..connect()
    };
    let o = to_ocsf(&quarantined.to_ecs());
    assert_eq!(o["activity_id"], 5);
    assert_eq!(
        (o["action_id"].clone(), o["disposition_id"].clone()),
        (json!(2), json!(4))
    );
    assert_eq!(o["disposition"], "Isolated");
    assert!(o.get("firewall_rule").is_none());
}

#[test]
fn dns_answers_are_dns_activity() {
    use crate::net::tests::dns;
    use crate::DnsEvent;

    let o = to_ocsf(&dns().to_ecs());
    assert_common(&o);
    assert_eq!(o["class_uid"], 4003);
    assert_eq!(o["class_name"], "DNS Activity");
    assert_eq!(o["category_uid"], 4);
    assert_eq!(o["activity_id"], 2);
    assert_eq!(o["activity_name"], "Response");
    assert_eq!(o["type_uid"], 400302);
    assert_eq!(o["query"], json!({ "hostname": "www.example.com" }));
    assert_eq!(
        o["answers"][0],
        json!({ "rdata": "edge.example.net", "type": "CNAME" })
    );
    assert_eq!(
        o["answers"][1],
        json!({ "rdata": "93.184.216.34", "type": "A", "ttl": 300 })
    );
    assert_eq!(
        (o["rcode_id"].clone(), o["rcode"].clone()),
        (json!(0), json!("NoError"))
    );
    assert_eq!(o["dst_endpoint"], json!({ "ip": "127.0.0.53", "port": 53 }));
    assert_eq!(o["connection_info"]["protocol_num"], 17);
    assert_eq!(o["actor"]["process"]["pid"], 9);
    assert_eq!(o["metadata"]["profiles"], json!(["host"]));
    assert!(o.get("unmapped").is_none(), "everything is mapped: {o}");

    for (rcode, id, name) in [
        (3, 3, "NXDomain"),
        (5, 5, "Refused"),
        (9, 9, "NotAuth"),
        (13, 24, "Unassigned"),
    ] {
        let o = to_ocsf(&DnsEvent { rcode, ..dns() }.to_ecs());
        assert_eq!(
            (o["rcode_id"].clone(), o["rcode"].clone()),
            (json!(id), json!(name))
        );
    }
    let mut d = dns().to_ecs();
    d["dns"]["response_code"] = json!("77");
    let o = to_ocsf(&d);
    assert_eq!(
        (o["rcode_id"].clone(), o["rcode"].clone()),
        (json!(99), json!("77"))
    );
    let o = to_ocsf(
        &DnsEvent {
            truncated: true,
            ..dns()
        }
        .to_ecs(),
    );
    assert_eq!(o["unmapped"]["dns_truncated"], true);
}
