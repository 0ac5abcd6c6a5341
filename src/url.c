/* url: what dlqfs reads in a URL, with curl's own parser, so that the host
 * judged is the host curl connects to: its origin for error texts, whether
 * it is a loopback address, and percent-encoding (curl's). The requests
 * themselves are http.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <curl/curl.h>

#include "buf.h"
#include "url.h"

/* Copies a part of @u into @dst; false when it is missing or too long
 * (then @dst holds a truncated copy, or ""). */
static bool copy_part(CURLU *u, CURLUPart part, unsigned flags, char *dst,
		      size_t dstlen)
{
	char *s = NULL;
	bool fits = false;

	dst[0] = '\0';
	if (curl_url_get(u, part, &s, flags) == CURLUE_OK && s)
		fits = (size_t)snprintf(dst, dstlen, "%s", s) < dstlen;
	curl_free(s);
	return fits;
}

void url_origin(const char *url, struct url_origin *o)
{
	CURLU *u = curl_url();
	char scheme[16], port[8], explicit_port[8];

	snprintf(o->text, sizeof(o->text), "the server");
	snprintf(o->hostport, sizeof(o->hostport), "the server");
	snprintf(o->host, sizeof(o->host), "the server");
	if (!u)
		return;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
		copy_part(u, CURLUPART_SCHEME, 0, scheme, sizeof(scheme));
		copy_part(u, CURLUPART_HOST, 0, o->host, sizeof(o->host));
		copy_part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT, port,
			  sizeof(port));
		copy_part(u, CURLUPART_PORT, 0, explicit_port,
			  sizeof(explicit_port));
		if (!o->host[0])
			snprintf(o->host, sizeof(o->host), "the server");
		snprintf(o->text, sizeof(o->text), "%s://%s%s%s", scheme,
			 o->host, explicit_port[0] ? ":" : "", explicit_port);
		snprintf(o->hostport, sizeof(o->hostport), "%s%s%s", o->host,
			 port[0] ? ":" : "", port);
	}
	curl_url_cleanup(u);
}

bool url_is_loopback(const char *url)
{
	CURLU *u;
	char scheme[16], host[260], zone[8];
	struct in_addr a4;
	struct in6_addr a6;
	bool yes = false;
	size_t n;

	if (!url || strncasecmp(url, "http://", 7) != 0)
		return false;
	u = curl_url();
	if (!u)
		return false;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	if (!copy_part(u, CURLUPART_SCHEME, 0, scheme, sizeof(scheme)) ||
	    !copy_part(u, CURLUPART_HOST, 0, host, sizeof(host)) ||
	    strcasecmp(scheme, "http") != 0)
		goto out;
	/* A zone id ([::1%25eth0]) is not a plain loopback address. */
	copy_part(u, CURLUPART_ZONEID, 0, zone, sizeof(zone));
	if (zone[0])
		goto out;
	n = strlen(host);
	if (strcasecmp(host, "localhost") == 0) {
		yes = true;
	} else if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
		host[n - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &a6) == 1)
			yes = IN6_IS_ADDR_LOOPBACK(&a6) ||
			      (IN6_IS_ADDR_V4MAPPED(&a6) &&
			       a6.s6_addr[12] == 127);
	} else if (inet_pton(AF_INET, host, &a4) == 1) {
		yes = (ntohl(a4.s_addr) >> 24) == 127;
	}
out:
	curl_url_cleanup(u);
	return yes;
}

/* curl_easy_escape() takes an int, reads a length of 0 as "up to the NUL",
 * and gives up (NULL) beyond CURL_MAX_INPUT_LENGTH * 3 bytes of output
 * (24 MB in 7.88): input is escaped in pieces well below that, which
 * gives the same bytes, as each byte is escaped on its own. A NULL
 * handle is allowed since 7.82. */
#define URL_ESCAPE_PIECE (1 << 20)

char *url_escape(const char *s, size_t len)
{
	struct buf out = BUF_INIT;
	char *piece;
	int r = 0;

	while (!r && len > 0) {
		size_t n = len < URL_ESCAPE_PIECE ? len : URL_ESCAPE_PIECE;

		/* curl's memory, for curl_free(); the caller gets ours */
		piece = curl_easy_escape(NULL, s, (int)n);
		r = piece ? buf_add(&out, piece, strlen(piece)) : -ENOMEM;
		curl_free(piece);
		s += n;
		len -= n;
	}
	if (r) {
		buf_release(&out);
		return NULL;
	}
	return buf_steal(&out);
}
