//! The eBPF process sensor: a [`Record`] per exec (`tp_btf/sched_process_exec`, with the
//! executable's resolved path, walked in the kernel so it is complete even for a process that
//! has already exited when user space reads it, and argv), per new process or thread
//! (`sched_process_fork`) and per exit (`sched_process_exit`).
//!
//! Kernel requirements: BTF at `/sys/kernel/btf/vmlinux`, BPF ring buffers (5.8+), `tp_btf`
//! programs (5.5+), `CAP_BPF` + `CAP_PERFMON` (or root). Not yet wired into `custos run`.

mod record;

pub use record::{ExecRecord, ExitRecord, ExitStatus, ForkRecord, Record, RecordError};

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::RingBufferBuilder;
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

// SAFETY: plain C structs of integers and byte arrays; any bit pattern is valid.
unsafe impl plain::Plain for RawExecEvent {}
// SAFETY: as above.
unsafe impl plain::Plain for RawForkEvent {}
// SAFETY: as above.
unsafe impl plain::Plain for RawExitEvent {}

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
}

fn load_err(step: &'static str) -> impl FnOnce(libbpf_rs::Error) -> EbpfError {
    move |source| EbpfError::Load { step, source }
}

/// The loaded and attached process sensor.
pub struct ProcessSensor {
    // The skeleton borrows this storage for its whole life; boxed so it never moves.
    skel: skel::ProcessSkel<'static>,
    _storage: Box<MaybeUninit<libbpf_rs::OpenObject>>,
}

impl ProcessSensor {
    /// Loads the programs and attaches them.
    pub fn load() -> Result<ProcessSensor, EbpfError> {
        let mut storage = Box::new(MaybeUninit::uninit());
        // SAFETY: `storage` is boxed and kept in the returned struct next to the skeleton that
        // borrows it, and dropped after it (field order), so the reference stays valid.
        let storage_ref: &'static mut MaybeUninit<libbpf_rs::OpenObject> =
            unsafe { &mut *(storage.as_mut() as *mut _) };
        let open = skel::ProcessSkelBuilder::default()
            .open(storage_ref)
            .map_err(load_err("open"))?;
        let mut skel = open.load().map_err(load_err("load"))?;
        skel.attach().map_err(load_err("attach"))?;
        Ok(ProcessSensor {
            skel,
            _storage: storage,
        })
    }

    /// Ring-buffer reservations that failed in the kernel (records lost).
    pub fn lost(&self) -> u64 {
        self.skel.maps.bss_data.as_ref().map_or(0, |b| b.lost)
    }

    /// Delivers records to `f` for up to `timeout`; `f` returns `false` to stop early.
    pub fn poll(
        &self,
        timeout: Duration,
        mut f: impl FnMut(Result<Record, RecordError>) -> bool,
    ) -> Result<(), EbpfError> {
        let stop = std::cell::Cell::new(false);
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&self.skel.maps.events, |data: &[u8]| {
                if stop.get() {
                    return 1;
                }
                if !f(Record::decode(data)) {
                    stop.set(true);
                    return 1;
                }
                0
            })
            .map_err(load_err("set up the ring buffer of"))?;
        let rb = builder
            .build()
            .map_err(load_err("build the ring buffer of"))?;
        let t0 = std::time::Instant::now();
        while !stop.get() && t0.elapsed() < timeout {
            match rb.poll(Duration::from_millis(50)) {
                Ok(()) => {}
                // The callback's non-zero return stops consumption with an error code.
                Err(_) if stop.get() => break,
                Err(e) => return Err(EbpfError::Poll(e)),
            }
        }
        Ok(())
    }
}
