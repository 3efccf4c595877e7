// Request storm: HTTP/1.1 keep-alive requests with an X-Request-ID over loopback.
// One process serves and loads: a server thread per connection answers every
// request with a small 200; each client thread owns one keep-alive connection
// and sends requests back to back for a fixed time. Prints one JSON line.
//
//   reqstorm [-d SECONDS] [-c CONNECTIONS] [-p PORT]
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static atomic_int stop;
static int port = 19300;

static const char response[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";

struct client { int index; unsigned long long requests; int failed; };

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads until `want` bytes ending a message are seen; returns 0, or -1 on EOF/error. */
static int read_message(int fd, char *buf, size_t cap, const char *end, size_t end_len)
{
	size_t have = 0;
	for (;;) {
		ssize_t r = read(fd, buf + have, cap - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		have += (size_t)r;
		if (have >= end_len && memcmp(buf + have - end_len, end, end_len) == 0)
			return 0;
		if (have == cap)
			return -1;
	}
}

static void *serve(void *arg)
{
	int fd = (int)(long)arg;
	char buf[2048];
	while (read_message(fd, buf, sizeof(buf), "\r\n\r\n", 4) == 0)
		if (write_all(fd, response, sizeof(response) - 1))
			break;
	close(fd);
	return NULL;
}

static void *accept_loop(void *arg)
{
	int l = (int)(long)arg;
	for (;;) {
		int fd = accept(l, NULL, NULL);
		if (fd < 0)
			return NULL;
		pthread_t t;
		pthread_create(&t, NULL, serve, (void *)(long)fd);
		pthread_detach(t);
	}
}

static void *load(void *arg)
{
	struct client *c = arg;
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port),
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char req[256], buf[1024];
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (void *)&addr, sizeof(addr))) {
		fprintf(stderr, "reqstorm: connect: %s\n", strerror(errno));
		c->failed = 1;
		return NULL;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		int n = snprintf(req, sizeof(req),
				 "GET /items/%llu HTTP/1.1\r\nHost: bench\r\nUser-Agent: reqstorm\r\n"
				 "X-Request-ID: bench-%d-%llu\r\n\r\n",
				 c->requests, c->index, c->requests);
		if (write_all(fd, req, (size_t)n) || read_message(fd, buf, sizeof(buf), "ok", 2)) {
			fprintf(stderr, "reqstorm: request failed: %s\n", strerror(errno));
			c->failed = 1;
			break;
		}
		c->requests++;
	}
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	double seconds = 5;
	int conns = 2, opt, one = 1;
	while ((opt = getopt(argc, argv, "d:c:p:")) != -1) {
		switch (opt) {
		case 'd': seconds = atof(optarg); break;
		case 'c': conns = atoi(optarg); break;
		case 'p': port = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: reqstorm [-d SECONDS] [-c CONNECTIONS] [-p PORT]\n");
			return 64;
		}
	}
	if (seconds <= 0 || conns < 1 || conns > 256) {
		fprintf(stderr, "reqstorm: -d must be > 0 and -c within 1..256\n");
		return 64;
	}
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port),
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l < 0 || bind(l, (void *)&addr, sizeof(addr)) || listen(l, 128)) {
		fprintf(stderr, "reqstorm: listener on port %d: %s\n", port, strerror(errno));
		return 1;
	}
	pthread_t acceptor;
	pthread_create(&acceptor, NULL, accept_loop, (void *)(long)l);
	struct client *c = calloc(conns, sizeof(*c));
	pthread_t *t = calloc(conns, sizeof(*t));
	double start = now();
	for (int i = 0; i < conns; i++) {
		c[i].index = i;
		pthread_create(&t[i], NULL, load, &c[i]);
	}
	struct timespec pause = { .tv_sec = (time_t)seconds, .tv_nsec = (long)((seconds - (time_t)seconds) * 1e9) };
	nanosleep(&pause, NULL);
	atomic_store(&stop, 1);
	unsigned long long total = 0;
	int failed = 0;
	for (int i = 0; i < conns; i++) {
		pthread_join(t[i], NULL);
		total += c[i].requests;
		failed |= c[i].failed;
	}
	double elapsed = now() - start;
	printf("{\"requests\": %llu, \"seconds\": %.3f, \"per_second\": %.0f}\n", total, elapsed, total / elapsed);
	return failed ? 1 : 0;
}
