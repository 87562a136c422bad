//! The eBPF process sensor (`bpf/process.bpf.c`): a [`Record`] per exec (resolved path, argv,
//! cwd, walked in the kernel so they are complete even for a process that is gone when user
//! space reads them), per new process or thread, per exit, per executable mapping (image load)
//! and per injection attempt (ptrace, `process_vm_writev`). With [`Controls`] it also holds
//! execs fanotify cannot see ([`HeldProcess`]) and kills known-blocked files in the kernel.
//!
//! Kernel requirements: BTF at `/sys/kernel/btf/vmlinux`, BPF ring buffers (5.8+), `tp_btf`
//! programs (5.5+), `bpf_loop` (5.17+), `CAP_BPF` + `CAP_PERFMON` + `CAP_KILL` (or root).
//! Image and injection events also need syscall tracepoints and tracefs (mounted on demand).
//! What cannot load is listed by [`ProcessSensor::missing`]; the rest keeps working.

mod controls;
mod hold;
pub mod net;
mod record;

pub use controls::{kernel_dev, Controls, HoldScope};
pub use hold::{answer_untaken, resume_all_held, HeldProcess, HoldError};
pub use record::{
    ExecRecord, ExitRecord, ExitStatus, ForkRecord, HoldState, ImageRecord, InjectKind,
    InjectRecord, Record, RecordError,
};

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, RingBuffer, RingBufferBuilder};
use std::mem::MaybeUninit;
use std::time::Duration;

#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    unsafe_op_in_unsafe_fn
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/process.skel.rs"));
}

/// The record types generated from `bpf/process.h` (the single definition).
pub type RawExecEvent = skel::types::exec_event;
/// See [`RawExecEvent`].
pub type RawForkEvent = skel::types::fork_event;
/// See [`RawExecEvent`].
pub type RawExitEvent = skel::types::exit_event;
/// See [`RawExecEvent`].
pub type RawImageEvent = skel::types::image_event;
/// See [`RawExecEvent`].
pub type RawInjectEvent = skel::types::inject_event;
/// See [`RawExecEvent`].
pub type RawSettings = skel::types::settings;
/// See [`RawExecEvent`].
pub type RawFileId = skel::types::file_id;
/// See [`RawExecEvent`].
pub type RawBlockedFile = skel::types::blocked_file;
/// See [`RawExecEvent`].
pub type RawHeldExec = skel::types::held_exec;

// SAFETY: plain C structs of integers and byte arrays; any bit pattern is valid.
unsafe impl plain::Plain for RawExecEvent {}
// SAFETY: as above.
unsafe impl plain::Plain for RawForkEvent {}
// SAFETY: as above.
unsafe impl plain::Plain for RawExitEvent {}
// SAFETY: as above.
unsafe impl plain::Plain for RawImageEvent {}
// SAFETY: as above.
unsafe impl plain::Plain for RawInjectEvent {}

/// Errors loading or running the sensor.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// Opening, loading or attaching the BPF object failed.
    #[error("cannot {step} the process sensor")]
    Load {
        /// Which step.
        step: &'static str,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// Polling the ring buffer failed.
    #[error("polling the process sensor's ring buffer failed")]
    Poll(#[source] libbpf_rs::Error),
    /// More network rules than the kernel table holds.
    #[error("{count} network rules; the kernel table holds {max}")]
    TooManyRules {
        /// Rules given.
        count: usize,
        /// The table size.
        max: usize,
    },
    /// The cgroup to attach the network policy to cannot be opened.
    #[error("cannot open cgroup {path}")]
    Cgroup {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Updating a control map failed.
    #[error("cannot update the {map} map")]
    Map {
        /// Which map.
        map: &'static str,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
}

pub(crate) fn load_err(step: &'static str) -> impl FnOnce(libbpf_rs::Error) -> EbpfError {
    move |source| EbpfError::Load { step, source }
}

/// A part of the sensor that can be missing without the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// exec, fork, thread and exit records, holds and in-kernel kills. Required.
    Process,
    /// Executable mappings (`mmap` with `PROT_EXEC`).
    Images,
    /// ptrace and `process_vm_writev`.
    Injection,
    /// Killing a held exec that someone else resumed with `SIGCONT`.
    HoldGuard,
}

impl Part {
    const OPTIONAL: [Part; 3] = [Part::Images, Part::Injection, Part::HoldGuard];

    fn programs(self) -> &'static [&'static str] {
        match self {
            Part::Process => &["on_exec", "on_fork", "on_exit"],
            Part::Images => &["on_mmap_enter", "on_mmap_exit"],
            Part::Injection => &[
                "on_ptrace_enter",
                "on_ptrace_exit",
                "on_vm_write_enter",
                "on_vm_write_exit",
            ],
            Part::HoldGuard => &["on_signal"],
        }
    }

    /// Short name for status output.
    pub fn name(self) -> &'static str {
        match self {
            Part::Process => "process",
            Part::Images => "images",
            Part::Injection => "injection",
            Part::HoldGuard => "hold-guard",
        }
    }

    fn uses_tracefs(self) -> bool {
        matches!(self, Part::Images | Part::Injection)
    }
}

/// A part that is not running, and why.
#[derive(Debug, Clone)]
pub struct Missing {
    /// Which part.
    pub part: Part,
    /// The error, with its causes.
    pub why: String,
}

pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}

/// The memory a skeleton borrows for its whole life: a heap allocation owned through a raw
/// pointer (moving this struct never asserts uniqueness over the borrowed memory, as moving a
/// `Box` would), freed on drop, which must come after the skeleton's.
pub(crate) struct Storage(pub(crate) *mut MaybeUninit<libbpf_rs::OpenObject>);

impl Storage {
    pub(crate) fn new() -> Storage {
        Storage(Box::into_raw(Box::new(MaybeUninit::uninit())))
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        // SAFETY: from Box::into_raw in `new`, freed once; every skeleton borrowing it was
        // dropped before (field order in `ProcessSensor`, scope order in `load_parts`).
        drop(unsafe { Box::from_raw(self.0) });
    }
}

/// Opens and loads the object with only `parts`' programs.
fn load_parts(parts: &[Part]) -> Result<(skel::ProcessSkel<'static>, Storage), EbpfError> {
    let storage = Storage::new();
    // SAFETY: the allocation lives until `storage` drops, which the caller arranges after the
    // skeleton's (returned together; on error the open skeleton is dropped first, below).
    let storage_ref: &'static mut MaybeUninit<libbpf_rs::OpenObject> = unsafe { &mut *storage.0 };
    let mut open = skel::ProcessSkelBuilder::default()
        .open(storage_ref)
        .map_err(load_err("open"))?;
    for mut p in open.open_object_mut().progs_mut() {
        let name = p.name().to_string_lossy().into_owned();
        p.set_autoload(
            parts
                .iter()
                .any(|part| part.programs().contains(&name.as_str())),
        );
    }
    let skel = open.load().map_err(load_err("load"))?;
    Ok((skel, storage))
}

/// A part that did not load, and why.
pub(crate) type Rejected<P> = (P, String);

/// Which parts to run: all of them if they load together; otherwise `core` (its failure is
/// the error) plus each optional part that loads next to it alone. `load` tries one
/// combination; the rejected parts come back with the reason. Shared by both sensors.
pub(crate) fn usable_parts<P: Copy>(
    core: P,
    optional: &[P],
    mut load: impl FnMut(&[P]) -> Result<(), EbpfError>,
) -> Result<(Vec<P>, Vec<Rejected<P>>), EbpfError> {
    let mut all = vec![core];
    all.extend_from_slice(optional);
    let Err(first) = load(&all) else {
        return Ok((all, Vec::new()));
    };
    tracing::debug!("loading every part failed: {}", chain(&first));
    load(&[core])?;
    let mut parts = vec![core];
    let mut missing = Vec::new();
    for &p in optional {
        match load(&[core, p]) {
            Ok(()) => parts.push(p),
            Err(e) => missing.push((p, chain(&e))),
        }
    }
    Ok((parts, missing))
}

/// The loaded and attached process sensor.
pub struct ProcessSensor {
    links: Vec<Link>,
    skel: skel::ProcessSkel<'static>,
    _storage: Storage,
    missing: Vec<Missing>,
}

impl ProcessSensor {
    /// Loads and attaches every part that works here. Fails only if the core process
    /// programs cannot run; other failures are listed by [`ProcessSensor::missing`].
    pub fn load() -> Result<ProcessSensor, EbpfError> {
        let mut loaded = None;
        let (parts, missing) = usable_parts(Part::Process, &Part::OPTIONAL, |parts| {
            load_parts(parts).map(|x| loaded = Some((parts.to_vec(), x)))
        })?;
        let missing = missing
            .into_iter()
            .map(|(part, why)| Missing { part, why })
            .collect();
        let (skel, storage) = match loaded {
            Some((p, x)) if p == parts => x,
            _ => load_parts(&parts)?,
        };
        let mut sensor = ProcessSensor {
            links: Vec::new(),
            skel,
            _storage: storage,
            missing,
        };
        for part in parts {
            if let Err(e) = sensor.attach(part) {
                if part == Part::Process {
                    return Err(e);
                }
                sensor.missing.push(Missing {
                    part,
                    why: chain(&e),
                });
            }
        }
        Ok(sensor)
    }

    fn attach(&mut self, part: Part) -> Result<(), EbpfError> {
        if part.uses_tracefs() {
            ensure_tracefs();
        }
        let mut links = Vec::new();
        for prog in self.skel.object().progs_mut() {
            let name = prog.name().to_string_lossy();
            if part.programs().contains(&name.as_ref()) {
                links.push(prog.attach().map_err(load_err("attach"))?);
            }
        }
        // All or nothing per part: half of an enter/exit pair reports nothing useful.
        self.links.extend(links);
        Ok(())
    }

    /// Parts that could not be loaded or attached, and why.
    pub fn missing(&self) -> &[Missing] {
        &self.missing
    }

    /// Ring-buffer reservations that failed in the kernel (records lost).
    pub fn lost(&self) -> u64 {
        self.skel.maps.bss_data.as_ref().map_or(0, |b| b.lost)
    }

    /// Handles on the control maps, usable from any thread.
    pub fn controls(&self) -> Result<Controls, EbpfError> {
        Controls::new(
            &self.skel.maps.settings_map,
            &self.skel.maps.devs,
            &self.skel.maps.blocked,
            &self.skel.maps.held,
        )
    }

    /// A reader that hands every record to `f`. Build it once and [`Reader::poll`] it in a
    /// loop; it owns the ring buffer's consumer state.
    pub fn reader<'a>(
        &'a self,
        mut f: impl FnMut(Result<Record, RecordError>) + 'a,
    ) -> Result<Reader<'a>, EbpfError> {
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&self.skel.maps.events, move |data: &[u8]| {
                f(Record::decode(data));
                0
            })
            .map_err(load_err("set up the ring buffer of"))?;
        Ok(Reader {
            rb: builder
                .build()
                .map_err(load_err("build the ring buffer of"))?,
        })
    }

    /// Delivers records to `f` for up to `timeout`; `f` returns `false` to stop early.
    /// (A convenience for tests and one-shot use; the agent keeps one [`Reader`].)
    pub fn poll(
        &self,
        timeout: Duration,
        mut f: impl FnMut(Result<Record, RecordError>) -> bool,
    ) -> Result<(), EbpfError> {
        let stop = std::cell::Cell::new(false);
        let reader = self.reader(|r| {
            if !stop.get() && !f(r) {
                stop.set(true);
            }
        })?;
        let t0 = std::time::Instant::now();
        while !stop.get() && t0.elapsed() < timeout {
            reader.poll(Duration::from_millis(20))?;
        }
        Ok(())
    }
}

/// The consumer side of the ring buffer.
pub struct Reader<'a> {
    rb: RingBuffer<'a>,
}

impl Reader<'_> {
    /// Waits up to `timeout` for records and delivers all that are there. The kernel only
    /// wakes the reader for urgent records (held execs) or a filling buffer, so everything
    /// else is read when the wait ends: poll often (every 20 ms or so).
    pub fn poll(&self, timeout: Duration) -> Result<(), EbpfError> {
        poll_ring(&self.rb, timeout)
    }
}

/// Waits up to `timeout` on a ring buffer, then consumes everything in it.
pub(crate) fn poll_ring(rb: &RingBuffer<'_>, timeout: Duration) -> Result<(), EbpfError> {
    match rb.poll(timeout) {
        Ok(()) => {}
        // A signal during epoll_wait is not a failure.
        Err(e) if e.kind() == libbpf_rs::ErrorKind::Interrupted => {}
        Err(e) => return Err(EbpfError::Poll(e)),
    }
    rb.consume().map_err(EbpfError::Poll)
}

/// libbpf attaches syscall tracepoints through tracefs; systems that do not mount it get it
/// mounted here (failure shows up as an attach error naming the missing part).
pub(crate) fn ensure_tracefs() {
    let dir = std::path::Path::new("/sys/kernel/tracing");
    if dir.join("events").exists()
        || std::path::Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        return;
    }
    // A syscall, not mount(8): the agent must not exec a helper its own verdict loop holds.
    if let Err(e) = nix::mount::mount(
        Some("tracefs"),
        dir,
        Some("tracefs"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    ) {
        tracing::warn!("cannot mount tracefs on {}: {e}", dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier_says_no() -> EbpfError {
        EbpfError::Load {
            step: "load",
            source: libbpf_rs::Error::from(std::io::Error::from_raw_os_error(13)),
        }
    }

    #[test]
    fn all_parts_when_they_load_together() {
        let (parts, missing) =
            usable_parts(Part::Process, &Part::OPTIONAL, |_| Ok(())).expect("loads");
        assert_eq!(parts.len(), 4);
        assert!(missing.is_empty());
    }

    #[test]
    fn a_rejected_part_is_left_out_with_its_reason() {
        let mut tried = Vec::new();
        let (parts, missing) = usable_parts(Part::Process, &Part::OPTIONAL, |p| {
            tried.push(p.to_vec());
            if p.contains(&Part::Images) {
                Err(verifier_says_no())
            } else {
                Ok(())
            }
        })
        .expect("the core loads");
        assert_eq!(parts, vec![Part::Process, Part::Injection, Part::HoldGuard]);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].0, Part::Images);
        assert!(missing[0].1.contains("cannot load"), "{}", missing[0].1);
        assert_eq!(tried[1], vec![Part::Process], "the core alone first");
    }

    #[test]
    fn the_core_failing_is_an_error() {
        assert!(usable_parts(Part::Process, &Part::OPTIONAL, |_| Err(verifier_says_no())).is_err());
    }
}
