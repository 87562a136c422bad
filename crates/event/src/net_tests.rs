use super::*;
use crate::ProcessRef;

fn actor() -> Actor {
    Actor {
        process: ProcessRef {
            pid: 9,
            entity_id: Some("b:1:9".into()),
            executable: Some("/usr/bin/curl".into()),
        },
        uid: Some(1000),
    }
}

fn ep(ip: &str, port: u16) -> Endpoint {
    Endpoint {
        ip: Some(ip.parse().expect("ip")),
        port,
        domain: None,
    }
}

pub(crate) fn connect() -> NetworkEvent {
    NetworkEvent {
        timestamp: "2026-11-22T06:00:00.000000Z".into(),
        action: NetAction::Connect,
        transport: NetTransport::Tcp,
        source: ep("10.0.0.2", 40000),
        destination: Endpoint {
            domain: Some("example.com".into()),
            ..ep("93.184.216.34", 443)
        },
        success: Some(true),
        error: None,
        bytes_out: None,
        bytes_in: None,
        policy: None,
        actor: actor(),
    }
}

fn deny() -> NetPolicy {
    NetPolicy {
        decision: Decision::Deny,
        would_deny: false,
        rule_id: Some(7),
        rule_name: Some("no smtp".into()),
        quarantine: false,
    }
}

#[test]
fn connect_names_both_ends() {
    let v = connect().to_ecs();
    assert_eq!(v["event"]["module"], "custos.network");
    assert_eq!(v["event"]["category"], json!(["network"]));
    assert_eq!(v["event"]["type"], json!(["connection", "start"]));
    assert_eq!(v["event"]["action"], "connect");
    assert_eq!(v["event"]["outcome"], "success");
    assert_eq!(v["source"], json!({ "ip": "10.0.0.2", "port": 40000 }));
    assert_eq!(
        v["destination"],
        json!({ "ip": "93.184.216.34", "port": 443, "domain": "example.com" })
    );
    assert_eq!(
        v["network"],
        json!({ "transport": "tcp", "type": "ipv4", "direction": "egress" })
    );
    assert_eq!(v["process"]["name"], "curl");
    assert_eq!(v["user"]["id"], "1000");
    assert!(v.get("rule").is_none() && v.get("custos").is_none(), "{v}");
    assert!(v.get("error").is_none());
}

#[test]
fn types_and_directions_per_action() {
    for (a, types, dir) in [
        (
            NetAction::Accept,
            json!(["connection", "start"]),
            json!("ingress"),
        ),
        (NetAction::Close, json!(["connection", "end"]), Value::Null),
        (NetAction::Listen, json!(["start"]), json!("ingress")),
        (NetAction::Bind, json!(["start"]), json!("ingress")),
        (NetAction::Send, json!(["connection"]), json!("egress")),
    ] {
        let e = NetworkEvent {
            action: a,
            success: None,
            ..connect()
        };
        let v = e.to_ecs();
        assert_eq!(v["event"]["action"], a.as_str());
        assert_eq!(v["event"]["type"], types, "{a:?}");
        assert_eq!(v["network"]["direction"], dir, "{a:?}");
        assert_eq!(v["event"]["outcome"], "unknown");
    }
}

#[test]
fn bytes_follow_who_is_the_source() {
    let close = NetworkEvent {
        action: NetAction::Close,
        bytes_out: Some(100),
        bytes_in: Some(5000),
        ..connect()
    };
    let v = close.to_ecs();
    assert_eq!(v["source"]["bytes"], 100);
    assert_eq!(v["destination"]["bytes"], 5000);
    assert_eq!(v["network"]["bytes"], 5100);
    // On accept the remote client is the source: it sent what this host received.
    let accept = NetworkEvent {
        action: NetAction::Accept,
        ..close
    };
    let v = accept.to_ecs();
    assert_eq!(v["source"]["bytes"], 5000);
    assert_eq!(v["destination"]["bytes"], 100);
    assert!(connect().to_ecs()["network"].get("bytes").is_none());
}

#[test]
fn policy_deny_and_failure() {
    let e = NetworkEvent {
        destination: ep("2001:db8::1", 25),
        success: Some(false),
        error: Some("denied by network rule".into()),
        policy: Some(deny()),
        ..connect()
    };
    let v = e.to_ecs();
    assert_eq!(v["event"]["type"], json!(["connection", "start", "denied"]));
    assert_eq!(v["event"]["outcome"], "failure");
    assert_eq!(v["error"]["message"], "denied by network rule");
    assert_eq!(v["network"]["type"], "ipv6");
    assert_eq!(v["custos"]["decision"], "deny");
    assert_eq!(v["custos"]["would_deny"], false);
    assert!(v["custos"].get("quarantine").is_none());
    assert_eq!(
        v["rule"],
        json!({ "id": "7", "name": "no smtp", "ruleset": "network" })
    );

    // Audit: allowed, would deny; a deny with nothing else known is still a failure.
    let audit = NetPolicy {
        decision: Decision::Allow,
        would_deny: true,
        ..deny()
    };
    let v = NetworkEvent {
        policy: Some(audit),
        ..connect()
    }
    .to_ecs();
    assert_eq!(v["event"]["type"][2], "allowed");
    assert_eq!(v["event"]["outcome"], "success");
    assert_eq!(v["custos"]["would_deny"], true);
    let quarantined = NetPolicy {
        rule_id: None,
        rule_name: None,
        quarantine: true,
        ..deny()
    };
    let v = NetworkEvent {
        action: NetAction::Send,
        transport: NetTransport::Udp,
        success: None,
        policy: Some(quarantined),
        ..connect()
    }
    .to_ecs();
    assert_eq!(v["event"]["outcome"], "failure");
    assert_eq!(v["custos"]["quarantine"], true);
    assert!(v.get("rule").is_none());
    assert_eq!(v["network"]["transport"], "udp");
}

pub(crate) fn dns() -> DnsEvent {
    DnsEvent {
        timestamp: "2026-11-22T06:00:00.000000Z".into(),
        server: ep("127.0.0.53", 53),
        question: "www.example.com".into(),
        rcode: 0,
        addresses: vec![
            ("93.184.216.34".parse().expect("ip"), 300),
            ("2606:2800:220:1::1".parse().expect("ip"), 60),
        ],
        cnames: vec!["edge.example.net".into()],
        truncated: false,
        actor: actor(),
    }
}

#[test]
fn dns_answer_lists_addresses() {
    let v = dns().to_ecs();
    assert_eq!(v["event"]["action"], "dns_answer");
    assert_eq!(v["event"]["module"], "custos.network");
    assert_eq!(v["event"]["type"], json!(["protocol", "info"]));
    assert_eq!(v["dns"]["type"], "answer");
    assert_eq!(v["dns"]["question"]["name"], "www.example.com");
    assert_eq!(v["dns"]["response_code"], "NOERROR");
    assert_eq!(
        v["dns"]["resolved_ip"],
        json!(["93.184.216.34", "2606:2800:220:1::1"])
    );
    let a = &v["dns"]["answers"];
    assert_eq!(
        a[0],
        json!({ "name": "www.example.com", "type": "CNAME", "data": "edge.example.net" })
    );
    assert_eq!(
        a[1],
        json!({ "name": "edge.example.net", "type": "A", "ttl": 300, "data": "93.184.216.34" })
    );
    assert_eq!(a[2]["type"], "AAAA");
    assert_eq!(v["source"], json!({ "ip": "127.0.0.53", "port": 53 }));
    assert_eq!(v["network"]["protocol"], "dns");
    assert_eq!(v["network"]["transport"], "udp");
    assert_eq!(v["network"]["type"], "ipv4");
    assert_eq!(v["process"]["pid"], 9);
    assert!(v.get("custos").is_none());
}

#[test]
fn dns_codes_truncation_and_unknown_process() {
    for (rcode, name) in [(3, "NXDOMAIN"), (5, "REFUSED"), (2, "SERVFAIL"), (13, "13")] {
        let e = DnsEvent { rcode, ..dns() };
        assert_eq!(e.to_ecs()["dns"]["response_code"], name);
    }
    let e = DnsEvent {
        truncated: true,
        addresses: vec![],
        cnames: vec![],
        actor: Actor::default(),
        ..dns()
    };
    let v = e.to_ecs();
    assert_eq!(v["custos"]["dns_truncated"], true);
    assert_eq!(v["dns"]["answers"], json!([]));
    assert!(v.get("process").is_none() && v.get("user").is_none(), "{v}");
}
