#include <errno.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>
#include <bpf/libbpf.h>
#include "CTinctureBPF.h"
#include "generated/tincture.skel.h"

const void *tn_bpf_object_bytes(size_t *size)
{
	return tincture_bpf__elf_bytes(size);
}

struct tincture_bpf *tn_skel_open(const struct tn_config *config)
{
	struct tincture_bpf *skel = tincture_bpf__open();

	if (skel)
		skel->rodata->tn_cfg = *config;
	return skel;
}

struct bpf_object *tn_skel_object(struct tincture_bpf *skel)
{
	return skel->obj;
}

void tn_skel_destroy(struct tincture_bpf *skel)
{
	tincture_bpf__destroy(skel);
}

/* Loading happens on one thread at a time; the log needs no lock. */
static char tn_log[32768];
static size_t tn_log_len;
static int tn_log_verbose;

static int tn_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	int n;

	if (level == LIBBPF_DEBUG && !tn_log_verbose)
		return 0;
	if (tn_log_len >= sizeof(tn_log) - 1)
		return 0;
	n = vsnprintf(tn_log + tn_log_len, sizeof(tn_log) - tn_log_len, fmt, ap);
	if (n > 0)
		tn_log_len += (size_t)n < sizeof(tn_log) - tn_log_len ? (size_t)n
								     : sizeof(tn_log) - tn_log_len - 1;
	return n;
}

void tn_libbpf_log_capture(int verbose)
{
	tn_log_verbose = verbose;
	libbpf_set_print(tn_libbpf_print);
}

size_t tn_libbpf_log_take(char *buf, size_t cap)
{
	size_t n = tn_log_len < cap - 1 ? tn_log_len : cap - 1;

	memcpy(buf, tn_log, n);
	buf[n] = '\0';
	tn_log_len = 0;
	return n;
}

int tn_drop_all_capabilities(void)
{
	struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	int cap;

	/* The bounding set needs CAP_SETPCAP; under a hardened unit it is already small. */
	for (cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL && errno != EPERM)
			return -errno;
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &header, data) != 0)
		return -errno;
	return 0;
}
