//! Root-only: the group holds plain opens (`FAN_OPEN_PERM`) exactly while images are
//! controlled, on filesystems marked before and after the switch, and lets go of them when it
//! stops. On a private tmpfs; every hold is answered "allow".

#![allow(clippy::unwrap_used)]

#[path = "../../../tests/programs/support.rs"]
#[allow(dead_code)]
mod support;

use custos_event::Access;
use custos_sensor_fanotify::{Group, WatchedFs};
use custos_verdict::Held;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

/// A private tmpfs (the mount point, in a temporary directory), unmounted on drop.
struct Tmpfs(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Tmpfs {
    fn new() -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("custos-e2e-")
            .tempdir_in("/tmp")
            .unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&mnt)
            .status()
            .unwrap();
        assert!(st.success());
        Tmpfs(mnt, dir)
    }

    fn watched(&self) -> WatchedFs {
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata(&self.0).unwrap().dev();
        WatchedFs {
            mount: self.0.clone(),
            fstype: "tmpfs".into(),
            dev: format!(
                "{}:{}",
                nix::sys::stat::major(dev),
                nix::sys::stat::minor(dev)
            ),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The group's reader on its own thread, reporting (access, path) of every hold it allows.
struct Reader {
    stop: UnixStream,
    seen: mpsc::Receiver<(Access, String)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    fn start(group: &std::sync::Arc<Group>) -> Reader {
        let (stop_rx, stop) = UnixStream::pair().unwrap();
        let (tx, seen) = mpsc::channel();
        let g = group.clone();
        let thread = std::thread::spawn(move || {
            let stop_rx = OwnedFd::from(stop_rx);
            g.run(&stop_rx, |h| {
                let _ = tx.send((h.access(), h.path().unwrap_or_default()));
                h.answer(custos_event::Decision::Allow).unwrap();
            })
            .unwrap();
        });
        Reader {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Whether a plain open of `path` is reported within `wait`.
    fn load_of(&self, path: &Path, wait: Duration) -> bool {
        let want = path.to_str().unwrap();
        let t0 = std::time::Instant::now();
        while let Some(left) = wait.checked_sub(t0.elapsed()) {
            match self.seen.recv_timeout(left) {
                Ok((Access::Load, p)) if p == want => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    fn stop(mut self) {
        use std::io::Write;
        self.stop.write_all(b"x").unwrap();
        self.thread.take().unwrap().join().unwrap();
    }
}

#[test]
fn plain_opens_are_held_only_while_images_are_controlled() {
    if !support::root_or_skip() {
        return;
    }
    let fs = Tmpfs::new();
    let file = fs.0.join("f");
    std::fs::write(&file, b"data").unwrap();
    let group = Group::new().unwrap();
    // Off: marked for execs only.
    group.watch(&fs.0).unwrap();
    let reader = Reader::start(&group);
    std::fs::read(&file).unwrap();
    assert!(!reader.load_of(&file, Duration::from_millis(200)));

    // On at runtime, for the watched list.
    group.set_images(true, &[fs.watched()]);
    assert!(group.images_on());
    std::fs::read(&file).unwrap();
    assert!(reader.load_of(&file, Duration::from_secs(5)));

    // A filesystem marked while on (what the mount follower does) gets plain opens too.
    let later = Tmpfs::new();
    let other = later.0.join("g");
    group.watch(&later.0).unwrap();
    std::fs::write(&other, b"more").unwrap();
    assert!(reader.load_of(&other, Duration::from_secs(5)));

    // A list entry whose mount point no longer has its device is not marked.
    let gone = Tmpfs::new();
    let mut stale = gone.watched();
    stale.dev = "0:1".into();
    group.set_images(false, &[]);
    group.set_images(true, &[stale]);
    std::fs::write(gone.0.join("h"), b"x").unwrap();
    assert!(!reader.load_of(&gone.0.join("h"), Duration::from_millis(200)));

    // Off again: neither filesystem reports plain opens.
    group.set_images(false, &[]);
    assert!(!group.images_on());
    std::fs::read(&file).unwrap();
    std::fs::read(&other).unwrap();
    assert!(!reader.load_of(&file, Duration::from_millis(200)));
    assert!(!reader.load_of(&other, Duration::from_millis(200)));

    // Stopping the reader stops holding plain opens: nothing may wait for a reader that is
    // gone (the agent saves its state on the way out).
    group.set_images(true, &[fs.watched()]);
    reader.stop();
    assert!(!group.images_on());
    let (tx, rx) = mpsc::channel();
    let f2 = file.clone();
    std::thread::spawn(move || tx.send(std::fs::read(f2).is_ok()).unwrap());
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)),
        Ok(true),
        "open not held"
    );
}
