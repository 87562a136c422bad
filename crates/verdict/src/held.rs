//! The kernel-facing side of the arbiter, as traits: a held exec, its content, the marks and
//! the event sink. The fanotify sensor implements them for real; tests use fakes.

use crate::file::FileKey;
use custos_event::{Access, Decision, ExecEvent};
use std::io::{self, Read};

/// Content of a held file, for hashing. `key` re-reads the file's identity after hashing so a
/// file changed mid-read is not cached.
pub trait Content: Read + Send {
    /// Current key of the file behind this handle.
    fn key(&self) -> io::Result<FileKey>;
}

impl Content for std::fs::File {
    fn key(&self) -> io::Result<FileKey> {
        self.metadata().map(|m| FileKey::from_metadata(&m))
    }
}

/// Who is exec'ing, read when a decision is logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Parent pid.
    pub ppid: Option<i32>,
    /// Real uid.
    pub uid: Option<u32>,
}

/// One exec (or image load) held by the kernel until answered. Dropping it without
/// [`Held::answer`] must still answer the kernel (implementations answer "allow" in `Drop`), so
/// no path can leave an exec hung.
pub trait Held: Send + 'static {
    /// Pid (thread-group id) of the process exec'ing.
    fn pid(&self) -> i32;
    /// Key of the file as opened for the exec.
    fn key(&self) -> io::Result<FileKey>;
    /// Resolved path of the file, if it can be named.
    fn path(&self) -> Option<String>;
    /// A handle to read the content (independent of the held one).
    fn content(&self) -> io::Result<Box<dyn Content>>;
    /// Parent and user of the process.
    fn process(&self) -> ProcessInfo;
    /// Tells the kernel to stop reporting execs and image loads (plain opens) of this inode
    /// until it is modified: the verdict allows this content however it is used.
    fn ignore(&self) -> io::Result<()>;
    /// Tells the kernel to stop reporting plain opens of this inode until it is modified (it is
    /// not an ELF image, so opening it loads nothing); its execs are still reported.
    fn ignore_opens(&self) -> io::Result<()> {
        Ok(())
    }
    /// Removes that mark again (when the file turned out to change while it was placed).
    fn unignore(&self);
    /// Answers the kernel.
    fn answer(self, decision: Decision) -> io::Result<()>;
    /// How the file is about to be used. A [`Access::Load`] is a plain open: it is judged only
    /// when the file turns out to be an ELF image, and passes without a decision otherwise.
    fn access(&self) -> Access {
        Access::Exec
    }
    /// For a load: the program of the process opening the file.
    fn opener(&self) -> Option<String> {
        None
    }
    /// Whether [`Held::ignore`] means anything for this kind of hold.
    fn markable(&self) -> bool {
        true
    }
    /// The content can still change after the verdict without a new exec (an unsealed
    /// memfd): an allow for it is not trusted where the mode's fallback denies.
    fn mutable(&self) -> bool {
        false
    }
    /// A deny that holds for this content whatever its path (a hash rule, or lockdown's
    /// default): the sensor may remember it in the kernel until the file changes.
    fn remember_deny(&self, _key: &FileKey) {}
}

/// The kernel side of cache invalidation.
pub trait Marks: Send + Sync {
    /// Removes every ignore mark placed through [`Held::ignore`].
    fn flush_ignores(&self) -> io::Result<()>;
}

/// Where decision events go. Must not block (the caller may hold an exec).
pub trait Sink: Send + Sync {
    /// Takes one event.
    fn emit(&self, event: ExecEvent);

    /// Told of every exec verdict before the kernel hears it: whether the program file `key`
    /// is trusted (allowed by a rule or a trusted source, not by a mode's default), so a
    /// policy that follows trust (network quarantine) is in force before the program runs.
    fn judged(&self, _key: &FileKey, _trusted: bool) {}
}

/// Reads with `pread` from its own offset, so sharing the open file with the held event (and
/// with the program loader once allowed) cannot move anyone's position.
pub struct PositionedFile(std::fs::File, u64);

impl PositionedFile {
    /// Reads `file` from offset 0.
    pub fn new(file: std::fs::File) -> PositionedFile {
        PositionedFile(file, 0)
    }
}

impl Read for PositionedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.0.read_at(buf, self.1)?;
        self.1 += n as u64;
        Ok(n)
    }
}

impl Content for PositionedFile {
    fn key(&self) -> io::Result<FileKey> {
        self.0.key()
    }
}
