/* http: the one place that talks libcurl.
 *
 * A struct http owns one curl easy handle, so one connection kept alive
 * between requests; it is used by one thread at a time and never shared.
 * It bounds every request (connect time, total time, a stall with no
 * bytes, response size), retries what is worth retrying with exponential
 * backoff and jitter, and honours 429's Retry-After / Burst-RateLimit-Reset.
 * It knows nothing of the DLQ: the API layer builds URLs and reads bodies.
 */
#ifndef DLQFS_HTTP_H
#define DLQFS_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ratelimit.h"

/* A failed attempt that will be retried (http_config.on_retry). */
struct http_retry {
	long status;	   /* its HTTP status; 0 when no response came */
	const char *body;  /* the response's body (status != 0), @len bytes */
	size_t len;	   /* (not NUL-terminated) */
	const char *error; /* what went wrong, in words (status == 0) */
	unsigned tries;	   /* attempts made so far, >= 1 */
	unsigned max_tries;
	long wait_ms; /* before the next attempt */
};

struct http_config {
	long connect_timeout_ms;   /* TCP+TLS connect */
	long total_timeout_ms;	   /* one attempt, start to last byte */
	long stall_timeout_s;	   /* no byte for this long: give up */
	size_t max_response_bytes; /* larger body: -EFBIG, not retried */
	unsigned max_tries;	   /* attempts per request, >= 1 */
	long backoff_ms;	   /* first backoff; doubles each retry */
	long max_backoff_ms;	   /* cap of one wait (429 included) */
	/* Set to non-zero by another thread to abandon waits and transfers
	 * (shutdown); may be NULL. */
	atomic_int *cancel;
	/* Shared with the other clients of the token; NULL: the handle's
	 * own. */
	struct http_quota *quota;
	/* Told, on the requesting thread, of each failed attempt that will
	 * be retried, and once more with NULL when a request that was
	 * retried ends, however it ends. May be NULL. */
	void (*on_retry)(void *ctx, const struct http_retry *r);
	void *retry_ctx;
};

/* Defaults suitable for the Upstash API. */
void http_config_defaults(struct http_config *cfg);

struct http_response {
	long status; /* HTTP status of the last attempt */
	char *body;  /* new, NUL-terminated (the NUL is not counted) */
	size_t len;
	unsigned tries; /* attempts made */
	/* A 429 of the account's daily quota (RateLimit-* headers): never
	 * retried; the quota is marked exhausted until it resets. */
	bool daily_quota;
};

/* Frees the body; safe on a zeroed response. */
void http_response_release(struct http_response *r);

struct http;

/* Returns a new handle, or NULL when out of memory. */
struct http *http_new(const struct http_config *cfg);
void http_free(struct http *h);

enum http_method {
	HTTP_GET,
	HTTP_POST, /* with an empty body */
	HTTP_DELETE,
};

#define HTTP_MAX_HEADERS 8	  /* extra header lines per request */
#define HTTP_MAX_HEADER_LINE 1024 /* bytes of one "Name: value" line */

/* One request. @headers are extra lines "Name: value" (a token name, a
 * colon, one space, printable ASCII: no CR, LF or other control byte), at
 * most HTTP_MAX_HEADERS of at most HTTP_MAX_HEADER_LINE bytes; they may
 * not set Authorization (the token goes in @token). */
struct http_request {
	enum http_method method;
	const char *url;
	const char *token; /* NULL: no Authorization header */
	const char *const *headers;
	size_t nheaders;
};

/* Sends @req with "Authorization: Bearer <token>". Returns 0 when a
 * response arrived, whatever its status (the last attempt's is in @ret);
 * on failure a negative errno: -EDQUOT (nothing sent: the daily quota is
 * exhausted, see struct http_quota), -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH
 * (name or host unreachable), -ECONNRESET (connection cut or response
 * truncated), -EFBIG (response over the limit), -ECANCELED (cancelled),
 * -EPROTO (TLS or protocol failure), -EINVAL (a URL curl cannot use, a
 * token or header that cannot go in a header), -ENOMEM, and in @err (at
 * most @errlen bytes) one line saying what happened in words. @ret is
 * untouched on failure.
 *
 * Retries, up to max_tries attempts, depend on whether sending again can
 * do something twice:
 * - GET and DELETE are idempotent: network failures (refused, reset,
 *   timed out, cut mid-response), 5xx and 429 are retried. A DELETE whose
 *   first response was lost may then come back 404; the caller reports it.
 * - POST (resume, restart, callback: each creates a run) is retried only
 *   when the request certainly was not processed: the connection could not
 *   be made (refused, host not resolved or unreachable, connect timed out
 *   before the request was sent), or the answer was 429 (rate limited,
 *   refused before any work). Never after a 5xx, a reset, a timeout or a
 *   response cut once the request was sent. A POST also never goes out on
 *   a kept-alive connection: libcurl silently resends a request whose
 *   reused connection dies before the first response byte, and the server
 *   may have acted on it.
 * - A 429 waits for Retry-After, else Burst-RateLimit-Reset (a value
 *   above 10^12 is in milliseconds, one above 10^9 in seconds, a smaller
 *   one a number of seconds from now), else the backoff. A 429 of the
 *   daily quota (RateLimit-Remaining: 0; or RateLimit-Limit without a
 *   burst header saying 0, as qstash-js reads it) is never retried: it
 *   marks the quota exhausted until RateLimit-Reset (or Retry-After; or,
 *   unknown, HTTP_QUOTA_PROBE_MS) and comes back with daily_quota set. */
int http_request(struct http *h, const struct http_request *req,
		 struct http_response *ret, char *err, size_t errlen);

/* Whether the last request made with @h may have reached the server:
 * a response came, or an attempt failed after the request could have
 * been sent (a cut connection, a timeout while waiting for the answer).
 * False when every attempt failed before sending, or nothing was sent
 * (the daily quota, a refused header, cancellation). */
bool http_maybe_sent(const struct http *h);

/* The quota @h obeys (its config's, or its own). */
const struct http_quota *http_quota_of(const struct http *h);

/* http_request() of a GET with no extra headers. */
int http_get(struct http *h, const char *url, const char *token,
	     struct http_response *ret, char *err, size_t errlen);

/* Sleeps @ms milliseconds unless cfg->cancel becomes non-zero first.
 * Returns 0, or -ECANCELED. */
int http_sleep(const struct http_config *cfg, long ms);

/* curl_global_init(); call once, before any thread starts. */
int http_global_init(void);
void http_global_cleanup(void);

#endif
