// Connect storm: each worker thread owns a loopback listener and, for a fixed
// time, connects to it, accepts, and closes both ends with an RST (SO_LINGER 0,
// so no TIME_WAIT builds up). Prints one JSON line: connections and rate.
//
//   connstorm [-d SECONDS] [-t THREADS] [-p BASE_PORT]
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static atomic_int stop;
static int base_port = 19100;

struct worker { int index; unsigned long long conns; int failed; };

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(base_port + w->index),
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1;
	struct linger rst = { .l_onoff = 1, .l_linger = 0 };
	int l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l < 0 || bind(l, (void *)&addr, sizeof(addr)) || listen(l, 128)) {
		fprintf(stderr, "connstorm: listener on port %d: %s\n", base_port + w->index, strerror(errno));
		w->failed = 1;
		return NULL;
	}
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		int c = socket(AF_INET, SOCK_STREAM, 0);
		if (c < 0 || connect(c, (void *)&addr, sizeof(addr))) {
			fprintf(stderr, "connstorm: connect: %s\n", strerror(errno));
			w->failed = 1;
			break;
		}
		int a = accept(l, NULL, NULL);
		setsockopt(c, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
		close(c);
		if (a >= 0)
			close(a);
		w->conns++;
	}
	close(l);
	return NULL;
}

int main(int argc, char **argv)
{
	double seconds = 5;
	int threads = 2, opt;
	while ((opt = getopt(argc, argv, "d:t:p:")) != -1) {
		switch (opt) {
		case 'd': seconds = atof(optarg); break;
		case 't': threads = atoi(optarg); break;
		case 'p': base_port = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: connstorm [-d SECONDS] [-t THREADS] [-p BASE_PORT]\n");
			return 64;
		}
	}
	if (seconds <= 0 || threads < 1 || threads > 256) {
		fprintf(stderr, "connstorm: -d must be > 0 and -t within 1..256\n");
		return 64;
	}
	struct worker *w = calloc(threads, sizeof(*w));
	pthread_t *t = calloc(threads, sizeof(*t));
	double start = now();
	for (int i = 0; i < threads; i++) {
		w[i].index = i;
		pthread_create(&t[i], NULL, run, &w[i]);
	}
	struct timespec pause = { .tv_sec = (time_t)seconds, .tv_nsec = (long)((seconds - (time_t)seconds) * 1e9) };
	nanosleep(&pause, NULL);
	atomic_store(&stop, 1);
	unsigned long long total = 0;
	int failed = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		total += w[i].conns;
		failed |= w[i].failed;
	}
	double elapsed = now() - start;
	printf("{\"connections\": %llu, \"seconds\": %.3f, \"per_second\": %.0f}\n", total, elapsed, total / elapsed);
	return failed ? 1 : 0;
}
