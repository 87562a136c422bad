// SPDX-License-Identifier: GPL-2.0
/* Process sensor: one record per exec, with the resolved path of the executable and argv.
 * Kernel requirements: BTF (CONFIG_DEBUG_INFO_BTF) for tp_btf and CO-RE; BPF ring buffer
 * (5.8+). bpf_d_path is not available to tp_btf programs, so the path is walked here. */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "process.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

/* Reservation failures (ring buffer full): never silent. */
__u64 lost = 0;

/* Export the record types to the skeleton's generated types. */
struct exec_event _exec_event = {};
struct fork_event _fork_event = {};
struct exit_event _exit_event = {};

/* Scratch space for building the path: bpf_loop callbacks write here (a map value the verifier
 * can bound), then the result is copied into the ring-buffer record. */
struct scratch {
	char path[CUSTOS_PATH_BUF];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

struct walk {
	struct dentry *d;
	struct vfsmount *vm;
	struct mount *m;
	__u32 off;
	__u32 flags;
};

/* One step of the walk from the executable up to the namespace root, appending names leaf
 * first, each NUL-terminated. bpf_loop (5.17+) verifies this once instead of per iteration. */
static long walk_step(__u32 i, void *arg)
{
	struct walk *w = arg;
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!s)
		return 1;
	/* Locals, not w->…: CO-RE must relocate kernel types only, never this struct. */
	struct dentry *d = w->d;
	struct vfsmount *vm = w->vm;
	struct mount *m = w->m;
	struct dentry *root = BPF_CORE_READ(vm, mnt_root);
	struct dentry *parent = BPF_CORE_READ(d, d_parent);

	if (d == root || d == parent) {
		struct mount *up = BPF_CORE_READ(m, mnt_parent);
		if (up == m || !up)
			return 1;                         /* reached the root of the namespace */
		w->d = BPF_CORE_READ(m, mnt_mountpoint); /* continue in the parent mount */
		w->m = up;
		w->vm = (struct vfsmount *)((char *)up + bpf_core_field_offset(struct mount, mnt));
		return 0;
	}
	__u32 off = w->off;
	if (off > CUSTOS_PATH_BUF - CUSTOS_NAME_MAX) {
		w->flags |= CUSTOS_PATH_TRUNCATED;
		return 1;
	}
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	long n = bpf_probe_read_kernel_str(&s->path[off], CUSTOS_NAME_MAX, name);
	if (n <= 0)
		return 1;
	w->off = off + n;
	w->d = parent;
	return 0;
}

static __always_inline void walk_path(struct exec_event *e, struct dentry *d, struct vfsmount *vm)
{
	struct walk w = {
		.d = d,
		.vm = vm,
		.m = (struct mount *)((char *)vm - bpf_core_field_offset(struct mount, mnt)),
	};
	long steps = bpf_loop(CUSTOS_MAX_DEPTH, walk_step, &w, 0);
	if (steps >= CUSTOS_MAX_DEPTH)
		w.flags |= CUSTOS_PATH_TRUNCATED;
	e->flags |= w.flags;
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	/* Constant size: the verifier cannot follow a variable one here; path_len marks the end. */
	if (s && bpf_probe_read_kernel(e->path, CUSTOS_PATH_BUF, s->path) == 0)
		e->path_len = w.off;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct exec_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&lost, 1);
		return 0;
	}
	e->kind = CUSTOS_REC_EXEC;
	e->_pad = 0;
	e->pid = BPF_CORE_READ(p, tgid);
	e->tid = BPF_CORE_READ(p, pid);
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->uid = BPF_CORE_READ(p, real_cred, uid.val);
	e->gid = BPF_CORE_READ(p, real_cred, gid.val);
	e->euid = BPF_CORE_READ(p, real_cred, euid.val);
	e->egid = BPF_CORE_READ(p, real_cred, egid.val);
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->start_boottime_ns = BPF_CORE_READ(p, start_boottime);
	e->parent_start_boottime_ns = BPF_CORE_READ(p, real_parent, start_boottime);
	e->flags = 0;
	e->path_len = 0;
	e->args_len = 0;

	struct file *f = BPF_CORE_READ(bprm, file);
	e->ino = BPF_CORE_READ(f, f_inode, i_ino);
	e->dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
	walk_path(e, BPF_CORE_READ(f, f_path.dentry), BPF_CORE_READ(f, f_path.mnt));

	unsigned long start = BPF_CORE_READ(p, mm, arg_start);
	unsigned long end = BPF_CORE_READ(p, mm, arg_end);
	unsigned long want = end > start ? end - start : 0;
	/* At most BUF - 1 bytes, masked so the verifier sees the bound; never read past arg_end
	 * (it can be the last page of the stack). */
	__u32 len = want > CUSTOS_ARGS_BUF - 1 ? CUSTOS_ARGS_BUF - 1 : want;
	if (want > len)
		e->flags |= CUSTOS_ARGS_TRUNCATED;
	len &= CUSTOS_ARGS_BUF - 1;
	if (len > 0 && bpf_probe_read_user(e->args, len, (void *)start) == 0)
		e->args_len = len;

	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	struct fork_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&lost, 1);
		return 0;
	}
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
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	struct exit_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&lost, 1);
		return 0;
	}
	e->kind = CUSTOS_REC_EXIT;
	e->pid = BPF_CORE_READ(p, tgid);
	e->tid = BPF_CORE_READ(p, pid);
	e->exit_code = BPF_CORE_READ(p, exit_code);
	e->is_thread = e->tid != e->pid;
	e->_pad = 0;
	e->start_boottime_ns = BPF_CORE_READ(p, start_boottime);
	bpf_ringbuf_submit(e, 0);
	return 0;
}
