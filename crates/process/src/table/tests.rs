use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;
use crate::procfs::tests::stat_line;

const BOOT: &str = "boot";
/// One tick at USER_HZ 100, in ns.
const TICK: u64 = 10_000_000;

fn table(max: usize) -> ProcessTable {
    ProcessTable::new(BOOT.to_owned(), 100, max)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn id(ticks: u64, pid: u32) -> Arc<str> {
    entity_id(BOOT, ticks, pid).into()
}

#[test]
fn exec_creates_entry_with_parent_from_start_time() {
    let mut t = table(100);
    let p = t.on_exec(
        42,
        500 * TICK + 7,
        10,
        300 * TICK,
        "/bin/ls",
        &args(&["ls", "-l"]),
    );
    assert_eq!(p.pid, 42);
    assert_eq!(p.start_ticks, 500);
    assert_eq!(p.entity_id, id(500, 42));
    assert_eq!(p.ppid, 10);
    // Parent unknown to the table, yet its id is right.
    assert_eq!(p.parent_entity_id, Some(id(300, 10)));
    assert_eq!(p.executable.as_deref(), Some("/bin/ls"));
    assert_eq!(p.args.as_deref(), Some(&args(&["ls", "-l"])[..]));
    assert!(!p.exited);
    assert_eq!((t.len(), t.live()), (1, 1));
}

#[test]
fn parent_id_ignores_a_table_entry_of_a_reused_pid() {
    let mut t = table(100);
    t.on_exec(10, 100 * TICK, 1, 0, "/bin/old", &[]);
    let p = t.on_exec(42, 500 * TICK, 10, 300 * TICK, "/bin/ls", &[]);
    assert_eq!(p.parent_entity_id, Some(id(300, 10)));
    assert_eq!(p.args, None, "empty argv");
}

#[test]
fn ppid_zero_has_no_parent() {
    let mut t = table(100);
    let p = t.on_exec(1, 0, 0, 0, "/sbin/init", &[]);
    assert_eq!(p.parent_entity_id, None);
    let p = t.on_fork(0, 0, 2, TICK);
    assert_eq!((p.ppid, p.parent_entity_id.clone()), (0, None));
}

#[test]
fn exec_keeps_identity_of_forked_entry() {
    let mut t = table(100);
    t.on_exec(10, 100 * TICK, 1, 0, "/bin/bash", &args(&["bash"]));
    let child = t.on_fork(10, 100 * TICK, 42, 500 * TICK).clone();
    assert_eq!(child.executable.as_deref(), Some("/bin/bash"));
    // Same start, different ns within the tick: still the same process.
    let p = t.on_exec(
        42,
        500 * TICK + 3,
        10,
        100 * TICK,
        "/bin/ls",
        &args(&["ls"]),
    );
    assert!(Arc::ptr_eq(&p.entity_id, &child.entity_id));
    assert_eq!(p.executable.as_deref(), Some("/bin/ls"));
    assert_eq!(p.args.as_deref(), Some(&args(&["ls"])[..]));
    assert_eq!(t.len(), 2);
}

#[test]
fn exec_keeps_identity_of_seeded_entry() {
    let dir = fake_proc();
    let mut t = table(100);
    t.seed_from_proc(dir.path());
    let seeded = t.get(42).unwrap().entity_id.clone();
    let p = t.on_exec(42, 4200 * TICK, 1, 0, "/usr/bin/vim", &args(&["vim"]));
    assert!(Arc::ptr_eq(&p.entity_id, &seeded));
    assert_eq!(p.executable.as_deref(), Some("/usr/bin/vim"));
}

#[test]
fn pid_reuse_replaces_entry() {
    let mut t = table(100);
    t.on_exec(42, 500 * TICK, 1, 0, "/bin/old", &args(&["old"]));
    t.on_exit(42, 500 * TICK);
    let p = t.on_exec(42, 900 * TICK, 1, 0, "/bin/new", &[]);
    assert_eq!(p.entity_id, id(900, 42));
    assert_eq!(p.executable.as_deref(), Some("/bin/new"));
    assert_eq!(p.args, None);
    assert!(!p.exited);
    // The same through fork: nothing carried over from the old process.
    let p = t.on_fork(1, 0, 42, 950 * TICK);
    assert_eq!(
        (p.entity_id.clone(), p.executable.clone()),
        (id(950, 42), None)
    );
    assert_eq!((t.len(), t.live()), (1, 1));
}

#[test]
fn fork_inherits_only_from_the_same_parent() {
    let mut t = table(100);
    t.on_exec(10, 100 * TICK, 1, 0, "/bin/bash", &args(&["bash", "-i"]));
    let p = t.on_fork(10, 100 * TICK, 42, 500 * TICK);
    assert_eq!(p.executable.as_deref(), Some("/bin/bash"));
    assert_eq!(p.args.as_deref(), Some(&args(&["bash", "-i"])[..]));
    assert_eq!(p.parent_entity_id, Some(id(100, 10)));
    // Parent start does not match the entry: another process, nothing inherited.
    let p = t.on_fork(10, 200 * TICK, 43, 600 * TICK);
    assert_eq!((p.executable.clone(), p.args.clone()), (None, None));
    assert_eq!(p.parent_entity_id, Some(id(200, 10)));
    // Parent unknown.
    let p = t.on_fork(77, 50 * TICK, 44, 700 * TICK);
    assert_eq!(p.executable, None);
    assert_eq!(p.parent_entity_id, Some(id(50, 77)));
}

#[test]
fn fork_after_exec_keeps_the_childs_program() {
    let mut t = table(100);
    t.on_exec(10, 100 * TICK, 1, 0, "/bin/bash", &args(&["bash"]));
    t.on_exec(42, 500 * TICK, 10, 100 * TICK, "/bin/ls", &args(&["ls"]));
    let p = t.on_fork(10, 100 * TICK, 42, 500 * TICK);
    assert_eq!(p.executable.as_deref(), Some("/bin/ls"));
}

#[test]
fn stale_exit_is_ignored() {
    let mut t = table(100);
    t.on_exec(42, 500 * TICK, 1, 0, "/bin/ls", &[]);
    t.on_exit(42, 400 * TICK);
    t.on_exit(43, 500 * TICK);
    assert!(!t.get(42).unwrap().exited);
    assert_eq!(t.live(), 1);
    t.on_exit(42, 500 * TICK + 1);
    assert!(t.get(42).unwrap().exited);
    assert_eq!((t.len(), t.live()), (1, 0));
}

#[test]
fn sweep_is_two_phase() {
    let mut t = table(100);
    t.on_exec(1, 0, 0, 0, "/sbin/init", &[]);
    t.on_exec(42, 500 * TICK, 1, 0, "/bin/ls", &[]);
    t.on_exit(42, 500 * TICK);
    assert_eq!(t.sweep(), 0, "survives the first sweep");
    assert!(t.get(42).is_some_and(|p| p.exited));
    assert_eq!(t.lineage(42).len(), 2, "late events still resolve");
    t.on_exec(43, 600 * TICK, 1, 0, "/bin/cat", &[]);
    t.on_exit(43, 600 * TICK);
    assert_eq!(t.sweep(), 1, "42 goes, 43 survives");
    assert!(t.get(42).is_none());
    assert!(t.get(43).is_some());
    assert_eq!(t.sweep(), 1);
    assert_eq!(t.sweep(), 0);
    assert_eq!((t.len(), t.live()), (1, 1));
}

#[test]
fn full_table_drops_exited_first() {
    let mut t = table(3);
    for pid in 1..=3 {
        t.on_exec(pid, u64::from(pid) * TICK, 0, 0, "/bin/x", &[]);
    }
    t.on_exit(3, 3 * TICK);
    t.on_exec(4, 4 * TICK, 0, 0, "/bin/x", &[]);
    assert_eq!(t.len(), 3);
    assert!(
        t.get(3).is_none(),
        "exited entry dropped, even before its sweep"
    );
    assert!([1, 2, 4].iter().all(|&pid| t.get(pid).is_some()));
    // Replacing or updating a known pid never evicts.
    t.on_exec(4, 9 * TICK, 0, 0, "/bin/y", &[]);
    t.on_fork(1, TICK, 2, 2 * TICK);
    assert!([1, 2, 4].iter().all(|&pid| t.get(pid).is_some()));
}

#[test]
fn full_table_evicts_oldest_and_never_grows() {
    let max = 32;
    let mut t = table(max);
    // Pids descend while start times ascend: eviction must go by start time, not pid.
    for i in 0..200u32 {
        let pid = 1000 - i;
        t.on_fork(0, 0, pid, u64::from(i) * TICK);
        assert!(t.len() <= max);
        assert!(t.get(pid).is_some(), "the new entry is always there");
    }
    assert!(t.get(1000).is_none(), "oldest went first");
    let starts = t.entries.values().map(|s| s.process.start_ticks);
    assert_eq!(
        starts.min(),
        Some(200 - t.len() as u64),
        "only the newest are left"
    );
    assert_eq!(t.live(), t.len());
}

#[test]
fn zero_max_entries_holds_one() {
    let mut t = table(0);
    t.on_exec(1, 0, 0, 0, "/sbin/init", &[]);
    let p = t.on_exec(2, TICK, 1, 0, "/bin/sh", &[]);
    assert_eq!(p.pid, 2);
    assert_eq!(t.len(), 1);
}

#[test]
fn lineage_follows_matching_parents() {
    let mut t = table(100);
    assert!(t.lineage(1).is_empty());
    t.on_exec(1, 0, 0, 0, "/sbin/init", &[]);
    t.on_fork(1, 0, 10, 100 * TICK);
    t.on_fork(10, 100 * TICK, 42, 500 * TICK);
    let pids: Vec<u32> = t.lineage(42).iter().map(|p| p.pid).collect();
    assert_eq!(pids, [42, 10, 1]);
    // Parent pid reused by another process: the chain stops at the child.
    t.on_exec(10, 300 * TICK, 1, 0, "/bin/other", &[]);
    let pids: Vec<u32> = t.lineage(42).iter().map(|p| p.pid).collect();
    assert_eq!(pids, [42]);
}

#[test]
fn lineage_stops_at_pid_one_and_unknown_parents() {
    let mut t = table(100);
    // A pid 1 claiming a parent (a container's init seen with host pids would not, but guard).
    t.on_exec(1, 0, 5, 0, "/sbin/init", &[]);
    t.on_exec(5, 0, 0, 0, "/x", &[]);
    assert_eq!(t.lineage(1).len(), 1);
    t.on_fork(99, TICK, 42, 5 * TICK);
    assert_eq!(t.lineage(42).len(), 1);
}

#[test]
fn lineage_survives_cycles_and_deep_chains() {
    let mut t = table(1000);
    t.on_exec(10, 10 * TICK, 11, 11 * TICK, "/a", &[]);
    t.on_exec(11, 11 * TICK, 10, 10 * TICK, "/b", &[]);
    let pids: Vec<u32> = t.lineage(10).iter().map(|p| p.pid).collect();
    assert_eq!(pids, [10, 11]);
    for pid in 100..300u32 {
        t.on_fork(
            pid - 1,
            u64::from(pid - 1) * TICK,
            pid,
            u64::from(pid) * TICK,
        );
    }
    let chain = t.lineage(299);
    assert_eq!(chain.len(), MAX_LINEAGE);
    assert_eq!((chain[0].pid, chain[63].pid), (299, 236));
}

#[test]
fn empty_table() {
    let mut t = table(10);
    assert!(t.is_empty());
    assert_eq!((t.len(), t.live(), t.sweep()), (0, 0, 0));
    t.on_exit(1, 0);
    assert!(t.is_empty());
}

fn write_proc(root: &Path, dir: &str, stat: &str, cmdline: &[u8], exe: Option<&str>) {
    let d = root.join(dir);
    fs::create_dir(&d).unwrap();
    fs::write(d.join("stat"), stat).unwrap();
    fs::write(d.join("cmdline"), cmdline).unwrap();
    if let Some(exe) = exe {
        symlink(exe, d.join("exe")).unwrap();
    }
}

/// 1 (init), 2 (kernel thread), 42 (bash, child of 1), 43 malformed, "notapid".
fn fake_proc() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_proc(
        root,
        "1",
        &stat_line(1, "systemd", 0, 3),
        b"/sbin/init\0splash\0",
        Some("/usr/lib/systemd/systemd"),
    );
    write_proc(root, "2", &stat_line(2, "kthreadd", 0, 4), b"", None);
    write_proc(
        root,
        "42",
        &stat_line(42, "a) b (c", 1, 4200),
        b"bash\0",
        Some("/usr/bin/bash"),
    );
    write_proc(root, "43", "43 (broken", b"x\0", Some("/bin/x"));
    write_proc(root, "notapid", &stat_line(44, "x", 1, 5), b"x\0", None);
    fs::write(root.join("uptime"), "1.0 2.0\n").unwrap();
    dir
}

#[test]
fn seed_from_fake_proc() {
    let dir = fake_proc();
    let mut t = table(100);
    assert_eq!(t.seed_from_proc(dir.path()), 3);
    assert_eq!((t.len(), t.live()), (3, 3));
    assert!(t.get(43).is_none(), "malformed stat skipped");

    let init = t.get(1).unwrap();
    assert_eq!(init.entity_id, id(3, 1));
    assert_eq!(init.parent_entity_id, None);
    assert_eq!(init.executable.as_deref(), Some("/usr/lib/systemd/systemd"));
    assert_eq!(
        init.args.as_deref(),
        Some(&args(&["/sbin/init", "splash"])[..])
    );

    let kthread = t.get(2).unwrap();
    assert_eq!(
        (kthread.executable.clone(), kthread.args.clone()),
        (None, None)
    );

    let bash = t.get(42).unwrap();
    assert_eq!(bash.entity_id, id(4200, 42));
    assert_eq!(bash.parent_entity_id, Some(id(3, 1)));
    let pids: Vec<u32> = t.lineage(42).iter().map(|p| p.pid).collect();
    assert_eq!(pids, [42, 1]);

    // Kernel records about the same processes agree on the ids.
    assert_eq!(
        t.on_fork(42, 4200 * TICK + 99, 50, 5000 * TICK)
            .parent_entity_id,
        Some(id(4200, 42))
    );
    // Seeding again adds nothing already known.
    assert_eq!(t.seed_from_proc(dir.path()), 0);
}

#[test]
fn seed_from_missing_root_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = table(100);
    assert_eq!(t.seed_from_proc(&dir.path().join("absent")), 0);
    assert!(t.is_empty());
}

#[test]
fn seed_from_real_proc_finds_this_process() {
    let mut t = ProcessTable::new(crate::boot_id(), crate::clk_tck(), 1 << 20);
    assert!(t.seed_from_proc(Path::new("/proc")) >= 1);
    let me = t.get(std::process::id()).expect("own process seeded");
    let exe = std::env::current_exe().unwrap();
    assert_eq!(me.executable.as_deref(), exe.to_str());
    assert!(me.args.as_ref().is_some_and(|a| !a.is_empty()));
    let (_, ppid, start) = parse_own_stat();
    assert_eq!((me.ppid, me.start_ticks), (ppid, start));
    assert_eq!(&*me.entity_id, entity_id(&crate::boot_id(), start, me.pid));
    assert_eq!(t.lineage(me.pid)[0].pid, me.pid);
}

fn parse_own_stat() -> (u32, u32, u64) {
    let text = fs::read_to_string("/proc/self/stat").unwrap();
    crate::parse_stat(&text).unwrap()
}
