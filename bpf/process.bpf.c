// SPDX-License-Identifier: GPL-2.0
/* Process sensor: exec (resolved path, argv, cwd), fork/thread, exit, executable mappings
 * (image loads) and injection (ptrace, process_vm_writev) — and the in-kernel half of
 * judging execs fanotify cannot see (memfd, unwatched filesystems): hold them with SIGSTOP
 * for user space, or kill at once those whose (dev, ino) is known to be blocked.
 *
 * Kernel requirements: BTF (CONFIG_DEBUG_INFO_BTF) for tp_btf and CO-RE; BPF ring buffer
 * (5.8+); bpf_loop (5.17+); syscall tracepoints (CONFIG_FTRACE_SYSCALLS, tracefs) for image
 * and injection events; bpf_send_signal_task (6.13+) to kill a held exec someone resumed. */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "process.h"
#include "path.h"

char LICENSE[] SEC("license") = "GPL";

#define SIGKILL 9
#define SIGCONT 18
#define SIGSTOP 19
#define PROT_EXEC 4
#define MAP_ANONYMOUS 0x20

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} settings_map SEC(".maps");

/* Kernel dev_t -> CUSTOS_DEV_* bits, kept by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} devs SEC(".maps");

/* Files whose verdict is deny, for as long as their ctime is unchanged. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct file_id);
	__type(value, struct blocked_file);
} blocked SEC(".maps");

/* Processes stopped for judgement: tgid -> start time. Removed by user space before it
 * resumes one; any other SIGCONT, ptrace or process_vm_writev aimed at one is tampering. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct held_exec);
} held SEC(".maps");

/* A syscall's arguments between its enter and exit tracepoints, by thread. */
struct pending_call {
	__u32 what; /* CUSTOS_REC_IMAGE or CUSTOS_INJECT_* */
	__u32 fd;
	__u64 prot;
	__u64 len;
	__u64 off;
	__u64 target;
	__u64 request;
	__u64 addr;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct pending_call);
} calls SEC(".maps");

/* The same for ptrace and process_vm_writev, which guard holds at their exit: never evicted
 * (an LRU map could be made to forget one); when it is full the guard acts at entry. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct pending_call);
} inject_calls SEC(".maps");

/* Target of a full memory barrier (a fetching atomic). */
__u64 barrier = 0;

/* Reservation failures (ring buffer full): never silent. */
__u64 lost = 0;

/* Export the record types to the skeleton's generated types. */
struct exec_event _exec_event = {};
struct fork_event _fork_event = {};
struct exit_event _exit_event = {};
struct image_event _image_event = {};
struct inject_event _inject_event = {};
struct settings _settings = {};
struct file_id _file_id = {};
struct blocked_file _blocked_file = {};
struct held_exec _held_exec = {};

extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym __weak;
extern void bpf_task_release(struct task_struct *p) __ksym __weak;
extern struct task_struct *bpf_task_from_vpid(s32 vpid) __ksym __weak;
extern int bpf_send_signal_task(struct task_struct *task, int sig, enum pid_type type,
				u64 value) __ksym __weak;

static __always_inline void *reserve(__u64 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);
	if (!e)
		__sync_fetch_and_add(&lost, 1);
	return e;
}

/* Records are not urgent, and waking the reader for each one costs the exec'ing task an
 * irq_work and a wake-up: the reader polls every few milliseconds anyway, so only wake it
 * when a record must not wait (a held exec) or the buffer is filling up. */
#define WAKE_AT_BYTES (2 << 20)

static __always_inline void submit(void *e, bool urgent)
{
	bool wake = urgent || bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > WAKE_AT_BYTES;
	bpf_ringbuf_submit(e, wake ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

/* A full memory barrier: fetching BPF atomics are fully ordered. */
static __always_inline void full_barrier(void)
{
	if (__sync_fetch_and_add(&barrier, 0) == ~0ULL)
		barrier = 0;
}

static __always_inline __u32 tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

/* Known-blocked file, unchanged since its verdict (ctime compared where the kernel has the
 * 6.11+ split fields; older kernels match on (dev, ino) alone). */
static __always_inline bool is_blocked(struct inode *ino, __u64 dev, __u64 i)
{
	struct file_id id = {.dev = dev, .ino = i};
	struct blocked_file *b = bpf_map_lookup_elem(&blocked, &id);
	if (!b)
		return false;
	/* Bit 31 of i_ctime_nsec flags a multigrain ctime as queried (6.13+); not time. */
	if (bpf_core_field_exists(ino->i_ctime_sec))
		return BPF_CORE_READ(ino, i_ctime_sec) == b->ctime_sec &&
		       (BPF_CORE_READ(ino, i_ctime_nsec) & 0x7fffffff) == b->ctime_nsec;
	return true;
}

/* Should an exec from this filesystem wait for user space? */
static __always_inline bool wants_hold(struct settings *cfg, __u32 dev)
{
	__u32 *bits = bpf_map_lookup_elem(&devs, &dev);
	__u32 b = bits ? *bits : 0;
	if (cfg->hold_scope == CUSTOS_HOLD_UNWATCHED)
		return !(b & CUSTOS_DEV_WATCHED);
	if (cfg->hold_scope == CUSTOS_HOLD_MARKED)
		return b & CUSTOS_DEV_HOLD;
	return false;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct file *f = BPF_CORE_READ(bprm, file);
	struct inode *inode = BPF_CORE_READ(f, f_inode);
	__u64 ino = BPF_CORE_READ(inode, i_ino);
	__u32 dev = BPF_CORE_READ(inode, i_sb, s_dev);
	__u32 zero = 0, flags = 0;
	__u32 pid = BPF_CORE_READ(p, tgid);
	__u64 start = BPF_CORE_READ(p, start_boottime);
	struct settings *cfg = bpf_map_lookup_elem(&settings_map, &zero);
	bool hold = false;

	/* The verdict first: it must not depend on there being room to report it. */
	if (cfg && pid != cfg->self_pid) {
		if (is_blocked(inode, dev, ino)) {
			bpf_send_signal(SIGKILL);
			flags |= CUSTOS_EXEC_KILLED;
		} else if (wants_hold(cfg, dev)) {
			flags |= CUSTOS_EXEC_UNSEEN;
			hold = true;
		}
	}
	struct exec_event *e = reserve(sizeof(*e));
	struct held_exec h = {.start_boottime_ns = start, .stamp = bpf_ktime_get_ns()};
	if (hold && (!e || bpf_map_update_elem(&held, &pid, &h, BPF_ANY) != 0)) {
		/* Nobody would ever resume it: let it run, or kill it where the mode says so. */
		hold = false;
		flags |= CUSTOS_EXEC_OVERLOAD;
		if (cfg && cfg->kill_on_overload) {
			bpf_send_signal(SIGKILL);
			flags |= CUSTOS_EXEC_KILLED;
		}
	}
	/* Read after the hold is in the map, with a full barrier between: a ptrace attach that
	 * completes later finds it there (and kills it, calls.h); one that completed before shows
	 * here. */
	if (hold)
		full_barrier();
	if (hold && BPF_CORE_READ(p, ptrace)) {
		/* A tracer sees the SIGSTOP as a signal stop and can resume past it: the hold
		 * would not hold. Killed where the mode says so, else it runs (reported). */
		hold = false;
		bpf_map_delete_elem(&held, &pid);
		flags |= CUSTOS_EXEC_TRACED;
		if (cfg && cfg->kill_traced) {
			bpf_send_signal(SIGKILL);
			flags |= CUSTOS_EXEC_KILLED;
		}
	}
	if (hold) {
		/* Delivered before the new program's first instruction. */
		bpf_send_signal(SIGSTOP);
		flags |= CUSTOS_EXEC_HELD;
	}
	if (!e)
		return 0;
	e->kind = CUSTOS_REC_EXEC;
	e->_pad = 0;
	e->_pad2 = 0;
	e->hold_stamp = h.stamp;
	e->pid = pid;
	e->tid = BPF_CORE_READ(p, pid);
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->uid = BPF_CORE_READ(p, real_cred, uid.val);
	e->gid = BPF_CORE_READ(p, real_cred, gid.val);
	e->euid = BPF_CORE_READ(p, real_cred, euid.val);
	e->egid = BPF_CORE_READ(p, real_cred, egid.val);
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->start_boottime_ns = start;
	e->parent_start_boottime_ns = BPF_CORE_READ(p, real_parent, start_boottime);
	e->ino = ino;
	e->dev = dev;
	e->args_len = 0;

	__u32 cut = 0;
	e->path_len = walk_path(e->path, BPF_CORE_READ(f, f_path.dentry),
				BPF_CORE_READ(f, f_path.mnt), &cut);
	if (cut)
		flags |= CUSTOS_PATH_TRUNCATED;
	e->cwd_len = walk_path(e->cwd, BPF_CORE_READ(p, fs, pwd.dentry),
			       BPF_CORE_READ(p, fs, pwd.mnt), &cut);
	if (cut)
		flags |= CUSTOS_CWD_TRUNCATED;

	unsigned long a0 = BPF_CORE_READ(p, mm, arg_start);
	unsigned long a1 = BPF_CORE_READ(p, mm, arg_end);
	unsigned long want = a1 > a0 ? a1 - a0 : 0;
	/* At most BUF - 1 bytes, masked so the verifier sees the bound; never read past arg_end
	 * (it can be the last page of the stack). */
	__u32 len = want > CUSTOS_ARGS_BUF - 1 ? CUSTOS_ARGS_BUF - 1 : want;
	if (want > len)
		flags |= CUSTOS_ARGS_TRUNCATED;
	len &= CUSTOS_ARGS_BUF - 1;
	if (len > 0 && bpf_probe_read_user(e->args, len, (void *)a0) == 0)
		e->args_len = len;
	e->flags = flags;
	/* A held process waits on this record: wake the reader now. */
	submit(e, hold);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	struct fork_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	e->kind = CUSTOS_REC_FORK;
	e->parent_pid = BPF_CORE_READ(parent, tgid);
	e->parent_tid = BPF_CORE_READ(parent, pid);
	e->child_pid = BPF_CORE_READ(child, tgid);
	e->child_tid = BPF_CORE_READ(child, pid);
	/* CLONE_THREAD keeps the thread group: same tgid as the parent. */
	e->is_thread = e->child_pid == e->parent_pid;
	e->child_start_boottime_ns = BPF_CORE_READ(child, start_boottime);
	/* The parent's thread-group leader identifies the parent process. */
	e->parent_start_boottime_ns = BPF_CORE_READ(parent, group_leader, start_boottime);
	submit(e, false);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	__u32 pid = BPF_CORE_READ(p, tgid);
	__u32 tid = BPF_CORE_READ(p, pid);
	/* The process ends with its last thread, which need not be the leader: do_exit has
	 * already counted this one out of signal->live. */
	bool group_dead = BPF_CORE_READ(p, signal, live.counter) == 0;
	if (group_dead)
		bpf_map_delete_elem(&held, &pid);
	struct exit_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	e->kind = CUSTOS_REC_EXIT;
	e->pid = pid;
	e->tid = tid;
	e->exit_code = BPF_CORE_READ(p, exit_code);
	e->is_thread = !group_dead;
	e->_pad = 0;
	/* The process's start (its leader's), which names it even when another thread ends it. */
	e->start_boottime_ns = BPF_CORE_READ(p, group_leader, start_boottime);
	submit(e, false);
	return 0;
}

#include "calls.h"
