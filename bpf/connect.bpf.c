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

static __always_inline void connect_start(struct sock *sk)
{
	__u64 key = (__u64)sk;
	__u64 id = bpf_get_current_pid_tgid();
	struct tn_owner o = {};

	/* process context: `current` is the caller of connect() */
	o.connect_start_ns = bpf_ktime_get_ns();
	o.pid = id >> 32;
	o.tid = (__u32)id;
	o.client = 1;
	bpf_get_current_comm(o.comm, sizeof(o.comm));
	if (bpf_map_update_elem(&tn_owners, &key, &o, BPF_ANY))
		tn_count(TN_CTR_OWNER_MAP_FULL);
}

static __always_inline void connect_end(struct sock *sk, int newstate, __u64 cookie, __u8 mode)
{
	__u64 key = (__u64)sk;
	struct tn_owner *o;
	struct tn_connect_event *e;

	o = bpf_map_lookup_elem(&tn_owners, &key);
	if (!o || !o->connect_start_ns) {
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
	e->pid = o->pid;
	e->tid = o->tid;
	e->ts_ns = bpf_ktime_get_ns();
	e->start_ns = o->connect_start_ns;
	e->cookie = cookie;
	e->established = newstate == TN_TCP_ESTABLISHED;
	/* sk_err is set before tcp_done() moves the socket to CLOSE */
	e->error = e->established ? 0 : BPF_CORE_READ(sk, sk_err);
	/*
	 * The retransmit hook counts SYNs as it sees them; without it, every
	 * retransmit so far was a SYN: the handshake has not completed.
	 */
	e->syn_retransmits = tn_cfg.retransmit_hook ? o->syn_retransmits
						    : BPF_CORE_READ((struct tcp_sock *)sk, total_retrans);
	e->mode = mode;
	e->reserved = 0;
	tn_read_endpoints(sk, false, &e->family, e->saddr, e->daddr, &e->sport, &e->dport);
	__builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
out:
	o->connect_start_ns = 0;
}

/*
 * The end of a connect is any state change out of SYN_SENT. A socket moving
 * to CLOSE loses its owner entry (after its connect, if any, is reported).
 */
static __always_inline void on_state_change(struct sock *sk, int oldstate,
					    int newstate, __u64 cookie, __u8 mode)
{
	__u64 key = (__u64)sk;

	if (oldstate == TN_TCP_SYN_SENT && newstate != TN_TCP_SYN_SENT)
		connect_end(sk, newstate, cookie, mode);
	if (newstate == TN_TCP_CLOSE)
		bpf_map_delete_elem(&tn_owners, &key);
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

	/* give every connection a cookie: later events (and the payload hook) join on it */
	if (state == TN_TCP_ESTABLISHED)
		bpf_get_socket_cookie(sk);
	if (old == TN_TCP_SYN_SENT || state == TN_TCP_CLOSE)
		on_state_change(sk, old, state,
				old == TN_TCP_SYN_SENT ? bpf_get_socket_cookie(sk) : 0, TN_MODE_FENTRY);
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
	if (old == TN_TCP_SYN_SENT || state == TN_TCP_CLOSE)
		on_state_change(sk, old, state, tn_socket_id(sk), TN_MODE_KPROBE);
	return 0;
}

/* ---- tracepoint (BTF-typed: needs no tracefs, can read the cookie) ---- */

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tn_tp_inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	/* tcp_v{4,6}_connect() moves the socket to SYN_SENT in process context */
	if (oldstate == TN_TCP_CLOSE && newstate == TN_TCP_SYN_SENT) {
		connect_start(sk);
		return 0;
	}
	/* give every connection a cookie: later events (and the payload hook) join on it */
	if (newstate == TN_TCP_ESTABLISHED)
		bpf_get_socket_cookie(sk);
	if (oldstate == TN_TCP_SYN_SENT || newstate == TN_TCP_CLOSE)
		on_state_change(sk, oldstate, newstate,
				oldstate == TN_TCP_SYN_SENT ? bpf_get_socket_cookie(sk) : 0,
				TN_MODE_TRACEPOINT);
	return 0;
}
