//! Root tests of the file notifier: each mounts its own filesystem in a temp dir (unmounted on
//! drop, also on panic), watches only that, and checks the notices the kernel really sends.

#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../../tests/programs/support.rs"]
#[allow(dead_code)]
mod support;

use custos_sensor_fanotify::{Notice, NoticeKind, Notifier, NotifyError};
use nix::errno::Errno;
use nix::sys::stat::{mknod, Mode, SFlag};
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A private mount in a temp dir, unmounted on drop.
struct Mnt {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mnt {
    fn tmpfs() -> Mnt {
        Mnt::fs("tmpfs", None)
    }

    fn fs(fstype: &str, image: Option<&Path>) -> Mnt {
        let dir = tempfile::Builder::new()
            .prefix("custos-notify-")
            .tempdir_in("/tmp")
            .unwrap();
        let path = dir.path().join("m");
        fs::create_dir(&path).unwrap();
        let st = match image {
            None => Command::new("mount")
                .args(["-t", fstype, "-o", "size=64m", fstype])
                .arg(&path)
                .status(),
            Some(img) => Command::new("mount")
                .args(["-t", fstype, "-o", "loop"])
                .arg(img)
                .arg(&path)
                .status(),
        };
        assert!(st.unwrap().success(), "mount {fstype}");
        Mnt { path, _dir: dir }
    }

    /// A small ext4 image in its own temp dir, loop-mounted; `None` if mkfs.ext4 is missing.
    fn ext4(images: &tempfile::TempDir) -> Option<Mnt> {
        let img = images.path().join("ext4.img");
        fs::File::create(&img).unwrap().set_len(16 << 20).unwrap();
        match Command::new("mkfs.ext4").arg("-q").arg(&img).status() {
            Ok(s) if s.success() => Some(Mnt::fs("ext4", Some(&img))),
            _ => {
                eprintln!(
                    "ext4 part skipped: mkfs.ext4 failed or missing (apt-get install e2fsprogs)"
                );
                None
            }
        }
    }
}

impl Drop for Mnt {
    fn drop(&mut self) {
        use nix::mount::{umount2, MntFlags};
        if umount2(&self.path, MntFlags::empty()).is_err() {
            let _ = umount2(&self.path, MntFlags::MNT_DETACH);
        }
    }
}

/// A notifier running on its own thread, sending notices to `rx`; stopped on drop.
struct Running {
    rx: Receiver<Notice>,
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<Result<(), NotifyError>>>,
    /// A watched directory for the sentinel files of [`Running::settle`].
    sync: PathBuf,
    seq: u32,
}

impl Running {
    fn start(notifier: Arc<Notifier>, sync: &Path) -> Running {
        let (stop_r, stop_w) = nix::unistd::pipe().unwrap();
        let (tx, rx) = channel();
        let thread = std::thread::spawn(move || {
            notifier.run(&stop_r, |notice| {
                let _ = tx.send(notice);
            })
        });
        Running {
            rx,
            stop: Some(stop_w),
            thread: Some(thread),
            sync: sync.to_owned(),
            seq: 0,
        }
    }

    /// Everything noticed up to a sentinel create in `sync` (the sentinel itself left out).
    fn settle(&mut self) -> Vec<Notice> {
        self.seq += 1;
        let sentinel = self.sync.join(format!(".sync-{}", self.seq));
        touch(&sentinel);
        let mut got = Vec::new();
        loop {
            let n = self.rx.recv_timeout(Duration::from_secs(10));
            let n = n.unwrap_or_else(|_| panic!("no sentinel notice within 10 s; got {got:#?}"));
            if n.kind == NoticeKind::Create && n.path.as_deref() == Some(&sentinel) {
                return got;
            }
            got.push(n);
        }
    }

    /// Asserts that the notices since the last check are exactly `want`.
    fn saw(&mut self, what: &str, want: &[Notice]) {
        assert_eq!(self.settle(), want, "{what}");
    }

    fn stop(&mut self) -> Result<(), NotifyError> {
        let Some(w) = self.stop.take() else {
            return Ok(());
        };
        nix::unistd::write(&w, b"x").unwrap();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn notice(kind: NoticeKind, path: &Path, dir: bool) -> Notice {
    Notice {
        kind,
        pid: std::process::id() as i32,
        path: Some(path.to_owned()),
        old_path: None,
        dir,
        merged: false,
    }
}

fn rename(old: Option<&Path>, new: Option<&Path>, dir: bool) -> Notice {
    Notice {
        kind: NoticeKind::Rename,
        path: new.map(Path::to_owned),
        old_path: old.map(Path::to_owned),
        ..notice(NoticeKind::Rename, Path::new(""), dir)
    }
}

fn touch(p: &Path) {
    mknod(p, SFlag::S_IFREG, Mode::from_bits_truncate(0o644), 0).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// The scenario of the filesystem-wide test, on one mounted filesystem.
fn check_fs_wide(root: &Path) {
    use NoticeKind::*;
    let notifier = Notifier::new().unwrap();
    notifier.watch_fs(root).unwrap();
    let sync = root.join("sync");
    fs::create_dir(&sync).unwrap();
    let mut r = Running::start(notifier.clone(), &sync);
    r.settle();
    let (a, b, c) = (root.join("a"), root.join("b"), root.join("c"));
    let (af, ag, bg) = (a.join("f"), a.join("g"), b.join("g"));
    let (cg, ch) = (c.join("g"), c.join("h"));

    fs::create_dir(&a).unwrap();
    r.saw("mkdir a", &[notice(Create, &a, true)]);
    fs::create_dir(&b).unwrap();
    r.saw("mkdir b", &[notice(Create, &b, true)]);
    touch(&af);
    r.saw("create", &[notice(Create, &af, false)]);
    let mut f = fs::OpenOptions::new().write(true).open(&af).unwrap();
    f.write_all(b"hello").unwrap();
    drop(f);
    r.saw("write+close", &[notice(CloseWrite, &af, false)]);
    chmod(&af, 0o600);
    r.saw("chmod", &[notice(Attrib, &af, false)]);
    fs::rename(&af, &ag).unwrap();
    r.saw("rename in dir", &[rename(Some(&af), Some(&ag), false)]);
    fs::rename(&ag, &bg).unwrap();
    r.saw("rename across", &[rename(Some(&ag), Some(&bg), false)]);
    chmod(&a, 0o700);
    r.saw("chmod dir", &[notice(Attrib, &a, true)]);
    fs::rename(&b, &c).unwrap();
    r.saw("rename dir", &[rename(Some(&b), Some(&c), true)]);
    touch(&ch);
    r.saw("create in the renamed dir", &[notice(Create, &ch, false)]);
    fs::remove_file(&cg).unwrap();
    r.saw("unlink", &[notice(Delete, &cg, false)]);
    fs::remove_file(&ch).unwrap();
    r.saw("unlink 2", &[notice(Delete, &ch, false)]);
    fs::remove_dir(&c).unwrap();
    r.saw("rmdir", &[notice(Delete, &c, true)]);
    // A cached directory below a renamed one.
    let (s, a2) = (a.join("s"), root.join("a2"));
    let (s2, k) = (a2.join("s"), a2.join("s").join("k"));
    fs::create_dir(&s).unwrap();
    touch(&s.join("f"));
    r.saw(
        "nested",
        &[
            notice(Create, &s, true),
            notice(Create, &s.join("f"), false),
        ],
    );
    fs::rename(&a, &a2).unwrap();
    r.saw("rename parent", &[rename(Some(&a), Some(&a2), true)]);
    touch(&k);
    r.saw(
        "create below the renamed parent",
        &[notice(Create, &k, false)],
    );
    // A directory deleted before its events are read still resolves once resolved earlier.
    let t = a2.join("t");
    touch(&t);
    r.saw("create in a2", &[notice(Create, &t, false)]);
    fs::remove_dir_all(&a2).unwrap();
    let mut gone = [
        notice(Delete, &t, false),
        notice(Delete, &s2.join("f"), false),
        notice(Delete, &k, false),
        notice(Delete, &s2, true),
        notice(Delete, &a2, true),
    ];
    let mut got = r.settle();
    // The order within a directory is its listing order.
    got.sort_by(|x, y| x.path.cmp(&y.path));
    gone.sort_by(|x, y| x.path.cmp(&y.path));
    assert_eq!(got, gone, "rm -r");

    // Another process: its pid.
    let x = root.join("x");
    let child = Command::new("mkdir").arg(&x).spawn().unwrap();
    let pid = child.id() as i32;
    assert!(child.wait_with_output().unwrap().status.success());
    let by_child = Notice {
        pid,
        ..notice(Create, &x, true)
    };
    r.saw("mkdir by a child", &[by_child]);

    r.stop().unwrap();
    let st = notifier.stats();
    for (name, v) in [
        ("overflows", &st.overflows),
        ("unresolved", &st.unresolved),
        ("malformed", &st.malformed),
        ("read_errors", &st.read_errors),
    ] {
        assert_eq!(v.load(Ordering::Relaxed), 0, "{name}");
    }
}

#[test]
fn fs_wide_notices_on_tmpfs() {
    if !support::root_or_skip() {
        return;
    }
    let m = Mnt::tmpfs();
    check_fs_wide(&m.path);
}

#[test]
fn fs_wide_notices_on_ext4() {
    if !support::root_or_skip() {
        return;
    }
    let images = tempfile::tempdir_in("/tmp").unwrap();
    let Some(m) = Mnt::ext4(&images) else {
        return;
    };
    check_fs_wide(&m.path);
}

#[test]
fn watch_dir_sees_only_its_children() {
    use NoticeKind::*;
    if !support::root_or_skip() {
        return;
    }
    let m = Mnt::tmpfs();
    let (w, other) = (m.path.join("w"), m.path.join("other"));
    let sub = w.join("sub");
    fs::create_dir_all(&sub).unwrap();
    fs::create_dir(&other).unwrap();
    let notifier = Notifier::new().unwrap();
    notifier.watch_dir(&w).unwrap();
    let mut r = Running::start(notifier.clone(), &w);
    let (wx, wy, wy2, wd) = (w.join("x"), w.join("y"), w.join("y2"), w.join("d"));
    let (ox, oy) = (other.join("x"), other.join("y"));

    touch(&wx);
    r.saw("create child", &[notice(Create, &wx, false)]);
    touch(&oy);
    r.saw("elsewhere", &[]);
    touch(&sub.join("z"));
    r.saw("grandchild", &[]);
    fs::write(&wx, b"data").unwrap();
    chmod(&wx, 0o600);
    r.saw("content and attributes are not asked for", &[]);
    // The kernel reports only the watched side(s) of a rename.
    fs::rename(&wx, &ox).unwrap();
    r.saw("move out", &[rename(Some(&wx), None, false)]);
    fs::rename(&oy, &wy).unwrap();
    r.saw("move in", &[rename(None, Some(&wy), false)]);
    fs::rename(&wy, &wy2).unwrap();
    r.saw("move within", &[rename(Some(&wy), Some(&wy2), false)]);
    fs::create_dir(&wd).unwrap();
    r.saw("mkdir", &[notice(Create, &wd, true)]);
    fs::remove_dir(&wd).unwrap();
    r.saw("rmdir", &[notice(Delete, &wd, true)]);
    fs::remove_file(&wy2).unwrap();
    r.saw("unlink", &[notice(Delete, &wy2, false)]);

    notifier.unwatch_dir(&w).unwrap();
    // No sentinel can arrive now: check nothing at all comes.
    touch(&w.join("after"));
    assert!(r.rx.recv_timeout(Duration::from_millis(300)).is_err());
    r.stop().unwrap();
    assert_eq!(notifier.stats().unresolved.load(Ordering::Relaxed), 0);
}

#[test]
fn deleted_directory_is_unresolved_and_counted() {
    use NoticeKind::*;
    if !support::root_or_skip() {
        return;
    }
    let m = Mnt::tmpfs();
    let notifier = Notifier::new().unwrap();
    notifier.watch_fs(&m.path).unwrap();
    // Nobody reads yet: by the time the events are read, `d` is gone.
    let d = m.path.join("d");
    fs::create_dir(&d).unwrap();
    touch(&d.join("x"));
    fs::remove_file(d.join("x")).unwrap();
    fs::remove_dir(&d).unwrap();
    let mut r = Running::start(notifier.clone(), &m.path);
    let unknown = |kind| Notice {
        path: None,
        merged: true,
        ..notice(kind, &d, false)
    };
    let rmdir = Notice {
        merged: true,
        ..notice(Delete, &d, true)
    };
    let mkdir = Notice {
        kind: Create,
        ..rmdir.clone()
    };
    // Same entry, same process: the kernel merged create and delete into one event each.
    let want = [mkdir, rmdir, unknown(Create), unknown(Delete)];
    let mut got = r.settle();
    got.sort_by_key(|n| (n.path.is_none(), n.kind == Delete));
    assert_eq!(got, want);
    assert_eq!(notifier.stats().unresolved.load(Ordering::Relaxed), 1);
}

#[test]
fn merged_events_give_one_notice_per_kind() {
    use NoticeKind::*;
    if !support::root_or_skip() {
        return;
    }
    let m = Mnt::tmpfs();
    let notifier = Notifier::new().unwrap();
    notifier.watch_fs(&m.path).unwrap();
    // Nobody reads yet: the kernel merges the events on the same entry by the same process.
    let f = m.path.join("f");
    fs::write(&f, b"x").unwrap();
    chmod(&f, 0o600);
    let mut r = Running::start(notifier, &m.path);
    let merged = |kind| Notice {
        merged: true,
        ..notice(kind, &f, false)
    };
    r.saw(
        "create+write+chmod",
        &[merged(Create), merged(Attrib), merged(CloseWrite)],
    );
}

#[test]
fn overflow_is_reported_and_counted() {
    if !support::root_or_skip() {
        return;
    }
    let max: usize = fs::read_to_string("/proc/sys/fs/fanotify/max_queued_events")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let m = Mnt::tmpfs();
    let notifier = Notifier::new().unwrap();
    notifier.watch_fs(&m.path).unwrap();
    // Nobody reads yet: one event per distinct name, well past the queue's limit.
    for i in 0..max + max / 4 {
        touch(&m.path.join(i.to_string()));
    }
    let mut r = Running::start(notifier.clone(), &m.path);
    let mut creates = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n =
            r.rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no overflow notice after {creates} creates"));
        match n.kind {
            NoticeKind::Create => creates += 1,
            NoticeKind::Overflow => {
                assert_eq!((n.pid, n.path, n.old_path), (0, None, None));
                break;
            }
            k => panic!("unexpected {k:?}"),
        }
    }
    r.stop().unwrap();
    assert!(
        creates <= max,
        "{creates} creates queued with a limit of {max}"
    );
    assert_eq!(notifier.stats().overflows.load(Ordering::Relaxed), 1);
}

#[test]
fn filesystem_without_file_handles_is_refused_with_its_path() {
    if !support::root_or_skip() {
        return;
    }
    // ramfs has neither file handles nor an fsid.
    let m = Mnt::fs("ramfs", None);
    let notifier = Notifier::new().unwrap();
    match notifier.watch_fs(&m.path) {
        Err(NotifyError::Mark { path, source }) => {
            assert_eq!(path, m.path);
            assert!(
                matches!(source, Errno::ENODEV | Errno::EOPNOTSUPP),
                "{source}"
            );
        }
        r => panic!("ramfs mark: {r:?}"),
    }
    let r = notifier.watch_dir(&m.path);
    assert!(matches!(r, Err(NotifyError::Mark { .. })), "{r:?}");
    // Not a directory: refused before marking.
    let f = m.path.join("f");
    touch(&f);
    let r = notifier.watch_fs(&f);
    assert!(
        matches!(r, Err(NotifyError::Open { ref path, source: Errno::ENOTDIR }) if *path == f),
        "{r:?}"
    );
}

/// Rough reader throughput on tmpfs (prints; no timed assertion):
/// `cargo test -p custos-sensor-fanotify --test notify -- --ignored --nocapture measure`.
#[test]
#[ignore]
fn measure_throughput() {
    if !support::root_or_skip() {
        return;
    }
    let m = Mnt::tmpfs();
    let notifier = Notifier::new().unwrap();
    notifier.watch_fs(&m.path).unwrap();
    let dir = m.path.join("d");
    fs::create_dir(&dir).unwrap();
    // 1. Drain: the queue filled beforehand (below its limit), then read as fast as possible.
    let (rounds, per) = (7, 15_000);
    let mut busy = Duration::ZERO;
    for round in 0..rounds {
        for i in 0..per {
            touch(&dir.join(format!("{round}-{i}")));
        }
        let start = Instant::now();
        let r = Running::start(notifier.clone(), &m.path);
        for _ in 0..per {
            r.rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        busy += start.elapsed();
    }
    let n = (rounds * per) as f64;
    eprintln!(
        "drain: {} notices in {:?}: {:.0} notices/s",
        rounds * per,
        busy,
        n / busy.as_secs_f64()
    );
    // 2. Live: 100k creates while the reader runs.
    let r = Running::start(notifier.clone(), &m.path);
    let total = 100_000;
    let start = Instant::now();
    let d2 = m.path.join("live");
    fs::create_dir(&d2).unwrap();
    for i in 0..total {
        touch(&d2.join(i.to_string()));
    }
    let made = start.elapsed();
    let (mut got, mut last) = (0, start);
    while r.rx.recv_timeout(Duration::from_secs(2)).is_ok() {
        got += 1;
        last = Instant::now();
    }
    eprintln!(
        "live: {total} creates in {made:?} ({:.0}/s), {got} notices, last after {:?}, overflows {}",
        total as f64 / made.as_secs_f64(),
        last - start,
        notifier.stats().overflows.load(Ordering::Relaxed)
    );
}
