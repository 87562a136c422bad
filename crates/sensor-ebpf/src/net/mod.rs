//! The network sensor and policy (`bpf/net.bpf.c`): connection records (TCP connect outcome,
//! accept, listen, close with bytes; UDP connect, first send, bind), DNS answers, and the
//! cgroup programs that judge `connect`, `sendmsg` and `bind` against a rule table and the
//! quarantine ([`NetControls`]).
//!
//! Kernel requirements: cgroup v2 (the programs attach to one cgroup directory and cover every
//! process below it), BTF (`tp_btf`, CO-RE), ring buffers (5.8+), `bpf_loop` (5.17+), root
//! (`bpf_get_current_task` in cgroup programs needs `CAP_PERFMON`). Accept records need
//! syscall tracepoints (tracefs); DNS needs `cgroup_skb`. What cannot load is listed by
//! [`NetSensor::missing`]; the rest keeps working. Dropping the sensor detaches everything.

mod controls;
mod record;

pub use controls::{NetControls, MAX_RULES};
pub use record::{DnsRecord, NetKind, NetRecord, NetRecordKind, NetVerdict};

use crate::{chain, ensure_tracefs, load_err, usable_parts, EbpfError, Storage};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, RingBuffer, RingBufferBuilder};
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    unsafe_op_in_unsafe_fn
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/net.skel.rs"));
}

/// The records and control structs generated from `bpf/net.h` (the single definition).
pub type RawNetEvent = skel::types::net_event;
/// See [`RawNetEvent`].
pub type RawDnsEvent = skel::types::dns_event;
/// See [`RawNetEvent`].
pub type RawNetRule = skel::types::net_rule;
/// See [`RawNetEvent`].
pub type RawNetSettings = skel::types::net_settings;
/// See [`RawNetEvent`].
pub type RawProgId = skel::types::prog_id;

/// A part of the network sensor that can be missing without the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetPart {
    /// The cgroup programs (policy, UDP and refused attempts) and TCP state changes. Required.
    Core,
    /// Accepted connections (syscall tracepoints).
    Accept,
    /// DNS answers (`cgroup_skb` ingress).
    Dns,
}

impl NetPart {
    fn programs(self) -> &'static [&'static str] {
        match self {
            NetPart::Core => &[
                "connect4", "connect6", "sendmsg4", "sendmsg6", "bind4", "bind6", "on_state",
            ],
            NetPart::Accept => &["on_accept4_exit", "on_accept_exit_plain"],
            NetPart::Dns => &["dns_in"],
        }
    }

    /// Short name for status output.
    pub fn name(self) -> &'static str {
        match self {
            NetPart::Core => "network",
            NetPart::Accept => "accept",
            NetPart::Dns => "dns",
        }
    }

    fn on_cgroup(name: &str) -> bool {
        !name.starts_with("on_")
    }
}

/// The loaded and attached network sensor.
pub struct NetSensor {
    links: Vec<Link>,
    skel: skel::NetSkel<'static>,
    _storage: Storage,
    missing: Vec<(NetPart, String)>,
    cgroup: PathBuf,
}

fn load_parts(parts: &[NetPart]) -> Result<(skel::NetSkel<'static>, Storage), EbpfError> {
    let storage = Storage::new();
    // SAFETY: the allocation lives until `storage` drops, which the caller arranges after the
    // skeleton's (returned together; on error the open skeleton is dropped first).
    let storage_ref: &'static mut MaybeUninit<libbpf_rs::OpenObject> = unsafe { &mut *storage.0 };
    let mut open = skel::NetSkelBuilder::default()
        .open(storage_ref)
        .map_err(load_err("open"))?;
    for mut p in open.open_object_mut().progs_mut() {
        let name = p.name().to_string_lossy().into_owned();
        p.set_autoload(parts.iter().any(|x| x.programs().contains(&name.as_str())));
    }
    let skel = open.load().map_err(load_err("load"))?;
    Ok((skel, storage))
}

impl NetSensor {
    /// Loads every wanted part that works here and attaches the policy programs to `cgroup`
    /// (a cgroup v2 directory). Fails only if the core cannot run.
    pub fn load(cgroup: &Path, dns: bool) -> Result<NetSensor, EbpfError> {
        let optional: &[NetPart] = if dns {
            &[NetPart::Accept, NetPart::Dns]
        } else {
            &[NetPart::Accept]
        };
        let mut loaded = None;
        let (want, missing) = usable_parts(NetPart::Core, optional, |parts| {
            load_parts(parts).map(|x| loaded = Some((parts.to_vec(), x)))
        })?;
        let (skel, storage) = match loaded {
            Some((p, x)) if p == want => x,
            _ => load_parts(&want)?,
        };
        let dir = std::fs::File::open(cgroup).map_err(|source| EbpfError::Cgroup {
            path: cgroup.to_owned(),
            source,
        })?;
        let mut sensor = NetSensor {
            links: Vec::new(),
            skel,
            _storage: storage,
            missing,
            cgroup: cgroup.to_owned(),
        };
        for part in want {
            if part == NetPart::Accept {
                ensure_tracefs();
            }
            match sensor.attach(part, dir.as_raw_fd()) {
                Ok(()) => {}
                Err(e) if part == NetPart::Core => return Err(e),
                Err(e) => sensor.missing.push((part, chain(&e))),
            }
        }
        Ok(sensor)
    }

    fn attach(&mut self, part: NetPart, cgroup_fd: i32) -> Result<(), EbpfError> {
        let mut links = Vec::new();
        for prog in self.skel.object().progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            if !part.programs().contains(&name.as_str()) {
                continue;
            }
            let link = if NetPart::on_cgroup(&name) {
                prog.attach_cgroup(cgroup_fd)
            } else {
                prog.attach()
            };
            links.push(link.map_err(load_err("attach"))?);
        }
        self.links.extend(links);
        Ok(())
    }

    /// Parts that could not be loaded or attached: "name: why".
    pub fn missing_parts(&self) -> Vec<String> {
        self.missing
            .iter()
            .map(|(p, why)| format!("{}: {why}", p.name()))
            .collect()
    }

    /// The cgroup the policy programs are attached to.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// Records the kernel could not queue (ring buffer full).
    pub fn lost(&self) -> u64 {
        self.skel.maps.bss_data.as_ref().map_or(0, |b| b.lost)
    }

    /// Handles on the policy maps, usable from any thread.
    pub fn controls(&self) -> Result<NetControls, EbpfError> {
        NetControls::new(
            &self.skel.maps.net_settings_map,
            &self.skel.maps.rules,
            &self.skel.maps.trusted,
        )
    }

    /// A reader handing every record to `f`; [`NetReader::poll`] it in a loop.
    pub fn reader<'a>(
        &'a self,
        mut f: impl FnMut(Result<NetRecordKind, crate::RecordError>) + 'a,
    ) -> Result<NetReader<'a>, EbpfError> {
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&self.skel.maps.net_events, move |data: &[u8]| {
                f(NetRecordKind::decode(data));
                0
            })
            .map_err(load_err("set up the ring buffer of"))?;
        Ok(NetReader {
            rb: builder
                .build()
                .map_err(load_err("build the ring buffer of"))?,
        })
    }
}

/// The consumer side of the network ring buffer.
pub struct NetReader<'a> {
    rb: RingBuffer<'a>,
}

impl NetReader<'_> {
    /// Waits up to `timeout` and delivers every record there. The kernel wakes the reader
    /// only when the buffer fills up: poll every 20 ms or so.
    pub fn poll(&self, timeout: Duration) -> Result<(), EbpfError> {
        crate::poll_ring(&self.rb, timeout)
    }
}
