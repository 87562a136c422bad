//! Harness for root-only end-to-end tests: each test mounts its own tmpfs, runs its own agent
//! watching only that tmpfs (own socket, state dir and event file), and cleans up on drop.
//! Never watches the root filesystem.
//!
//! Without root the tests skip, unless `CUSTOS_E2E_REQUIRED=1` (set by CI) makes that a failure.

#![allow(dead_code, clippy::unwrap_used)]

use serde_json::Value;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_custos");

#[path = "../../../../tests/programs/support.rs"]
mod support;
pub use support::root_or_skip;

/// One isolated agent over one private tmpfs.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
    pub config: PathBuf,
    pub agent: Option<Child>,
    /// Further mounts made by the test, unmounted on drop.
    pub extra_mounts: std::sync::Mutex<Vec<PathBuf>>,
}

impl Sandbox {
    /// Mounts the tmpfs and writes the config. `extra` is TOML for the top level, optionally
    /// followed by `[exec]` and keys for that table (merged with the harness's `watch`).
    pub fn new(mode: &str, extra: &str) -> Sandbox {
        let (top, exec) = extra.split_once("[exec]").unwrap_or((extra, ""));
        let dir = tempfile::Builder::new()
            .prefix("custos-e2e-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).expect("mkdir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4g,mode=0755", "tmpfs"])
            .arg(&mnt)
            .status()
            .expect("mount");
        assert!(st.success(), "mount tmpfs");
        // With `watch_types` the agent discovers filesystems itself; otherwise it watches ours.
        let watch = if exec.contains("watch_types") {
            String::new()
        } else {
            format!("watch = [\"{}\"]", mnt.display())
        };
        // The eBPF sensor only where a test asks for it; and never holding execs from
        // unwatched filesystems (everything outside the sandbox) unless a test says so.
        let telemetry = if top.contains("[telemetry]") {
            ""
        } else {
            "\n[telemetry]\nprocess = false\n"
        };
        let unseen = if exec.contains("unseen") {
            ""
        } else {
            "unseen = \"memfd\"\n"
        };
        let config = dir.path().join("custos.toml");
        let d = dir.path().display();
        // A top-level `events = …` (before any table) replaces the harness's event file.
        let top_level = if top.starts_with('[') {
            ""
        } else {
            top.split("\n[").next().unwrap_or("")
        };
        let events = if top_level.lines().any(|l| l.starts_with("events =")) {
            String::new()
        } else {
            format!("events = \"{d}/events.json\"\n")
        };
        // File events only where a test asks for them (`events = true` under `[files]`).
        let top = if !top.contains("[files]") {
            format!("{top}\n[files]\nevents = false\n")
        } else if top.contains("events = true") || top.contains("events = false") {
            top.to_owned()
        } else {
            top.replace("[files]\n", "[files]\nevents = false\n")
        };
        // The network sensor only where a test asks for it (`[net]`).
        let top = if top.contains("[net]") {
            top
        } else {
            format!("{top}\n[net]\nenabled = false\n")
        };
        let top = top.as_str();
        fs::write(
            &config,
            format!(
                "mode = \"{mode}\"\nsocket = \"{d}/custos.sock\"\nstate_dir = \"{d}/state\"\n\
                 {events}{top}{telemetry}\n[exec]\n{watch}\n{unseen}{exec}\n"
            ),
        )
        .expect("config");
        Sandbox {
            dir,
            mnt,
            config,
            agent: None,
            extra_mounts: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A sandbox with a running agent.
    pub fn started(mode: &str, extra: &str) -> Sandbox {
        let mut s = Sandbox::new(mode, extra);
        s.start();
        s
    }

    /// Starts the agent and waits until its control socket answers.
    pub fn start(&mut self) {
        self.start_binary(Path::new(BIN));
    }

    /// Starts the agent from a given copy of the custos binary.
    pub fn start_binary(&mut self, bin: &Path) {
        let log = fs::File::create(self.dir.path().join("agent.log")).expect("log");
        let child = retry_txtbsy(|| {
            Command::new(bin)
                .args(["run", "--config"])
                .arg(&self.config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.try_clone()?)
                .spawn()
        })
        .expect("spawn agent");
        self.agent = Some(child);
        let t0 = Instant::now();
        loop {
            if self.cli(&["status"]).status.success() {
                return;
            }
            if let Some(st) = self
                .agent
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("agent exited at start ({st}): {}", self.log());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "agent not ready: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.agent.as_ref().expect("agent").id() as i32
    }

    /// Runs `custos ARGS --config <ours>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run custos")
    }

    /// Runs a CLI command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "custos {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status json")
    }

    /// Counter under `exec` in status.
    pub fn stat(&self, name: &str) -> u64 {
        self.status()["exec"][name].as_u64().expect("counter")
    }

    /// Copies a system binary into the tmpfs under `name`.
    pub fn install(&self, from: &str, name: &str) -> PathBuf {
        let p = self.mnt.join(name);
        fs::copy(from, &p).expect("copy binary");
        p
    }

    /// Writes an executable file.
    pub fn write_exec(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.mnt.join(name);
        fs::write(&p, content).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    /// A copy of /bin/true padded with a sparse hole to `size` bytes: still runs, slow to hash.
    /// Written through the one handle that creates it: in lockdown (with `[exec] images`) a
    /// second open of an untrusted ELF image is refused, whatever it is for.
    pub fn big_exec(&self, name: &str, size: u64) -> PathBuf {
        use std::io::Write;
        let p = self.mnt.join(name);
        let mut f = fs::File::create(&p).expect("create");
        f.write_all(&fs::read("/bin/true").expect("read /bin/true"))
            .and_then(|()| f.set_len(size))
            .expect("extend");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    /// Decision events written so far (waits up to 5 s for at least `n`).
    pub fn events_at_least(&self, n: usize) -> Vec<Value> {
        let p = self.dir.path().join("events.json");
        let t0 = Instant::now();
        loop {
            let text = fs::read_to_string(&p).unwrap_or_default();
            // Only complete lines: the agent may be half-way through writing the last one.
            let done = text.rfind('\n').map_or("", |end| &text[..end]);
            let v: Vec<Value> = done
                .lines()
                .map(|l| serde_json::from_str(l).expect("event line is JSON"))
                .collect();
            if v.len() >= n || t0.elapsed() > Duration::from_secs(5) {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits (up to 10 s) for the agent to exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.agent.take().expect("agent running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("kill");
        wait_timeout(&mut c, Duration::from_secs(10)).expect("agent did not stop on SIGTERM")
    }
}

/// Polls `done` every 10 ms until it holds; fails the test with `what` after `limit`.
#[track_caller]
pub fn wait_until(limit: Duration, what: impl std::fmt::Display, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < limit, "{what} (waited {limit:?})");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `find` every 10 ms until it finds something, and returns that; fails the test with
/// `what` after `limit`.
#[track_caller]
pub fn wait_for<T>(
    limit: Duration,
    what: impl std::fmt::Display,
    mut find: impl FnMut() -> Option<T>,
) -> T {
    let mut found = None;
    wait_until(limit, what, || {
        found = find();
        found.is_some()
    });
    found.expect("found")
}

pub fn wait_timeout(c: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some(st) = c.try_wait().expect("wait") {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        for m in self.extra_mounts.lock().unwrap().iter() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// Runs a program; `Ok(status)` if it ran, `Err` if exec itself failed (EPERM when denied).
///
/// ETXTBSY is retried: a file just written can still be open for writing in a child that
/// another test thread forked at that moment (it closes at that child's exec).
pub fn run(path: &Path) -> io::Result<ExitStatus> {
    retry_txtbsy(|| {
        Command::new(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    })
}

/// Retries `f` while it fails with ETXTBSY (see [`run`]).
pub fn retry_txtbsy<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut tries = 0;
    loop {
        match f() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// Asserts the exec is denied by the kernel with EPERM.
#[track_caller]
pub fn assert_denied(path: &Path) {
    match run(path) {
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(libc::EPERM),
            "{}: {e}",
            path.display()
        ),
        Ok(st) => panic!("{} ran ({st}) but should have been denied", path.display()),
    }
}

/// Asserts the program runs and exits 0.
#[track_caller]
pub fn assert_runs(path: &Path) {
    match run(path) {
        Ok(st) => assert!(st.success(), "{} exited {st}", path.display()),
        Err(e) => panic!("{} was denied: {e}", path.display()),
    }
}

/// Events for one executable path.
pub fn events_for<'a>(events: &'a [Value], path: &Path) -> Vec<&'a Value> {
    let p = path.to_str().expect("utf8");
    events
        .iter()
        .filter(|e| e["event"]["module"] == "custos.exec" && e["process"]["executable"] == p)
        .collect()
}

/// Starts `path` from a `/bin/sh` that execs it, so the exec is held inside the child, not in
/// this test process. (A spawn from the test process that the kernel holds also stalls this
/// process's other spawns — including other tests' — until it is answered.)
pub fn spawn_via_shell(path: &Path) -> Child {
    Command::new("/bin/sh")
        .arg("-c")
        .arg("exec \"$0\"")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn /bin/sh")
}

impl Sandbox {
    /// Mounts another filesystem of `fstype` under the sandbox dir (unmounted on drop).
    pub fn mount_extra(&self, name: &str, fstype: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir_all(&p).expect("mkdir");
        let st = Command::new("mount")
            .args(["-t", fstype, fstype])
            .arg(&p)
            .status()
            .expect("mount");
        assert!(st.success(), "mount {fstype}");
        self.extra_mounts.lock().unwrap().push(p.clone());
        p
    }

    /// Mount points in `custos status`.
    pub fn watched_mounts(&self) -> Vec<String> {
        self.status()["watched"]
            .as_array()
            .expect("watched")
            .iter()
            .map(|w| w["mount"].as_str().expect("mount").to_owned())
            .collect()
    }

    /// Waits (up to 10 s) until the agent holds at least `n` execs.
    pub fn wait_pending(&self, n: u64) {
        wait_until(
            Duration::from_secs(10),
            format!("{n} execs were not held"),
            || self.stat("pending") >= n,
        );
    }

    /// Events for one executable, waiting up to 5 s until there are at least `n`.
    pub fn events_of(&self, path: &Path, n: usize) -> Vec<Value> {
        let t0 = Instant::now();
        loop {
            let all = self.events_at_least(0);
            let mine: Vec<Value> = events_for(&all, path).into_iter().cloned().collect();
            if mine.len() >= n || t0.elapsed() > Duration::from_secs(5) {
                return mine;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Waits until files written before now are no longer "racy" (ctime within 2 s of now): custos
/// does not cache or mark an allow for a file that may still change within its timestamp tick.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(2100));
}

impl Sandbox {
    /// Waits (up to 5 s) until `custos status` lists `mount` as watched.
    pub fn wait_watched(&self, mount: &Path) {
        self.wait_listed(mount, true);
    }

    /// Waits (up to 5 s) until `custos status` lists `mount` as watched, or no longer does.
    pub fn wait_listed(&self, mount: &Path, listed: bool) {
        let m = mount.to_str().expect("utf8").to_owned();
        wait_until(
            Duration::from_secs(5),
            format!("{m} listed: {listed}"),
            || self.watched_mounts().contains(&m) == listed,
        );
    }

    /// Waits (up to 10 s) until the agent answers on its control socket.
    pub fn wait_ready(&self) {
        wait_until(Duration::from_secs(10), "agent not ready", || {
            self.cli(&["status"]).status.success()
        });
    }
}

/// Compiles tests/programs/`name`.c into `dir`.
pub fn cc(dir: &Path, name: &str) -> PathBuf {
    support::cc(dir, name, &[])
}

impl Sandbox {
    /// Waits until the eBPF sensor runs in the agent.
    pub fn wait_telemetry(&self) {
        wait_until(
            Duration::from_secs(15),
            "process telemetry not running",
            || self.status()["telemetry"]["process"] == "running",
        );
    }
}
