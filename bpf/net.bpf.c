// SPDX-License-Identifier: GPL-2.0
/* Network sensor and policy.
 *
 * - cgroup sock_addr programs (connect4/6, sendmsg4/6, bind4/6), attached to a cgroup v2
 *   directory (the root: every process): judge each attempt against the rule table and the
 *   quarantine, refuse with EPERM by returning 0, and note who owns each socket.
 * - tp_btf/inet_sock_set_state: TCP outcomes (established, failed), listen, and the close of
 *   a reported connection with its byte counts.
 * - syscalls/sys_exit_accept{,4}: the accepted connection and the process that took it.
 * - cgroup_skb/ingress: UDP datagrams from port 53 (DNS answers), copied to user space.
 *
 * Kernel requirements: cgroup v2, BTF for tp_btf and CO-RE, BPF ring buffer (5.8+), bpf_loop
 * (5.17+), syscall tracepoints (tracefs) for accept; bpf_get_current_task in cgroup programs
 * needs CAP_PERFMON (root). */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "net.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define TCP_LISTEN 10

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} net_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct net_settings);
} net_settings_map SEC(".maps");

/* Two tables of CUSTOS_NET_RULES: user space fills the idle one, then flips
 * net_settings.table, so a program never sees half a rule set. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * CUSTOS_NET_RULES);
	__type(key, __u32);
	__type(value, struct net_rule);
} rules SEC(".maps");

/* Programs the verdict engine trusts: the quarantine lets them through. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct prog_id);
	__type(value, __u8);
} trusted SEC(".maps");

/* Who owns a socket, by its kernel address. */
struct owner {
	__u32 tgid;
	__u32 tid;
	__u32 uid;
	__u8 verdict;
	__u8 flags;
	__u8 reported; /* a CONNECT or ACCEPT went out: report the close */
	__u8 pending;  /* noted by connect4/6 for the handshake that follows */
	__u64 start_boottime_ns;
	__u64 prog_dev;
	__u64 prog_ino;
	__u64 rule_id;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct owner);
} socks SEC(".maps");

/* UDP sends already reported: (socket, address, port, verdict). */
struct send_key {
	__u64 sk;
	__u8 addr[16];
	__u16 port;
	__u8 verdict;
	__u8 _pad[5];
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct send_key);
	__type(value, __u8);
} sends SEC(".maps");

/* Sockets that talked to port 53, by socket cookie: whose DNS answers arrive there. */
struct dns_owner {
	__u32 tgid;
	__u32 _pad;
	__u64 start_boottime_ns;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct dns_owner);
} dns_socks SEC(".maps");

/* Reservation failures (ring buffer full): never silent. */
__u64 lost = 0;

/* Export the shared types to the skeleton's generated types. */
struct net_event _net_event = {};
struct dns_event _dns_event = {};
struct net_rule _net_rule = {};
struct net_settings _net_settings = {};
struct prog_id _prog_id = {};

static __always_inline void *reserve(__u64 size)
{
	void *e = bpf_ringbuf_reserve(&net_events, size, 0);
	if (!e)
		__sync_fetch_and_add(&lost, 1);
	return e;
}

/* Not urgent: the reader polls; wake it only when the buffer fills up. */
static __always_inline void submit(void *e)
{
	__u64 avail = bpf_ringbuf_query(&net_events, BPF_RB_AVAIL_DATA);
	bpf_ringbuf_submit(e, avail > (1 << 20) ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

static __always_inline struct net_settings *settings(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&net_settings_map, &zero);
}

/* The current process, its program file and uid. */
static __always_inline void current_owner(struct owner *o)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u64 id = bpf_get_current_pid_tgid();
	o->tgid = id >> 32;
	o->tid = (__u32)id;
	o->uid = BPF_CORE_READ(t, real_cred, uid.val);
	o->start_boottime_ns = BPF_CORE_READ(t, group_leader, start_boottime);
	struct inode *ino = BPF_CORE_READ(t, mm, exe_file, f_inode);
	if (ino) {
		o->prog_ino = BPF_CORE_READ(ino, i_ino);
		o->prog_dev = BPF_CORE_READ(ino, i_sb, s_dev);
	}
}

static __always_inline void fill_owner(struct net_event *e, const struct owner *o)
{
	e->pid = o->tgid;
	e->tid = o->tid;
	e->uid = o->uid;
	e->start_boottime_ns = o->start_boottime_ns;
	e->prog_dev = o->prog_dev;
	e->prog_ino = o->prog_ino;
	e->rule_id = o->rule_id;
	e->verdict = o->verdict;
	e->flags |= o->flags;
}

/* An attempt, as the policy sees it. */
struct attempt {
	__u8 addr[16]; /* the remote end (bind: the local one); IPv4 in the first 4 bytes */
	__u16 port;
	__u8 family;   /* 4 or 6; an IPv4-mapped IPv6 address counts as 4 */
	__u8 protocol;
	__u8 hook;
};

struct scan {
	const struct attempt *a;
	__u64 prog_dev;
	__u64 prog_ino;
	__u32 base;
	__s32 hit;
};

static __always_inline bool prefix_match(const __u8 *net, const __u8 *addr, __u8 prefix)
{
#pragma unroll
	for (int i = 0; i < 16; i++) {
		int bits = (int)prefix - i * 8;
		if (bits <= 0)
			break;
		__u8 mask = bits >= 8 ? 0xff : (__u8)(0xff << (8 - bits));
		if ((net[i] ^ addr[i]) & mask)
			return false;
	}
	return true;
}

static long rule_step(__u64 i, struct scan *s)
{
	__u32 k = s->base + (__u32)i;
	struct net_rule *r = bpf_map_lookup_elem(&rules, &k);
	const struct attempt *a = s->a;
	if (!r)
		return 1;
	if (!(r->hooks & a->hook))
		return 0;
	if (r->protocol && r->protocol != a->protocol)
		return 0;
	if (a->port < r->port_lo || a->port > r->port_hi)
		return 0;
	if (r->prog_ino && (r->prog_ino != s->prog_ino || r->prog_dev != s->prog_dev))
		return 0;
	if (r->family && (r->family != a->family || !prefix_match(r->addr, a->addr, r->prefix)))
		return 0;
	s->hit = (__s32)i;
	return 1;
}

/* The rules first (the first match decides), then the quarantine. Fills o's verdict. */
static __always_inline void judge(const struct attempt *a, struct owner *o)
{
	struct net_settings *st = settings();
	o->verdict = CUSTOS_NET_ALLOWED;
	if (!st || o->tgid == st->self_tgid)
		return;
	__u32 table = st->table & 1;
	__u32 n = table ? st->count[1] : st->count[0];
	if (n > CUSTOS_NET_RULES)
		n = CUSTOS_NET_RULES;
	struct scan s = {
		.a = a,
		.prog_dev = o->prog_dev,
		.prog_ino = o->prog_ino,
		.base = table * CUSTOS_NET_RULES,
		.hit = -1,
	};
	if (n)
		bpf_loop(n, rule_step, &s, 0);
	if (s.hit >= 0) {
		__u32 k = s.base + (__u32)s.hit;
		struct net_rule *r = bpf_map_lookup_elem(&rules, &k);
		if (!r)
			return;
		o->rule_id = r->id;
		o->flags |= CUSTOS_NET_RULE_HIT;
		if (r->deny)
			o->verdict = (r->audit || !st->enforce) ? CUSTOS_NET_AUDIT : CUSTOS_NET_DENIED;
		return;
	}
	if (st->quarantine && o->prog_ino) {
		struct prog_id id = { .dev = o->prog_dev, .ino = o->prog_ino };
		if (!bpf_map_lookup_elem(&trusted, &id)) {
			o->flags |= CUSTOS_NET_QUARANTINE;
			o->verdict = st->enforce ? CUSTOS_NET_DENIED : CUSTOS_NET_AUDIT;
		}
	}
}

/* The address a sock_addr program sees, as an attempt. */
static __always_inline void read_addr(struct bpf_sock_addr *ctx, struct attempt *a, bool v6)
{
	a->port = bpf_ntohs((__u16)ctx->user_port);
	a->protocol = (__u8)ctx->protocol;
	if (!v6) {
		a->family = 4;
		__u32 ip = ctx->user_ip4;
		__builtin_memcpy(a->addr, &ip, 4);
		return;
	}
	__u32 w[4];
	w[0] = ctx->user_ip6[0];
	w[1] = ctx->user_ip6[1];
	w[2] = ctx->user_ip6[2];
	w[3] = ctx->user_ip6[3];
	if (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff)) {
		a->family = 4;
		__builtin_memcpy(a->addr, &w[3], 4);
		return;
	}
	a->family = 6;
	__builtin_memcpy(a->addr, w, 16);
}

static __always_inline void put_attempt(struct net_event *e, const struct attempt *a, bool local)
{
	e->family = a->family;
	e->protocol = a->protocol;
	if (local) {
		__builtin_memcpy(e->local, a->addr, 16);
		e->local_port = a->port;
	} else {
		__builtin_memcpy(e->remote, a->addr, 16);
		e->remote_port = a->port;
	}
}

static __always_inline void emit_attempt(__u32 kind, const struct attempt *a,
					 const struct owner *o, bool local)
{
	struct net_event *e = reserve(sizeof(*e));
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->ts_boot_ns = bpf_ktime_get_boot_ns();
	fill_owner(e, o);
	if (o->verdict == CUSTOS_NET_DENIED)
		e->flags |= CUSTOS_NET_FAILED;
	put_attempt(e, a, local);
	submit(e);
}

static __always_inline void note_dns(void *ctx, const struct attempt *a, const struct owner *o)
{
	if (a->port != 53 || a->protocol != IPPROTO_UDP)
		return;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct dns_owner d = { .tgid = o->tgid, .start_boottime_ns = o->start_boottime_ns };
	bpf_map_update_elem(&dns_socks, &cookie, &d, BPF_ANY);
}

/* Reads the attempt, who makes it, and the policy's verdict on it; false for protocols other
 * than TCP and UDP, which the policy leaves alone. */
static __always_inline bool judged(struct bpf_sock_addr *ctx, bool v6, struct attempt *a,
				   struct owner *o)
{
	read_addr(ctx, a, v6);
	if (a->protocol != IPPROTO_TCP && a->protocol != IPPROTO_UDP)
		return false;
	current_owner(o);
	judge(a, o);
	return true;
}

static __always_inline int on_connect(struct bpf_sock_addr *ctx, bool v6)
{
	struct attempt a = { .hook = CUSTOS_HOOK_OUT };
	struct owner o = {};
	if (!judged(ctx, v6, &a, &o))
		return 1;
	if (o.verdict == CUSTOS_NET_DENIED) {
		emit_attempt(CUSTOS_NET_CONNECT, &a, &o, false);
		return 0;
	}
	if (a.protocol == IPPROTO_TCP) {
		/* Reported when the handshake ends (inet_sock_set_state). */
		__u64 sk = (__u64)ctx->sk;
		o.pending = 1;
		bpf_map_update_elem(&socks, &sk, &o, BPF_ANY);
		return 1;
	}
	note_dns(ctx, &a, &o);
	emit_attempt(CUSTOS_NET_CONNECT, &a, &o, false);
	return 1;
}

static __always_inline int on_sendmsg(struct bpf_sock_addr *ctx, bool v6)
{
	struct attempt a = { .hook = CUSTOS_HOOK_OUT };
	struct owner o = {};
	/* Only UDP sends to an address reach this hook. */
	if (!judged(ctx, v6, &a, &o))
		return 1;
	if (o.verdict != CUSTOS_NET_DENIED)
		note_dns(ctx, &a, &o);
	struct send_key k = { .sk = (__u64)ctx->sk, .port = a.port, .verdict = o.verdict };
	__builtin_memcpy(k.addr, a.addr, 16);
	__u8 one = 1;
	if (bpf_map_update_elem(&sends, &k, &one, BPF_NOEXIST) == 0)
		emit_attempt(CUSTOS_NET_SEND, &a, &o, false);
	return o.verdict == CUSTOS_NET_DENIED ? 0 : 1;
}

static __always_inline int on_bind(struct bpf_sock_addr *ctx, bool v6)
{
	struct attempt a = { .hook = CUSTOS_HOOK_BIND };
	struct owner o = {};
	if (!judged(ctx, v6, &a, &o))
		return 1;
	/* TCP servers are reported when they listen; UDP ones here. */
	if (o.verdict != CUSTOS_NET_ALLOWED || (o.flags & CUSTOS_NET_RULE_HIT) ||
	    (a.protocol == IPPROTO_UDP && a.port != 0))
		emit_attempt(CUSTOS_NET_BIND, &a, &o, true);
	return o.verdict == CUSTOS_NET_DENIED ? 0 : 1;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx) { return on_connect(ctx, false); }
SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx) { return on_connect(ctx, true); }
SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx) { return on_sendmsg(ctx, false); }
SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx) { return on_sendmsg(ctx, true); }
SEC("cgroup/bind4")
int bind4(struct bpf_sock_addr *ctx) { return on_bind(ctx, false); }
SEC("cgroup/bind6")
int bind6(struct bpf_sock_addr *ctx) { return on_bind(ctx, true); }

/* Both ends of a socket, from the kernel's sock. */
static __always_inline bool read_sock(const struct sock *sk, struct net_event *e)
{
	unsigned short fam = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->protocol = IPPROTO_TCP;
	e->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (fam == AF_INET) {
		e->family = 4;
		__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(e->local, &l, 4);
		__builtin_memcpy(e->remote, &r, 4);
		return true;
	}
	if (fam != AF_INET6)
		return false;
	e->family = 6;
	BPF_CORE_READ_INTO(&e->local, sk, __sk_common.skc_v6_rcv_saddr);
	BPF_CORE_READ_INTO(&e->remote, sk, __sk_common.skc_v6_daddr);
	return true;
}

/* TCP states a connection leaves for CLOSE after the peer's FIN arrived. */
#define TCP_FIN_WAIT2 5
#define TCP_TIME_WAIT 6
#define TCP_LAST_ACK 9
#define TCP_CLOSING 11

static __always_inline void emit_sock(__u32 kind, const struct sock *sk, const struct owner *o,
				      __u8 flags, int bytes_from)
{
	struct net_event *e = reserve(sizeof(*e));
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	if (!read_sock(sk, e)) {
		bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
		return;
	}
	e->kind = kind;
	e->ts_boot_ns = bpf_ktime_get_boot_ns();
	e->flags = flags;
	if (o)
		fill_owner(e, o);
	if (bytes_from >= 0) {
		/* Data only: bytes_received counts the peer's FIN (a sequence number), so it is
		 * taken off when the state left says the FIN came (an expired FIN_WAIT2 is
		 * miscounted by one). */
		const struct tcp_sock *tp = (const struct tcp_sock *)sk;
		__u64 in = BPF_CORE_READ(tp, bytes_received);
		bool fin = bytes_from == TCP_FIN_WAIT2 || bytes_from == TCP_TIME_WAIT ||
			   bytes_from == TCP_LAST_ACK || bytes_from == TCP_CLOSING;
		e->bytes_in = fin && in ? in - 1 : in;
		e->bytes_out = BPF_CORE_READ(tp, bytes_sent);
	}
	submit(e);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, const struct sock *sk, const int old, const int new)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	__u64 key = (__u64)sk;
	if (new == TCP_SYN_SENT) {
		/* In the connecting process. connect4 noted it just before, with the policy's
		 * verdict, unless the process is outside the policy's cgroup; an older entry at
		 * this address is a socket that was freed without a CLOSE seen here. */
		struct owner o = {};
		current_owner(&o);
		struct owner *noted = bpf_map_lookup_elem(&socks, &key);
		if (noted && noted->pending && noted->tid == o.tid &&
		    noted->start_boottime_ns == o.start_boottime_ns) {
			noted->pending = 0;
			return 0;
		}
		bpf_map_update_elem(&socks, &key, &o, BPF_ANY);
		return 0;
	}
	if (new == TCP_LISTEN) {
		struct owner o = {};
		current_owner(&o);
		emit_sock(CUSTOS_NET_LISTEN, sk, &o, 0, -1);
		return 0;
	}
	struct owner *o = bpf_map_lookup_elem(&socks, &key);
	if (old == TCP_SYN_SENT) {
		/* The handshake ended, usually in softirq: the owner comes from the map. */
		bool ok = new == TCP_ESTABLISHED;
		emit_sock(CUSTOS_NET_CONNECT, sk, o, ok ? 0 : CUSTOS_NET_FAILED, -1);
		if (o && ok)
			o->reported = 1;
		else if (o)
			bpf_map_delete_elem(&socks, &key);
		return 0;
	}
	if (new == TCP_CLOSE && o) {
		if (o->reported)
			emit_sock(CUSTOS_NET_CLOSE, sk, o, 0, old);
		bpf_map_delete_elem(&socks, &key);
	}
	return 0;
}

/* accept: the new socket is the returned fd of the current process. */
static __always_inline int on_accept_exit(struct syscall_exit_ctx *ctx)
{
	long fd = ctx->ret;
	if (fd < 0)
		return 0;
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f)
		return 0;
	struct socket *so = BPF_CORE_READ(f, private_data);
	struct sock *sk = so ? BPF_CORE_READ(so, sk) : NULL;
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	struct owner o = {};
	current_owner(&o);
	o.reported = 1;
	__u64 key = (__u64)sk;
	bpf_map_update_elem(&socks, &key, &o, BPF_ANY);
	emit_sock(CUSTOS_NET_ACCEPT, sk, &o, 0, -1);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int on_accept4_exit(struct syscall_exit_ctx *ctx) { return on_accept_exit(ctx); }
SEC("tracepoint/syscalls/sys_exit_accept")
int on_accept_exit_plain(struct syscall_exit_ctx *ctx) { return on_accept_exit(ctx); }

/* DNS answers: UDP from port 53, the payload copied for user space to parse. */
SEC("cgroup_skb/ingress")
int dns_in(struct __sk_buff *skb)
{
	__u8 vh;
	if (bpf_skb_load_bytes(skb, 0, &vh, 1))
		return 1;
	__u32 udp_off;
	__u8 fam;
	__u8 proto;
	__u16 tot;
	if ((vh >> 4) == 4) {
		fam = 4;
		udp_off = (vh & 0xf) * 4;
		if (bpf_skb_load_bytes(skb, 9, &proto, 1))
			return 1;
	} else if ((vh >> 4) == 6) {
		fam = 6;
		udp_off = 40;
		if (bpf_skb_load_bytes(skb, 6, &proto, 1))
			return 1;
	} else {
		return 1;
	}
	if (proto != IPPROTO_UDP)
		return 1;
	__u16 ports[4]; /* source, destination, length, checksum */
	if (bpf_skb_load_bytes(skb, udp_off, ports, 8))
		return 1;
	if (ports[0] != bpf_htons(53))
		return 1;
	tot = bpf_ntohs(ports[2]);
	if (tot <= 8 + 12)
		return 1;
	__u32 len = tot - 8;
	struct dns_event *e = reserve(sizeof(*e));
	if (!e)
		return 1;
	e->kind = CUSTOS_NET_DNS;
	e->family = fam;
	e->server_port = 53;
	__builtin_memset(e->server, 0, 16);
	if (fam == 4)
		bpf_skb_load_bytes(skb, 12, e->server, 4);
	else
		bpf_skb_load_bytes(skb, 8, e->server, 16);
	if (len > CUSTOS_DNS_MAX)
		len = CUSTOS_DNS_MAX;
	len &= 0x3ff;
	if (len == 0 || len > CUSTOS_DNS_MAX ||
	    bpf_skb_load_bytes(skb, udp_off + 8, e->data, len)) {
		bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
		return 1;
	}
	e->len = len;
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct dns_owner *d = bpf_map_lookup_elem(&dns_socks, &cookie);
	e->pid = d ? d->tgid : 0;
	e->start_boottime_ns = d ? d->start_boottime_ns : 0;
	submit(e);
	return 1;
}
