/* ratelimit: what a response says about the API's rate limits, and the
 * account's daily quota.
 *
 * The API has a per-second burst limit (Burst-RateLimit-Limit,
 * -Remaining, -Reset) and a daily request quota (RateLimit-Limit,
 * -Remaining, -Reset); a 429 of the first is worth waiting for, one of
 * the second only spends requests until its reset (qstash-js raises a
 * separate error for it). This module reads the headers and keeps the
 * quota; http decides what to send. Knows no libcurl.
 */
#ifndef DLQFS_RATELIMIT_H
#define DLQFS_RATELIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The account's daily request quota, as every client of one token sees
 * it (the walk's workers, the actions): once a 429 says it is exhausted,
 * nothing is sent until it resets. Zero-initialize it; share it through
 * http_config.quota. */
struct http_quota {
	atomic_llong until_ms; /* wall clock ms; 0: not exhausted */
	atomic_llong limit;    /* RateLimit-Limit of that 429; 0: unknown */
	atomic_bool known;     /* until_ms is what the API said, not a guess */
};

/* When the API does not say when an exhausted daily quota resets, one
 * request is let through this often to find out. */
#define HTTP_QUOTA_PROBE_MS (10 * 60 * 1000)
/* A reset further away than this is not believed (a daily quota resets
 * within a day): it is waited for this long at most. */
#define HTTP_QUOTA_MAX_WAIT_MS (25 * 3600 * 1000LL)
/* Retry-After values above are clamped. */
#define RATELIMIT_MAX_RETRY_AFTER_S 86400

/* The rate-limit headers of one response; -1: absent (or not a number). */
struct ratelimit {
	long retry_after_s;	   /* Retry-After delta-seconds */
	long long burst_reset;	   /* Burst-RateLimit-Reset */
	long long burst_remaining; /* Burst-RateLimit-Remaining */
	long long quota_limit;	   /* RateLimit-Limit (0: there, unreadable) */
	long long quota_remaining; /* RateLimit-Remaining */
	long long quota_reset;	   /* RateLimit-Reset */
};

/* Forgets everything: a new response begins. */
void ratelimit_forget(struct ratelimit *rl);

/* Reads the header line @line (@n bytes, "Name: value" and its CRLF) if
 * it is one of the above. */
void ratelimit_header(struct ratelimit *rl, const char *line, size_t n);

/* Whether a 429 with these headers is the daily quota rather than the
 * burst limit: RateLimit-Remaining: 0 says so, a burst header saying 0
 * says not; else, as qstash-js reads it, RateLimit-Limit being there. */
bool ratelimit_daily(const struct ratelimit *rl);

/* The wall-clock ms a Reset value @v names. The docs say only "unix
 * timestamp": above 10^12 it is milliseconds, above 10^9 seconds, and a
 * smaller value is seconds from @wall_now (as some APIs send it). */
int64_t ratelimit_reset_at(long long v, int64_t wall_now);

/* How long to wait after a burst 429: Retry-After, else until
 * Burst-RateLimit-Reset (at most RATELIMIT_MAX_RETRY_AFTER_S); -1 when
 * neither says. */
long long ratelimit_burst_wait_ms(const struct ratelimit *rl);

/* Marks @q exhausted after a daily 429 with these headers: until
 * Retry-After or RateLimit-Reset, else for HTTP_QUOTA_PROBE_MS (not
 * known); at least a second, at most HTTP_QUOTA_MAX_WAIT_MS. */
void ratelimit_quota_exhausted(const struct ratelimit *rl,
			       struct http_quota *q);

/* Whether @q forbids sending now; a quota that has reset is cleared. */
bool ratelimit_quota_closed(struct http_quota *q);

/* Says in @err (at most @errlen bytes) that a request to @origin was not
 * sent because @q is exhausted, and until when. */
void ratelimit_quota_text(const struct http_quota *q, const char *origin,
			  char *err, size_t errlen);

#endif
