/* http: one libcurl easy handle per struct http, and the retry loop.
 *
 * Owns: the curl handle and its options (timeouts, TLS verification, no
 * redirects, allowed protocols), the response buffer and its size limit,
 * the request methods (GET, DELETE, POST with an empty body) and extra
 * headers, the retry policy (what is retried per method, exponential
 * backoff with jitter, 429 waits), cancellation, and libcurl's global
 * setup. With http_error.c (what a failure means, in errno and in words)
 * and url.c (a URL's parts, escaping), the only includers of
 * <curl/curl.h>.
 * Leaves to others: building URLs and mapping HTTP statuses (api), reading
 * bodies (message), deciding whether a clear-text URL may carry a token
 * (credentials, through url_is_loopback()).
 */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "buf.h"
#include "errtext.h"
#include "http.h"
#include "http_internal.h"
#include "timefmt.h"
#include "url.h"

#ifndef DLQFS_VERSION
#define DLQFS_VERSION "dev"
#endif

#define HTTP_USER_AGENT "dlqfs/" DLQFS_VERSION

/* A page holds up to API_PAGE_COUNT (100) messages, and a message can be
 * 50 MB on fixed plans (API.md), so a legitimate page can approach 5 GB.
 * Buffering that is not reasonable; 1 GiB covers every free and
 * pay-as-you-go account (100 x 10 MB) with room for JSON escaping, and a
 * larger page fails cleanly with -EFBIG instead of exhausting memory. */
#define HTTP_DEFAULT_MAX_RESPONSE ((size_t)1 << 30)

#define HTTP_MAX_TOKEN 4096	    /* longer token: -EINVAL */
#define HTTP_SLEEP_SLICE_MS 50	    /* cancel flag polled this often */
#define HTTP_FIRST_BUFFER 16384	    /* first body allocation */
#define HTTP_MAX_PRESIZE (64 << 20) /* trust a Content-Length this far */

void http_config_defaults(struct http_config *cfg)
{
	cfg->connect_timeout_ms = 10 * 1000;
	cfg->total_timeout_ms = 120 * 1000;
	cfg->stall_timeout_s = 30;
	cfg->max_response_bytes = HTTP_DEFAULT_MAX_RESPONSE;
	cfg->max_tries = 5;
	cfg->backoff_ms = 500;
	cfg->max_backoff_ms = 30 * 1000;
	cfg->cancel = NULL;
	cfg->quota = NULL;
	cfg->on_retry = NULL;
	cfg->retry_ctx = NULL;
}

void http_response_release(struct http_response *r)
{
	if (!r)
		return;
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

static bool cancelled(const struct http_config *cfg)
{
	return cfg->cancel && atomic_load(cfg->cancel) != 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct http_quota *quota(struct http *h)
{
	return h->cfg.quota ? h->cfg.quota : &h->own_quota;
}

int http_sleep(const struct http_config *cfg, long ms)
{
	int64_t deadline = now_ms() + (ms > 0 ? ms : 0);

	for (;;) {
		int64_t left;
		struct timespec ts;

		if (cancelled(cfg))
			return -ECANCELED;
		left = deadline - now_ms();
		if (left <= 0)
			return 0;
		if (left > HTTP_SLEEP_SLICE_MS)
			left = HTTP_SLEEP_SLICE_MS;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)left * 1000000;
		nanosleep(&ts, NULL);
	}
}

/* Callbacks. */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct http *h = userdata;
	size_t n = size * nmemb; /* size is always 1 */
	size_t max = h->cfg.max_response_bytes;

	curl_off_t clen = -1;
	size_t first = HTTP_FIRST_BUFFER;

	if (n > max || h->body.len > max - n) {
		h->over_limit = true;
		return 0; /* CURLE_WRITE_ERROR */
	}
	if (!h->body.cap) {
		/* A known Content-Length sizes the buffer once. */
		if (curl_easy_getinfo(h->curl,
				      CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
				      &clen) == CURLE_OK &&
		    clen > 0 && (uint64_t)clen <= max &&
		    (uint64_t)clen <= HTTP_MAX_PRESIZE)
			first = (size_t)clen;
		if (first > max)
			first = max; /* n <= max - len: checked above */
		if (buf_reserve(&h->body, first > n ? first : n, max) < 0) {
			h->oom = true;
			return 0;
		}
	}
	if (buf_reserve(&h->body, n, max) < 0) {
		h->oom = true;
		return 0;
	}
	memcpy(h->body.data + h->body.len, data, n);
	h->body.len += n;
	h->last_byte_ms = now_ms();
	return n;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *userdata)
{
	struct http *h = userdata;
	size_t n = size * nmemb;

	h->last_byte_ms = now_ms();
	if (n >= 5 && memcmp(line, "HTTP/", 5) == 0)
		/* A new response (e.g. after 100 Continue): forget the last. */
		ratelimit_forget(&h->rl);
	else
		ratelimit_header(&h->rl, line, n);
	return n;
}
static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct http *h = userdata;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	/* curl's LOW_SPEED check averages over several seconds, so a body
	 * that stops halfway looked alive for S + ~5 s: measure the silence
	 * since the last byte ourselves (curl calls this at least once a
	 * second, also when nothing arrives) */
	if (h->cfg.stall_timeout_s > 0 &&
	    now_ms() - h->last_byte_ms > h->cfg.stall_timeout_s * 1000) {
		h->stalled = true;
		return 1;
	}
	return cancelled(&h->cfg); /* non-zero: CURLE_ABORTED_BY_CALLBACK */
}

/* Handle life cycle. */

static uint64_t rng_next(struct http *h)
{
	uint64_t x = h->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	h->rng = x;
	return x;
}

static int http_setup(struct http *h)
{
	const struct http_config *c = &h->cfg;
	CURL *e = h->curl;
	CURLcode rc = CURLE_OK;

#define SET(opt, val)                                                          \
	do {                                                                   \
		if (rc == CURLE_OK)                                            \
			rc = curl_easy_setopt(e, opt, val);                    \
	} while (0)
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_FOLLOWLOCATION, 0L); /* the token must not travel */
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_ACCEPT_ENCODING, "");
	SET(CURLOPT_USERAGENT, HTTP_USER_AGENT);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	SET(CURLOPT_TIMEOUT_MS, c->total_timeout_ms);
	SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
	SET(CURLOPT_LOW_SPEED_TIME, c->stall_timeout_s);
	if ((uint64_t)c->max_response_bytes <= (uint64_t)INT64_MAX)
		SET(CURLOPT_MAXFILESIZE_LARGE,
		    (curl_off_t)c->max_response_bytes);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, h);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, h);
	SET(CURLOPT_XFERINFOFUNCTION, on_progress);
	SET(CURLOPT_XFERINFODATA, h);
	SET(CURLOPT_NOPROGRESS, 0L);
	SET(CURLOPT_ERRORBUFFER, h->errbuf);
#undef SET
	if (rc == CURLE_OUT_OF_MEMORY)
		return -ENOMEM;
	return rc == CURLE_OK ? 0 : -EIO;
}

/* To curl, a zero timeout means none: every limit left at zero (or
 * negative) takes its default instead, so nothing is ever unbounded. */
static void http_config_sane(struct http_config *c,
			     const struct http_config *in)
{
	struct http_config d;

	http_config_defaults(&d);
	*c = *in;
	if (c->connect_timeout_ms <= 0)
		c->connect_timeout_ms = d.connect_timeout_ms;
	if (c->total_timeout_ms <= 0)
		c->total_timeout_ms = d.total_timeout_ms;
	if (c->stall_timeout_s <= 0)
		c->stall_timeout_s = d.stall_timeout_s;
	if (c->max_response_bytes == 0)
		c->max_response_bytes = d.max_response_bytes;
	if (c->max_response_bytes > SIZE_MAX / 2)
		c->max_response_bytes = SIZE_MAX / 2; /* len + 1 can't wrap */
	if (c->max_tries < 1)
		c->max_tries = 1;
	if (c->backoff_ms < 0)
		c->backoff_ms = 0;
	if (c->max_backoff_ms < 0)
		c->max_backoff_ms = 0;
}

struct http *http_new(const struct http_config *cfg)
{
	struct http *h = calloc(1, sizeof(*h));
	struct timespec ts;

	if (!h)
		return NULL;
	http_config_sane(&h->cfg, cfg);
	clock_gettime(CLOCK_REALTIME, &ts);
	h->rng = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^
		 (uint64_t)(uintptr_t)h ^ ((uint64_t)getpid() << 16);
	if (!h->rng)
		h->rng = 0x9e3779b97f4a7c15ULL;
	h->curl = curl_easy_init();
	if (!h->curl || http_setup(h) < 0) {
		http_free(h);
		return NULL;
	}
	return h;
}

bool http_maybe_sent(const struct http *h)
{
	return h->maybe_sent;
}

const struct http_quota *http_quota_of(const struct http *h)
{
	return h->cfg.quota ? h->cfg.quota : &h->own_quota;
}

void http_free(struct http *h)
{
	if (!h)
		return;
	if (h->curl)
		curl_easy_cleanup(h->curl);
	buf_release(&h->body);
	free(h);
}

static void append(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void append(char *err, size_t errlen, const char *fmt, ...)
{
	size_t n = strnlen(err, errlen);
	va_list ap;

	if (n + 1 >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - n, fmt, ap);
	va_end(ap);
}

/* Backoff before attempt @tries + 1 (tries >= 1): backoff_ms doubled
 * per retry, capped, with jitter in [d/2, d]. */
static long backoff(struct http *h, unsigned tries)
{
	long d = h->cfg.backoff_ms, cap = h->cfg.max_backoff_ms;

	for (unsigned i = 1; i < tries && d < cap; i++)
		d = d > cap / 2 ? cap : d * 2;
	if (d > cap)
		d = cap;
	if (d <= 0)
		return 0;
	return d / 2 + (long)(rng_next(h) % (uint64_t)(d - d / 2 + 1));
}

/* The wait after a burst 429: Retry-After, else Burst-RateLimit-Reset,
 * else the backoff; never more than max_backoff_ms. */
static long backoff_429(struct http *h, unsigned tries)
{
	long long wait = ratelimit_burst_wait_ms(&h->rl);
	long cap = h->cfg.max_backoff_ms;

	if (wait < 0)
		return backoff(h, tries);
	return wait > cap ? cap : (long)wait;
}

/* A token goes into a header line: printable ASCII, no blanks, so it can
 * neither break the header nor inject another. */
static bool token_ok(const char *token)
{
	size_t n = strnlen(token, HTTP_MAX_TOKEN + 1);

	if (n == 0 || n > HTTP_MAX_TOKEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)token[i] <= 0x20 ||
		    (unsigned char)token[i] >= 0x7f)
			return false;
	return true;
}

static void wipe_headers(struct curl_slist *list)
{
	for (struct curl_slist *l = list; l; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(list);
}

static void reset_attempt(struct http *h)
{
	h->body.len = 0;
	h->over_limit = false;
	h->oom = false;
	ratelimit_forget(&h->rl);
	h->errbuf[0] = '\0';
	h->last_byte_ms = now_ms();
	h->stalled = false;
}

/* True when the failed attempt certainly never reached the server: no
 * connection, or a connection that timed out before the request went out
 * (pre-transfer time stays 0 until then). */
static bool never_sent(const struct http *h, int r)
{
	curl_off_t sent_us = 0;

	if (r == -ECONNREFUSED || r == -EHOSTUNREACH)
		return true;
	if (r != -ETIMEDOUT)
		return false;
	if (curl_easy_getinfo(h->curl, CURLINFO_PRETRANSFER_TIME_T, &sent_us) !=
	    CURLE_OK)
		return false;
	return sent_us == 0;
}

/* Tells cfg.on_retry of a failed attempt that will be retried. */
static void announce(struct http *h, long status, const char *error,
		     unsigned tries, long wait)
{
	const struct http_retry r = {
		.status = status,
		.body = status ? h->body.data : NULL,
		.len = status ? h->body.len : 0,
		.error = error,
		.tries = tries,
		.max_tries = h->cfg.max_tries,
		.wait_ms = wait,
	};

	h->announced = true;
	h->cfg.on_retry(h->cfg.retry_ctx, &r);
}

/* Runs attempts until a response worth returning arrives (0, its status
 * in @ret_status) or a failure that ends the request (negative errno,
 * @err filled). With @once_only (POST), only what certainly was not
 * processed is tried again (see http_request() in http.h). Sets
 * h->maybe_sent; a daily-quota 429 closes the quota (ratelimit.h). */
static int attempts(struct http *h, const struct url_origin *o, bool once_only,
		    long *ret_status, unsigned *ret_tries, char *err,
		    size_t errlen)
{
	unsigned tries = 0;

	for (;;) {
		char why[700]; /* describe()'s longest */
		int64_t start;
		CURLcode rc;
		bool retry;
		long status = 0, wait;
		int r;

		if (cancelled(&h->cfg))
			return errtext(err, errlen, -ECANCELED,
				       "the request to %s was cancelled",
				       o->text);
		if (ratelimit_quota_closed(quota(h))) {
			ratelimit_quota_text(quota(h), o->text, err, errlen);
			return -EDQUOT;
		}
		reset_attempt(h);
		tries++;
		*ret_tries = tries;
		start = now_ms();
		rc = curl_easy_perform(h->curl);
		if (rc == CURLE_OK) {
			h->maybe_sent = true;
			curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE,
					  &status);
			*ret_status = status;
			if ((status < 500 || status > 599) && status != 429)
				return 0;
			if (status == 429 && ratelimit_daily(&h->rl)) {
				ratelimit_quota_exhausted(&h->rl, quota(h));
				return 0; /* retrying only spends requests */
			}
			if (once_only && status != 429)
				return 0; /* a 5xx: it may have been done */
			if (tries >= h->cfg.max_tries)
				return 0; /* the caller maps the status */
			wait = status == 429 ? backoff_429(h, tries)
					     : backoff(h, tries);
			why[0] = '\0';
		} else {
			r = http_error_errno(h, rc, &retry);
			if (!never_sent(h, r))
				h->maybe_sent = true;
			if (once_only && retry)
				retry = never_sent(h, r);
			http_error_describe(h, rc, r, o, now_ms() - start, why,
					    sizeof(why));
			if (!retry || tries >= h->cfg.max_tries) {
				errtext(err, errlen, r, "%s", why);
				if (tries > 1)
					append(err, errlen, " (after %u tries)",
					       tries);
				return r;
			}
			wait = backoff(h, tries);
		}
		if (h->cfg.on_retry)
			announce(h, status, why, tries, wait);
		if (http_sleep(&h->cfg, wait) < 0)
			return errtext(err, errlen, -ECANCELED,
				       "the request to %s was cancelled",
				       o->text);
	}
}

/* An extra header line: a token name, ": ", then printable ASCII. No
 * CR/LF can split it into two, and the token travels only in @token. */
static bool header_ok(const char *line)
{
	size_t n = strnlen(line, HTTP_MAX_HEADER_LINE + 1), i = 0;

	if (n > HTTP_MAX_HEADER_LINE)
		return false;
	while (i < n && (line[i] == '-' || (line[i] >= '0' && line[i] <= '9') ||
			 (line[i] >= 'A' && line[i] <= 'Z') ||
			 (line[i] >= 'a' && line[i] <= 'z')))
		i++;
	if (i == 0 || i + 1 >= n || line[i] != ':' || line[i + 1] != ' ')
		return false;
	if (i == strlen("Authorization") &&
	    strncasecmp(line, "Authorization", i) == 0)
		return false;
	for (i += 2; i < n; i++)
		if ((unsigned char)line[i] < 0x20 ||
		    (unsigned char)line[i] >= 0x7f)
			return false;
	return true;
}

/* The method's options; every request sets all of them, since the handle
 * keeps options from one request to the next. */
static bool set_method(struct http *h, enum http_method m)
{
	CURL *e = h->curl;
	bool okay = true;

	switch (m) {
	case HTTP_GET:
	case HTTP_DELETE:
		okay = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK &&
		       curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST,
					m == HTTP_DELETE ? "DELETE" : NULL) ==
			       CURLE_OK &&
		       curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 0L) ==
			       CURLE_OK;
		break;
	case HTTP_POST:
		okay = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL) ==
			       CURLE_OK &&
		       curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L) ==
			       CURLE_OK &&
		       curl_easy_setopt(e, CURLOPT_POSTFIELDS, "") ==
			       CURLE_OK &&
		       curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L) ==
			       CURLE_OK;
		break;
	default:
		okay = false;
	}
	return okay;
}

int http_get(struct http *h, const char *url, const char *token,
	     struct http_response *ret, char *err, size_t errlen)
{
	const struct http_request req = {
		.method = HTTP_GET, .url = url, .token = token};

	return http_request(h, &req, ret, err, errlen);
}

int http_request(struct http *h, const struct http_request *req,
		 struct http_response *ret, char *err, size_t errlen)
{
	char auth[sizeof("Authorization: Bearer ") + HTTP_MAX_TOKEN];
	char dummy[1];
	const char *url = req->url, *token = req->token;
	struct curl_slist *headers = NULL, *l;
	struct url_origin o;
	unsigned tries = 0;
	long status = 0;
	int r;

	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	h->maybe_sent = false;
	h->announced = false;
	url_origin(url, &o);
	if (token && !token_ok(token))
		return errtext(
			err, errlen, -EINVAL,
			"the token is empty, too long or holds characters that cannot be sent in a header");
	if (req->nheaders > HTTP_MAX_HEADERS)
		return errtext(err, errlen, -EINVAL,
			       "too many request headers (%zu, limit %d)",
			       req->nheaders, HTTP_MAX_HEADERS);
	for (size_t i = 0; i < req->nheaders; i++)
		if (!req->headers[i] || !header_ok(req->headers[i]))
			return errtext(
				err, errlen, -EINVAL,
				"a request header is too long or holds characters that cannot be sent in a header");

	l = curl_slist_append(NULL, "Accept: application/json");
	if (!l)
		return errtext(err, errlen, -ENOMEM, "out of memory");
	headers = l;
	if (req->method == HTTP_POST) {
		/* an empty body: no form content type */
		l = curl_slist_append(headers, "Content-Type:");
		if (!l) {
			r = errtext(err, errlen, -ENOMEM, "out of memory");
			goto out_headers;
		}
	}
	for (size_t i = 0; i < req->nheaders; i++) {
		l = curl_slist_append(headers, req->headers[i]);
		if (!l) {
			r = errtext(err, errlen, -ENOMEM, "out of memory");
			goto out_headers;
		}
	}
	if (token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		l = curl_slist_append(headers, auth);
		explicit_bzero(auth, sizeof(auth));
		if (!l) {
			r = errtext(err, errlen, -ENOMEM, "out of memory");
			goto out_headers;
		}
	}
	if (!set_method(h, req->method)) {
		r = errtext(err, errlen, -EINVAL,
			    "cannot set the request method");
		goto out_headers;
	}
	/* http:// is allowed only to loopback, where the token may travel
	 * in clear: so never through a proxy (http_proxy in the
	 * environment), which would carry it in clear over the network.
	 * https:// may use a proxy: CONNECT keeps TLS end to end. */
	if (curl_easy_setopt(h->curl, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(h->curl, CURLOPT_PROXY,
			     strncmp(url, "http://", 7) ? NULL : "") !=
		    CURLE_OK ||
	    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, headers) !=
		    CURLE_OK) {
		r = errtext(err, errlen, -EINVAL, "cannot use the URL %s",
			    o.text);
		goto out_headers;
	}

	r = attempts(h, &o, req->method == HTTP_POST, &status, &tries, err,
		     errlen);
	if (h->announced)
		h->cfg.on_retry(h->cfg.retry_ctx, NULL);
	if (r == 0 && buf_reserve(&h->body, 0, 0) < 0)
		r = errtext(err, errlen, -ENOMEM, "out of memory");
	if (r == 0) {
		/* Hand the buffer over; keep no copy of a body given away.
		 * An empty body is still a string. */
		h->body.data[h->body.len] = '\0';
		ret->status = status;
		ret->len = h->body.len;
		ret->body = buf_steal(&h->body);
		ret->tries = tries;
		ret->daily_quota = status == 429 && ratelimit_daily(&h->rl);
	}
	curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
out_headers:
	wipe_headers(headers);
	if (h->body.cap > HTTP_FIRST_BUFFER)
		buf_release(&h->body); /* no large failed body kept */
	return r;
}

/* libcurl's allocations, wiped when freed: the request text it builds
 * holds the Authorization header, and a freed block would keep a copy of
 * the token in the heap. */
static void wiping_free(void *p)
{
	if (p)
		explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

static void *wiping_realloc(void *p, size_t n)
{
	size_t old = p ? malloc_usable_size(p) : 0;
	void *q;

	if (!p)
		return malloc(n);
	if (!n) {
		wiping_free(p);
		return NULL;
	}
	q = malloc(n);
	if (!q)
		return NULL;
	memcpy(q, p, old < n ? old : n);
	wiping_free(p);
	return q;
}

static char *wiping_strdup(const char *s)
{
	return strdup(s);
}

int http_global_init(void)
{
	CURLcode rc =
		curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, wiping_free,
				     wiping_realloc, wiping_strdup, calloc);

	if (rc == CURLE_OUT_OF_MEMORY)
		return -ENOMEM;
	return rc == CURLE_OK ? 0 : -EIO;
}

void http_global_cleanup(void)
{
	curl_global_cleanup();
}
