/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the consumer-throughput producer (producer.bpf.c) and its drivers
 * (c_consumer.c, Sources/tincture-bench-consumer) share. The Swift driver
 * mirrors struct tn_bench_ctx as five UInt64 in this order.
 */
#ifndef TINCTURE_BENCH_PRODUCER_H
#define TINCTURE_BENCH_PRODUCER_H

#define TN_BENCH_RING_SIZE (8 << 20)
#define TN_BENCH_BATCH_MAX 256

/* The test-run context: in and out through BPF_PROG_TEST_RUN's ctx_in. */
struct tn_bench_ctx {
	__u64 seq;     /* in: sequence number of the batch's first record */
	__u64 count;   /* in: records wanted, at most TN_BENCH_BATCH_MAX */
	__u64 counted; /* in: 1 marks the connects as counted in the kernel's histogram */
	__u64 written; /* out: records submitted (fewer when the ring is nearly full) */
	__u64 lost;    /* out: reserve failures */
};

#endif /* TINCTURE_BENCH_PRODUCER_H */
