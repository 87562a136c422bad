/* The ONLY definition of the records the process sensor sends to user space. Rust uses the
 * types libbpf-cargo generates from this (crates/sensor-ebpf), never a hand copy. */
#ifndef CUSTOS_PROCESS_H
#define CUSTOS_PROCESS_H

#define CUSTOS_PATH_BUF 1024   /* resolved path: NUL-separated components, leaf first */
#define CUSTOS_ARGS_BUF 1024   /* argv as the kernel lays it out: NUL-separated */
#define CUSTOS_NAME_MAX 256    /* longest component read in one go */
#define CUSTOS_MAX_DEPTH 48    /* path components walked */

/* record kinds: the first field of every record */
#define CUSTOS_REC_EXEC 1
#define CUSTOS_REC_FORK 2
#define CUSTOS_REC_EXIT 3
#define CUSTOS_REC_IMAGE 4
#define CUSTOS_REC_INJECT 5

/* flags */
#define CUSTOS_PATH_TRUNCATED 1
#define CUSTOS_ARGS_TRUNCATED 2
#define CUSTOS_CWD_TRUNCATED 4
#define CUSTOS_EXEC_HELD 8     /* stopped (SIGSTOP) until user space judges it */
#define CUSTOS_EXEC_KILLED 16  /* killed in the kernel: (dev, ino) is in the blocked map */
#define CUSTOS_EXEC_UNSEEN 32  /* fanotify cannot see this exec (unwatched fs or memfd) */
#define CUSTOS_EXEC_OVERLOAD 64 /* would be held, but could not be (held map or ring full) */
#define CUSTOS_EXEC_TRACED 128  /* would be held, but runs under ptrace: a tracer could resume it */

/* The target of an injection was an exec held for judgement: it was killed. */
#define CUSTOS_INJECT_TAMPER 1
/* ... but the kernel could not send the kill from there: the agent must (via a pidfd). */
#define CUSTOS_INJECT_KILL_FAILED 2

/* inject_event.syscall */
#define CUSTOS_INJECT_PTRACE 1
#define CUSTOS_INJECT_VM_WRITE 2 /* process_vm_writev */
#define CUSTOS_INJECT_SIGCONT 3  /* SIGCONT sent to a held exec by someone else */

/* devs map values */
#define CUSTOS_DEV_WATCHED 1 /* the fanotify exec loop sees this filesystem */
#define CUSTOS_DEV_HOLD 2    /* hold execs from it (memfd's internal mount) */

/* settings.hold_scope */
#define CUSTOS_HOLD_OFF 0
#define CUSTOS_HOLD_MARKED 1    /* devs marked CUSTOS_DEV_HOLD (memfd) */
#define CUSTOS_HOLD_UNWATCHED 2 /* every dev not marked CUSTOS_DEV_WATCHED */

/* Written by user space (one-entry array map), read by the exec program. */
struct settings {
	__u32 hold_scope;
	__u32 kill_on_overload; /* an exec that cannot be held is killed (lockdown) */
	__u32 self_pid;         /* the agent: never held */
	__u32 kill_traced;      /* an exec under ptrace (which SIGSTOP cannot hold) is killed */
};

/* Held map value: which process (its start) and which hold of it (a stamp per exec, so
 * releasing one hold can never remove a later one of the same process). */
struct held_exec {
	__u64 start_boottime_ns;
	__u64 stamp;
};

/* Blocked map: (dev, ino) -> the ctime the verdict was computed for. */
struct file_id {
	__u64 dev;
	__u64 ino;
};
struct blocked_file {
	__s64 ctime_sec;
	__u32 ctime_nsec;
	__u32 _pad;
};

struct exec_event {
	__u32 kind;     /* CUSTOS_REC_EXEC */
	__u32 pid;      /* thread-group id of the process that exec'd */
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u32 egid;
	__u32 path_len; /* bytes used in path */
	__u32 args_len; /* bytes used in args */
	__u32 flags;
	__u32 _pad;
	__u64 cgroup_id;
	__u64 dev;      /* kernel dev_t of the executable's superblock */
	__u64 ino;
	__u64 start_boottime_ns;
	__u64 parent_start_boottime_ns;
	__u32 cwd_len;
	__u32 _pad2;
	__u64 hold_stamp; /* the held map's stamp for this exec (CUSTOS_EXEC_HELD) */
	char path[CUSTOS_PATH_BUF];
	char args[CUSTOS_ARGS_BUF];
	char cwd[CUSTOS_PATH_BUF];
};

/* A new task: a process (own thread group) or a thread (CLONE_THREAD, same thread group). */
struct fork_event {
	__u32 kind;       /* CUSTOS_REC_FORK */
	__u32 parent_pid; /* thread-group ids */
	__u32 parent_tid;
	__u32 child_pid;
	__u32 child_tid;
	__u32 is_thread;
	__u64 child_start_boottime_ns;
	__u64 parent_start_boottime_ns;
};

/* A task ended: the whole process when its last thread exits (is_thread 0), else one thread. */
struct exit_event {
	__u32 kind;       /* CUSTOS_REC_EXIT */
	__u32 pid;
	__u32 tid;
	__s32 exit_code;  /* wait(2) status layout: (code << 8) | signal */
	__u32 is_thread;
	__u32 _pad;
	__u64 start_boottime_ns;
};

/* A file mapped executable (mmap with PROT_EXEC): shared libraries, code ld.so maps. */
struct image_event {
	__u32 kind;     /* CUSTOS_REC_IMAGE */
	__u32 pid;
	__u32 tid;
	__u32 flags;
	__u32 path_len;
	__u32 prot;
	__u64 dev;
	__u64 ino;
	__u64 start_boottime_ns; /* of the process */
	__u64 addr;              /* where it was mapped */
	__u64 len;
	__u64 pgoff;             /* file offset, bytes */
	char path[CUSTOS_PATH_BUF];
};

/* One process acting on another's memory or execution. */
struct inject_event {
	__u32 kind;      /* CUSTOS_REC_INJECT */
	__u32 syscall;   /* CUSTOS_INJECT_* */
	__u32 pid;       /* source */
	__u32 tid;
	__u32 target_pid;
	__u32 request;   /* ptrace request */
	__s64 result;    /* syscall return (0 for SIGCONT) */
	__u64 addr;
	__u64 start_boottime_ns; /* of the source process */
	__u32 flags;     /* CUSTOS_INJECT_TAMPER */
	__u32 _pad;
	__u64 target_start_boottime_ns; /* of a held target (tamper), to kill it by */
};

#endif
