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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct tn_connect_hist_key);
	__type(value, struct tn_connect_hist);
} tn_connect_hists SEC(".maps");

static const __u64 tn_connect_bounds[TN_CONNECT_BUCKETS] = TN_CONNECT_BOUNDS_NS;

/*
 * Count one connect in the kernel histogram; false when the map is full.
 * `trusted`: sk is a BTF pointer (tracepoint mode), read with plain loads; else probe reads.
 */
static __always_inline bool count_connect(struct sock *sk, struct tn_owner *o, bool established,
					  __s32 error, __u64 dur, bool trusted)
{
	struct tn_connect_hist_key key = {};
	struct tn_connect_hist *h, zero = {};
	__u32 i, bucket = TN_CONNECT_BUCKETS;

	__builtin_memcpy(key.comm, o->comm, sizeof(key.comm));
	key.error = error;
	key.established = established;
	tn_read_remote(sk, trusted, &key.family, key.daddr, &key.dport);
	h = bpf_map_lookup_elem(&tn_connect_hists, &key);
	if (!h) {
		bpf_map_update_elem(&tn_connect_hists, &key, &zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&tn_connect_hists, &key);
		if (!h) {
			tn_count(TN_CTR_CONNECT_HIST_MAP_FULL);
			return false;
		}
	}
	for (i = 0; i < TN_CONNECT_BUCKETS; i++) {
		if (dur <= tn_connect_bounds[i]) {
			bucket = i;
			break;
		}
	}
	/* per-CPU, but a softirq end can interrupt a process-context one: add atomically */
	if (bucket <= TN_CONNECT_BUCKETS) /* always true; bounds the index for the verifier */
		__sync_fetch_and_add(&h->counts[bucket], 1);
	__sync_fetch_and_add(&h->sum_ns, dur);
	return true;
}

/*
 * Every connect is counted in the kernel histogram. Only the notable ones
 * travel as events: failed, retried, or at least connect_min_ns long; all of
 * them while a live subscriber is attached. A fast connect leaves its latency
 * in the owner entry, for the first request on the socket to carry.
 */
static __always_inline void connect_end(struct sock *sk, int newstate, __u64 cookie, __u8 mode)
{
	__u64 key = (__u64)sk;
	struct tn_owner *o;
	struct tn_connect_event *e;
	__u64 now, dur;
	__u32 syn_retransmits;
	__s32 error;
	bool counted;

	o = bpf_map_lookup_elem(&tn_owners, &key);
	if (!o || !o->connect_start_ns) {
		/* started before we attached, or aged out of the LRU */
		tn_count(TN_CTR_CONNECT_END_UNSEEN_START);
		return;
	}
	now = bpf_ktime_get_ns();
	dur = now - o->connect_start_ns;
	/* sk_err is set before tcp_done() moves the socket to CLOSE */
	error = newstate == TN_TCP_ESTABLISHED ? 0 : BPF_CORE_READ(sk, sk_err);
	/*
	 * The retransmit hook counts SYNs as it sees them; without it, every
	 * retransmit so far was a SYN: the handshake has not completed.
	 */
	syn_retransmits = tn_cfg.retransmit_hook ? o->syn_retransmits
						 : BPF_CORE_READ((struct tcp_sock *)sk, total_retrans);
	counted = count_connect(sk, o, newstate == TN_TCP_ESTABLISHED, error, dur, mode == TN_MODE_TRACEPOINT);
	if (newstate == TN_TCP_ESTABLISHED) {
		__u64 us = dur / 1000;

		o->connect_us = us == 0 ? 1 : us > 0xffffffff ? 0xffffffff : us;
	}
	if (counted && newstate == TN_TCP_ESTABLISHED && syn_retransmits == 0 &&
	    dur < tn_cfg.connect_min_ns && !tn_streaming())
		goto out;

	/* reserve a slot; count the loss if the ring is full */
	e = bpf_ringbuf_reserve(&tn_events, sizeof(*e), 0);
	if (!e) {
		tn_count(TN_EVENT_CONNECT);
		goto out;
	}
	e->kind = TN_EVENT_CONNECT;
	e->pid = o->pid;
	e->tid = o->tid;
	e->ts_ns = now;
	e->start_ns = o->connect_start_ns;
	e->cookie = cookie;
	e->established = newstate == TN_TCP_ESTABLISHED;
	e->error = error;
	e->syn_retransmits = syn_retransmits;
	e->mode = mode;
	e->flags = counted ? 0 : TN_CONNECT_UNCOUNTED;
	tn_read_endpoints(sk, false, &e->family, e->saddr, e->daddr, &e->sport, &e->dport);
	__builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, tn_wakeup_flags(sizeof(*e), true));
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
	/*
	 * Most sockets that close were never owned (an accepting server's sockets
	 * that did not send): a lookup finds that without the delete's bucket lock.
	 */
	if (newstate == TN_TCP_CLOSE && bpf_map_lookup_elem(&tn_owners, &key))
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

/* Shared with the payload hook, which hears of requests' sockets closing here (enum tn_role). */
SEC("fentry/tcp_set_state")
int BPF_PROG(tn_fentry_tcp_set_state, struct sock *sk, int state)
{
	int old = BPF_CORE_READ(sk, __sk_common.skc_state);

	if ((tn_cfg.roles & TN_ROLE_CLOSE) && tn_leaves_connection(old, state))
		tn_http_close(sk, TN_MODE_FENTRY);
	if (!(tn_cfg.roles & TN_ROLE_CONNECT))
		return 0;
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

/* Shared with the payload hook, as the fentry program is. */
SEC("kprobe/tcp_set_state")
int BPF_KPROBE(tn_kprobe_tcp_set_state, struct sock *sk, int state)
{
	int old = BPF_CORE_READ(sk, __sk_common.skc_state);

	if ((tn_cfg.roles & TN_ROLE_CLOSE) && tn_leaves_connection(old, state))
		tn_http_close(sk, TN_MODE_KPROBE);
	if (!(tn_cfg.roles & TN_ROLE_CONNECT))
		return 0;
	/* kprobes cannot call the cookie helper: use the cookie if one was assigned */
	if (old == TN_TCP_SYN_SENT || state == TN_TCP_CLOSE)
		on_state_change(sk, old, state, tn_socket_id(sk), TN_MODE_KPROBE);
	return 0;
}

/* ---- tracepoint (BTF-typed: needs no tracefs, can read the cookie) ---- */

/*
 * Shared with the retransmit hook, which records listeners' owners here, and
 * the payload hook, which hears of requests' sockets closing (enum tn_role).
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tn_tp_inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if ((tn_cfg.roles & TN_ROLE_CLOSE) && tn_leaves_connection(oldstate, newstate))
		tn_http_close(sk, TN_MODE_TRACEPOINT);
	/* listen() moves the socket to LISTEN in process context */
	if ((tn_cfg.roles & TN_ROLE_LISTEN_OWNER) && newstate == TN_TCP_LISTEN) {
		tn_own_socket(sk, 0);
		return 0;
	}
	if (!(tn_cfg.roles & TN_ROLE_CONNECT))
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
