/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Kernel-only helpers and the maps every hook family shares. Nothing user-side
 * includes this. Shared globals are __weak: each family's object defines them
 * and `bpftool gen object` keeps one.
 */
#ifndef TINCTURE_COMMON_BPF_H
#define TINCTURE_COMMON_BPF_H

#define AF_INET 2
#define AF_INET6 10

/* Kernel TCP states (include/net/tcp_states.h) */
enum {
	TN_TCP_ESTABLISHED = 1,
	TN_TCP_SYN_SENT = 2,
	TN_TCP_SYN_RECV = 3,
	TN_TCP_FIN_WAIT1 = 4,
	TN_TCP_CLOSE = 7,
	TN_TCP_CLOSE_WAIT = 8,
	TN_TCP_LAST_ACK = 9,
	TN_TCP_LISTEN = 10,
};

const volatile struct tn_config tn_cfg __weak = {};

/* The one ring buffer every family writes to. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} tn_events SEC(".maps") __weak;

/* Run-time switches from the agent (struct tn_control). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tn_control);
} tn_control SEC(".maps") __weak;

/* Whether a live subscriber wants every event, not only the notable ones. */
static __always_inline bool tn_streaming(void)
{
	__u32 zero = 0;
	struct tn_control *c = bpf_map_lookup_elem(&tn_control, &zero);

	return c && c->stream_all;
}

/* Per CPU: bytes submitted since the fill level was last read, and what it said. */
struct tn_wakeup {
	__u64 unchecked;
	__u64 above;  /* the last look found a batch or more waiting */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tn_wakeup);
} tn_wakeups SEC(".maps") __weak;

/*
 * Submit flags for a record of `size` bytes: wake the reader once a batch is
 * waiting. The reader also drains on a short bounded interval, so a quiet
 * stream is never stranded, and a busy one costs one wake-up per batch instead
 * of one per record. Each CPU looks at the fill level once per wakeup_check
 * bytes it submits (the level is a cache line every producer and the reader
 * write) and wakes the reader when it finds a batch or more waiting, once,
 * until a later look finds less: while the reader lags behind it is awake and
 * draining, and more wake-ups would each cost an interrupt for nothing. Waking
 * only on the record that crosses the batch size is not enough: producers on
 * two CPUs can step over the crossing together (each computing from the level
 * before the other's record), and the reader would then sleep until its poll
 * interval, by which time a busy ring has overflowed. `reserved`: the record
 * is already reserved (counted in the waiting data), else it is about to be
 * output.
 */
static __always_inline __u64 tn_wakeup_flags(__u64 size, bool reserved)
{
	__u32 zero = 0;
	struct tn_wakeup *w = bpf_map_lookup_elem(&tn_wakeups, &zero);
	bool live = tn_streaming();
	__u64 avail;

	if (!w)
		return 0;
	/* per CPU; a softirq record interrupting this one may lose a count: harmless */
	w->unchecked += size;
	if (w->unchecked < (live ? tn_cfg.wakeup_check_live : tn_cfg.wakeup_check))
		return BPF_RB_NO_WAKEUP;
	w->unchecked = 0;
	avail = bpf_ringbuf_query(&tn_events, BPF_RB_AVAIL_DATA) + (reserved ? 0 : size);
	if (avail < (live ? TN_WAKEUP_BYTES_LIVE : TN_WAKEUP_BYTES)) {
		w->above = 0;
		return BPF_RB_NO_WAKEUP;
	}
	if (w->above)
		return BPF_RB_NO_WAKEUP;
	w->above = 1;
	return BPF_RB_FORCE_WAKEUP;
}

/* Loss and state counters, per CPU so the hot path never contends. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TN_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} tn_counters SEC(".maps") __weak;

/*
 * Who owns a socket, recorded in process context (connect, listen, send) so
 * that events firing in softirq name the right process. Also carries the
 * state of a connect in flight. Entries go when the socket moves to CLOSE;
 * LRU bounds what a missed close could leak.
 */
struct tn_owner {
	__u64 connect_start_ns;  /* 0 unless a connect is in flight */
	__u32 pid;
	__u32 tid;
	__u32 syn_retransmits;   /* counted by the retransmit hook while connecting */
	__u32 connect_us;        /* latency of this end's connect until its first payload takes it */
	__u8 client;             /* 1: this end called connect() */
	__u8 reserved[3];
	char comm[TN_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);      /* struct sock * */
	__type(value, struct tn_owner);
} tn_owners SEC(".maps") __weak;

static __always_inline void tn_count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&tn_counters, &slot);

	/* atomic: a softirq program can interrupt a process-context one on this CPU */
	if (v)
		__sync_fetch_and_add(v, 1);
}

/* Record the current task as the socket's owner, keeping any connect state. */
static __always_inline void tn_own_socket(struct sock *sk, __u8 client)
{
	__u64 key = (__u64)sk;
	__u64 id = bpf_get_current_pid_tgid();
	struct tn_owner *o, fresh = {};

	o = bpf_map_lookup_elem(&tn_owners, &key);
	if (o) {
		/* the common case on a hot send path: same owner, nothing to write */
		if (o->tid == (__u32)id)
			return;
		o->pid = id >> 32;
		o->tid = (__u32)id;
		bpf_get_current_comm(o->comm, sizeof(o->comm));
		return;
	}
	fresh.pid = id >> 32;
	fresh.tid = (__u32)id;
	fresh.client = client;
	bpf_get_current_comm(fresh.comm, sizeof(fresh.comm));
	if (bpf_map_update_elem(&tn_owners, &key, &fresh, BPF_NOEXIST) && !bpf_map_lookup_elem(&tn_owners, &key))
		tn_count(TN_CTR_OWNER_MAP_FULL);
}

/*
 * Family, remote address and remote port of a socket. `trusted`: sk is a BTF
 * pointer (a tracepoint's or fentry's argument), read with plain loads; else
 * probe reads. Callers pass a constant, so one branch is compiled per program.
 */
static __always_inline void tn_read_remote(struct sock *sk, bool trusted, __u16 *family, __u8 *daddr,
					    __u16 *dport)
{
	struct sock_common *c = &sk->__sk_common;

	__builtin_memset(daddr, 0, TN_ADDR_LEN);
	if (trusted) {
		*family = c->skc_family;
		*dport = bpf_ntohs(c->skc_dport);
		if (*family == AF_INET6)
			__builtin_memcpy(daddr, &c->skc_v6_daddr, TN_ADDR_LEN);
		else
			*(__u32 *)daddr = c->skc_daddr;
	} else {
		*family = BPF_CORE_READ(sk, __sk_common.skc_family);
		*dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		if (*family == AF_INET6)
			bpf_core_read(daddr, TN_ADDR_LEN, &sk->__sk_common.skc_v6_daddr);
		else
			BPF_CORE_READ_INTO((__u32 *)daddr, sk, __sk_common.skc_daddr);
	}
}

/*
 * Copy addresses and ports into an event (probe reads), for either family. A full socket's
 * local port comes from inet_sport: moving to CLOSE releases the port and
 * zeroes skc_num before the state-change tracepoint fires. A request socket
 * (SYN-ACK retransmit) has no inet_sock part: its skc_num is the local port.
 */
static __always_inline void tn_read_endpoints(struct sock *sk, bool request_sock, __u16 *family,
					       __u8 *saddr, __u8 *daddr, __u16 *sport, __u16 *dport)
{
	tn_read_remote(sk, false, family, daddr, dport);
	if (request_sock)
		*sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	else
		*sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	__builtin_memset(saddr, 0, TN_ADDR_LEN);
	if (*family == AF_INET6)
		bpf_core_read(saddr, TN_ADDR_LEN, &sk->__sk_common.skc_v6_rcv_saddr);
	else
		BPF_CORE_READ_INTO((__u32 *)saddr, sk, __sk_common.skc_rcv_saddr);
}

/*
 * A stable id for a socket where the cookie helper cannot be called (kprobes,
 * classic tracepoints, pointers from probe reads): its cookie when the kernel
 * has assigned one (the connect hook assigns one on every ESTABLISHED socket
 * in fentry and tracepoint modes), else its address masked with a per-run
 * secret, top bit set so it never equals a real cookie.
 */
static __always_inline __u64 tn_socket_id(struct sock *sk)
{
	__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);

	return cookie ? cookie : (((__u64)sk ^ tn_cfg.id_secret) | (1ULL << 63));
}

#define TN_S_IFMT 00170000
#define TN_S_IFSOCK 0140000

/* The current task's open file behind an fd, or NULL. */
static __always_inline struct file *tn_fd_file(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *f = NULL;

	if (fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

/* The socket behind a file, or NULL when the file is not a socket. */
static __always_inline struct sock *tn_file_sock(struct file *f)
{
	struct socket *sock;

	if (!f || (BPF_CORE_READ(f, f_inode, i_mode) & TN_S_IFMT) != TN_S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(f, private_data);
	return BPF_CORE_READ(sock, sk);
}

/*
 * Sockets that carried an HTTP request, and the id its capture used while the
 * request waits for its response (0 once a response was seen). When such a
 * socket leaves the connection with a request in flight, the agent hears of it.
 * LRU bounds what sockets that never close could hold.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);      /* struct sock * */
	__type(value, __u64);    /* id of the request in flight, or 0 */
} tn_http_socks SEC(".maps") __weak;

/*
 * A state change that ends a connection for its requests: this end closed it
 * (FIN_WAIT1 from ESTABLISHED, LAST_ACK after the peer's FIN) or it was reset
 * or aborted (CLOSE). A peer's FIN alone (CLOSE_WAIT) is not one: a response
 * may still sit unread in the receive queue.
 */
static __always_inline bool tn_leaves_connection(int oldstate, int newstate)
{
	return (oldstate == TN_TCP_ESTABLISHED || oldstate == TN_TCP_CLOSE_WAIT) &&
	       (newstate == TN_TCP_FIN_WAIT1 || newstate == TN_TCP_LAST_ACK || newstate == TN_TCP_CLOSE);
}

/*
 * `sk` left its connection: if a request on it still waits for its response,
 * a data-less payload record (TN_DIR_CLOSE) tells the agent. Most sockets that
 * close carried no request: one lookup.
 */
static __always_inline void tn_http_close(struct sock *sk, __u8 mode)
{
	__u64 key = (__u64)sk, *in_flight = bpf_map_lookup_elem(&tn_http_socks, &key), id, pid_tgid;
	struct tn_payload_event *e;

	if (!in_flight)
		return;
	id = *in_flight;
	bpf_map_delete_elem(&tn_http_socks, &key);
	if (!id)
		return;
	e = bpf_ringbuf_reserve(&tn_events, TN_PAYLOAD_HEADER_SIZE, 0);
	if (!e) {
		tn_count(TN_EVENT_PAYLOAD);
		return;
	}
	pid_tgid = bpf_get_current_pid_tgid();
	e->kind = TN_EVENT_PAYLOAD;
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->len = 0;
	e->total = 0;
	e->ts_ns = bpf_ktime_get_ns();
	e->cookie = id;
	e->direction = TN_DIR_CLOSE;
	e->mode = mode;
	e->connect_us = 0;
	tn_read_endpoints(sk, false, &e->family, e->saddr, e->daddr, &e->sport, &e->dport);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, tn_wakeup_flags(TN_PAYLOAD_HEADER_SIZE, true));
}

#endif /* TINCTURE_COMMON_BPF_H */
