//! `[net]`: the network sensor (connection events, DNS names) and network rules.

use crate::ConfigError;
use custos_network::{NetRule, NewNetRule, CONFIG_ID_BASE};
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;

/// `[net]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetConfig {
    /// Load the network sensor: connection events, DNS names, network rules. Default true.
    pub enabled: bool,
    /// Report DNS answers (UDP port 53) and name connections with them. Default true.
    pub dns: bool,
    /// cgroup v2 directory the policy programs attach to; default (None): the cgroup2 mount
    /// from /proc/self/mountinfo (the root cgroup: every process).
    pub cgroup: Option<PathBuf>,
    /// In lockdown, programs the verdict engine does not trust get no network. Default false.
    pub quarantine: bool,
    /// `[[net.rule]]`: rules from the config, before the stored ones.
    #[serde(deserialize_with = "rules")]
    pub rule: Vec<NewNetRule>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            enabled: true,
            dns: true,
            cgroup: None,
            quarantine: false,
            rule: Vec::new(),
        }
    }
}

impl NetConfig {
    /// The config rules with their ids: [`CONFIG_ID_BASE`] + index, in file order.
    pub fn rules(&self) -> Vec<NetRule> {
        (CONFIG_ID_BASE..)
            .zip(&self.rule)
            .map(|(id, rule)| NetRule {
                id,
                rule: rule.clone(),
            })
            .collect()
    }
}

/// Each rule parsed on its own, so an error names its index (`net.rule[2]: invalid cidr …`).
fn rules<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NewNetRule>, D::Error> {
    Vec::<toml::Value>::deserialize(d)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            NewNetRule::deserialize(v)
                .map_err(|e| serde::de::Error::custom(format!("net.rule[{i}]: {}", e.message())))
        })
        .collect()
}

/// Checks what serde cannot: each rule's `validate`, an absolute `cgroup`.
pub(crate) fn validate(
    n: &NetConfig,
    bad: &dyn Fn(&'static str, &str) -> ConfigError,
) -> Result<(), ConfigError> {
    if let Some(p) = n.cgroup.as_ref().filter(|p| !p.is_absolute()) {
        return Err(bad(
            "net.cgroup",
            &format!("{} is not an absolute path", p.display()),
        ));
    }
    for (i, r) in n.rule.iter().enumerate() {
        r.validate()
            .map_err(|e| bad("net.rule", &format!("net.rule[{i}]: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use custos_network::{Action, Direction, PortRange, Transport, CONFIG_ID_BASE};
    use std::path::Path;

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s, Path::new("/t/custos.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let n = parse("").expect("parses").net;
        assert!(n.enabled && n.dns && !n.quarantine);
        assert_eq!(n.cgroup, None);
        assert!(n.rule.is_empty() && n.rules().is_empty());
        assert_eq!(parse("[net]").expect("parses").net, n);
    }

    #[test]
    fn full_section() {
        let n = parse(
            r#"
            [net]
            enabled = true
            dns = false
            cgroup = "/sys/fs/cgroup/system.slice"
            quarantine = true
            [[net.rule]]
            action = "deny"
            cidr = "10.0.0.0/8"
            ports = "80-90"
            transport = "tcp"
            program = "/usr/bin/curl"
            audit = true
            comment = "no curl to the LAN"
            [[net.rule]]
            action = "allow"
            direction = "bind"
            ports = 22
            [[net.rule]]
            action = "deny"
            "#,
        )
        .expect("parses")
        .net;
        assert!(!n.dns && n.quarantine);
        assert_eq!(
            n.cgroup.as_deref(),
            Some(Path::new("/sys/fs/cgroup/system.slice"))
        );
        let r = &n.rule[0];
        assert_eq!((r.action, r.transport), (Action::Deny, Transport::Tcp));
        assert_eq!(r.cidr.map(|c| c.to_string()).as_deref(), Some("10.0.0.0/8"));
        assert_eq!(r.ports, Some(PortRange { lo: 80, hi: 90 }));
        assert!(r.audit);
        assert_eq!(n.rule[1].direction, Direction::Bind);
        assert_eq!(n.rule[1].ports, Some(PortRange { lo: 22, hi: 22 }));
        let ids: Vec<u64> = n.rules().iter().map(|r| r.id).collect();
        assert_eq!(
            ids,
            [CONFIG_ID_BASE, CONFIG_ID_BASE + 1, CONFIG_ID_BASE + 2]
        );
    }

    #[test]
    fn bad_rules_are_named() {
        let e = parse("[[net.rule]]\naction = \"deny\"\ncidr = \"10.1.2.3/8\"").unwrap_err();
        assert!(
            e.contains("net.rule[0]") && e.contains("the network is 10.0.0.0/8"),
            "{e}"
        );
        let e =
            parse("[[net.rule]]\naction = \"deny\"\n[[net.rule]]\naction = \"deny\"\nports = 0")
                .unwrap_err();
        assert!(e.contains("net.rule[1]") && e.contains("port 0"), "{e}");
        let e = parse("[[net.rule]]\naction = \"deny\"\nprogram = \"curl\"").unwrap_err();
        assert!(
            e.contains("`net.rule`") && e.contains("net.rule[0]") && e.contains("absolute"),
            "{e}"
        );
        let e = parse("[[net.rule]]\naction = \"deny\"\nport = \"80\"").unwrap_err();
        assert!(e.contains("net.rule[0]") && e.contains("port"), "{e}");
        let e = parse("[[net.rule]]\ncidr = \"::1\"").unwrap_err();
        assert!(e.contains("net.rule[0]") && e.contains("action"), "{e}");
        let e = parse("[net]\ncgroup = \"sys/fs/cgroup\"").unwrap_err();
        assert!(e.contains("`net.cgroup`"), "{e}");
    }

    #[test]
    fn unknown_key_refused() {
        let e = parse("[net]\nquarantined = true").unwrap_err();
        assert!(e.contains("quarantined") && e.contains("line 2"), "{e}");
    }
}
