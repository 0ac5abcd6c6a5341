/* http_internal: struct http, shared by http.c (the transfers and the
 * retry loop) and http_error.c (what a failure means). Only those two
 * include it; everyone else sees struct http as opaque (http.h).
 */
#ifndef DLQFS_HTTP_INTERNAL_H
#define DLQFS_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>

#include "buf.h"
#include "http.h"
#include "ratelimit.h"

struct url_origin;

struct http {
	struct http_config cfg;
	CURL *curl;
	uint64_t rng; /* xorshift64 state for backoff jitter */

	/* State of the attempt in progress. */
	struct buf body;
	bool over_limit;      /* body exceeded cfg.max_response_bytes */
	bool oom;	      /* body allocation failed */
	struct ratelimit rl;  /* the rate-limit headers */
	int64_t last_byte_ms; /* when the last byte came (or start) */
	bool stalled;	      /* aborted: nothing for stall_timeout_s */
	char errbuf[CURL_ERROR_SIZE];

	bool maybe_sent; /* the request may have reached the server */
	bool announced;	 /* cfg.on_retry was told of a retry */
	struct http_quota own_quota; /* when cfg.quota is NULL */
};

/* The errno of a failed transfer (curl's @rc, and what the callbacks
 * recorded in @h); @ret_retry: whether another try may succeed. Codes not
 * in the table give -EIO. */
int http_error_errno(const struct http *h, CURLcode rc, bool *ret_retry);

/* The failure @r (from http_error_errno()) of a request to @o, in words,
 * into @err: "connection refused by host:443", "no response from ... in
 * 120 s", ... @elapsed_ms: since the attempt started. */
void http_error_describe(const struct http *h, CURLcode rc, int r,
			 const struct url_origin *o, int64_t elapsed_ms,
			 char *err, size_t errlen);

#endif
