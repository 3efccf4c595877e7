// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * How long threads block in poll, ppoll, select, pselect6, epoll_wait,
 * epoll_pwait and epoll_pwait2. Every wait is counted in a per-CPU in-kernel
 * histogram (exact /metrics at any rate); only waits of at least
 * tn_cfg.poll_min_ns spend a ring-buffer slot as events. When exactly one
 * socket is waited on, its cookie joins the wait to the connection.
 *   fentry:     fentry/fexit on the syscall functions (__x64_sys_poll, ...)
 *   kprobe:     ksyscall/kretsyscall on the same syscalls
 *   tracepoint: syscalls/sys_enter_* and sys_exit_* (classic: needs tracefs)
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "tincture.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * A wait in progress, keyed by thread. Which fd it waits on is worked out only
 * for a wait long enough to travel as an event, at its exit: most waits are
 * short, and resolving an fd to its socket is most of what a wait would cost.
 * select's sets are the exception: the kernel rewrites them with the result, so
 * select and pselect6 resolve theirs at entry.
 */
struct tn_wait {
	__u64 start_ns;
	__s64 timeout_ms;
	__u64 cookie;            /* select, pselect6: resolved at entry */
	__u64 fds;               /* poll, ppoll: the pollfd array; epoll_*: the epoll fd */
	__u32 syscall;
	__s32 fd;                /* select, pselect6: resolved at entry */
	__u32 nfds;              /* poll, ppoll */
	__u32 reserved;
};

/*
 * A plain hash, not an LRU: its updates and deletes are a fraction of an LRU's,
 * and every wait does one of each. An entry lives for one syscall (its exit
 * deletes it), so the map only fills if that many threads wait at once; then
 * waits go uncounted and TN_CTR_WAIT_MAP_FULL says so.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct tn_wait);
} tn_waits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct tn_poll_hist_key);
	__type(value, struct tn_poll_hist);
} tn_poll_hists SEC(".maps");

static const __u64 tn_poll_bounds[TN_POLL_BUCKETS] = TN_POLL_BOUNDS_NS;

/* A user timespec (or timeval, whose second field is microseconds) in milliseconds. */
static __always_inline __s64 user_time_ms(__u64 uptr, bool timeval)
{
	__s64 t[2] = {};

	if (!uptr)
		return -1;
	if (bpf_probe_read_user(t, sizeof(t), (void *)uptr) || t[0] < 0 || t[1] < 0)
		return -1;
	/* BPF has no signed division; both parts are non-negative here */
	return t[0] * 1000 + (__s64)(timeval ? (__u64)t[1] / 1000 : (__u64)t[1] / 1000000);
}

/* The cookie of the socket behind a file, 0 for anything else. */
static __always_inline __u64 file_cookie(struct file *f)
{
	struct sock *sk = tn_file_sock(f);

	return sk ? tn_socket_id(sk) : 0;
}

/* The one fd an epoll instance watches, or -1 if it watches none or several. */
static __always_inline int epoll_single(int epfd, __u64 *cookie)
{
	struct file *ef = tn_fd_file(epfd);
	struct eventpoll *ep;
	struct rb_node *n;
	struct epitem *epi;

	if (!ef)
		return -1;
	ep = BPF_CORE_READ(ef, private_data);
	n = BPF_CORE_READ(ep, rbr.rb_root.rb_node);
	if (!n || BPF_CORE_READ(n, rb_left) || BPF_CORE_READ(n, rb_right))
		return -1;
	/* the rb_node is the epitem's first member */
	epi = (struct epitem *)n;
	*cookie = file_cookie(BPF_CORE_READ(epi, ffd.file));
	return BPF_CORE_READ(epi, ffd.fd);
}

/* The one fd set in select's fd_sets (for n <= 64), or -1. */
static __always_inline int select_single(__u64 n, __u64 in, __u64 out, __u64 ex)
{
	__u64 bits = 0, w;

	if (n == 0 || n > 64)
		return -1;
	if (in && !bpf_probe_read_user(&w, sizeof(w), (void *)in))
		bits |= w;
	if (out && !bpf_probe_read_user(&w, sizeof(w), (void *)out))
		bits |= w;
	if (ex && !bpf_probe_read_user(&w, sizeof(w), (void *)ex))
		bits |= w;
	if (n < 64)
		bits &= (1ULL << n) - 1;
	if (!bits || (bits & (bits - 1)))
		return -1;
	return __builtin_ctzll(bits);
}

static __always_inline void wait_enter(__u32 sc, __u64 a0, __u64 a1, __u64 a2, __u64 a3, __u64 a4)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct tn_wait w = { .fd = -1 };

	/* the agent's own waits would feed back into the ring buffer */
	if ((id >> 32) == tn_cfg.self_tgid)
		return;
	w.start_ns = bpf_ktime_get_ns();
	w.syscall = sc;
	switch (sc) {
	case TN_SC_POLL:
	case TN_SC_PPOLL:
		/* ppoll writes the time left back into its timespec: read it now */
		w.timeout_ms = sc == TN_SC_POLL ? ((int)a2 < 0 ? -1 : (int)a2) : user_time_ms(a2, false);
		w.fds = a0;
		w.nfds = a1 > 0xffffffff ? 0xffffffff : a1;
		break;
	case TN_SC_SELECT:
	case TN_SC_PSELECT6:
		w.timeout_ms = user_time_ms(a4, sc == TN_SC_SELECT);
		w.fd = select_single(a0, a1, a2, a3);
		if (w.fd >= 0)
			w.cookie = file_cookie(tn_fd_file(w.fd));
		break;
	default: /* epoll_wait, epoll_pwait: int ms; epoll_pwait2: timespec */
		w.timeout_ms = sc == TN_SC_EPOLL_PWAIT2 ? user_time_ms(a3, false) : ((int)a3 < 0 ? -1 : (int)a3);
		w.fds = a0;
		break;
	}
	if (bpf_map_update_elem(&tn_waits, &tid, &w, BPF_ANY))
		tn_count(TN_CTR_WAIT_MAP_FULL);
}

static __always_inline void count_wait(__u32 sc, __u64 dur)
{
	struct tn_poll_hist_key key = { .syscall = sc };
	struct tn_poll_hist *h, zero = {};
	__u32 i, bucket = TN_POLL_BUCKETS;

	bpf_get_current_comm(key.comm, sizeof(key.comm));
	h = bpf_map_lookup_elem(&tn_poll_hists, &key);
	if (!h) {
		bpf_map_update_elem(&tn_poll_hists, &key, &zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&tn_poll_hists, &key);
		if (!h) {
			tn_count(TN_CTR_POLL_HIST_MAP_FULL);
			return;
		}
	}
	for (i = 0; i < TN_POLL_BUCKETS; i++) {
		if (dur <= tn_poll_bounds[i]) {
			bucket = i;
			break;
		}
	}
	/* per-CPU, but a preempted program can meet another on this CPU: add atomically */
	if (bucket <= TN_POLL_BUCKETS) /* always true; bounds the index for the verifier */
		__sync_fetch_and_add(&h->counts[bucket], 1);
	__sync_fetch_and_add(&h->sum_ns, dur);
}

/* The one fd a long wait waited on, and its socket's cookie; -1 and 0 if not one socket. */
static __always_inline int waited_fd(struct tn_wait *w, __u64 *cookie)
{
	int pfd;

	switch (w->syscall) {
	case TN_SC_POLL:
	case TN_SC_PPOLL:
		/* struct pollfd's first field is the fd; the kernel writes only revents back */
		if (w->nfds != 1 || bpf_probe_read_user(&pfd, sizeof(pfd), (void *)w->fds))
			return -1;
		*cookie = file_cookie(tn_fd_file(pfd));
		return pfd;
	case TN_SC_SELECT:
	case TN_SC_PSELECT6:
		*cookie = w->cookie;
		return w->fd;
	default:
		return epoll_single((int)w->fds, cookie);
	}
}

static __always_inline void wait_exit(long ret, __u8 mode)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct tn_wait *w = bpf_map_lookup_elem(&tn_waits, &tid);
	struct tn_poll_event *e;
	__u64 now, dur;

	if (!w)
		return;
	now = bpf_ktime_get_ns();
	dur = now - w->start_ns;
	count_wait(w->syscall, dur);
	if (dur >= tn_cfg.poll_min_ns) {
		/* reserve a slot; count the loss if the ring is full */
		e = bpf_ringbuf_reserve(&tn_events, sizeof(*e), 0);
		if (!e) {
			tn_count(TN_EVENT_POLL);
		} else {
			e->kind = TN_EVENT_POLL;
			e->pid = id >> 32;
			e->tid = tid;
			e->syscall = w->syscall;
			e->ts_ns = now;
			e->start_ns = w->start_ns;
			e->cookie = 0;
			e->fd = waited_fd(w, &e->cookie);
			e->timeout_ms = w->timeout_ms;
			e->ready = ret;
			e->mode = mode;
			__builtin_memset(e->reserved, 0, sizeof(e->reserved));
			bpf_get_current_comm(e->comm, sizeof(e->comm));
			bpf_ringbuf_submit(e, tn_wakeup_flags(sizeof(*e), true));
		}
	}
	bpf_map_delete_elem(&tn_waits, &tid);
}

/* x86-64 syscall arguments, as the syscall function receives them. */
static __always_inline void wait_enter_regs(__u32 sc, struct pt_regs *regs)
{
	wait_enter(sc, BPF_CORE_READ(regs, di), BPF_CORE_READ(regs, si), BPF_CORE_READ(regs, dx),
		   BPF_CORE_READ(regs, r10), BPF_CORE_READ(regs, r8));
}

/* Entry and return programs of one syscall in each mode. */
#define TN_WAIT_SYSCALL(name, sc)                                                              \
	SEC("fentry/__x64_sys_" #name)                                                         \
	int BPF_PROG(tn_fentry_##name, struct pt_regs *regs)                                  \
	{                                                                                      \
		wait_enter_regs(sc, regs);                                                     \
		return 0;                                                                      \
	}                                                                                      \
	SEC("fexit/__x64_sys_" #name)                                                          \
	int BPF_PROG(tn_fexit_##name, struct pt_regs *regs, long ret)                         \
	{                                                                                      \
		wait_exit(ret, TN_MODE_FENTRY);                                                \
		return 0;                                                                      \
	}                                                                                      \
	SEC("ksyscall/" #name)                                                                 \
	int BPF_KSYSCALL(tn_kprobe_##name, long a0, long a1, long a2, long a3, long a4)        \
	{                                                                                      \
		wait_enter(sc, a0, a1, a2, a3, a4);                                            \
		return 0;                                                                      \
	}                                                                                      \
	SEC("kretsyscall/" #name)                                                              \
	int BPF_KRETPROBE(tn_kretprobe_##name, long ret)                                       \
	{                                                                                      \
		wait_exit(ret, TN_MODE_KPROBE);                                                \
		return 0;                                                                      \
	}                                                                                      \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                            \
	int tn_tp_enter_##name(struct trace_event_raw_sys_enter *ctx)                          \
	{                                                                                      \
		wait_enter(sc, ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3],         \
			   ctx->args[4]);                                                      \
		return 0;                                                                      \
	}                                                                                      \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                             \
	int tn_tp_exit_##name(struct trace_event_raw_sys_exit *ctx)                            \
	{                                                                                      \
		wait_exit(ctx->ret, TN_MODE_TRACEPOINT);                                       \
		return 0;                                                                      \
	}

TN_WAIT_SYSCALL(poll, TN_SC_POLL)
TN_WAIT_SYSCALL(ppoll, TN_SC_PPOLL)
TN_WAIT_SYSCALL(select, TN_SC_SELECT)
TN_WAIT_SYSCALL(pselect6, TN_SC_PSELECT6)
TN_WAIT_SYSCALL(epoll_wait, TN_SC_EPOLL_WAIT)
TN_WAIT_SYSCALL(epoll_pwait, TN_SC_EPOLL_PWAIT)
TN_WAIT_SYSCALL(epoll_pwait2, TN_SC_EPOLL_PWAIT2)
