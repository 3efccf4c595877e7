/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Tincture event ABI: the only types and constants shared by the BPF programs
 * (bpf/<family>.bpf.c) and the agent (Sources/CTinctureBPF, decoded byte-for-byte in
 * Sources/TinctureCore/Events). Fixed-width fields, `kind` first so the reader
 * can dispatch, sizes asserted on both sides.
 */
#ifndef TINCTURE_ABI_H
#define TINCTURE_ABI_H

#define TN_COMM_LEN 16
#define TN_ADDR_LEN 16

/* Event kinds: the first __u32 of every ring-buffer record. */
enum tn_event_kind {
	TN_EVENT_CONNECT = 1,
	TN_EVENT_RETRANSMIT = 2,
	TN_EVENT_POLL = 3,
	TN_EVENT_PAYLOAD = 4,
	TN_EVENT_KIND_MAX = 8,
};

/* The attach mode of the program that produced an event. */
enum tn_attach_mode {
	TN_MODE_FENTRY = 1,
	TN_MODE_KPROBE = 2,
	TN_MODE_TRACEPOINT = 3,
};

/*
 * Per-CPU counters kept by the kernel side (map tn_counters). The first
 * TN_EVENT_KIND_MAX slots count ring-buffer reserve failures by event kind,
 * so loss is always counted; the rest count state the kernel could not keep.
 */
enum tn_counter {
	/* slots 0..TN_EVENT_KIND_MAX-1: ring buffer full, indexed by event kind */
	TN_CTR_OWNER_MAP_FULL = TN_EVENT_KIND_MAX, /* socket owner not recorded: map full */
	TN_CTR_CONNECT_END_UNSEEN_START,           /* connect ended that started before attach */
	TN_CTR_WAIT_MAP_FULL,                      /* poll wait start not recorded: map full */
	TN_CTR_POLL_HIST_MAP_FULL,                 /* wait not counted: histogram map full */
	TN_CTR_RETRANSMIT_OWNER_UNKNOWN,           /* retransmit on a socket with no recorded owner */
	TN_CTR_RECV_MAP_FULL,                      /* receive not tracked: map full */
	TN_CTR_CONNECT_HIST_MAP_FULL,              /* connect sent as an event: histogram map full */
	TN_COUNTER_MAX,
};

/* Load-time configuration (a const volatile global: the verifier prunes on it). */
struct tn_config {
	__u64 poll_min_ns;      /* waits at least this long travel as events; all are counted */
	__u64 id_secret;        /* random: masks socket addresses into ids where no cookie exists */
	__u32 self_tgid;        /* the agent itself: its own waits and payloads are never traced */
	__u32 retransmit_hook;  /* 1 when the retransmit hook is attached: connects take its SYN count */
	__u32 payload_max;      /* bytes of an HTTP payload to copy, at most TN_PAYLOAD_MAX */
	__u32 roles;            /* enum tn_role: what the programs on shared attach points do */
	__u64 connect_min_ns;   /* successful connects at least this long travel as events */
	__u32 wakeup_check;     /* bytes a CPU submits between looks at the ring's fill level */
	__u32 wakeup_check_live; /* the same while a live subscriber is attached */
};

/*
 * Where two hooks attach to the same kernel event, one program serves both:
 * each hook that loads it adds its role, so an event runs one program, and a
 * hook that chose another attach mode leaves its part switched off.
 */
enum tn_role {
	TN_ROLE_CONNECT = 1,      /* the set_state programs: connect latency (connect hook) */
	TN_ROLE_LISTEN_OWNER = 2, /* tn_tp_inet_sock_set_state: listeners' owners (retransmit hook) */
	TN_ROLE_SEND_OWNER = 4,   /* tn_tp_sock_send_length, tn_tp_payload_enter: senders' owners (retransmit hook) */
	TN_ROLE_PAYLOAD = 8,      /* tn_tp_sock_send_length, tn_tp_payload_enter: HTTP heads (payload hook) */
	TN_ROLE_CLOSE = 16,       /* the set_state programs: a request's socket closed (payload hook) */
};

/*
 * Run-time switches the agent flips while the programs run (map tn_control,
 * one entry). `stream_all`: a live subscriber is attached, so every connect
 * travels as an event, not only the slow, retried and failed ones.
 */
struct tn_control {
	__u32 stream_all;
	__u32 reserved;
};

/*
 * Ring-buffer wake-ups are batched: a record wakes the reader only once this
 * much data is waiting; otherwise the reader finds it on its next bounded poll.
 * Each CPU looks at the fill level only every tn_config.wakeup_check bytes it
 * submits (the level is a cache line every producer and the reader write).
 */
#define TN_WAKEUP_BYTES (256 * 1024)
/* While a live subscriber is attached: small batches, so its bounded queue sees no bursts. */
#define TN_WAKEUP_BYTES_LIVE (16 * 1024)

#define TN_PAYLOAD_MAX 4096

/* The waiting syscalls, as reported in poll events and histogram keys. */
enum tn_syscall {
	TN_SC_POLL = 1,
	TN_SC_PPOLL = 2,
	TN_SC_SELECT = 3,
	TN_SC_PSELECT6 = 4,
	TN_SC_EPOLL_WAIT = 5,
	TN_SC_EPOLL_PWAIT = 6,
	TN_SC_EPOLL_PWAIT2 = 7,
};

/* Poll-wait histogram upper bounds in nanoseconds; one more bucket counts above the last. */
#define TN_POLL_BUCKETS 16
#define TN_POLL_BOUNDS_NS                                                                  \
	{ 10000ULL, 100000ULL, 1000000ULL, 5000000ULL, 10000000ULL, 25000000ULL, 50000000ULL, \
	  100000000ULL, 250000000ULL, 500000000ULL, 1000000000ULL, 2500000000ULL,            \
	  5000000000ULL, 10000000000ULL, 30000000000ULL, 60000000000ULL }

/* Per-CPU in-kernel histogram of every wait, by command name and syscall. */
struct tn_poll_hist_key {
	char comm[TN_COMM_LEN];
	__u32 syscall;           /* enum tn_syscall */
	__u32 reserved;
};

struct tn_poll_hist {
	__u64 counts[TN_POLL_BUCKETS + 1];
	__u64 sum_ns;
};

/* Connect-latency histogram upper bounds in nanoseconds (TinctureCore's Buckets.connectSeconds). */
#define TN_CONNECT_BUCKETS 20
#define TN_CONNECT_BOUNDS_NS                                                                 \
	{ 100000ULL, 250000ULL, 500000ULL, 1000000ULL, 2500000ULL, 5000000ULL, 10000000ULL,    \
	  25000000ULL, 50000000ULL, 100000000ULL, 250000000ULL, 500000000ULL, 1500000000ULL, \
	  2500000000ULL, 3500000000ULL, 4500000000ULL, 7500000000ULL, 15500000000ULL,        \
	  31500000000ULL, 63500000000ULL }

/* Per-CPU in-kernel histogram of every connect, by caller, destination and outcome. */
struct tn_connect_hist_key {
	char comm[TN_COMM_LEN];
	__u8 daddr[TN_ADDR_LEN];
	__u16 family;
	__u16 dport;             /* host order */
	__u16 error;             /* sk_err when the attempt failed, 0 otherwise */
	__u8 established;        /* 1 when the handshake completed */
	__u8 reserved;
};

struct tn_connect_hist {
	__u64 counts[TN_CONNECT_BUCKETS + 1];
	__u64 sum_ns;
};

/* connect event flags */
#define TN_CONNECT_UNCOUNTED 1   /* not in the kernel histogram (map full): the agent counts it */

/*
 * One finished TCP connect attempt (SYN_SENT -> ESTABLISHED or -> CLOSE).
 * Owner fields are captured in process context when connect() starts; the end
 * fires in softirq, where `current` is unrelated.
 */
struct tn_connect_event {
	__u32 kind;              /* TN_EVENT_CONNECT */
	__u32 pid;               /* tgid of the thread that called connect() */
	__u32 tid;               /* that thread */
	__s32 error;             /* sk_err when the attempt failed, 0 otherwise */
	__u64 ts_ns;             /* CLOCK_MONOTONIC when the attempt ended */
	__u64 start_ns;          /* CLOCK_MONOTONIC when connect() started */
	__u64 cookie;            /* socket cookie; 0 when the mode cannot read it */
	__u32 syn_retransmits;   /* SYNs sent again before the outcome */
	__u16 family;            /* AF_INET (2) or AF_INET6 (10) */
	__u16 sport;             /* host byte order */
	__u16 dport;             /* host byte order */
	__u8 established;        /* 1 when the handshake completed */
	__u8 mode;               /* enum tn_attach_mode */
	__u32 flags;             /* TN_CONNECT_* */
	__u8 saddr[TN_ADDR_LEN]; /* IPv4 uses the first 4 bytes, network order */
	__u8 daddr[TN_ADDR_LEN];
	char comm[TN_COMM_LEN];  /* owner's comm at connect() time */
};

#define TN_CONNECT_EVENT_SIZE 104

/* retransmit flags */
#define TN_RETRANSMIT_SYNACK 1      /* a listener re-sent a SYN-ACK (no child socket yet) */
#define TN_RETRANSMIT_OWNER_KNOWN 2 /* pid/tid/comm come from the socket-owner map */
#define TN_RETRANSMIT_CLIENT 4      /* the owner called connect(): the remote end is the service */

/*
 * One retransmission (TCP segments sent again). Fires in softirq or timer
 * context: the owner comes from the socket-owner map, never from `current`.
 */
struct tn_retransmit_event {
	__u32 kind;              /* TN_EVENT_RETRANSMIT */
	__u32 pid;               /* socket owner, 0 when unknown */
	__u32 tid;
	__u32 segs;              /* segments retransmitted */
	__u64 ts_ns;             /* CLOCK_MONOTONIC */
	__u64 cookie;            /* 0 for SYN-ACKs and when the mode cannot read one */
	__u32 srtt_us;           /* smoothed RTT, microseconds (0 before the first sample) */
	__u16 family;
	__u16 sport;             /* local port, host order */
	__u16 dport;             /* remote port, host order */
	__u8 state;              /* kernel TCP state number (TCP_ESTABLISHED = 1, ...) */
	__u8 mode;               /* enum tn_attach_mode */
	__u8 flags;              /* TN_RETRANSMIT_* */
	__u8 reserved[3];
	__u8 saddr[TN_ADDR_LEN];
	__u8 daddr[TN_ADDR_LEN];
	char comm[TN_COMM_LEN];
};

#define TN_RETRANSMIT_EVENT_SIZE 96

/* One wait in poll/select/epoll that lasted at least tn_config.poll_min_ns. */
struct tn_poll_event {
	__u32 kind;              /* TN_EVENT_POLL */
	__u32 pid;
	__u32 tid;
	__u32 syscall;           /* enum tn_syscall */
	__u64 ts_ns;             /* CLOCK_MONOTONIC when the wait ended */
	__u64 start_ns;
	__u64 cookie;            /* socket cookie when exactly one socket was waited on, else 0 */
	__s64 timeout_ms;        /* requested timeout, -1 for none (wait forever) */
	__s32 ready;             /* syscall result: ready fds, 0 on timeout, -errno */
	__s32 fd;                /* the single fd waited on, -1 otherwise */
	__u8 mode;               /* enum tn_attach_mode */
	__u8 reserved[7];
	char comm[TN_COMM_LEN];
};

#define TN_POLL_EVENT_SIZE 80

/* payload directions */
#define TN_DIR_SEND 1
#define TN_DIR_RECV 2
#define TN_DIR_CLOSE 3   /* no data: the socket of a request in flight left the connection */

/*
 * The first bytes of one send or receive on a TCP socket that start like an
 * HTTP/1.x request or response. Variable length: `len` bytes of data follow
 * the fixed part (TN_PAYLOAD_HEADER_SIZE bytes).
 */
struct tn_payload_event {
	__u32 kind;              /* TN_EVENT_PAYLOAD */
	__u32 pid;
	__u32 tid;
	__u32 len;               /* bytes captured in data[] */
	__u64 ts_ns;
	__u64 cookie;            /* socket id: the cookie, or a masked id where none exists */
	__u32 total;             /* bytes the syscall moved */
	__u16 family;
	__u16 sport;             /* local port, host order */
	__u16 dport;             /* remote port, host order */
	__u8 direction;          /* TN_DIR_SEND, TN_DIR_RECV or TN_DIR_CLOSE */
	__u8 mode;
	__u32 connect_us;        /* first payload on a socket this side connected: the connect's
				  * latency (µs, at least 1), else 0 */
	__u8 saddr[TN_ADDR_LEN];
	__u8 daddr[TN_ADDR_LEN];
	char comm[TN_COMM_LEN];
	__u8 data[TN_PAYLOAD_MAX];
};

#define TN_PAYLOAD_HEADER_SIZE 96

_Static_assert(sizeof(struct tn_connect_event) == TN_CONNECT_EVENT_SIZE,
	       "tn_connect_event layout changed: update TinctureCore's decoder");
_Static_assert(sizeof(struct tn_retransmit_event) == TN_RETRANSMIT_EVENT_SIZE,
	       "tn_retransmit_event layout changed: update TinctureCore's decoder");
_Static_assert(sizeof(struct tn_poll_event) == TN_POLL_EVENT_SIZE,
	       "tn_poll_event layout changed: update TinctureCore's decoder");
_Static_assert(sizeof(struct tn_payload_event) == TN_PAYLOAD_HEADER_SIZE + TN_PAYLOAD_MAX,
	       "tn_payload_event layout changed: update TinctureCore's decoder");

#endif /* TINCTURE_ABI_H */
