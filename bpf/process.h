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

/* flags */
#define CUSTOS_PATH_TRUNCATED 1
#define CUSTOS_ARGS_TRUNCATED 2

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
	char path[CUSTOS_PATH_BUF];
	char args[CUSTOS_ARGS_BUF];
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

/* A task ended: a whole process when its leader exits, else one thread. */
struct exit_event {
	__u32 kind;       /* CUSTOS_REC_EXIT */
	__u32 pid;
	__u32 tid;
	__s32 exit_code;  /* wait(2) status layout: (code << 8) | signal */
	__u32 is_thread;
	__u32 _pad;
	__u64 start_boottime_ns;
};

#endif
