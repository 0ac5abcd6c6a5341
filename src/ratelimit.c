/* ratelimit: rate-limit headers, and the daily quota they can close.
 *
 * Owns: reading Retry-After and the Burst-RateLimit-* and RateLimit-*
 * headers, telling a burst 429 from a daily one, what a Reset value means,
 * how long a burst 429 waits, and the quota shared by a token's clients.
 * Leaves to others: the retry loop and what is sent (http), how a refusal
 * is mapped to errno (api).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ratelimit.h"
#include "timefmt.h"

void ratelimit_forget(struct ratelimit *rl)
{
	rl->retry_after_s = -1;
	rl->burst_reset = rl->burst_remaining = -1;
	rl->quota_limit = rl->quota_remaining = rl->quota_reset = -1;
}

/* Parses decimal digits (after optional blanks) up to CR/LF/blank; -1 when
 * the value is something else (an HTTP-date, a sign, garbage). */
static long long header_number(const char *p, const char *end)
{
	long long v = 0;
	int digits = 0;

	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	while (p < end && *p >= '0' && *p <= '9') {
		if (++digits > 15) /* a time in ms has 13 */
			return -1;
		v = v * 10 + (*p - '0');
		p++;
	}
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return digits && p == end ? v : -1;
}

static bool header_is(const char *line, size_t n, const char *name,
		      const char **ret_value)
{
	size_t k = strlen(name);

	if (n <= k || line[k] != ':' || strncasecmp(line, name, k) != 0)
		return false;
	*ret_value = line + k + 1;
	return true;
}

void ratelimit_header(struct ratelimit *rl, const char *line, size_t n)
{
	const char *end = line + n, *v;
	long long x;

	if (header_is(line, n, "Retry-After", &v)) {
		x = header_number(v, end);
		if (x >= 0)
			rl->retry_after_s =
				x > RATELIMIT_MAX_RETRY_AFTER_S
					? RATELIMIT_MAX_RETRY_AFTER_S
					: (long)x;
	} else if (header_is(line, n, "Burst-RateLimit-Reset", &v)) {
		rl->burst_reset = header_number(v, end);
	} else if (header_is(line, n, "Burst-RateLimit-Remaining", &v)) {
		rl->burst_remaining = header_number(v, end);
	} else if (header_is(line, n, "RateLimit-Limit", &v)) {
		/* present at all: qstash-js's sign of the daily quota */
		x = header_number(v, end);
		rl->quota_limit = x >= 0 ? x : 0;
	} else if (header_is(line, n, "RateLimit-Remaining", &v)) {
		rl->quota_remaining = header_number(v, end);
	} else if (header_is(line, n, "RateLimit-Reset", &v)) {
		rl->quota_reset = header_number(v, end);
	}
}

bool ratelimit_daily(const struct ratelimit *rl)
{
	if (rl->quota_remaining == 0)
		return true;
	if (rl->quota_remaining > 0 || rl->burst_remaining == 0)
		return false;
	return rl->quota_limit >= 0;
}

int64_t ratelimit_reset_at(long long v, int64_t wall_now)
{
	if (v > 1000000000000LL)
		return v;
	if (v > 1000000000LL)
		return v * 1000;
	return wall_now + v * 1000;
}

long long ratelimit_burst_wait_ms(const struct ratelimit *rl)
{
	int64_t wall;
	long long delta;

	if (rl->retry_after_s >= 0)
		return (long long)rl->retry_after_s * 1000;
	if (rl->burst_reset < 0)
		return -1;
	wall = timefmt_now_ms();
	delta = ratelimit_reset_at(rl->burst_reset, wall) - wall;
	if (delta <= 0)
		return -1;
	return delta > RATELIMIT_MAX_RETRY_AFTER_S * 1000LL
		       ? RATELIMIT_MAX_RETRY_AFTER_S * 1000LL
		       : delta;
}

void ratelimit_quota_exhausted(const struct ratelimit *rl, struct http_quota *q)
{
	int64_t wall = timefmt_now_ms(), until = wall + HTTP_QUOTA_PROBE_MS;
	bool known = true;

	if (rl->retry_after_s >= 0)
		until = wall + (int64_t)rl->retry_after_s * 1000;
	else if (rl->quota_reset >= 0)
		until = ratelimit_reset_at(rl->quota_reset, wall);
	else
		known = false;
	if (until > wall + HTTP_QUOTA_MAX_WAIT_MS)
		until = wall + HTTP_QUOTA_MAX_WAIT_MS;
	if (until <= wall)
		until = wall + 1000; /* said reset already: one second */
	atomic_store(&q->limit, rl->quota_limit > 0 ? rl->quota_limit : 0);
	atomic_store(&q->known, known);
	atomic_store(&q->until_ms, until);
}

bool ratelimit_quota_closed(struct http_quota *q)
{
	long long until = atomic_load(&q->until_ms);

	if (!until)
		return false;
	if (until > timefmt_now_ms())
		return true;
	atomic_compare_exchange_strong(&q->until_ms, &until, 0);
	return false;
}

void ratelimit_quota_text(const struct http_quota *q, const char *origin,
			  char *err, size_t errlen)
{
	long long limit = atomic_load(&q->limit);
	char when[TIMEFMT_ISO_SIZE], lim[40] = "";

	if (!err || !errlen)
		return;
	timefmt_iso(atomic_load(&q->until_ms), when);
	if (limit > 0)
		snprintf(lim, sizeof(lim), " of %lld requests", limit);
	snprintf(err, errlen,
		 "not sent to %s: the daily request quota%s is exhausted until "
		 "%s%s",
		 origin, lim, when,
		 atomic_load(&q->known)
			 ? ""
			 : " (the API did not say when it resets: one request "
			   "then finds out)");
}
