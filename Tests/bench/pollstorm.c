// Poll-wait storm: threads that wait for readiness with a short timeout, back
// to back, alternating poll() and epoll_wait() on a pipe nobody writes to, so
// every call runs to its timeout. Every call is one wait the agent must count.
// Prints one JSON line with the waits per syscall, so a harness can check
// /metrics counted every one.
//
//   pollstorm [-d SECONDS] [-t THREADS] [-w TIMEOUT_MS]
//
// -w 0 turns the waits into non-blocking readiness checks: the syscall's own
// cost at its highest rate, the worst case for any tracer of these syscalls.
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

static atomic_int stop;
static int timeout_ms = 1;

struct worker { unsigned long long polls, epolls; int failed; };

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	int p[2];
	struct epoll_event ev = { .events = EPOLLIN }, out;
	int ep = epoll_create1(0);
	if (pipe(p) || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev)) {
		perror("pollstorm: setup");
		w->failed = 1;
		return NULL;
	}
	struct pollfd pfd = { .fd = p[0], .events = POLLIN };
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		if (poll(&pfd, 1, timeout_ms) < 0 || epoll_wait(ep, &out, 1, timeout_ms) < 0) {
			perror("pollstorm: wait");
			w->failed = 1;
			break;
		}
		w->polls++;
		w->epolls++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	double seconds = 5;
	int threads = 2, opt;
	while ((opt = getopt(argc, argv, "d:t:w:")) != -1) {
		switch (opt) {
		case 'd': seconds = atof(optarg); break;
		case 't': threads = atoi(optarg); break;
		case 'w': timeout_ms = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: pollstorm [-d SECONDS] [-t THREADS] [-w TIMEOUT_MS]\n");
			return 64;
		}
	}
	if (seconds <= 0 || threads < 1 || threads > 1024 || timeout_ms < 0 || timeout_ms > 1000) {
		fprintf(stderr, "pollstorm: -d must be > 0, -t within 1..1024, -w within 0..1000\n");
		return 64;
	}
	struct worker *w = calloc(threads, sizeof(*w));
	pthread_t *t = calloc(threads, sizeof(*t));
	double start = now();
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, run, &w[i]);
	struct timespec pause = { .tv_sec = (time_t)seconds, .tv_nsec = (long)((seconds - (time_t)seconds) * 1e9) };
	nanosleep(&pause, NULL);
	atomic_store(&stop, 1);
	unsigned long long polls = 0, epolls = 0;
	int failed = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		polls += w[i].polls;
		epolls += w[i].epolls;
		failed |= w[i].failed;
	}
	double elapsed = now() - start;
	printf("{\"poll\": %llu, \"epoll_wait\": %llu, \"seconds\": %.3f, \"per_second\": %.0f}\n",
	       polls, epolls, elapsed, (polls + epolls) / elapsed);
	return failed ? 1 : 0;
}
