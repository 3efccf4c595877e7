// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Consumer-throughput producer: writes batches of realistic tn_connect_event
 * records into its own ring buffer when run with BPF_PROG_TEST_RUN, so the C
 * and Swift consumers can be measured draining the same ring from the same
 * source. The program backs off when the ring is nearly full: it writes only
 * what fits and returns the count, so a consumer's measured rate is its drain
 * rate with nothing lost.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "../../../bpf/tincture.h"
#include "producer.h"

#define AF_INET 2

/* Record size in the ring: the event plus the kernel's 8-byte header, 8-aligned. */
#define TN_BENCH_SLOT ((TN_CONNECT_EVENT_SIZE + 8 + 7) & ~7)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TN_BENCH_RING_SIZE);
} tn_bench_ring SEC(".maps");

/* Reserve failures (ring full) over the object's lifetime. */
__u64 tn_bench_lost;

/* Eight callers; pid and comm go together like a real host's processes. */
static const char tn_bench_comms[8][TN_COMM_LEN] = {
	"curl", "python3", "nginx", "java", "node", "postgres", "envoy", "redis-cli",
};
/* Ten destinations 10.1.0.1 .. 10.1.0.10, each with its service port (16 slots: masked index). */
static const __u16 tn_bench_ports[16] = { 80, 443, 5432, 6379, 8080, 80, 443, 5432, 6379, 8080 };

struct tn_bench_loop {
	__u64 seq;
	__u64 written;
	__u64 lost;
	__u64 now_ns;
	__u32 count;
	__u32 flags;
};

static long tn_bench_one(__u32 i, void *data)
{
	struct tn_bench_loop *loop = data;
	struct tn_connect_event *e;
	__u64 seq = loop->seq + i;
	/* 40 label sets: comm index j % 8 crossed with destination (7 j) % 10 */
	__u32 j = seq % 40;
	__u32 c = j & 7;
	__u32 d = (j * 7) % 10;
	__u64 duration_ns;

	e = bpf_ringbuf_reserve(&tn_bench_ring, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&tn_bench_lost, 1);
		loop->lost++;
		return 0;
	}
	/* 150 us per destination step plus jitter; every 101st paid one SYN retransmit */
	duration_ns = 150000ULL * (d + 1) + (seq * 7919) % 1000000;
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = TN_EVENT_CONNECT;
	e->pid = 4100 + c * 37;
	e->tid = e->pid + (__u32)(seq % 3);
	e->ts_ns = loop->now_ns + i * 100;
	if (seq % 101 == 0) {
		e->syn_retransmits = 1;
		duration_ns += 1000000000ULL;
	}
	e->start_ns = e->ts_ns - duration_ns;
	e->cookie = seq + 1;
	e->family = AF_INET;
	e->sport = 32768 + seq % 28000;
	/* the verifier does not bound a remainder: mask the index it checks */
	barrier_var(d);
	e->dport = tn_bench_ports[d & 15];
	e->established = 1;
	e->mode = TN_MODE_TRACEPOINT;
#ifdef TN_CONNECT_UNCOUNTED
	e->flags = loop->flags;
#endif
	e->saddr[0] = 10;
	e->saddr[3] = 2;
	e->daddr[0] = 10;
	e->daddr[1] = 1;
	e->daddr[3] = d + 1;
	__builtin_memcpy(e->comm, tn_bench_comms[c], TN_COMM_LEN);
	/* One wakeup per batch, on its last record. */
	bpf_ringbuf_submit(e, i + 1 == loop->count ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	loop->written++;
	return 0;
}

SEC("syscall")
int tn_bench_produce(struct tn_bench_ctx *ctx)
{
	struct tn_bench_loop loop = { .seq = ctx->seq, .now_ns = bpf_ktime_get_ns() };
	__u64 used = bpf_ringbuf_query(&tn_bench_ring, BPF_RB_AVAIL_DATA);
	__u64 room = used < TN_BENCH_RING_SIZE ? (TN_BENCH_RING_SIZE - used) / TN_BENCH_SLOT : 0;
	__u64 want = ctx->count < TN_BENCH_BATCH_MAX ? ctx->count : TN_BENCH_BATCH_MAX;

#ifdef TN_CONNECT_UNCOUNTED
	/*
	 * By default the agent counts these connects itself (as when the kernel's
	 * connect histogram is full): the most work its per-event path does.
	 */
	loop.flags = ctx->counted ? 0 : TN_CONNECT_UNCOUNTED;
#endif
	/* Back off: write only what fits, so no record is lost to a full ring. */
	loop.count = want < room ? want : room;
	if (loop.count)
		bpf_loop(loop.count, tn_bench_one, &loop, 0);
	ctx->written = loop.written;
	ctx->lost = loop.lost;
	return loop.written;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
