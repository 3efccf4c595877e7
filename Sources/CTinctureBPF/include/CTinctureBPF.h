#ifndef TINCTURE_CTINCTUREBPF_H
#define TINCTURE_CTINCTUREBPF_H

#include <linux/types.h>
#include <stddef.h>
#include "../../../bpf/tincture.h"

struct bpf_object;
struct tincture_bpf;

/* The BPF object embedded in this binary at build time. */
const void *tn_bpf_object_bytes(size_t *size);

/* Open the embedded object (not loaded yet) with its load-time configuration. */
struct tincture_bpf *tn_skel_open(const struct tn_config *config);
struct bpf_object *tn_skel_object(struct tincture_bpf *skel);
/* Free the object; detach links first (bpf_link__destroy). */
void tn_skel_destroy(struct tincture_bpf *skel);

/* The poll-wait histogram bounds the BPF programs use, for checks on the Swift side. */
static const __u64 tn_poll_bounds_ns[TN_POLL_BUCKETS] = TN_POLL_BOUNDS_NS;
/* The connect-latency histogram bounds, likewise. */
static const __u64 tn_connect_bounds_ns[TN_CONNECT_BUCKETS] = TN_CONNECT_BOUNDS_NS;

/*
 * libbpf's own messages go to an in-memory log instead of stderr, so a
 * failed probe can be reported as one clear line and the details shown on
 * request. `verbose` also keeps debug-level lines.
 */
void tn_libbpf_log_capture(int verbose);
/* Copy the captured log into buf (NUL-terminated), clear it, return its length. */
size_t tn_libbpf_log_take(char *buf, size_t cap);

/*
 * Drop every capability (effective, permitted, inheritable, and the bounding set
 * where allowed). Returns 0 or -errno.
 */
int tn_drop_all_capabilities(void);

/*
 * A reader of a BPF ring buffer map (ring.c). Records are handed over in
 * place, in order; the space is returned to the producers in batches.
 */
struct tn_ring;
typedef void (*tn_ring_record_fn)(void *ctx, const void *data, size_t size);
/* Map `map_fd` (BPF_MAP_TYPE_RINGBUF) and watch it for wake-ups. NULL and errno on failure. */
struct tn_ring *tn_ring_open(int map_fd);
void tn_ring_close(struct tn_ring *ring);
/* Block until a producer wakes the reader or `timeout_ms` passes: 1, 0, or -errno. */
int tn_ring_wait(struct tn_ring *ring, int timeout_ms);
/* Hand every complete record waiting (at most one ring's worth) to `fn`; the count. */
long tn_ring_drain(struct tn_ring *ring, tn_ring_record_fn fn, void *ctx);

#endif
