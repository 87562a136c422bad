/* Minimal CO-RE view of the kernel types custos reads. Only the fields used are declared;
 * preserve_access_index makes libbpf relocate every access against the running kernel's BTF,
 * so this header is not tied to the build host's kernel. */
#ifndef CUSTOS_VMLINUX_MIN_H
#define CUSTOS_VMLINUX_MIN_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed int __s32;
typedef long long __s64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;
typedef int pid_t;
typedef unsigned int uid_t;
typedef unsigned int gid_t;
typedef _Bool bool;
typedef __u32 __wsum;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 dev_t;
typedef unsigned long size_t;

enum { false = 0, true = 1 };

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
	BPF_RB_AVAIL_DATA = 0,
};

struct kernel_siginfo;

enum pid_type {
	PIDTYPE_PID,
	PIDTYPE_TGID,
	PIDTYPE_PGID,
	PIDTYPE_SID,
	PIDTYPE_MAX,
};

/* Classic syscall tracepoints: a fixed ABI (see events/syscalls/<name>/format), not CO-RE. */
struct syscall_enter_ctx {
	__u64 common;
	long nr;
	unsigned long args[6];
};
struct syscall_exit_ctx {
	__u64 common;
	long nr;
	long ret;
};

/* UAPI (include/uapi/linux/bpf.h): the context of cgroup sock_addr programs. A fixed ABI
 * the verifier rewrites, not CO-RE. */
struct bpf_sock;
struct __sk_buff;
struct bpf_sock_addr {
	__u32 user_family;
	__u32 user_ip4;     /* network order */
	__u32 user_ip6[4];
	__u32 user_port;    /* network order, in the low 16 bits */
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 msg_src_ip4;
	__u32 msg_src_ip6[4];
	union {
		struct bpf_sock *sk;
		__u64 :64;
	} __attribute__((aligned(8)));
};

#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)

typedef struct { uid_t val; } kuid_t;
typedef struct { gid_t val; } kgid_t;

struct qstr {
	union {
		struct {
			u32 hash;
			u32 len;
		};
		u64 hash_len;
	};
	const unsigned char *name;
};

struct super_block {
	dev_t s_dev;
};

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
	s64 i_ctime_sec;  /* 6.11+ */
	u32 i_ctime_nsec; /* 6.11+ */
};

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
};

struct vfsmount {
	struct dentry *mnt_root;
};

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
};

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
};

struct file {
	struct path f_path;
	struct inode *f_inode;
	void *private_data; /* a socket's struct socket */
};

struct linux_binprm {
	struct file *file;
	const char *filename;
};

struct cred {
	kuid_t uid;
	kgid_t gid;
	kuid_t euid;
	kgid_t egid;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct fs_struct {
	struct path pwd;
};

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
	struct file *exe_file;
};

struct in6_addr {
	union {
		u8 u6_addr8[16];
	} in6_u;
};

/* Anonymous unions and structs of the real type are matched by field name. */
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};

struct sock {
	struct sock_common __sk_common;
	u16 sk_type;
	u16 sk_protocol;
};

struct tcp_sock {
	u64 bytes_received; /* sequence space: a received FIN counts one */
	u64 bytes_sent;     /* data, retransmissions included */
};

struct socket {
	struct sock *sk;
};

typedef struct { int counter; } atomic_t;

struct signal_struct {
	atomic_t live; /* threads not yet exited */
};

struct pid {
	unsigned int level; /* depth of the pid namespace: 0 is the initial one */
};

struct task_struct {
	unsigned int ptrace;
	struct pid *thread_pid;
	struct signal_struct *signal;
	int exit_code;
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	const struct cred *real_cred;
	struct mm_struct *mm;
	struct files_struct *files;
	struct fs_struct *fs;
	u64 start_boottime;
};

#pragma clang attribute pop

#endif
