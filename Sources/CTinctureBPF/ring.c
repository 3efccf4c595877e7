#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include "CTinctureBPF.h"

/*
 * A BPF ring buffer read through its memory mapping: the consumer position
 * page (writable), then the producer position page and the data pages, mapped
 * twice in a row so a record that wraps reads as one span. The producers
 * check free space against the consumer position, and each write of it moves
 * its cache line to the reader's CPU: it is published once per
 * TN_RING_RELEASE_BYTES of records (and at the end of a drain), not per record.
 */
#define TN_RING_RELEASE_BYTES (32 * 1024)

struct tn_ring {
	int epoll_fd;
	size_t page_size;
	size_t size;  /* data bytes, a power of two */
	unsigned long *consumer_pos;
	const unsigned long *producer_pos;
	const unsigned char *data;
};

void tn_ring_close(struct tn_ring *r)
{
	if (!r)
		return;
	if (r->consumer_pos)
		munmap(r->consumer_pos, r->page_size);
	if (r->producer_pos)
		munmap((void *)r->producer_pos, r->page_size + 2 * r->size);
	if (r->epoll_fd >= 0)
		close(r->epoll_fd);
	free(r);
}

struct tn_ring *tn_ring_open(int map_fd)
{
	struct bpf_map_info info = {};
	__u32 info_len = sizeof(info);
	struct epoll_event ev = { .events = EPOLLIN };
	struct tn_ring *r;
	void *p;
	int err;

	if (bpf_obj_get_info_by_fd(map_fd, &info, &info_len))
		return NULL;
	if (info.type != BPF_MAP_TYPE_RINGBUF || !info.max_entries) {
		errno = EINVAL;
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->epoll_fd = -1;
	r->page_size = (size_t)sysconf(_SC_PAGESIZE);
	r->size = info.max_entries;
	p = mmap(NULL, r->page_size, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
	if (p == MAP_FAILED)
		goto fail;
	r->consumer_pos = p;
	p = mmap(NULL, r->page_size + 2 * r->size, PROT_READ, MAP_SHARED, map_fd, (off_t)r->page_size);
	if (p == MAP_FAILED)
		goto fail;
	r->producer_pos = p;
	r->data = (const unsigned char *)p + r->page_size;
	r->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (r->epoll_fd < 0 || epoll_ctl(r->epoll_fd, EPOLL_CTL_ADD, map_fd, &ev))
		goto fail;
	return r;
fail:
	err = errno;
	tn_ring_close(r);
	errno = err;
	return NULL;
}

int tn_ring_wait(struct tn_ring *r, int timeout_ms)
{
	struct epoll_event ev;
	int n = epoll_wait(r->epoll_fd, &ev, 1, timeout_ms);

	return n < 0 ? -errno : n;
}

long tn_ring_drain(struct tn_ring *r, tn_ring_record_fn fn, void *ctx)
{
	unsigned long cons = __atomic_load_n(r->consumer_pos, __ATOMIC_ACQUIRE);
	unsigned long published = cons, limit = cons + r->size;
	long records = 0;

	/* at most one ring's worth per call, so a producer that never pauses cannot hold the caller */
	while (cons < limit) {
		unsigned long prod = __atomic_load_n(r->producer_pos, __ATOMIC_ACQUIRE);

		if (cons >= prod)
			break;
		while (cons < prod && cons < limit) {
			const __u32 *header = (const __u32 *)(r->data + (cons & (r->size - 1)));
			__u32 len = __atomic_load_n(header, __ATOMIC_ACQUIRE);
			__u32 size = len & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);

			if (len & BPF_RINGBUF_BUSY_BIT)
				goto done;  /* still being written; records after it wait for it */
			if (!(len & BPF_RINGBUF_DISCARD_BIT)) {
				fn(ctx, (const unsigned char *)header + BPF_RINGBUF_HDR_SZ, size);
				records++;
			}
			cons += (size + BPF_RINGBUF_HDR_SZ + 7) & ~7UL;
			if (cons - published >= TN_RING_RELEASE_BYTES) {
				__atomic_store_n(r->consumer_pos, cons, __ATOMIC_RELEASE);
				published = cons;
			}
		}
	}
done:
	if (cons != published)
		__atomic_store_n(r->consumer_pos, cons, __ATOMIC_RELEASE);
	return records;
}
