/* net.h: the loopback sockets of the unit tests' forked HTTP servers. */
#ifndef DLQFS_TEST_NET_H
#define DLQFS_TEST_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* Sends all @n bytes, or stops at the first error (the client left). */
static inline void send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

		if (k <= 0)
			return;
		p += k;
		n -= (size_t)k;
	}
}

/* Reads a request's head into @req (@size bytes, NUL-terminated) until
 * its blank line, a full buffer, or the client leaves. Returns whether
 * the head is complete. */
static inline bool recv_head(int fd, char *req, size_t size)
{
	size_t got = 0;

	req[0] = '\0';
	while (got < size - 1 && !strstr(req, "\r\n\r\n")) {
		ssize_t k = recv(fd, req + got, size - 1 - got, 0);

		if (k <= 0)
			break;
		got += (size_t)k;
		req[got] = '\0';
	}
	return strstr(req, "\r\n\r\n") != NULL;
}

/* A listening socket on 127.0.0.1, any port (in @ret_port), or -1. */
static inline int listen_any(int *ret_port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
		close(fd);
		return -1;
	}
	*ret_port = ntohs(sa.sin_port);
	return fd;
}

#endif
