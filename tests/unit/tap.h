/* tap.h: a minimal TAP producer for the unit tests (meson protocol 'tap').
 *
 *   ok(cond, "name %d", i);    one test point
 *   is_int(got, want, "name"); equality with both values in the diagnostic
 *   is_mem(got, glen, want, wlen, "name");
 *   return tap_done();         prints the plan, exit status 1 on failure
 */
#ifndef DLQFS_TAP_H
#define DLQFS_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

__attribute__((format(printf, 2, 3))) static inline int ok(int cond,
							   const char *fmt, ...)
{
	va_list ap;

	tap_n++;
	printf("%sok %d - ", cond ? "" : "not ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		tap_failed++;
	return cond;
}

#define is_int(got, want, ...)                                                 \
	do {                                                                   \
		long long g_ = (long long)(got), w_ = (long long)(want);       \
		if (!ok(g_ == w_, __VA_ARGS__))                                \
			printf("#   got %lld, want %lld\n", g_, w_);           \
	} while (0)

static inline void tap_dump(const char *what, const char *p, size_t n)
{
	printf("#   %s (%zu): \"", what, n);
	for (size_t i = 0; i < n && i < 400; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			putchar(c);
		else
			printf("\\x%02x", c);
	}
	printf("\"\n");
}

#define is_mem(got, glen, want, wlen, ...)                                     \
	do {                                                                   \
		const char *g_ = (const char *)(got);                          \
		const char *w_ = (const char *)(want);                         \
		size_t gl_ = (glen), wl_ = (wlen);                             \
		int same_ =                                                    \
			g_ && w_ && gl_ == wl_ && memcmp(g_, w_, gl_) == 0;    \
		if (!ok(same_, __VA_ARGS__)) {                                 \
			tap_dump("got", g_ ? g_ : "(null)", g_ ? gl_ : 6);     \
			tap_dump("want", w_ ? w_ : "(null)", w_ ? wl_ : 6);    \
		}                                                              \
	} while (0)

static inline size_t tap_strlen(const char *s)
{
	return s ? strlen(s) : 0;
}

#define is_str(got, want, ...)                                                 \
	is_mem((got), tap_strlen(got), (want), tap_strlen(want), __VA_ARGS__)

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
