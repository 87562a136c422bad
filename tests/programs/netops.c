/* Network operations for the network tests, one per run:
 *   netops tcp ADDR PORT [BYTES]   connect, send BYTES bytes (default 5), read until EOF
 *   netops udp ADDR PORT           one datagram with sendto (no connect)
 *   netops bind ADDR PORT          bind a UDP socket to ADDR:PORT
 *   netops dns SERVER NAME PORT    ask SERVER:53 for NAME's A record with sendto, then
 *                                  connect over TCP to the answered address on PORT
 * ADDR is IPv4 or IPv6. Prints "ok" or "error: <what>: <strerror>" and exits 0 or 1;
 * "EPERM" in the message when the kernel refused. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what)
{
	printf("error: %s: %s%s\n", what, strerror(errno), errno == EPERM ? " (EPERM)" : "");
	return 1;
}

static socklen_t addr_of(const char *host, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		return sizeof(*a4);
	}
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		return sizeof(*a6);
	}
	fprintf(stderr, "bad address %s\n", host);
	exit(2);
}

static int tcp(const char *host, int port, int bytes)
{
	struct sockaddr_storage ss;
	socklen_t len = addr_of(host, port, &ss);
	int s = socket(ss.ss_family, SOCK_STREAM, 0);
	if (s < 0)
		return fail("socket");
	if (connect(s, (struct sockaddr *)&ss, len))
		return fail("connect");
	char buf[4096];
	memset(buf, 'x', sizeof(buf));
	while (bytes > 0) {
		int n = write(s, buf, bytes < (int)sizeof(buf) ? bytes : (int)sizeof(buf));
		if (n <= 0)
			return fail("write");
		bytes -= n;
	}
	shutdown(s, SHUT_WR);
	while (read(s, buf, sizeof(buf)) > 0)
		;
	close(s);
	printf("ok\n");
	return 0;
}

static int udp(const char *host, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = addr_of(host, port, &ss);
	int s = socket(ss.ss_family, SOCK_DGRAM, 0);
	if (s < 0)
		return fail("socket");
	if (sendto(s, "ping", 4, 0, (struct sockaddr *)&ss, len) != 4)
		return fail("sendto");
	close(s);
	printf("ok\n");
	return 0;
}

static int bind_udp(const char *host, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = addr_of(host, port, &ss);
	int s = socket(ss.ss_family, SOCK_DGRAM, 0);
	if (s < 0)
		return fail("socket");
	if (bind(s, (struct sockaddr *)&ss, len))
		return fail("bind");
	close(s);
	printf("ok\n");
	return 0;
}

static int dns(const char *server, const char *name, int port)
{
	unsigned char q[512], r[512];
	int n = 0;
	q[n++] = 0x12; q[n++] = 0x34; /* id */
	q[n++] = 0x01; q[n++] = 0x00; /* recursion desired */
	q[n++] = 0; q[n++] = 1;       /* one question */
	memset(q + n, 0, 6); n += 6;
	for (const char *p = name; *p;) {
		const char *dot = strchr(p, '.');
		int l = dot ? (int)(dot - p) : (int)strlen(p);
		q[n++] = l;
		memcpy(q + n, p, l);
		n += l;
		p += l + (dot ? 1 : 0);
	}
	q[n++] = 0;
	q[n++] = 0; q[n++] = 1; /* A */
	q[n++] = 0; q[n++] = 1; /* IN */
	struct sockaddr_storage ss;
	socklen_t len = addr_of(server, 53, &ss);
	int s = socket(ss.ss_family, SOCK_DGRAM, 0);
	if (s < 0)
		return fail("socket");
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (sendto(s, q, n, 0, (struct sockaddr *)&ss, len) != n)
		return fail("sendto");
	int m = recv(s, r, sizeof(r), 0);
	if (m < 16)
		return fail("recv");
	close(s);
	/* The test's resolver puts the one A record last. */
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, r + m - 4, ip, sizeof(ip));
	return tcp(ip, port, 5);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc >= 4 && !strcmp(argv[1], "tcp"))
		return tcp(argv[2], atoi(argv[3]), argc > 4 ? atoi(argv[4]) : 5);
	if (argc >= 4 && !strcmp(argv[1], "udp"))
		return udp(argv[2], atoi(argv[3]));
	if (argc >= 4 && !strcmp(argv[1], "bind"))
		return bind_udp(argv[2], atoi(argv[3]));
	if (argc >= 5 && !strcmp(argv[1], "dns"))
		return dns(argv[2], argv[3], atoi(argv[4]));
	fprintf(stderr, "usage: netops tcp|udp|bind ADDR PORT | dns SERVER NAME PORT\n");
	return 2;
}
