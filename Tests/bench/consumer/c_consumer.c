// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Consumer-throughput baseline: a minimal libbpf ring-buffer consumer. One
 * thread drives producer.bpf.o with BPF_PROG_TEST_RUN until EVENTS records
 * were written; the main thread drains the ring, checking each record's kind
 * and size, copying it out and adding it to a small per-(pid, dport)
 * aggregate. Prints one JSON line.
 *
 *   c_consumer [--events N] [--counted-in-kernel] [--drain] PRODUCER.bpf.o
 *
 * --drain: no concurrent producer. Fill the ring, then time draining it, until
 * EVENTS records were consumed: the consumer's own capacity, free of the
 * producer's pace and of cross-CPU traffic.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/types.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "../../../bpf/tincture.h"
#include "producer.h"

#define AGG_SLOTS 256 /* power of two */
#define POLL_TIMEOUT_MS 20 /* as the agent's reader */
#define STALL_SECONDS 10.0
/*
 * When the ring is nearly full the producer pauses instead of spinning on it:
 * 8 MiB hold ~75000 records, several milliseconds of work for this consumer,
 * so the pause never lets the ring run dry.
 */
#define FULL_PAUSE_NS 20000

struct agg_slot {
	__u32 pid;
	__u16 dport;
	__u16 used;
	__u64 count;
	__u64 sum_ns;
};

struct consumer {
	unsigned long long consumed;
	unsigned long long rejected;
	unsigned long long overflow;
	unsigned int series;
	struct agg_slot slots[AGG_SLOTS];
};

struct producer {
	int prog_fd;
	int counted;
	unsigned long long events;
	unsigned long long written;
	unsigned long long lost;
	unsigned long long runs;
	unsigned long long short_runs;
	int error;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pin_to_cpu(int cpu)
{
	cpu_set_t set;

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

static void aggregate(struct consumer *c, __u32 pid, __u16 dport, __u64 duration_ns)
{
	__u32 h = (pid * 2654435761u) ^ (dport * 40503u);

	for (int probe = 0; probe < AGG_SLOTS; probe++) {
		struct agg_slot *s = &c->slots[(h + probe) & (AGG_SLOTS - 1)];

		if (!s->used) {
			s->used = 1;
			s->pid = pid;
			s->dport = dport;
			c->series++;
		} else if (s->pid != pid || s->dport != dport) {
			continue;
		}
		s->count++;
		s->sum_ns += duration_ns;
		return;
	}
	c->overflow++;
}

static int on_record(void *ctx, void *data, size_t size)
{
	struct consumer *c = ctx;
	struct tn_connect_event e;
	__u32 kind;

	if (size < sizeof(kind)) {
		c->rejected++;
		return 0;
	}
	memcpy(&kind, data, sizeof(kind));
	if (kind != TN_EVENT_CONNECT || size < sizeof(e)) {
		c->rejected++;
		return 0;
	}
	memcpy(&e, data, sizeof(e));
	c->consumed++;
	aggregate(c, e.pid, e.dport, e.ts_ns >= e.start_ns ? e.ts_ns - e.start_ns : 0);
	return 0;
}

static double thread_cpu(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One test run of up to a batch; returns 1 when the ring had room for all of it. */
static int produce_batch(struct producer *p)
{
	unsigned long long left = p->events - p->written;
	struct tn_bench_ctx ctx = {
		.seq = p->written,
		.count = left < TN_BENCH_BATCH_MAX ? left : TN_BENCH_BATCH_MAX,
		.counted = p->counted,
	};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &ctx, .ctx_size_in = sizeof(ctx));

	if (bpf_prog_test_run_opts(p->prog_fd, &opts)) {
		p->error = errno;
		return 0;
	}
	p->runs++;
	p->written += ctx.written;
	p->lost += ctx.lost;
	if (ctx.written < ctx.count) {
		p->short_runs++;
		return 0;
	}
	return 1;
}

static void *produce(void *arg)
{
	struct producer *p = arg;

	pin_to_cpu(1);
	while (p->written < p->events && !p->error) {
		if (!produce_batch(p)) {
			struct timespec pause = { .tv_nsec = FULL_PAUSE_NS };

			nanosleep(&pause, NULL);
		}
	}
	return NULL;
}

/* The producer on its own thread, the consumer here; wall time until every record arrived. */
static int run_concurrent(struct ring_buffer *rb, struct consumer *c, struct producer *p, double *seconds,
			  double *cpu_seconds)
{
	unsigned long long last = 0;
	double start, progress, cpu;
	pthread_t thread;
	int err;

	pin_to_cpu(0);
	cpu = thread_cpu();
	start = now();
	progress = start;
	err = pthread_create(&thread, NULL, produce, p);
	if (err) {
		fprintf(stderr, "c_consumer: pthread_create: %s\n", strerror(err));
		return 1;
	}
	while (c->consumed + c->rejected < p->events) {
		/* the agent's reader loop: a bounded poll, then what arrived without a wake-up */
		err = ring_buffer__poll(rb, POLL_TIMEOUT_MS);
		if (err >= 0 || err == -EINTR)
			err = ring_buffer__consume(rb);
		if (err < 0 && err != -EINTR) {
			fprintf(stderr, "c_consumer: reading the ring: %s\n", strerror(-err));
			return 1;
		}
		if (c->consumed != last) {
			last = c->consumed;
			progress = now();
		} else if (now() - progress > STALL_SECONDS) {
			fprintf(stderr, "c_consumer: stalled at %llu of %llu records\n", c->consumed, p->events);
			return 1;
		}
	}
	*seconds = now() - start;
	*cpu_seconds = thread_cpu() - cpu;
	pthread_join(thread, NULL);
	return 0;
}

/* Fill the ring, then time draining it; repeat. Seconds are the drains' only. */
static int run_drain(struct ring_buffer *rb, struct consumer *c, struct producer *p, double *seconds,
		     double *cpu_seconds)
{
	double start, cpu;
	int err;

	pin_to_cpu(0);
	*seconds = 0;
	*cpu_seconds = 0;
	while (c->consumed + c->rejected < p->events) {
		while (p->written < p->events && produce_batch(p))
			;
		if (p->error)
			return 0;
		cpu = thread_cpu();
		start = now();
		err = ring_buffer__consume(rb);
		*seconds += now() - start;
		*cpu_seconds += thread_cpu() - cpu;
		if (err < 0) {
			fprintf(stderr, "c_consumer: ring_buffer__consume: %s\n", strerror(-err));
			return 1;
		}
		if (err == 0) {
			fprintf(stderr, "c_consumer: ring empty at %llu of %llu records\n", c->consumed, p->events);
			return 1;
		}
	}
	return 0;
}

/* tn_bench_lost, the producer's own count of reserve failures (its .bss map). */
static unsigned long long kernel_lost(struct bpf_object *obj)
{
	struct bpf_map *map;
	__u64 value[64] = {};
	__u32 key = 0;

	bpf_object__for_each_map(map, obj) {
		const char *name = bpf_map__name(map);
		size_t len = strlen(name);

		if (len >= 4 && !strcmp(name + len - 4, ".bss") && bpf_map__value_size(map) <= sizeof(value) &&
		    !bpf_map_lookup_elem(bpf_map__fd(map), &key, value))
			return value[0];
	}
	return ~0ULL;
}

static int quiet(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, args) : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: c_consumer [--events N] [--counted-in-kernel] [--drain] PRODUCER.bpf.o\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static struct consumer consumer;
	struct producer producer = { .events = 5000000 };
	const char *path = NULL;
	struct bpf_object *obj;
	struct bpf_program *prog;
	struct ring_buffer *rb;
	double seconds, cpu_seconds;
	int map_fd, err, drain = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--events") && i + 1 < argc)
			producer.events = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--counted-in-kernel"))
			producer.counted = 1;
		else if (!strcmp(argv[i], "--drain"))
			drain = 1;
		else if (argv[i][0] == '-' || path)
			usage();
		else
			path = argv[i];
	}
	if (!path || !producer.events)
		usage();

	libbpf_set_print(quiet);
	obj = bpf_object__open_file(path, NULL);
	if (!obj) {
		fprintf(stderr, "c_consumer: opening %s: %s\n", path, strerror(errno));
		return 1;
	}
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "c_consumer: loading %s: %s\n", path, strerror(-err));
		return 1;
	}
	prog = bpf_object__find_program_by_name(obj, "tn_bench_produce");
	map_fd = bpf_object__find_map_fd_by_name(obj, "tn_bench_ring");
	if (!prog || map_fd < 0) {
		fprintf(stderr, "c_consumer: %s has no tn_bench_produce program or tn_bench_ring map\n", path);
		return 1;
	}
	producer.prog_fd = bpf_program__fd(prog);
	rb = ring_buffer__new(map_fd, on_record, &consumer, NULL);
	if (!rb) {
		fprintf(stderr, "c_consumer: ring_buffer__new: %s\n", strerror(errno));
		return 1;
	}

	err = drain ? run_drain(rb, &consumer, &producer, &seconds, &cpu_seconds)
		    : run_concurrent(rb, &consumer, &producer, &seconds, &cpu_seconds);
	if (err)
		return 1;
	if (producer.error) {
		fprintf(stderr, "c_consumer: BPF_PROG_TEST_RUN: %s\n", strerror(producer.error));
		return 1;
	}
	if (producer.lost != kernel_lost(obj))
		fprintf(stderr, "c_consumer: producer saw %llu reserve failures, its global counts %llu\n",
			producer.lost, kernel_lost(obj));

	printf("{\"consumer\":\"c\",\"mode\":\"%s\",\"events\":%llu,\"lost\":%llu,\"rejected\":%llu,"
	       "\"seconds\":%.4f,\"per_second\":%.0f,\"consumer_cpu_seconds\":%.4f,\"producer_runs\":%llu,"
	       "\"producer_short_runs\":%llu,\"series\":%u}\n",
	       drain ? "drain" : "concurrent", consumer.consumed, kernel_lost(obj), consumer.rejected, seconds,
	       consumer.consumed / seconds, cpu_seconds, producer.runs, producer.short_runs, consumer.series);
	ring_buffer__free(rb);
	bpf_object__close(obj);
	return consumer.rejected || consumer.overflow ? 1 : 0;
}
