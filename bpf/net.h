/* The ONLY definition of what the network sensor (bpf/net.bpf.c) and user space exchange.
 * Rust uses the types libbpf-cargo generates from this (crates/sensor-ebpf/src/net), never a
 * hand copy. */
#ifndef CUSTOS_NET_H
#define CUSTOS_NET_H

#define CUSTOS_NET_RULES 256   /* rules per table; two tables, one live (see net_settings) */
#define CUSTOS_DNS_MAX 512     /* DNS payload bytes copied per answer */

/* net_event.kind */
#define CUSTOS_NET_CONNECT 1   /* TCP: outcome known (established or failed); UDP: connect() */
#define CUSTOS_NET_ACCEPT 2
#define CUSTOS_NET_LISTEN 3
#define CUSTOS_NET_BIND 4      /* UDP binds to a port, and refused binds */
#define CUSTOS_NET_SEND 5      /* UDP: first send from a socket to an address */
#define CUSTOS_NET_CLOSE 6     /* TCP: a reported connection ends */
#define CUSTOS_NET_DNS 7       /* record is a dns_event */

/* net_event.verdict */
#define CUSTOS_NET_ALLOWED 0   /* no rule matched, or an allow rule (rule_id says which) */
#define CUSTOS_NET_DENIED 1    /* refused with EPERM */
#define CUSTOS_NET_AUDIT 2     /* a rule would deny; audit rule or audit mode */

/* net_event.flags */
#define CUSTOS_NET_FAILED 1      /* the connection failed (TCP: no handshake) */
#define CUSTOS_NET_QUARANTINE 2  /* decided by the quarantine, not a rule */
#define CUSTOS_NET_RULE_HIT 4    /* rule_id is set */

/* net_rule.hooks */
#define CUSTOS_HOOK_OUT 1  /* connect, send to an address */
#define CUSTOS_HOOK_BIND 2

/* One rule; the first that matches decides. */
struct net_rule {
	__u64 id;
	__u64 prog_dev;   /* kernel dev_t of the program's file; 0: any program */
	__u64 prog_ino;
	__u8 addr[16];    /* network; IPv4 in the first 4 bytes */
	__u8 family;      /* 0 any, 4, 6 */
	__u8 prefix;
	__u8 protocol;    /* 0 any, 6 TCP, 17 UDP */
	__u8 hooks;       /* CUSTOS_HOOK_* bits */
	__u8 deny;
	__u8 audit;
	__u16 port_lo;    /* host order */
	__u16 port_hi;
	__u16 _pad[3];
};

/* Written by user space (one-entry array), read by the policy programs. */
struct net_settings {
	__u32 table;       /* which rule table is live: 0 or 1 */
	__u32 count[2];    /* rules in each table */
	__u32 enforce;     /* 0 (audit mode): every deny becomes an audit */
	__u32 quarantine;  /* programs not in the trusted map get no network */
	__u32 self_tgid;   /* the agent: never judged */
	__u32 _pad;
};

/* Key of the trusted map: a program file. */
struct prog_id {
	__u64 dev; /* kernel dev_t */
	__u64 ino;
};

/* A connection or socket operation. Addresses in network order, ports in host order. */
struct net_event {
	__u32 kind;
	__u32 pid;        /* tgid of the process that did it (0: not known) */
	__u32 tid;
	__u32 uid;
	__u64 start_boottime_ns; /* of that process, for its entity id */
	__u64 ts_boot_ns;
	__u64 prog_dev;   /* its program file */
	__u64 prog_ino;
	__u64 rule_id;
	__u64 bytes_in;   /* CLOSE: data bytes received */
	__u64 bytes_out;  /* CLOSE: data bytes sent (retransmissions included) */
	__u8 local[16];
	__u8 remote[16];
	__u16 local_port;
	__u16 remote_port;
	__u8 family;      /* 4 or 6 */
	__u8 protocol;    /* 6 or 17 */
	__u8 verdict;     /* CUSTOS_NET_ALLOWED, _DENIED, _AUDIT */
	__u8 flags;       /* CUSTOS_NET_FAILED, _QUARANTINE, _RULE_HIT */
};

/* A DNS answer (UDP from port 53) arriving at a socket. */
struct dns_event {
	__u32 kind;       /* CUSTOS_NET_DNS */
	__u32 pid;        /* the socket's owner, as last seen connecting or sending; 0: unknown */
	__u64 start_boottime_ns;
	__u8 server[16];
	__u16 len;        /* payload bytes in data */
	__u16 server_port;
	__u8 family;
	__u8 _pad[3];
	__u8 data[CUSTOS_DNS_MAX];
};

#endif
