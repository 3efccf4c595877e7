// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TCP connect latency, result and SYN retransmits, with the owner captured
 * when connect() starts. Three entry-point sets share one body:
 *   fentry:     tcp_v4_connect / tcp_v6_connect (start), tcp_set_state (end)
 *   kprobe:     the same functions
 *   tracepoint: tp_btf/inet_sock_set_state (CLOSE->SYN_SENT start, SYN_SENT->* end)
 * The agent autoloads exactly one set.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "tincture.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Owner and start time of a connect in flight, keyed by socket address. */
struct pending_connect {
	__u64 start_ns;
	__u32 pid;
	__u32 tid;
	char comm[TN_COMM_LEN];
};

/*
 * LRU: a connect that fails before SYN_SENT (no route, no local port) never
 * reaches the end hook in fentry/kprobe mode; its entry ages out instead of
 * filling the map.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pending_connect);
} tn_pending_connects SEC(".maps");

enum {
	TCP_ESTABLISHED_ = 1,
	TCP_SYN_SENT_ = 2,
	TCP_CLOSE_ = 7,
};

static __always_inline void connect_start(struct sock *sk)
{
	__u64 key = (__u64)sk;
	__u64 id = bpf_get_current_pid_tgid();
	struct pending_connect p = {};

	/* process context: `current` is the caller of connect() */
	p.start_ns = bpf_ktime_get_ns();
	p.pid = id >> 32;
	p.tid = (__u32)id;
	bpf_get_current_comm(p.comm, sizeof(p.comm));
	if (bpf_map_update_elem(&tn_pending_connects, &key, &p, BPF_ANY))
		tn_count(TN_CTR_PENDING_CONNECT_FULL);
}

static __always_inline void connect_end(struct sock *sk, int newstate,
					__u64 cookie, __u8 mode)
{
	__u64 key = (__u64)sk;
	struct pending_connect *p;
	struct tn_connect_event *e;

	p = bpf_map_lookup_elem(&tn_pending_connects, &key);
	if (!p) {
		/* started before we attached, or aged out of the LRU */
		tn_count(TN_CTR_CONNECT_END_UNSEEN_START);
		return;
	}

	/* reserve a slot; count the loss if the ring is full */
	e = bpf_ringbuf_reserve(&tn_events, sizeof(*e), 0);
	if (!e) {
		tn_count(TN_EVENT_CONNECT);
		goto out;
	}
	e->kind = TN_EVENT_CONNECT;
	e->pid = p->pid;
	e->tid = p->tid;
	e->ts_ns = bpf_ktime_get_ns();
	e->start_ns = p->start_ns;
	e->cookie = cookie;
	e->established = newstate == TCP_ESTABLISHED_;
	/* sk_err is set before tcp_done() moves the socket to CLOSE */
	e->error = e->established ? 0 : BPF_CORE_READ(sk, sk_err);
	/* every retransmit so far was a SYN: the handshake has not completed */
	e->syn_retransmits = BPF_CORE_READ((struct tcp_sock *)sk, total_retrans);
	e->mode = mode;
	e->reserved = 0;
	__builtin_memset(e->saddr, 0, sizeof(e->saddr));
	__builtin_memset(e->daddr, 0, sizeof(e->daddr));
	tn_read_endpoints(sk, &e->family, e->saddr, e->daddr, &e->sport, &e->dport);
	__builtin_memcpy(e->comm, p->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
out:
	bpf_map_delete_elem(&tn_pending_connects, &key);
}

/* The end of a connect is any state change out of SYN_SENT. */
static __always_inline void on_state_change(struct sock *sk, int oldstate,
					    int newstate, __u64 cookie, __u8 mode)
{
	if (oldstate == TCP_SYN_SENT_ && newstate != TCP_SYN_SENT_)
		connect_end(sk, newstate, cookie, mode);
}

/* ---- fentry ---- */

SEC("fentry/tcp_v4_connect")
int BPF_PROG(tn_fentry_tcp_v4_connect, struct sock *sk)
{
	connect_start(sk);
	return 0;
}

SEC("fentry/tcp_v6_connect")
int BPF_PROG(tn_fentry_tcp_v6_connect, struct sock *sk)
{
	connect_start(sk);
	return 0;
}

SEC("fentry/tcp_set_state")
int BPF_PROG(tn_fentry_tcp_set_state, struct sock *sk, int state)
{
	int old = BPF_CORE_READ(sk, __sk_common.skc_state);

	if (old == TCP_SYN_SENT_)
		on_state_change(sk, old, state, bpf_get_socket_cookie(sk), TN_MODE_FENTRY);
	return 0;
}

/* ---- kprobe ---- */

SEC("kprobe/tcp_v4_connect")
int BPF_KPROBE(tn_kprobe_tcp_v4_connect, struct sock *sk)
{
	connect_start(sk);
	return 0;
}

SEC("kprobe/tcp_v6_connect")
int BPF_KPROBE(tn_kprobe_tcp_v6_connect, struct sock *sk)
{
	connect_start(sk);
	return 0;
}

SEC("kprobe/tcp_set_state")
int BPF_KPROBE(tn_kprobe_tcp_set_state, struct sock *sk, int state)
{
	int old = BPF_CORE_READ(sk, __sk_common.skc_state);

	/* kprobes cannot call the cookie helper: use the cookie if one was assigned */
	if (old == TCP_SYN_SENT_)
		on_state_change(sk, old, state,
				BPF_CORE_READ(sk, __sk_common.skc_cookie.counter),
				TN_MODE_KPROBE);
	return 0;
}

/* ---- tracepoint (BTF-typed: needs no tracefs, can read the cookie) ---- */

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tn_tp_inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	/* tcp_v{4,6}_connect() moves the socket to SYN_SENT in process context */
	if (oldstate == TCP_CLOSE_ && newstate == TCP_SYN_SENT_) {
		connect_start(sk);
		return 0;
	}
	on_state_change(sk, oldstate, newstate, bpf_get_socket_cookie(sk), TN_MODE_TRACEPOINT);
	return 0;
}
