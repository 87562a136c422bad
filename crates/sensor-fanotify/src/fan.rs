//! What every fanotify group here does the same way: wait for events or a stop, answer a
//! permission event, and let go of the kernel.

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::fanotify::{Fanotify, FanotifyResponse, Response};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Why [`wait`] returned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// `stop` became readable (or its other end closed).
    Stop,
    /// Events are queued.
    Ready,
    /// Nothing to do (a signal, a spurious wake-up): wait again.
    Again,
}

/// Waits until `fan` has events or `stop` is readable. Stop wins when both are.
pub(crate) fn wait(fan: BorrowedFd<'_>, stop: &OwnedFd) -> Result<Wake, Errno> {
    let mut fds = [
        PollFd::new(fan, PollFlags::POLLIN),
        PollFd::new(stop.as_fd(), PollFlags::POLLIN),
    ];
    match poll(&mut fds, PollTimeout::NONE) {
        Ok(_) => {}
        Err(Errno::EINTR) => return Ok(Wake::Again),
        Err(e) => return Err(e),
    }
    if fds[1].revents().is_some_and(|r| !r.is_empty()) {
        return Ok(Wake::Stop);
    }
    if fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLIN))
    {
        return Ok(Wake::Ready);
    }
    Ok(Wake::Again)
}

/// Answers the permission event whose fd is `fd`.
pub(crate) fn respond(fan: &Fanotify, fd: BorrowedFd<'_>, allow: bool) -> Result<(), Errno> {
    let r = if allow {
        Response::FAN_ALLOW
    } else {
        Response::FAN_DENY
    };
    fan.write_response(FanotifyResponse::new(fd, r))
}

/// Detaches the group from the kernel now, whatever still holds it (a thread stuck in a
/// stalled file system keeps the process's fd table alive past exit): the fanotify fd is
/// replaced by `/dev/null`, so the kernel drops the group and allows everything pending.
/// For the agent's very last step; the group is useless after it.
pub(crate) fn release(fan: &Fanotify) {
    if let Ok(null) = std::fs::File::open("/dev/null") {
        // SAFETY: dup2 onto an fd the group owns; the number stays valid (now /dev/null), so
        // nothing that still uses it can touch an unrelated file.
        unsafe { libc::dup2(null.as_raw_fd(), fan.as_fd().as_raw_fd()) };
    }
}
