//! The guardian: a small child process that outlives the agent long enough to resume execs
//! the eBPF sensor stopped for judgement (`SIGSTOP`), so `kill -9` of the agent never leaves a
//! program stopped for good. It holds a dup of the sensor's `held` map, which keeps the map
//! alive after the agent is gone; when its socket to the agent reaches end-of-file it resumes
//! whatever is still in the map (checking each pid still names the held process) and exits.
//! It ignores SIGTERM/SIGINT/SIGHUP, so stopping the service stops it only through the agent.

use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// The agent's end of the guardian's socket.
#[derive(Debug)]
pub struct Guardian {
    sock: UnixStream,
}

impl Guardian {
    /// Forks the guardian. Call it while the process has one thread (before any is spawned):
    /// the child runs Rust code after `fork`.
    pub fn spawn() -> io::Result<Guardian> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        if !status
            .lines()
            .any(|l| l.split_whitespace().eq(["Threads:", "1"]))
        {
            return Err(io::Error::other(
                "the guardian must be forked before any thread starts",
            ));
        }
        let (agent, child_end) = UnixStream::pair()?;
        // SAFETY: the caller guarantees a single-threaded process, so the child may allocate
        // and run arbitrary code; it leaves with `_exit`, never returning into the agent.
        match unsafe { nix::unistd::fork() }? {
            nix::unistd::ForkResult::Parent { .. } => Ok(Guardian { sock: agent }),
            nix::unistd::ForkResult::Child => {
                drop(agent);
                guard(child_end);
                // SAFETY: ends the child without running the agent's exit handlers.
                unsafe { libc::_exit(0) }
            }
        }
    }

    /// Gives the guardian the sensor's `held` map.
    pub fn watch(&self, held: BorrowedFd<'_>) -> io::Result<()> {
        let fds = [held.as_raw_fd()];
        sendmsg::<()>(
            self.sock.as_raw_fd(),
            &[IoSlice::new(b"H")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )?;
        Ok(())
    }
}

/// The child: wait for the agent to go away, then resume what it left held.
fn guard(sock: UnixStream) {
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let _ = nix::sys::prctl::set_name(c"custos-guardian");
    // The last one to go under memory pressure: it is what resumes held programs.
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    let mut held: Option<OwnedFd> = None;
    loop {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        ) {
            Ok(msg) if msg.bytes == 0 => break,
            Ok(msg) => {
                for c in msg.cmsgs().into_iter().flatten() {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        for fd in fds {
                            // SAFETY: received with SCM_RIGHTS: a new fd this process owns.
                            held = Some(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    }
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    if let Some(fd) = held {
        use std::os::fd::AsFd;
        let n = custos_sensor_ebpf::resume_all_held(fd.as_fd());
        if n > 0 {
            eprintln!("custos-guardian: the agent is gone; resumed {n} held process(es)");
        }
    }
}
