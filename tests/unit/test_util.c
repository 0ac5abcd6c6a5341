/* Unit tests for the small shared helpers: utf8 (the one UTF-8 decoder),
 * timefmt (the one time format) and jsonw (the one JSON string writer). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "buf.h"
#include "ratelimit.h"
#include "tap.h"
#include "timefmt.h"
#include "utf8.h"

/* The one UTF-8 decoder, which names, page checks and JSON output share. */
static void test_utf8(void)
{
	static const struct {
		const char *s;
		size_t n, want;
	} cases[] = {
		{"a", 1, 1},
		{"\xc3\xa9", 2, 2},	    /* é */
		{"\xc3", 1, 0},		    /* cut short */
		{"\xc0\xaf", 2, 0},	    /* overlong '/' */
		{"\xe0\x80\xaf", 3, 0},	    /* overlong, 3 bytes */
		{"\xe2\x82\xac", 3, 3},	    /* € */
		{"\xed\xa0\x80", 3, 0},	    /* a surrogate */
		{"\xef\xbf\xbd", 3, 3},	    /* U+FFFD */
		{"\xf0\x9f\x98\x80", 4, 4}, /* an emoji */
		{"\xf4\x90\x80\x80", 4, 0}, /* above U+10FFFF */
		{"\xf5\x80\x80\x80", 4, 0},
		{"\x80", 1, 0}, /* a stray continuation byte */
		{"\xff", 1, 0},
		{"\xe2\x82x", 3, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		is_int(utf8_seq(cases[i].s, cases[i].n), cases[i].want,
		       "utf8_seq case %zu", i);
	ok(utf8_valid("caf\xc3\xa9 \xe2\x82\xac", 9), "utf8_valid: text");
	ok(!utf8_valid("caf\xe9", 4), "utf8_valid: Latin-1 is not UTF-8");
	ok(utf8_valid("", 0), "utf8_valid: empty");
}

static void test_timefmt(void)
{
	static const struct {
		int64_t ms;
		const char *want;
	} cases[] = {
		{0, "1970-01-01T00:00:00.000Z"},
		{1752829295505LL, "2025-07-18T09:01:35.505Z"},
		{1795132800000LL, "2026-11-20T00:00:00.000Z"},
		{-1, "1970-01-01T00:00:00.000Z"},
		{INT64_MIN, "1970-01-01T00:00:00.000Z"},
		{253402300799999LL, "9999-12-31T23:59:59.999Z"},
		{253402300800000LL, "9999-12-31T23:59:59.999Z"},
		{INT64_MAX, "9999-12-31T23:59:59.999Z"},
	};
	char buf[TIMEFMT_ISO_SIZE];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		is_str(timefmt_iso(cases[i].ms, buf), cases[i].want,
		       "timefmt_iso(%lld)", (long long)cases[i].ms);
	ok(timefmt_now_ms() > 1752829295505LL,
	   "timefmt_now_ms: the wall clock");
}

/* The one JSON string writer: status and actions.log both write with it. */
static void test_jsonw(void)
{
	static const struct {
		const char *s;
		size_t n, budget;
		const char *want;
	} cases[] = {
		{"abc", 3, JSONW_NO_LIMIT, "\"abc\""},
		{"", 0, JSONW_NO_LIMIT, "\"\""},
		{"a\"b\\c", 5, JSONW_NO_LIMIT, "\"a\\\"b\\\\c\""},
		{"\x01\n\x1f\x7f", 4, JSONW_NO_LIMIT,
		 "\"\\u0001\\u000a\\u001f\\u007f\""},
		{"a\0b", 3, JSONW_NO_LIMIT, "\"a\\u0000b\""},
		{"caf\xc3\xa9 \xe2\x82\xac", 9, JSONW_NO_LIMIT,
		 "\"caf\xc3\xa9 \xe2\x82\xac\""},
		/* not UTF-8: U+FFFD for each byte that starts no sequence */
		{"\xff\xc3(\xed\xa0\x80", 6, JSONW_NO_LIMIT,
		 "\"\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd"
		 "\xef\xbf\xbd\""},
		/* a budget: cut at a character boundary, "..." inside */
		{"abcdefgh", 8, 13, "\"abcdefgh\""},
		{"abcdefgh", 8, 10, "\"abcde...\""}, /* room kept for "..." */
		{"abcdefghi", 9, 10, "\"abcde...\""},
		{"ab\xc3\xa9"
		 "cdef",
		 8, 9, "\"ab\xc3\xa9...\""},
		{"ab\xc3\xa9"
		 "cdef",
		 8, 8, "\"ab...\""},
		{"abcdef", 6, JSONW_MIN_BUDGET, "\"...\""},
		{"\x01\x01", 2, 9, "\"...\""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[64];
		size_t want = strlen(cases[i].want);
		size_t m = jsonw_str(NULL, cases[i].s, cases[i].n,
				     cases[i].budget);
		size_t n =
			jsonw_str(buf, cases[i].s, cases[i].n, cases[i].budget);

		is_mem(buf, n, cases[i].want, want, "jsonw_str case %zu", i);
		is_int(m, n, "jsonw_str case %zu: measured as written", i);
		ok(n <= cases[i].budget, "jsonw_str case %zu: within budget",
		   i);
	}
}

/* The one growable buffer. */
static void test_buf(void)
{
	struct buf b = BUF_INIT;
	char *s;

	is_int(buf_add(&b, "ab", 2), 0, "buf_add");
	is_int(buf_addf(&b, "%d-%s", 42, "x"), 0, "buf_addf");
	is_str(b.data, "ab42-x", "text, NUL-terminated");
	is_int(b.len, 6, "length without the NUL");
	ok(b.cap >= 7, "room for the NUL");
	is_int(buf_add(&b, "", 0), 0, "adding nothing");
	is_int(b.len, 6, "adding nothing changes nothing");
	for (int i = 0; i < 1000; i++)
		buf_addf(&b, "%03d", i % 1000);
	is_int(b.len, 6 + 3000, "grows as it goes");
	ok(!memcmp(b.data + 6, "000001002", 9) &&
		   !memcmp(b.data + b.len - 3, "999", 3),
	   "bytes kept across growth");
	s = buf_steal(&b);
	ok(s && s[0] == 'a' && !b.data && !b.len && !b.cap,
	   "steal: the bytes, and an empty buffer");
	free(s);
	s = buf_steal(&b);
	is_str(s, "", "steal of an empty buffer: \"\"");
	free(s);

	/* a limit on what it may hold */
	is_int(buf_reserve(&b, 10, 10), 0, "reserve within the limit");
	ok(b.cap <= 11, "capacity within limit + 1 (%zu)", b.cap);
	is_int(buf_add(&b, "0123456789", 10), 0, "fill to the limit");
	is_int(buf_reserve(&b, 1, 10), -E2BIG, "one byte more: -E2BIG");
	is_int(b.len, 10, "untouched on failure");
	is_int(buf_reserve(&b, SIZE_MAX, 0), -E2BIG, "overflow: -E2BIG");
	buf_release(&b);
	ok(!b.data && !b.len && !b.cap, "released: empty");
	buf_release(&b);
	ok(1, "released twice: fine");
}

static void hdr(struct ratelimit *rl, const char *line)
{
	ratelimit_header(rl, line, strlen(line));
}

/* Rate-limit headers: which 429 is which, what a reset means. */
static void test_ratelimit(void)
{
	static const struct {
		const char *lines;
		int daily;
	} t[] = {
		{"Burst-RateLimit-Limit: 100\r\nBurst-RateLimit-Remaining: 0\r\n",
		 0},
		{"RateLimit-Limit: 500\r\nRateLimit-Remaining: 0\r\n", 1},
		{"RateLimit-Limit: 500\r\n", 1}, /* qstash-js's reading */
		{"ratelimit-limit: x\r\n", 1},	 /* there, unreadable */
		{"RateLimit-Limit: 500\r\nRateLimit-Remaining: 7\r\n", 0},
		{"RateLimit-Limit: 500\r\nBurst-RateLimit-Remaining: 0\r\n", 0},
		{"RateLimit-Remaining: 0\r\nBurst-RateLimit-Remaining: 0\r\n",
		 1},
		{"Retry-After: 3\r\n", 0},
		{"", 0},
	};
	struct http_quota q = {0};
	struct ratelimit rl;
	int64_t now = timefmt_now_ms();
	char text[200];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *p = t[i].lines;

		ratelimit_forget(&rl);
		while (*p) {
			const char *e = strstr(p, "\r\n") + 2;

			ratelimit_header(&rl, p, (size_t)(e - p));
			p = e;
		}
		is_int(ratelimit_daily(&rl), t[i].daily, "daily? case %zu", i);
	}
	is_int(ratelimit_reset_at(1752829295505LL, now), 1752829295505LL,
	       "reset: 13 digits are ms");
	is_int(ratelimit_reset_at(1752829295LL, now), 1752829295000LL,
	       "reset: 10 digits are seconds");
	is_int(ratelimit_reset_at(30, now), now + 30000,
	       "reset: a small value is seconds from now");

	ratelimit_forget(&rl);
	hdr(&rl, "Retry-After: 2\r\n");
	is_int(ratelimit_burst_wait_ms(&rl), 2000, "Retry-After first");
	ratelimit_forget(&rl);
	is_int(ratelimit_burst_wait_ms(&rl), -1, "no header: no wait said");

	hdr(&rl, "RateLimit-Limit: 500\r\n");
	ok(!ratelimit_quota_closed(&q), "a quota starts open");
	ratelimit_quota_exhausted(&rl, &q);
	ok(ratelimit_quota_closed(&q) && !q.known && q.limit == 500,
	   "no reset said: closed, a guess, the limit kept");
	ok(q.until_ms >= now + HTTP_QUOTA_PROBE_MS - 1000,
	   "no reset said: a probe later");
	ratelimit_quota_text(&q, "https://api", text, sizeof(text));
	ok(strstr(text, "not sent to https://api") &&
		   strstr(text, "quota of 500 requests") &&
		   strstr(text, "did not say"),
	   "the text says it: %s", text);
	hdr(&rl, "RateLimit-Reset: 4102444800\r\n");
	ratelimit_quota_exhausted(&rl, &q);
	ok(q.known && q.until_ms <= timefmt_now_ms() + HTTP_QUOTA_MAX_WAIT_MS,
	   "a reset in 2100: believed for HTTP_QUOTA_MAX_WAIT_MS at most");
	atomic_store(&q.until_ms, now - 1);
	ok(!ratelimit_quota_closed(&q) && q.until_ms == 0,
	   "past its reset: open again");
}

int main(void)
{
	test_ratelimit();
	test_buf();
	test_utf8();
	test_timefmt();
	test_jsonw();
	return tap_done();
}
