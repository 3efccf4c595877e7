/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Kernel-only helpers shared by every hook family. Nothing user-side includes this. */
#ifndef TINCTURE_COMMON_BPF_H
#define TINCTURE_COMMON_BPF_H

#define AF_INET 2
#define AF_INET6 10

/* The one ring buffer every family writes to; the agent sizes it before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} tn_events SEC(".maps");

/* Loss and state counters, per CPU so the hot path never contends. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TN_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} tn_counters SEC(".maps");

static __always_inline void tn_count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&tn_counters, &slot);

	/* atomic: a softirq program can interrupt a process-context one on this CPU */
	if (v)
		__sync_fetch_and_add(v, 1);
}

/* Copy the socket's addresses and ports into an event, for either family. */
static __always_inline void tn_read_endpoints(struct sock *sk, __u16 *family,
					       __u8 *saddr, __u8 *daddr,
					       __u16 *sport, __u16 *dport)
{
	*family = BPF_CORE_READ(sk, __sk_common.skc_family);
	/* inet_sport, not skc_num: moving to CLOSE releases the port and zeroes skc_num
	 * before the state-change tracepoint fires, but keeps inet_sport */
	*sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	*dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (*family == AF_INET6) {
		bpf_core_read(saddr, TN_ADDR_LEN, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(daddr, TN_ADDR_LEN, &sk->__sk_common.skc_v6_daddr);
	} else {
		BPF_CORE_READ_INTO((__u32 *)saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)daddr, sk, __sk_common.skc_daddr);
	}
}

#endif /* TINCTURE_COMMON_BPF_H */
