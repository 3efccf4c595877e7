#ifndef TINCTURE_CTINCTUREBPF_H
#define TINCTURE_CTINCTUREBPF_H

#include <linux/types.h>
#include <stddef.h>
#include "../../../bpf/tincture.h"

struct bpf_object;

/* The BPF object embedded in this binary at build time. */
const void *tn_bpf_object_bytes(size_t *size);

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

#endif
