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
	TN_CTR_PENDING_CONNECT_FULL = TN_EVENT_KIND_MAX, /* connect start not recorded: map full */
	TN_CTR_CONNECT_END_UNSEEN_START,                 /* connect ended that started before attach */
	TN_COUNTER_MAX,
};

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
	__u32 reserved;
	__u8 saddr[TN_ADDR_LEN]; /* IPv4 uses the first 4 bytes, network order */
	__u8 daddr[TN_ADDR_LEN];
	char comm[TN_COMM_LEN];  /* owner's comm at connect() time */
};

#define TN_CONNECT_EVENT_SIZE 104

_Static_assert(sizeof(struct tn_connect_event) == TN_CONNECT_EVENT_SIZE,
	       "tn_connect_event layout changed: update TinctureCore's decoder");

#endif /* TINCTURE_ABI_H */
