// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The first bytes of TCP payloads that start like HTTP/1.x, for request
 * correlation. Hooked at the syscalls (write, sendto, sendmsg, writev; read,
 * recvfrom, recvmsg, readv) with the fd resolved to its socket, so one body
 * serves every kernel without following iov_iter's changes. Everything that
 * is not HTTP costs one 4-byte check. A socket that leaves its connection
 * with a request in flight is reported by the set_state programs
 * (tn_http_close, role TN_ROLE_CLOSE), which this hook loads too.
 *   fentry:     fentry (sends) and fentry+fexit (receives) on __x64_sys_*
 *   kprobe:     ksyscall / kretsyscall on the same syscalls
 *   tracepoint: tp_btf sock/sock_send_length and sock/sock_recv_length, which
 *               fire only for socket I/O, after it is done; the syscall's
 *               arguments come from the task's saved registers. The send
 *               program also serves the retransmit hook (enum tn_role). Kernels
 *               older than 6.3 lack them: tp_btf raw_syscalls sys_enter /
 *               sys_exit instead (two links for all eight, but they run on
 *               every syscall of every task); the enter program then also
 *               serves the retransmit hook.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "tincture.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* x86-64 syscall numbers */
enum {
	NR_READ = 0, NR_WRITE = 1, NR_READV = 19, NR_WRITEV = 20,
	NR_SENDTO = 44, NR_RECVFROM = 45, NR_SENDMSG = 46, NR_RECVMSG = 47,
};

/* A receive in progress: where the data will land. */
struct tn_recv {
	__u64 buf;
	__u64 sk;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct tn_recv);
} tn_recvs SEC(".maps");

/* Scratch space for one event: too big for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tn_payload_event);
} tn_payload_scratch SEC(".maps");

/* TCP socket behind an fd of the current task, or NULL. */
static __always_inline struct sock *tcp_sock_of(int fd)
{
	struct sock *sk = tn_file_sock(tn_fd_file(fd));

	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return NULL;
	return sk;
}

enum { HTTP_NONE, HTTP_REQUEST, HTTP_RESPONSE };

/* The one cheap check: does the buffer start like an HTTP/1.x request or response? */
static __always_inline int http_start(__u64 buf)
{
	__u32 w = 0;

	if (!buf || bpf_probe_read_user(&w, sizeof(w), (void *)buf))
		return HTTP_NONE;
	/* little-endian 4-byte prefixes */
	switch (w) {
	case 0x20544547: /* "GET " */
	case 0x20545550: /* "PUT " */
	case 0x54534f50: /* "POST" */
	case 0x44414548: /* "HEAD" */
	case 0x454c4544: /* "DELE" */
	case 0x4954504f: /* "OPTI" */
	case 0x43544150: /* "PATC" */
	case 0x4e4e4f43: /* "CONN" */
	case 0x43415254: /* "TRAC" */
		return HTTP_REQUEST;
	case 0x50545448: /* "HTTP" */
		return HTTP_RESPONSE;
	}
	return HTTP_NONE;
}

/*
 * Addresses, ports and id of a live socket the kernel handed us (a BTF
 * pointer: plain loads, no helper call each). A socket in use for I/O has its
 * local port in skc_num.
 */
static __always_inline void trusted_endpoints(struct sock *sk, struct tn_payload_event *e)
{
	struct sock_common *c = &sk->__sk_common;

	/* assigns one if the socket has none yet, as the other hooks do in this mode */
	e->cookie = bpf_get_socket_cookie(sk);
	tn_read_remote(sk, true, &e->family, e->daddr, &e->dport);
	e->sport = c->skc_num;
	__builtin_memset(e->saddr, 0, TN_ADDR_LEN);
	if (e->family == AF_INET6)
		__builtin_memcpy(e->saddr, &c->skc_v6_rcv_saddr, TN_ADDR_LEN);
	else
		*(__u32 *)e->saddr = c->skc_rcv_saddr;
}

/*
 * Whether the socket has a request in flight, for tn_http_close: a request
 * sets it (a map update only on a socket's first request), a response clears
 * it in place.
 */
static __always_inline void track_request(__u64 sk_key, __u64 id, int http)
{
	__u64 *in_flight = bpf_map_lookup_elem(&tn_http_socks, &sk_key);

	if (in_flight)
		*in_flight = http == HTTP_REQUEST ? id : 0;
	else if (http == HTTP_REQUEST)
		bpf_map_update_elem(&tn_http_socks, &sk_key, &id, BPF_ANY);
}

/*
 * `http`: what http_start() found. `trusted`: sk is a BTF pointer from the
 * tracepoint, else an address read from memory.
 */
static __always_inline void emit(struct sock *sk, __u64 buf, __u64 total, __u8 direction, __u8 mode,
				 int http, bool trusted)
{
	__u32 zero = 0, n;
	__u64 id = bpf_get_current_pid_tgid();
	struct tn_payload_event *e = bpf_map_lookup_elem(&tn_payload_scratch, &zero);
	__u64 sk_key = (__u64)sk;
	struct tn_owner *o;

	if (!e)
		return;
	n = total < tn_cfg.payload_max ? total : tn_cfg.payload_max;
	/* bounded for the verifier: at most TN_PAYLOAD_MAX bytes, at least one */
	n &= TN_PAYLOAD_MAX - 1;
	if (n == 0)
		n = total ? TN_PAYLOAD_MAX - 1 : 1;
	if (bpf_probe_read_user(e->data, n, (void *)buf))
		return;
	e->kind = TN_EVENT_PAYLOAD;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->len = n;
	e->ts_ns = bpf_ktime_get_ns();
	e->total = total > 0xffffffff ? 0xffffffff : total;
	e->direction = direction;
	e->mode = mode;
	e->connect_us = 0;
	o = bpf_map_lookup_elem(&tn_owners, &sk_key);
	if (o && o->connect_us) {
		/* the first request on a freshly connected socket carries what the connect cost */
		e->connect_us = o->connect_us;
		o->connect_us = 0;
	}
	if (trusted) {
		trusted_endpoints(sk, e);
	} else {
		e->cookie = tn_socket_id(sk);
		tn_read_endpoints(sk, false, &e->family, e->saddr, e->daddr, &e->sport, &e->dport);
	}
	track_request(sk_key, e->cookie, http);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	/* only the filled part of data[] travels; count the loss if the ring is full */
	if (bpf_ringbuf_output(&tn_events, e, TN_PAYLOAD_HEADER_SIZE + (n & (TN_PAYLOAD_MAX - 1)),
			       tn_wakeup_flags(TN_PAYLOAD_HEADER_SIZE + n, false)))
		tn_count(TN_EVENT_PAYLOAD);
}

/* The first iovec's base and length (writev/readv, and inside a msghdr). */
static __always_inline __u64 first_iov(__u64 iov, __u64 *len)
{
	struct iovec v = {};

	if (!iov || bpf_probe_read_user(&v, sizeof(v), (void *)iov))
		return 0;
	*len = v.iov_len;
	return (__u64)v.iov_base;
}

static __always_inline __u64 msghdr_iov(__u64 msg)
{
	struct user_msghdr m = {};

	if (!msg || bpf_probe_read_user(&m, sizeof(m), (void *)msg) || m.msg_iovlen < 1)
		return 0;
	return (__u64)m.msg_iov;
}

static __always_inline bool self(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == tn_cfg.self_tgid;
}

/*
 * The user buffer of syscall `nr` with arguments a1, a2 (one of the eight;
 * else 0), how many bytes of it are contiguous, and whether it sends.
 */
static __always_inline __u64 syscall_buffer(long nr, __u64 a1, __u64 a2, __u64 *len, bool *send)
{
	*len = a2;
	*send = nr == NR_WRITE || nr == NR_SENDTO || nr == NR_WRITEV || nr == NR_SENDMSG;
	switch (nr) {
	case NR_WRITE:
	case NR_SENDTO:
	case NR_READ:
	case NR_RECVFROM:
		return a1;
	case NR_WRITEV:
	case NR_READV:
		return first_iov(a1, len);
	case NR_SENDMSG:
	case NR_RECVMSG:
		return first_iov(msghdr_iov(a1), len);
	}
	return 0;
}

/* Syscall entry: sends are complete here; receives remember their buffer. */
static __always_inline void sys_enter(long nr, __u64 a0, __u64 a1, __u64 a2, __u8 mode)
{
	__u64 buf = 0, len = a2;
	struct sock *sk;
	bool send;
	int http;

	buf = syscall_buffer(nr, a1, a2, &len, &send);
	if (!buf || self())
		return;
	if (send) {
		http = http_start(buf);
		if (!http)
			return;
		sk = tcp_sock_of((int)a0);
		if (sk)
			emit(sk, buf, len, TN_DIR_SEND, mode, http, false);
		return;
	}
	sk = tcp_sock_of((int)a0);
	if (sk) {
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		struct tn_recv r = { .buf = buf, .sk = (__u64)sk };

		if (bpf_map_update_elem(&tn_recvs, &tid, &r, BPF_ANY))
			tn_count(TN_CTR_RECV_MAP_FULL);
	}
}

/* Receive return: the data is in the buffer now. */
static __always_inline void recv_exit(long ret, __u8 mode)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct tn_recv *r = bpf_map_lookup_elem(&tn_recvs, &tid);
	int http;

	if (!r)
		return;
	if (ret > 0 && (http = http_start(r->buf)))
		emit((struct sock *)r->sk, r->buf, ret, TN_DIR_RECV, mode, http, false);
	bpf_map_delete_elem(&tn_recvs, &tid);
}

/* ---- tracepoint on the socket layer: runs only for socket sends and receives ---- */

#define TN_MSG_PEEK 2

/*
 * Whether the current task's `fd` is socket `sk`: the fd table's entry is the
 * socket's file. One read of the table; the rest are loads through BTF
 * pointers (a NULL on the way reads as 0).
 */
static __always_inline bool fd_is(struct sock *sk, int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	struct socket *so = sk->sk_socket;
	struct file *f = NULL;

	if (!so || fd < 0 || (unsigned int)fd >= fdt->max_fds)
		return false;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fdt->fd[fd]))
		return false;
	return f && f == so->file;
}

/*
 * A completed send or receive of `ret` > 0 bytes on TCP socket `sk`, not by
 * the agent. The bytes are in the buffer the syscall named (sends: still;
 * receives: just copied there). Socket I/O the kernel does on its own behalf
 * (a network filesystem inside some write(), io_uring workers) has no
 * matching syscall or fd, and is skipped.
 */
static __always_inline void sock_io(struct sock *sk, int ret, bool send)
{
	struct pt_regs *regs;
	__u64 buf, len;
	bool sends;
	int http;

	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	buf = syscall_buffer(regs->orig_ax, regs->si, regs->dx, &len, &sends);
	if (sends != send || !(http = http_start(buf)) || !fd_is(sk, (int)regs->di))
		return;
	emit(sk, buf, (__u64)ret < len ? (__u64)ret : len, send ? TN_DIR_SEND : TN_DIR_RECV,
	     TN_MODE_TRACEPOINT, http, true);
}

/*
 * Shared with the retransmit hook, which records senders' owners here
 * (enum tn_role): one program per send serves both.
 */
SEC("tp_btf/sock_send_length")
int BPF_PROG(tn_tp_sock_send_length, struct sock *sk, int ret, int flags)
{
	if (ret <= 0 || sk->sk_protocol != IPPROTO_TCP || self())
		return 0;
	if (tn_cfg.roles & TN_ROLE_SEND_OWNER)
		tn_own_socket(sk, 0);
	if (tn_cfg.roles & TN_ROLE_PAYLOAD)
		sock_io(sk, ret, true);
	return 0;
}

/* A peek is seen again by the read that takes the bytes. */
SEC("tp_btf/sock_recv_length")
int BPF_PROG(tn_tp_payload_recv, struct sock *sk, int ret, int flags)
{
	if (ret > 0 && !(flags & TN_MSG_PEEK) && sk->sk_protocol == IPPROTO_TCP && !self())
		sock_io(sk, ret, false);
	return 0;
}

/* ---- tracepoint on older kernels: every syscall passes here; all but eight leave at the switch ---- */

static __always_inline bool payload_syscall(long nr)
{
	switch (nr) {
	case NR_READ: case NR_WRITE: case NR_READV: case NR_WRITEV:
	case NR_SENDTO: case NR_RECVFROM: case NR_SENDMSG: case NR_RECVMSG:
		return true;
	}
	return false;
}

/*
 * `regs` is a BTF-typed pointer here: its fields are plain loads, no helper
 * call, and nothing is read before the syscall number says it matters.
 * Shared with the retransmit hook on the same kernels, which records senders'
 * owners here (enum tn_role).
 */
SEC("tp_btf/sys_enter")
int BPF_PROG(tn_tp_payload_enter, struct pt_regs *regs, long id)
{
	struct sock *sk;

	if (!payload_syscall(id))
		return 0;
	if ((tn_cfg.roles & TN_ROLE_SEND_OWNER) && (id == NR_WRITE || id == NR_SENDTO || id == NR_WRITEV ||
						     id == NR_SENDMSG) && !self()) {
		sk = tcp_sock_of((int)regs->di);
		if (sk)
			tn_own_socket(sk, 0);
	}
	if (tn_cfg.roles & TN_ROLE_PAYLOAD)
		sys_enter(id, regs->di, regs->si, regs->dx, TN_MODE_TRACEPOINT);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(tn_tp_payload_exit, struct pt_regs *regs, long ret)
{
	long nr = regs->orig_ax;

	if (nr == NR_READ || nr == NR_RECVFROM || nr == NR_READV || nr == NR_RECVMSG)
		recv_exit(ret, TN_MODE_TRACEPOINT);
	return 0;
}

/* ---- fentry and kprobe: one program per syscall (and a return for receives) ---- */

#define TN_SEND_SYSCALL(name, NR)                                                      \
	SEC("fentry/__x64_sys_" #name)                                                 \
	int BPF_PROG(tn_fentry_##name, struct pt_regs *regs)                          \
	{                                                                              \
		sys_enter(NR, BPF_CORE_READ(regs, di), BPF_CORE_READ(regs, si),        \
			  BPF_CORE_READ(regs, dx), TN_MODE_FENTRY);                    \
		return 0;                                                              \
	}                                                                              \
	SEC("ksyscall/" #name)                                                         \
	int BPF_KSYSCALL(tn_kprobe_##name, long a0, long a1, long a2)                  \
	{                                                                              \
		sys_enter(NR, a0, a1, a2, TN_MODE_KPROBE);                             \
		return 0;                                                              \
	}

#define TN_RECV_SYSCALL(name, NR)                                                      \
	TN_SEND_SYSCALL(name, NR)                                                      \
	SEC("fexit/__x64_sys_" #name)                                                  \
	int BPF_PROG(tn_fexit_##name, struct pt_regs *regs, long ret)                 \
	{                                                                              \
		recv_exit(ret, TN_MODE_FENTRY);                                        \
		return 0;                                                              \
	}                                                                              \
	SEC("kretsyscall/" #name)                                                      \
	int BPF_KRETPROBE(tn_kretprobe_##name, long ret)                               \
	{                                                                              \
		recv_exit(ret, TN_MODE_KPROBE);                                        \
		return 0;                                                              \
	}

TN_SEND_SYSCALL(write, NR_WRITE)
TN_SEND_SYSCALL(sendto, NR_SENDTO)
TN_SEND_SYSCALL(sendmsg, NR_SENDMSG)
TN_SEND_SYSCALL(writev, NR_WRITEV)
TN_RECV_SYSCALL(read, NR_READ)
TN_RECV_SYSCALL(recvfrom, NR_RECVFROM)
TN_RECV_SYSCALL(recvmsg, NR_RECVMSG)
TN_RECV_SYSCALL(readv, NR_READV)
