/* url: a URL's origin, the loopback check and percent-encoding, all with
 * libcurl's parser and encoder (see url.c). */
#ifndef DLQFS_URL_H
#define DLQFS_URL_H

#include <stdbool.h>
#include <stddef.h>

/* Where a URL points, for error texts: never its userinfo or path. */
struct url_origin {
	char text[320];	    /* scheme://host[:port] */
	char hostport[300]; /* host:port, the default port filled in */
	char host[260];
};

/* Fills @o from @url; "the server" for what cannot be read. */
void url_origin(const char *url, struct url_origin *o);

/* True for http:// URLs whose host is a loopback address (127.0.0.0/8,
 * ::1, localhost), where sending a token in clear is acceptable. */
bool url_is_loopback(const char *url);

/* Percent-encodes @len bytes of @s (NUL bytes included) for a URL path
 * segment or query value, as libcurl does: the RFC 3986 unreserved
 * characters A-Z a-z 0-9 - . _ ~ stay, every other byte becomes %XX with
 * uppercase hex digits. Returns a new string for free() (not curl_free()),
 * "" when @len is 0; NULL when out of memory. */
char *url_escape(const char *s, size_t len);

#endif
