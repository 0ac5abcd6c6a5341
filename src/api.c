/* api: the DLQ endpoints over http: the list, and the actions.
 *
 * Owns: the client's copies of the base URL and token, and its filters as a
 * query string; building list URLs (filters in the given order,
 * percent-encoded values and cursor) and action URLs (ids percent-encoded,
 * in the path or as repeated dlqIds); the guard that no bulk action goes out
 * unscoped; the option headers of resume and restart; the one table mapping
 * HTTP statuses to errno; the one-line error texts for statuses (with the
 * API's own {"error": ...} words, or a sanitized excerpt of a body that is
 * not JSON), never showing the token. Leaves to others: transport, retries,
 * 429 waits and percent-encoding itself (http), the JSON of pages (message)
 * and of error bodies and answers (answer), walking pages (walker).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "buf.h"
#include "timefmt.h"
#include "url.h"

#define API_MAX_URL 16384    /* longer list URL: -EINVAL, not sent */
#define API_EXCERPT_BYTES 80 /* of a body that is not a JSON error */
#define API_SNIFF_BYTES 1024 /* of a body searched for an HTML <title> */

struct api {
	int64_t scope_from, scope_to; /* fromDate/toDate filters, or -1 */
	char *base_url;		      /* no trailing '/' */
	char *token; /* NULL: no Authorization header; wiped on free */
	/* The filters as "&param=value", escaped, in the order given: all of
	 * them, and all but fromDate and toDate (for a range's list URL). */
	char *query, *query_undated;
	struct http *http;
	/* api_config.on_retry, told through http_config.on_retry */
	void (*on_retry)(void *ctx, const char *text, unsigned tries);
	void *retry_ctx;
};

static void base_origin(const char *url, char *buf, size_t len);
static void body_words(const char *body, size_t len, char *buf, size_t buflen);
static void scrub_token(char *s, const char *token);
static char *filter_query(const struct api_filter *f, size_t n, bool dated);

/* http_config.on_retry: the attempt in words, for api_config.on_retry. */
static void api_retrying(void *ctx, const struct http_retry *r)
{
	struct api *a = ctx;
	char text[1024]; /* origin and words: the receiver cuts it */
	char origin[320], words[300];

	if (!r) {
		a->on_retry(a->retry_ctx, NULL, 0);
		return;
	}
	if (r->status) {
		base_origin(a->base_url, origin, sizeof(origin));
		body_words(r->body, r->len, words, sizeof(words));
		snprintf(text, sizeof(text),
			 "HTTP %ld from %s%s (try %u of %u)", r->status, origin,
			 words, r->tries, r->max_tries);
	} else {
		snprintf(text, sizeof(text), "%s (try %u of %u)", r->error,
			 r->tries, r->max_tries);
	}
	scrub_token(text, a->token);
	a->on_retry(a->retry_ctx, text, r->tries);
}

struct api *api_new(const struct api_config *cfg)
{
	struct api *a = calloc(1, sizeof(*a));
	struct http_config hc = cfg->http;
	const char *base = cfg->base_url ? cfg->base_url : API_DEFAULT_URL;
	size_t n = strlen(base);

	if (!a)
		return NULL;
	a->scope_from = a->scope_to = -1;
	while (n > 0 && base[n - 1] == '/')
		n--;
	a->base_url = strndup(base, n);
	if (!a->base_url)
		goto fail;
	if (cfg->token) {
		a->token = strdup(cfg->token);
		if (!a->token)
			goto fail;
	}
	for (size_t i = 0; i < cfg->nfilters; i++) {
		const char *p = cfg->filters[i].param;
		const char *v =
			cfg->filters[i].value ? cfg->filters[i].value : "";

		if (p && !strcmp(p, "fromDate"))
			a->scope_from = strtoll(v, NULL, 10);
		if (p && !strcmp(p, "toDate"))
			a->scope_to = strtoll(v, NULL, 10);
	}
	a->query = filter_query(cfg->filters, cfg->nfilters, true);
	a->query_undated = filter_query(cfg->filters, cfg->nfilters, false);
	if (!a->query || !a->query_undated)
		goto fail;
	if (cfg->on_retry) {
		a->on_retry = cfg->on_retry;
		a->retry_ctx = cfg->retry_ctx;
		hc.on_retry = api_retrying;
		hc.retry_ctx = a;
	} else {
		hc.on_retry = NULL;
	}
	a->http = http_new(&hc);
	if (!a->http)
		goto fail;
	return a;
fail:
	api_free(a);
	return NULL;
}

void api_free(struct api *a)
{
	if (!a)
		return;
	http_free(a->http);
	free(a->query);
	free(a->query_undated);
	if (a->token) {
		explicit_bzero(a->token, strlen(a->token));
		free(a->token);
	}
	free(a->base_url);
	free(a);
}

/* URLs. */

/* Appends @sep and the percent-encoding of @value to @b, unless *@err
 * (the first failure: a URL is built with a chain of appends and checked
 * once) is set already. */
static void add_escaped(struct buf *b, int *err, const char *sep,
			const char *value)
{
	char *esc;

	if (*err)
		return;
	esc = url_escape(value, strlen(value));
	*err = esc ? buf_addf(b, "%s%s", sep, esc) : -ENOMEM;
	free(esc);
}

/* The string built in @b, or NULL (and @b released) after an error. */
static char *built(struct buf *b, int err)
{
	if (err) {
		buf_release(b);
		return NULL;
	}
	return buf_steal(b);
}

static int is_date_param(const char *p)
{
	return !strcmp(p, "fromDate") || !strcmp(p, "toDate");
}

/* "&param=value" for each of the @n filters @f in order, escaped (a NULL
 * param or value is ""), without fromDate and toDate unless @dated. New
 * string, or NULL. */
static char *filter_query(const struct api_filter *f, size_t n, bool dated)
{
	struct buf q = BUF_INIT;
	int err = 0;

	for (size_t i = 0; i < n; i++) {
		const char *p = f[i].param ? f[i].param : "";

		if (!dated && is_date_param(p))
			continue;
		add_escaped(&q, &err, "&", p);
		add_escaped(&q, &err, "=", f[i].value ? f[i].value : "");
	}
	return built(&q, err);
}

/* The list URL; with a range (@from or @to >= 0), the scope's own
 * fromDate/toDate are replaced by @from/@to (already intersected). */
static char *list_url(const struct api *a, int64_t from, int64_t to,
		      const char *cursor)
{
	bool ranged = from >= 0 || to >= 0;
	struct buf url = BUF_INIT;
	int err;

	err = buf_addf(&url, "%s" API_LIST_PATH "?count=%d%s", a->base_url,
		       API_PAGE_COUNT, ranged ? a->query_undated : a->query);
	if (!err && from >= 0)
		err = buf_addf(&url, "&fromDate=%lld", (long long)from);
	if (!err && to >= 0)
		err = buf_addf(&url, "&toDate=%lld", (long long)to);
	if (cursor)
		add_escaped(&url, &err, "&cursor=", cursor);
	return built(&url, err);
}

char *api_list_url(const struct api *a, const char *cursor)
{
	return list_url(a, -1, -1, cursor);
}

char *api_list_range_url(const struct api *a, int64_t from, int64_t to,
			 const char *cursor)
{
	return list_url(a, from, to, cursor);
}

static const struct {
	long lo, hi;
	int err;
} api_statuses[] = {
	{400, 400, -EINVAL}, /* request refused */
	{401, 401, -EACCES}, /* token refused */
	{403, 403, -EACCES}, /* token lacks the right */
	{404, 404, -ENOENT}, /* no such endpoint */
	{429, 429, -EAGAIN}, /* still rate limited after retries */
	{500, 599, -EIO},    /* still failing after retries */
	{0, 0, 0},	     /* anything else: -EIO */
};

static int status_errno(long status)
{
	size_t i;

	for (i = 0; api_statuses[i].err; i++)
		if (status >= api_statuses[i].lo &&
		    status <= api_statuses[i].hi)
			return api_statuses[i].err;
	return -EIO;
}

static void err_set(struct api_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void err_set(struct api_error *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
}

/* scheme://host[:port] of the base URL, userinfo removed. */
/* Checks a new request URL (NULL: out of memory building it) against
 * API_MAX_URL. Returns 0; or frees it, says why in @err (between @prefix
 * and @hint) and returns -ENOMEM or @too_long. */
static int url_fits(char *url, int too_long, const char *prefix,
		    const char *hint, struct api_error *err)
{
	size_t len;

	if (!url) {
		err_set(err, "out of memory building the request");
		return -ENOMEM;
	}
	len = strlen(url);
	if (len <= API_MAX_URL)
		return 0;
	free(url);
	err_set(err,
		"%sthe request URL would be %zu bytes, over the limit of %d%s",
		prefix, len, API_MAX_URL, hint);
	return too_long;
}

static void base_origin(const char *url, char *buf, size_t len)
{
	const char *p = strstr(url, "://");
	const char *host, *end, *at;

	if (!p) {
		snprintf(buf, len, "the API");
		return;
	}
	host = p + 3;
	end = host + strcspn(host, "/?#");
	at = host;
	for (const char *q = host; q < end; q++)
		if (*q == '@')
			at = q + 1;
	snprintf(buf, len, "%.*s%.*s", (int)(host - url), url, (int)(end - at),
		 at);
}

/* Printable ASCII of @s (at most @max input bytes), whitespace runs folded
 * to one space, other control and non-ASCII bytes dropped. */
static void sanitize(char *dst, size_t dstlen, const char *s, size_t len,
		     size_t max)
{
	size_t j = 0;
	bool space = false;

	if (len > max)
		len = max;
	for (size_t i = 0; i < len && j + 1 < dstlen; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			space = j > 0;
			continue;
		}
		if (c < 0x20 || c >= 0x7f)
			continue;
		if (space && j + 2 < dstlen)
			dst[j++] = ' ';
		space = false;
		dst[j++] = (char)c;
	}
	dst[j] = '\0';
}

static const char *find_nocase(const char *s, size_t len, const char *what)
{
	size_t k = strlen(what);

	for (size_t i = 0; i + k <= len; i++)
		if (strncasecmp(s + i, what, k) == 0)
			return s + i;
	return NULL;
}

/* ": <words>", " (HTML error page: <title>)", or "" for an empty body. */
static void body_words(const char *body, size_t len, char *buf, size_t buflen)
{
	char text[256];
	size_t i = 0;

	buf[0] = '\0';
	if (!body || !len)
		return;
	if (answer_error_text(body, len, text, sizeof(text)) == 0) {
		sanitize(buf + 2, buflen - 2, text, strlen(text), sizeof(text));
		if (buf[2]) {
			buf[0] = ':';
			buf[1] = ' ';
		}
		return;
	}
	while (i < len && (body[i] == ' ' || body[i] == '\t' ||
			   body[i] == '\r' || body[i] == '\n'))
		i++;
	if (i < len && body[i] == '<') {
		size_t n = len < API_SNIFF_BYTES ? len : API_SNIFF_BYTES;
		const char *t = find_nocase(body, n, "<title>");
		const char *e =
			t ? find_nocase(t, (size_t)(body + n - t), "</") : NULL;

		text[0] = '\0';
		if (t && e)
			sanitize(text, sizeof(text), t + 7,
				 (size_t)(e - (t + 7)), API_EXCERPT_BYTES);
		snprintf(buf, buflen, " (HTML error page%s%s)",
			 text[0] ? ": " : "", text);
		return;
	}
	sanitize(text, sizeof(text), body + i, len - i, API_EXCERPT_BYTES);
	if (text[0])
		snprintf(buf, buflen, ": %s", text);
}

/* Replaces every occurrence of the token in @s by "[token]". The texts
 * never include it by construction; this guards against a server that
 * echoes the request. */
static void scrub_token(char *s, const char *token)
{
	static const char mask[] = "[token]";
	size_t k = token ? strlen(token) : 0;
	char *p;

	if (k < 4)
		return;
	while ((p = strstr(s, token))) {
		if (k >= sizeof(mask) - 1) {
			memcpy(p, mask, sizeof(mask) - 1);
			memmove(p + sizeof(mask) - 1, p + k, strlen(p + k) + 1);
			s = p + sizeof(mask) - 1;
		} else {
			memset(p, '*', k);
			s = p + k;
		}
	}
}

/* Sends one request; on a response (any status) returns 0 with its
 * status in err->http_status, else the transport error with err->text. */
static int api_send(struct api *a, enum http_method m, const char *url,
		    const char *const *headers, size_t nheaders,
		    struct http_response *resp, struct api_error *err)
{
	const struct http_request req = {
		.method = m,
		.url = url,
		.token = a->token,
		.headers = headers,
		.nheaders = nheaders,
	};
	int r = http_request(a->http, &req, resp, err->text, sizeof(err->text));

	if (r == 0)
		err->http_status = resp->status;
	return r;
}

/* The errno of a response that is not a success, and its text. */
static int status_error(const struct api *a, const struct http_response *resp,
			const char *origin, struct api_error *err)
{
	const struct http_quota *q = http_quota_of(a->http);
	char words[300], tries[32], quota[160], when[TIMEFMT_ISO_SIZE];

	body_words(resp->body, resp->len, words, sizeof(words));
	tries[0] = quota[0] = '\0';
	if (resp->tries > 1)
		snprintf(tries, sizeof(tries), " (after %u tries)",
			 resp->tries);
	if (resp->daily_quota)
		snprintf(quota, sizeof(quota),
			 " (the daily request quota is exhausted; %s %s)",
			 atomic_load(&q->known) ? "it resets at"
						: "asked again at",
			 timefmt_iso(atomic_load(&q->until_ms), when));
	err_set(err, "HTTP %ld from %s%s%s%s", resp->status, origin, words,
		tries, quota);
	return resp->daily_quota ? -EDQUOT : status_errno(resp->status);
}

int api_list(struct api *a, const char *cursor, struct message_page *ret_page,
	     struct api_error *err)
{
	return api_list_range(a, -1, -1, cursor, ret_page, err);
}

int api_list_range(struct api *a, int64_t from, int64_t to, const char *cursor,
		   struct message_page *ret_page, struct api_error *err)
{
	struct api_error dummy;
	struct http_response resp = {0};
	struct message_page page = {0};
	char origin[320], words[300], reason[256];
	char *url;
	int r;

	if (!err)
		err = &dummy;
	err->http_status = 0;
	err->text[0] = '\0';
	base_origin(a->base_url, origin, sizeof(origin));

	if (from >= 0 || to >= 0) {
		/* a range within the scope's own dates */
		if (a->scope_from >= 0 && (from < 0 || from < a->scope_from))
			from = a->scope_from;
		if (a->scope_to >= 0 && (to < 0 || to > a->scope_to))
			to = a->scope_to;
		if (from >= 0 && to >= 0 && from > to) {
			memset(ret_page, 0, sizeof(*ret_page));
			return 0; /* empty: nothing to ask */
		}
	}
	url = list_url(a, from, to, cursor);
	r = url_fits(url, -EINVAL, "", " (too many filters or a huge cursor)",
		     err);
	if (r < 0)
		return r;
	r = api_send(a, HTTP_GET, url, NULL, 0, &resp, err);
	free(url);
	if (r < 0)
		goto out;

	if (resp.status == 200) {
		reason[0] = '\0';
		r = message_page_parse(resp.body, resp.len, &page, reason,
				       sizeof(reason));
		if (r == -ENOMEM) {
			err_set(err, "out of memory reading a page from %s",
				origin);
		} else if (r < 0) {
			sanitize(words, sizeof(words), reason, strlen(reason),
				 sizeof(reason));
			err_set(err,
				"the API sent a page that is not valid: %s",
				words[0] ? words : "unknown reason");
			r = -EPROTO;
		} else {
			*ret_page = page;
			err->text[0] = '\0';
		}
		goto out;
	}

	r = status_error(a, &resp, origin, err);
out:
	http_response_release(&resp);
	scrub_token(err->text, a->token);
	return r;
}

/* ---- actions ---------------------------------------------------------- */

/* Why @ids break the guard (see api.h), or NULL when they don't. */
static const char *guard(bool bulk, const char *const *ids, size_t n)
{
	if (n == 0 || !ids)
		return "no id given: a bulk call without ids would act on the whole DLQ";
	if (!bulk && n != 1)
		return "a single call takes exactly one id";
	if (n > API_BULK_MAX)
		return "more ids than the API takes in one request";
	for (size_t i = 0; i < n; i++) {
		if (!ids[i] || !ids[i][0] ||
		    strnlen(ids[i], API_MAX_ID + 1) > API_MAX_ID)
			return "an id is empty or too long";
		/* dlqIds=a,b names two entries: one id must stay one */
		if (strchr(ids[i], ','))
			return "an id holds a ',', which the API reads as a separator of several ids";
	}
	return NULL;
}

char *api_action_url(const struct api *a, const char *path, bool bulk,
		     const char *const *ids, size_t n)
{
	struct buf url = BUF_INIT;
	int err;

	if (guard(bulk, ids, n))
		return NULL;
	err = buf_addf(&url, "%s" API_LIST_PATH "%s", a->base_url, path);
	if (!bulk)
		add_escaped(&url, &err, "/", ids[0]);
	for (size_t i = 0; bulk && i < n; i++)
		add_escaped(&url, &err, i ? "&dlqIds=" : "?dlqIds=", ids[i]);
	return built(&url, err);
}

/* Whether an action that failed with @r (@resp: the last response, if one
 * came) may have been carried out all the same (api_error.unknown). */
static bool maybe_done(const struct api *a, enum http_method m, int r,
		       const struct http_response *resp)
{
	bool answered = r != -EDQUOT && r != -EAGAIN && resp->status != 0;

	if (!http_maybe_sent(a->http))
		return false; /* nothing reached the server */
	if (!answered)
		return r != -EDQUOT && r != -EAGAIN; /* cut, timed out */
	if (resp->status >= 500)
		return true; /* it may have been done before failing */
	/* a DELETE retried after a try whose answer was lost or a 5xx finds
	 * nothing: that try may be what deleted it */
	return m == HTTP_DELETE && resp->status == 404 && resp->tries > 1;
}

/* One action request: the guard, the URL, the call, the status. Returns 0
 * with the (2xx) response in @ret_resp, or a negative errno with @err
 * filled. */
static int act(struct api *a, enum http_method m, const char *path, bool bulk,
	       const char *const *ids, size_t n, const char *const *headers,
	       size_t nheaders, struct http_response *ret_resp,
	       struct api_error *err)
{
	struct http_response resp = {0};
	const char *why = guard(bulk, ids, n);
	char origin[320];
	char *url;
	int r;

	err->http_status = 0;
	err->unknown = false;
	err->text[0] = '\0';
	if (why) {
		err_set(err, "not sent: %s", why);
		return -EINVAL;
	}
	url = api_action_url(a, path, bulk, ids, n);
	r = url_fits(url, -E2BIG, "not sent: ", "", err);
	if (r < 0)
		return r;
	base_origin(a->base_url, origin, sizeof(origin));
	r = api_send(a, m, url, headers, nheaders, &resp, err);
	free(url);
	if (r == 0 && resp.status >= 200 && resp.status <= 299) {
		*ret_resp = resp;
		return 0;
	}
	if (r == 0)
		r = status_error(a, &resp, origin, err);
	err->unknown = maybe_done(a, m, r, &resp);
	http_response_release(&resp);
	scrub_token(err->text, a->token);
	return r;
}

#define API_OPTION_HEADERS 7 /* of resume and restart, at most */

/* The option headers of resume and restart, in @lines. */
static int
option_headers(const struct api_action_options *opt,
	       char lines[API_OPTION_HEADERS][HTTP_MAX_HEADER_LINE + 1],
	       const char *ret_ptrs[API_OPTION_HEADERS], size_t *ret_n,
	       struct api_error *err)
{
	const struct {
		const char *name, *value;
	} h[] = {
		{"Upstash-Delay", opt ? opt->delay : NULL},
		{"Upstash-Retry-Delay", opt ? opt->retry_delay : NULL},
		{"Upstash-Flow-Control-Key",
		 opt ? opt->flow_control_key : NULL},
		{"Upstash-Flow-Control-Value",
		 opt ? opt->flow_control_value : NULL},
		{"Upstash-Label", opt ? opt->label : NULL},
		{"Upstash-Failure-Callback",
		 opt ? opt->failure_callback : NULL},
	};
	size_t n = 0;

	_Static_assert(sizeof(h) / sizeof(h[0]) + 1 == API_OPTION_HEADERS,
		       "room for every option header and Upstash-Retries");
	_Static_assert(API_OPTION_HEADERS <= HTTP_MAX_HEADERS,
		       "http takes them all");
	if (opt && opt->retries >= 0) {
		snprintf(lines[n], sizeof(lines[n]), "Upstash-Retries: %d",
			 opt->retries);
		ret_ptrs[n] = lines[n];
		n++;
	}
	for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++) {
		if (!h[i].value)
			continue;
		if ((size_t)snprintf(lines[n], sizeof(lines[n]), "%s: %s",
				     h[i].name,
				     h[i].value) >= sizeof(lines[n])) {
			err->http_status = 0;
			err_set(err, "not sent: the %s option is too long",
				h[i].name);
			return -EINVAL;
		}
		ret_ptrs[n] = lines[n];
		n++;
	}
	*ret_n = n;
	return 0;
}

static const char *redeliver_path(enum api_redeliver how)
{
	return how == API_RESTART ? "/restart" : "/resume";
}

int api_delete(struct api *a, const char *id, struct api_error *err)
{
	struct api_error dummy;
	struct http_response resp;
	int r;

	if (!err)
		err = &dummy;
	r = act(a, HTTP_DELETE, "", false, &id, 1, NULL, 0, &resp, err);
	if (r == 0)
		http_response_release(&resp);
	return r;
}

int api_delete_bulk(struct api *a, const char *const *ids, size_t n,
		    long long *ret_deleted, struct api_error *err)
{
	struct api_error dummy;
	struct http_response resp;
	uint64_t deleted;
	int r;

	if (!err)
		err = &dummy;
	r = act(a, HTTP_DELETE, "", true, ids, n, NULL, 0, &resp, err);
	if (r < 0)
		return r;
	if (answer_deleted_parse(resp.body, resp.len, &deleted) == 0 &&
	    deleted <= (uint64_t)LLONG_MAX)
		*ret_deleted = (long long)deleted;
	else
		*ret_deleted = -1;
	http_response_release(&resp);
	return 0;
}

/* A resume or restart POST of @n ids (@bulk: in the body's dlqIds, else
 * the one in the path), with @opt's headers; the answer in @resp. */
static int post(struct api *a, const char *path, bool bulk,
		const char *const *ids, size_t n,
		const struct api_action_options *opt,
		struct http_response *resp, struct api_error *err)
{
	char lines[API_OPTION_HEADERS][HTTP_MAX_HEADER_LINE + 1];
	const char *hdrs[API_OPTION_HEADERS];
	struct api_error dummy;
	size_t nh = 0;
	int r;

	if (!err)
		err = &dummy;
	err->http_status = 0;
	err->text[0] = '\0';
	r = option_headers(opt, lines, hdrs, &nh, err);
	if (r < 0)
		return r;
	return act(a, HTTP_POST, path, bulk, ids, n, hdrs, nh, resp, err);
}

/* A POST whose answer is one run. */
static int post_one(struct api *a, const char *path, const char *id,
		    const struct api_action_options *opt,
		    struct answer_run *ret_run, struct api_error *err)
{
	struct http_response resp;
	struct answer_run run;
	int r;

	r = post(a, path, false, &id, 1, opt, &resp, err);
	if (r < 0)
		return r;
	if (answer_run_parse(resp.body, resp.len, &run) < 0) {
		run.run_id[0] = '\0'; /* done, but the answer is unreadable */
		run.created_at = -1;
	}
	http_response_release(&resp);
	*ret_run = run;
	return 0;
}

int api_redeliver(struct api *a, enum api_redeliver how, const char *id,
		  const struct api_action_options *opt,
		  struct answer_run *ret_run, struct api_error *err)
{
	return post_one(a, redeliver_path(how), id, opt, ret_run, err);
}

int api_redeliver_bulk(struct api *a, enum api_redeliver how,
		       const char *const *ids, size_t n,
		       const struct api_action_options *opt,
		       struct answer_runs *ret_runs, struct api_error *err)
{
	struct http_response resp;
	struct answer_runs runs = {0};
	int r;

	r = post(a, redeliver_path(how), true, ids, n, opt, &resp, err);
	if (r < 0)
		return r;
	if (answer_runs_parse(resp.body, resp.len, &runs) < 0)
		memset(&runs, 0, sizeof(runs)); /* done; runs unknown */
	http_response_release(&resp);
	*ret_runs = runs;
	return 0;
}

int api_resume(struct api *a, const char *id,
	       const struct api_action_options *opt, struct answer_run *ret_run,
	       struct api_error *err)
{
	return api_redeliver(a, API_RESUME, id, opt, ret_run, err);
}

int api_restart(struct api *a, const char *id,
		const struct api_action_options *opt,
		struct answer_run *ret_run, struct api_error *err)
{
	return api_redeliver(a, API_RESTART, id, opt, ret_run, err);
}

int api_resume_bulk(struct api *a, const char *const *ids, size_t n,
		    const struct api_action_options *opt,
		    struct answer_runs *ret_runs, struct api_error *err)
{
	return api_redeliver_bulk(a, API_RESUME, ids, n, opt, ret_runs, err);
}

int api_restart_bulk(struct api *a, const char *const *ids, size_t n,
		     const struct api_action_options *opt,
		     struct answer_runs *ret_runs, struct api_error *err)
{
	return api_redeliver_bulk(a, API_RESTART, ids, n, opt, ret_runs, err);
}

int api_callback(struct api *a, const char *id, struct answer_run *ret_run,
		 struct api_error *err)
{
	return post_one(a, "/callback", id, NULL, ret_run, err);
}
