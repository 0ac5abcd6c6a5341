/* net.h: the loopback sockets of the unit tests' forked HTTP servers. */
#ifndef DLQFS_TEST_NET_H
#define DLQFS_TEST_NET_H

#include <stddef.h>
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
