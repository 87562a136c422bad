//! The network policy's maps: the rule tables, the settings and the trusted programs.

use super::{RawNetRule, RawNetSettings, RawProgId};
use crate::{kernel_dev, EbpfError};
use custos_network::rules::{HOOK_BIND, HOOK_OUT};
use custos_network::KernelRule;
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use std::sync::Mutex;

// SAFETY: plain C structs of integers with explicit padding; any bit pattern is valid.
unsafe impl plain::Plain for RawNetRule {}
// SAFETY: as above.
unsafe impl plain::Plain for RawNetSettings {}
// SAFETY: as above.
unsafe impl plain::Plain for RawProgId {}

/// Rules per table (`CUSTOS_NET_RULES` in bpf/net.h).
pub const MAX_RULES: usize = 256;

fn bytes<T: plain::Plain>(t: &T) -> &[u8] {
    // SAFETY: the structs of bpf/net.h are integers with explicit padding fields, so every
    // byte is initialised.
    unsafe { plain::as_bytes(t) }
}

fn map_err(map: &'static str) -> impl FnOnce(libbpf_rs::Error) -> EbpfError {
    move |source| EbpfError::Map { map, source }
}

/// The kernel form of one rule.
fn raw_rule(r: &KernelRule) -> RawNetRule {
    let (prog_dev, prog_ino) = r
        .program
        .map_or((0, 0), |(dev, ino)| (u64::from(kernel_dev(dev)), ino));
    debug_assert!(r.hooks & !(HOOK_OUT | HOOK_BIND) == 0);
    RawNetRule {
        id: r.id,
        prog_dev,
        prog_ino,
        addr: r.addr,
        family: r.family,
        prefix: r.prefix,
        protocol: r.protocol,
        hooks: r.hooks,
        deny: r.deny.into(),
        audit: r.audit.into(),
        port_lo: r.port_lo,
        port_hi: r.port_hi,
        ..RawNetRule::default()
    }
}

/// Handles on the policy maps, usable from any thread.
pub struct NetControls {
    settings: MapHandle,
    rules: MapHandle,
    trusted: MapHandle,
    /// The settings as last written (user space is their only writer).
    current: Mutex<RawNetSettings>,
}

impl std::fmt::Debug for NetControls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetControls").finish_non_exhaustive()
    }
}

impl NetControls {
    pub(crate) fn new(
        settings: &libbpf_rs::Map<'_>,
        rules: &libbpf_rs::Map<'_>,
        trusted: &libbpf_rs::Map<'_>,
    ) -> Result<NetControls, EbpfError> {
        let h = |m, name| MapHandle::try_from(m).map_err(map_err(name));
        let c = NetControls {
            settings: h(settings, "net_settings_map")?,
            rules: h(rules, "rules")?,
            trusted: h(trusted, "trusted")?,
            current: Mutex::new(RawNetSettings {
                enforce: 1,
                self_tgid: std::process::id(),
                ..RawNetSettings::default()
            }),
        };
        c.write(|_| {})?;
        Ok(c)
    }

    fn write(&self, f: impl FnOnce(&mut RawNetSettings)) -> Result<(), EbpfError> {
        let mut s = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = *s;
        f(&mut next);
        self.settings
            .update(&0u32.to_ne_bytes(), bytes(&next), MapFlags::ANY)
            .map_err(map_err("net_settings_map"))?;
        *s = next;
        Ok(())
    }

    /// Replaces the rule table: the idle table is filled, then made live in one settings
    /// write, so no program ever matches against half of the old and half of the new set.
    pub fn set_rules(&self, rules: &[KernelRule]) -> Result<(), EbpfError> {
        if rules.len() > MAX_RULES {
            return Err(EbpfError::TooManyRules {
                count: rules.len(),
                max: MAX_RULES,
            });
        }
        // Rule changes are serialised by the caller; the table choice is ours.
        let idle = 1 - (self.current.lock().unwrap_or_else(|p| p.into_inner()).table & 1);
        for (i, r) in rules.iter().enumerate() {
            let key = idle * MAX_RULES as u32 + i as u32;
            self.rules
                .update(&key.to_ne_bytes(), bytes(&raw_rule(r)), MapFlags::ANY)
                .map_err(map_err("rules"))?;
        }
        self.write(|s| {
            s.count[idle as usize] = rules.len() as u32;
            s.table = idle;
        })
    }

    /// Audit mode (`enforce` false) turns every deny into an audit; `quarantine` denies
    /// programs that are not trusted.
    pub fn set_mode(&self, enforce: bool, quarantine: bool) -> Result<(), EbpfError> {
        self.write(|s| {
            s.enforce = enforce.into();
            s.quarantine = quarantine.into();
        })
    }

    /// Marks the program file (`st_dev`, inode) trusted or not for the quarantine.
    pub fn set_trusted(&self, st_dev: u64, ino: u64, trusted: bool) -> Result<(), EbpfError> {
        let key = RawProgId {
            dev: u64::from(kernel_dev(st_dev)),
            ino,
        };
        let r = if trusted {
            self.trusted.update(bytes(&key), &[1u8], MapFlags::ANY)
        } else {
            match self.trusted.delete(bytes(&key)) {
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
                r => r,
            }
        };
        r.map_err(map_err("trusted"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_rule_carries_the_kernel_dev() {
        let st_dev = libc::makedev(8, 1);
        let r = raw_rule(&KernelRule {
            id: 9,
            family: 4,
            prefix: 8,
            port_lo: 80,
            port_hi: 80,
            protocol: 6,
            hooks: HOOK_OUT,
            program: Some((st_dev, 1234)),
            deny: true,
            ..KernelRule::default()
        });
        assert_eq!(r.prog_dev, (8 << 20) | 1);
        assert_eq!(r.prog_ino, 1234);
        assert_eq!((r.deny, r.audit, r.hooks), (1, 0, 1));
    }
}
