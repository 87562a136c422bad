/* Syscall-level sensors, included by process.bpf.c: executable mappings (image loads) and
 * injection (ptrace, process_vm_writev), plus the guard on held execs. Each syscall's
 * arguments are kept from its enter to its exit tracepoint, so only calls that happened are
 * reported, with their result.
 * Kernel requirements: syscall tracepoints (CONFIG_FTRACE_SYSCALLS) and tracefs mounted. */
#ifndef CUSTOS_CALLS_H
#define CUSTOS_CALLS_H

#define PTRACE_POKETEXT 4
#define PTRACE_POKEDATA 5
#define PTRACE_POKEUSER 6
#define PTRACE_SETREGS 13
#define PTRACE_SETFPREGS 15
#define PTRACE_ATTACH 16
#define PTRACE_SETREGSET 0x4205
#define PTRACE_SEIZE 0x4206

static __always_inline bool is_injecting(__u64 req)
{
	switch (req) {
	case PTRACE_POKETEXT:
	case PTRACE_POKEDATA:
	case PTRACE_POKEUSER:
	case PTRACE_SETREGS:
	case PTRACE_SETFPREGS:
	case PTRACE_ATTACH:
	case PTRACE_SETREGSET:
	case PTRACE_SEIZE:
		return true;
	}
	return false;
}

static __always_inline bool remember_in(void *map, struct pending_call *c)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	return bpf_map_update_elem(map, &tid, c, BPF_ANY) == 0;
}

static __always_inline void remember(struct pending_call *c)
{
	remember_in(&calls, c);
}

/* The call this thread entered, if it is one we track; removed from the map. */
static __always_inline bool recall_from(void *map, struct pending_call *out, __u32 what)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending_call *c = bpf_map_lookup_elem(map, &tid);
	if (!c)
		return false;
	bool ok = c->what == what;
	if (ok)
		*out = *c;
	bpf_map_delete_elem(map, &tid);
	return ok;
}

static __always_inline bool recall(struct pending_call *out, __u32 what)
{
	return recall_from(&calls, out, what);
}

/* Held for judgement and not yet released: touching it is tampering. */
static __always_inline bool is_held(__u32 pid)
{
	return bpf_map_lookup_elem(&held, &pid) != NULL;
}

static __always_inline __u64 my_start(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	return BPF_CORE_READ(t, group_leader, start_boottime);
}

SEC("tracepoint/syscalls/sys_enter_mmap")
int on_mmap_enter(struct syscall_enter_ctx *ctx)
{
	__u64 prot = ctx->args[2], flags = ctx->args[3];
	int fd = (int)ctx->args[4];
	if (!(prot & PROT_EXEC) || (flags & MAP_ANONYMOUS) || fd < 0)
		return 0;
	struct pending_call c = {
		.what = CUSTOS_REC_IMAGE,
		.fd = fd,
		.prot = prot,
		.len = ctx->args[1],
		.off = ctx->args[5],
	};
	remember(&c);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_mmap")
int on_mmap_exit(struct syscall_exit_ctx *ctx)
{
	struct pending_call c;
	if (!recall(&c, CUSTOS_REC_IMAGE) || (ctx->ret < 0 && ctx->ret > -4096))
		return 0;
	/* The fd still names the mapped file: the call has just returned in this thread. */
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (c.fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[c.fd]) || !f)
		return 0;
	struct image_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	e->kind = CUSTOS_REC_IMAGE;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->prot = c.prot;
	e->addr = ctx->ret;
	e->len = c.len;
	e->pgoff = c.off;
	e->start_boottime_ns = BPF_CORE_READ(t, group_leader, start_boottime);
	e->ino = BPF_CORE_READ(f, f_inode, i_ino);
	e->dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
	__u32 cut = 0;
	e->path_len = walk_path(e->path, BPF_CORE_READ(f, f_path.dentry),
				BPF_CORE_READ(f, f_path.mnt), &cut);
	e->flags = cut ? CUSTOS_PATH_TRUNCATED : 0;
	submit(e, false);
	return 0;
}

/* The global tgid of `vpid` as the caller sees it (its pid namespace), or 0. */
static __always_inline __u32 global_tgid(__u32 vpid)
{
	if (!bpf_ksym_exists(bpf_task_from_vpid) || !bpf_ksym_exists(bpf_task_release)) {
		/* Without the kfunc a pid means the global one only in the initial namespace. */
		struct task_struct *me = (struct task_struct *)bpf_get_current_task_btf();
		return BPF_CORE_READ(me, thread_pid, level) == 0 ? vpid : 0;
	}
	struct task_struct *t = bpf_task_from_vpid(vpid);
	if (!t)
		return 0;
	__u32 global = BPF_CORE_READ(t, tgid);
	bpf_task_release(t);
	return global;
}

/* Kills a held exec's process (by global tgid). Returns CUSTOS_INJECT_TAMPER if it was held,
 * plus CUSTOS_INJECT_KILL_FAILED if the kernel could not send the kill from here (the hold
 * then stays, and the agent kills it through a pidfd when it reads the record). */
static __always_inline __u32 kill_held(__u32 target, __u64 *target_start)
{
	struct held_exec *h = bpf_map_lookup_elem(&held, &target);
	if (!h)
		return 0;
	*target_start = h->start_boottime_ns;
	long r = -1;
	if (bpf_ksym_exists(bpf_task_from_pid) && bpf_ksym_exists(bpf_send_signal_task)) {
		struct task_struct *t = bpf_task_from_pid(target);
		if (t) {
			r = bpf_send_signal_task(t, SIGKILL, PIDTYPE_TGID, 0);
			bpf_task_release(t);
		}
	}
	if (r != 0)
		return CUSTOS_INJECT_TAMPER | CUSTOS_INJECT_KILL_FAILED;
	bpf_map_delete_elem(&held, &target);
	return CUSTOS_INJECT_TAMPER;
}

static __always_inline void report_inject(__u32 syscall, struct pending_call *c, long ret,
					  __u32 flags, __u64 target_start)
{
	struct inject_event *e = reserve(sizeof(*e));
	if (!e)
		return;
	__u64 id = bpf_get_current_pid_tgid();
	e->kind = CUSTOS_REC_INJECT;
	e->syscall = syscall;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->target_pid = c->target;
	e->request = c->request;
	e->result = ret;
	e->addr = c->addr;
	e->start_boottime_ns = my_start();
	e->flags = flags;
	e->_pad = 0;
	e->target_start_boottime_ns = target_start;
	/* A kill the kernel could not send is the agent's to send: now. */
	submit(e, flags & CUSTOS_INJECT_KILL_FAILED);
}

/* Keeps a ptrace/process_vm_writev call for its exit, where a success against a held exec is
 * tampering. If it cannot be kept (map full), a call that could take over a held exec is
 * treated as tampering at once, before it runs. */
static __always_inline void guard_or_remember(struct pending_call *c, bool takes_over)
{
	if (remember_in(&inject_calls, c))
		return;
	__u64 tstart = 0;
	__u32 tamper = takes_over ? kill_held(c->target, &tstart) : 0;
	if (tamper)
		report_inject(c->what, c, 0, tamper, tstart);
}

SEC("tracepoint/syscalls/sys_enter_ptrace")
int on_ptrace_enter(struct syscall_enter_ctx *ctx)
{
	__u64 req = ctx->args[0];
	if (!is_injecting(req))
		return 0;
	__u32 target = global_tgid(ctx->args[1]);
	struct pending_call c = {
		.what = CUSTOS_INJECT_PTRACE,
		.target = target,
		.request = req,
		.addr = ctx->args[2],
	};
	guard_or_remember(&c, req == PTRACE_ATTACH || req == PTRACE_SEIZE);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_ptrace")
int on_ptrace_exit(struct syscall_exit_ctx *ctx)
{
	struct pending_call c;
	if (!recall_from(&inject_calls, &c, CUSTOS_INJECT_PTRACE))
		return 0;
	/* Only a tracer can resume or change a tracee, and becoming one takes a successful attach
	 * or seize. Checked on return, after the kernel's permission check and after the attach
	 * itself, so an attach that raced the exec's hold is caught too; the tracer cannot issue
	 * its next request before this returns. */
	__u32 tamper = 0;
	__u64 tstart = 0;
	if (ctx->ret == 0 && (c.request == PTRACE_ATTACH || c.request == PTRACE_SEIZE))
		tamper = kill_held(c.target, &tstart);
	report_inject(CUSTOS_INJECT_PTRACE, &c, ctx->ret, tamper, tstart);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_process_vm_writev")
int on_vm_write_enter(struct syscall_enter_ctx *ctx)
{
	__u32 target = global_tgid(ctx->args[0]);
	struct pending_call c = {
		.what = CUSTOS_INJECT_VM_WRITE,
		.target = target,
		.addr = ctx->args[3], /* remote iovec */
	};
	/* Writing into oneself is not injection. */
	if (target == tgid())
		return 0;
	guard_or_remember(&c, true);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_process_vm_writev")
int on_vm_write_exit(struct syscall_exit_ctx *ctx)
{
	struct pending_call c;
	if (!recall_from(&inject_calls, &c, CUSTOS_INJECT_VM_WRITE))
		return 0;
	/* Bytes were written into a held exec (permission checked): it must not run. */
	__u64 tstart = 0;
	__u32 tamper = ctx->ret > 0 ? kill_held(c.target, &tstart) : 0;
	report_inject(CUSTOS_INJECT_VM_WRITE, &c, ctx->ret, tamper, tstart);
	return 0;
}

/* SIGCONT to a held exec from anyone but the agent (a user, a shell's fg/bg, or the kernel
 * continuing an orphaned process group) would let
 * an unjudged program run: kill it instead. The kill is queued from here (signal lock held),
 * so it lands microseconds later — docs/ebpf.md says what that leaves. */
SEC("tp_btf/signal_generate")
int BPF_PROG(on_signal, int sig, struct kernel_siginfo *info, struct task_struct *task,
	     int group, int result)
{
	if (sig != SIGCONT)
		return 0;
	__u32 target = BPF_CORE_READ(task, tgid);
	if (!is_held(target))
		return 0;
	__u32 zero = 0;
	struct settings *cfg = bpf_map_lookup_elem(&settings_map, &zero);
	if (cfg && tgid() == cfg->self_pid)
		return 0; /* the agent resuming its own hold */
	__u64 tstart = 0;
	__u32 tamper = kill_held(target, &tstart);
	struct pending_call c = {.target = target};
	report_inject(CUSTOS_INJECT_SIGCONT, &c, 0, tamper, tstart);
	return 0;
}

#endif
