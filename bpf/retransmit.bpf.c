// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TCP retransmissions, data and SYN (tcp_retransmit_skb) and SYN-ACK
 * (tcp_rtx_synack), attributed to the socket's owner from tn_owners. The
 * owner is recorded in process context: at connect() (connect family), at
 * listen() and on every send (here).
 *   fentry:     fexit tcp_retransmit_skb; fentry tcp_rtx_synack, inet_csk_listen_start,
 *               tcp_sendmsg
 *   kprobe:     the same functions (tcp_retransmit_skb at entry: a kretprobe
 *               could not see the arguments, so an attempt the kernel
 *               abandons still counts)
 *   tracepoint: tp_btf tcp/tcp_retransmit_skb, tcp/tcp_retransmit_synack,
 *               sock/inet_sock_set_state (->LISTEN), sock/sock_send_length;
 *               before Linux 6.3, raw_syscalls/sys_enter for the senders
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "tincture.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* tcp_skb_pcount(): TCP_SKB_CB(skb)->tcp_gso_segs sits 8 bytes into skb->cb. */
static __always_inline __u32 skb_pcount(struct sk_buff *skb)
{
	__u16 segs = 0;

	bpf_core_read(&segs, sizeof(segs), &skb->cb[8]);
	return segs ? segs : 1;
}

/* `owner_sk` is whose owner to name: the socket itself, or a SYN-ACK's listener. */
static __always_inline void emit(struct sock *sk, struct sock *owner_sk, bool synack, __u32 segs,
				 __u64 cookie, __u8 mode)
{
	__u64 key = (__u64)owner_sk;
	struct tn_owner *o = bpf_map_lookup_elem(&tn_owners, &key);
	struct tn_retransmit_event *e;
	__u8 state = synack ? TN_TCP_SYN_RECV : BPF_CORE_READ(sk, __sk_common.skc_state);

	/* a connect in flight: its SYN count comes from here */
	if (o && state == TN_TCP_SYN_SENT)
		__sync_fetch_and_add(&o->syn_retransmits, segs);
	if (!o)
		tn_count(TN_CTR_RETRANSMIT_OWNER_UNKNOWN);

	/* reserve a slot; count the loss if the ring is full */
	e = bpf_ringbuf_reserve(&tn_events, sizeof(*e), 0);
	if (!e) {
		tn_count(TN_EVENT_RETRANSMIT);
		return;
	}
	e->kind = TN_EVENT_RETRANSMIT;
	e->segs = segs;
	e->ts_ns = bpf_ktime_get_ns();
	e->cookie = cookie;
	e->state = state;
	e->mode = mode;
	e->flags = synack ? TN_RETRANSMIT_SYNACK : 0;
	e->reserved[0] = e->reserved[1] = e->reserved[2] = 0;
	/* a request socket has no tcp_sock part: no RTT sample yet */
	e->srtt_us = synack ? 0 : BPF_CORE_READ((struct tcp_sock *)sk, srtt_us) >> 3;
	if (o) {
		e->flags |= TN_RETRANSMIT_OWNER_KNOWN | (o->client ? TN_RETRANSMIT_CLIENT : 0);
		e->pid = o->pid;
		e->tid = o->tid;
		__builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
	} else {
		e->pid = 0;
		e->tid = 0;
		__builtin_memset(e->comm, 0, sizeof(e->comm));
	}
	tn_read_endpoints(sk, synack, &e->family, e->saddr, e->daddr, &e->sport, &e->dport);
	bpf_ringbuf_submit(e, tn_wakeup_flags(sizeof(*e), true));
}

/*
 * A SYN-ACK retransmit names the listener's owner, with the addresses of the
 * request socket (its sock_common starts like a full socket's).
 */
static __always_inline void emit_synack(struct sock *listener, struct request_sock *req, __u8 mode)
{
	emit((struct sock *)req, listener, true, 1, 0, mode);
}

static __always_inline void on_send(struct sock *sk)
{
	if ((bpf_get_current_pid_tgid() >> 32) == tn_cfg.self_tgid)
		return;
	tn_own_socket(sk, 0);
}

/* ---- fentry ---- */

/*
 * tcp_retransmit_skb, not __tcp_retransmit_skb: compilers split the latter
 * (Debian 6.1 calls __tcp_retransmit_skb.part.0 directly), so a probe on it
 * misses retransmits. The cost: tail loss probes, which call
 * __tcp_retransmit_skb themselves, go uncounted in these two modes.
 */
/*
 * fexit: only a retransmit the kernel made counts (it gives up with -EBUSY
 * while the original still sits in a qdisc or driver queue, and RetransSegs
 * does not count that), and any split is done: the skb holds what was re-sent.
 */
SEC("fexit/tcp_retransmit_skb")
int BPF_PROG(tn_fexit_tcp_retransmit_skb, struct sock *sk, struct sk_buff *skb, int segs, int ret)
{
	__u32 n;

	if (ret)
		return 0;
	n = skb_pcount(skb);
	/* the kernel re-sends at most `segs` of the skb's segments */
	emit(sk, sk, false, n < (__u32)segs ? n : (__u32)segs, bpf_get_socket_cookie(sk), TN_MODE_FENTRY);
	return 0;
}

SEC("fentry/tcp_rtx_synack")
int BPF_PROG(tn_fentry_tcp_rtx_synack, struct sock *sk, struct request_sock *req)
{
	emit_synack(sk, req, TN_MODE_FENTRY);
	return 0;
}

SEC("fentry/inet_csk_listen_start")
int BPF_PROG(tn_fentry_inet_csk_listen_start, struct sock *sk)
{
	tn_own_socket(sk, 0);
	return 0;
}

SEC("fentry/tcp_sendmsg")
int BPF_PROG(tn_fentry_tcp_sendmsg, struct sock *sk)
{
	on_send(sk);
	return 0;
}

/* ---- kprobe ---- */

SEC("kprobe/tcp_retransmit_skb")
int BPF_KPROBE(tn_kprobe_tcp_retransmit_skb, struct sock *sk, struct sk_buff *skb, int segs)
{
	__u32 n = skb_pcount(skb);

	emit(sk, sk, false, n < (__u32)segs ? n : (__u32)segs, tn_socket_id(sk), TN_MODE_KPROBE);
	return 0;
}

SEC("kprobe/tcp_rtx_synack")
int BPF_KPROBE(tn_kprobe_tcp_rtx_synack, struct sock *sk, struct request_sock *req)
{
	emit_synack(sk, req, TN_MODE_KPROBE);
	return 0;
}

SEC("kprobe/inet_csk_listen_start")
int BPF_KPROBE(tn_kprobe_inet_csk_listen_start, struct sock *sk)
{
	tn_own_socket(sk, 0);
	return 0;
}

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(tn_kprobe_tcp_sendmsg, struct sock *sk)
{
	on_send(sk);
	return 0;
}

/* ---- tracepoint (BTF-typed) ---- */

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tn_tp_tcp_retransmit_skb, struct sock *sk, struct sk_buff *skb)
{
	/* fires after any split: the skb holds exactly what was re-sent */
	emit(sk, sk, false, skb_pcount(skb), bpf_get_socket_cookie(sk), TN_MODE_TRACEPOINT);
	return 0;
}

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(tn_tp_tcp_retransmit_synack, struct sock *sk, struct request_sock *req)
{
	emit_synack(sk, req, TN_MODE_TRACEPOINT);
	return 0;
}

/*
 * The owners of listening and sending sockets come from programs this hook
 * shares with the connect hook (tn_tp_inet_sock_set_state) and the payload
 * hook (tn_tp_sock_send_length), which take its roles (enum tn_role).
 */
