/* test_names: the escaping rules of DESIGN.md section 1 and the stability
 * of names_hash64(). Expected hashes and shortened names were computed by
 * an independent reference implementation (Python), not by this code. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "names.h"
#include "tap.h"

#define S(lit) lit, sizeof(lit) - 1

/* is_str() tests its arguments for NULL; gcc's -Waddress objects when they
 * are arrays. */
static const char *cs(const char *s)
{
	return s;
}

/* Short values: the escaped name is the whole name. */
static const struct {
	const char *in;
	size_t len;
	const char *want;
} short_cases[] = {
	{S("team/payments"), "team%2Fpayments"},
	{S("https://a.example/wf"), "https:%2F%2Fa.example%2Fwf"},
	{S("."), "%2E"},
	{S(".."), "%2E%2E"},
	{S("..."), "..."},
	{S(".a"), ".a"},
	{S("a."), "a."},
	{S("./"), ".%2F"},
	{S("../x"), "..%2Fx"},
	{S("100%"), "100%25"},
	{S("%2F"), "%252F"},
	{S("\x01\x1f\x7f ~"), "%01%1F%7F ~"},
	{S("\t\r\n"), "%09%0D%0A"},
	{S("\0"), "%00"},
	{S("a\0b"), "a%00b"},
	{S("1752829295505-0"), "1752829295505-0"},
	{S("CALLBACK_FAIL"), "CALLBACK_FAIL"},
	{S("wfr_5XAx4IJergqkGK1v23VzR"), "wfr_5XAx4IJergqkGK1v23VzR"},
	{S("REDACTED:ab12"), "REDACTED:ab12"},
	{S("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
	 "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
	{S("\xff\xfe\x80"), "\xff\xfe\x80"}, /* invalid UTF-8 kept */
	{S("\x80"), "\x80"},
	{S("a b\\c:*?\"<>|"), "a b\\c:*?\"<>|"},
	{S("~"), "~"},
};

/* Long values: @pre_n times @pre, then @mid, then @post_n 'b'. The name
 * is @pre (@pre_n times, at most NAMES_KEEP), @want_mid, '~' and @hash. */
static const struct {
	const char *what;
	char pre;
	size_t pre_n;
	const char *mid;
	size_t mid_len;
	size_t post_n;
	const char *want_mid;
	const char *hash;
} long_cases[] = {
	{"256 plain bytes", 'a', 256, "", 0, 0, "", "89483824109992e3"},
	{"300 plain bytes", 'a', 300, "", 0, 0, "", "2bd8d99971b6a47a"},
	{"300 x", 'x', 300, "", 0, 0, "", "a35b39f73adb54f2"},
	{"299 a then b", 'a', 299, "b", 1, 0, "", "26087281618e03e4"},
	{"escape past 255", 'a', 254, "/", 1, 0, "", "98494439f897178f"},
	{"%XX over 200 at 199", 'a', 199, "/", 1, 100, "", "0201c8c517ca56f0"},
	{"%XX over 200 at 198", 'a', 198, "/", 1, 100, "", "4677738232f59214"},
	{"%XX ends at 200", 'a', 197, "/", 1, 100, "%2F", "da109d570d507092"},
	{"2-byte UTF-8 over 200", 'a', 199, "\xc3\xa9", 2, 100, "",
	 "3bbf2af69730810d"},
	{"2-byte UTF-8 ends at 200", 'a', 198, "\xc3\xa9", 2, 100, "\xc3\xa9",
	 "ff51597d00fcc22a"},
	{"3-byte UTF-8 over 200", 'a', 198, "\xe2\x82\xac", 3, 100, "",
	 "a20651751c3260ed"},
	{"4-byte UTF-8 over 200", 'a', 197, "\xf0\x9f\x98\x80", 4, 100, "",
	 "9c642e8147f03f63"},
	{"4-byte UTF-8 ends at 200", 'a', 196, "\xf0\x9f\x98\x80", 4, 100,
	 "\xf0\x9f\x98\x80", "d8cd46c89976ccd0"},
	{"invalid UTF-8 cut bytewise", 'a', 199, "\xff\xff", 2, 100, "\xff",
	 "bfa675628fbe2220"},
	{"surrogate is not UTF-8", 'a', 198, "\xed\xa0\x80", 3, 100, "\xed\xa0",
	 "f586acfd22bce384"},
};

static void test_short(void)
{
	char out[NAMES_MAX + 1];

	for (size_t i = 0; i < sizeof(short_cases) / sizeof(short_cases[0]);
	     i++) {
		int r = names_escape(short_cases[i].in, short_cases[i].len,
				     out);

		is_int(r, strlen(short_cases[i].want), "short %zu: length", i);
		is_str(cs(out), short_cases[i].want, "short %zu: %s", i,
		       short_cases[i].want);
	}
}

static void test_empty(void)
{
	char out[NAMES_MAX + 1];

	memset(out, 'Z', sizeof(out));
	is_int(names_escape("", 0, out), -EINVAL, "empty value: -EINVAL");
	ok(out[0] == 'Z' && out[NAMES_MAX] == 'Z', "empty value: untouched");
	is_int(names_escape("abc", 0, out), -EINVAL, "zero length: -EINVAL");
}

static void test_boundaries(void)
{
	char in[1024], out[NAMES_MAX + 1], want[NAMES_MAX + 1];
	int r;

	/* 255 escaped bytes: kept as they are. */
	memset(in, 'a', 255);
	r = names_escape(in, 255, out);
	is_int(r, 255, "255 plain bytes: kept");
	is_mem(out, (size_t)r, in, 255, "255 plain bytes: same bytes");
	ok(out[255] == '\0', "255 plain bytes: NUL-terminated");

	memset(in, '/', 85);
	r = names_escape(in, 85, out);
	is_int(r, 255, "85 slashes = 255 escaped bytes: kept");
	ok(r == 255 && memcmp(out, "%2F%2F%2F", 9) == 0 &&
		   memcmp(out + 252, "%2F", 3) == 0,
	   "85 slashes: all escaped");

	memset(in, '%', 85);
	r = names_escape(in, 85, out);
	is_int(r, 255, "85 percents: kept");

	memset(in, 'a', 252);
	in[252] = '/';
	r = names_escape(in, 253, out);
	is_int(r, 255, "252 bytes + one escape = 255: kept");
	is_mem(out + 252, 3, "%2F", 3, "... ending in %%2F");

	/* 256 and more: shortened. */
	memset(in, '/', 86);
	r = names_escape(in, 86, out);
	memset(want, 0, sizeof(want));
	for (int k = 0; k < 66; k++)
		memcpy(want + 3 * k, "%2F", 3);
	strcat(want, "~9f5063dbb96e2eb2");
	is_int(r, 198 + 17, "86 slashes: shortened at 198 bytes");
	is_str(cs(out), cs(want),
	       "86 slashes: 66 whole escapes, then the hash");

	memset(in, 'a', 253);
	in[253] = '\x01';
	r = names_escape(in, 254, out);
	is_int(r, 217, "253 bytes + one escape = 256: shortened");
}

static void test_long(void)
{
	char in[1024], out[NAMES_MAX + 1], want[NAMES_MAX + 1];

	for (size_t i = 0; i < sizeof(long_cases) / sizeof(long_cases[0]);
	     i++) {
		size_t n = 0, keep;
		int r;

		memset(in, long_cases[i].pre, long_cases[i].pre_n);
		n += long_cases[i].pre_n;
		memcpy(in + n, long_cases[i].mid, long_cases[i].mid_len);
		n += long_cases[i].mid_len;
		memset(in + n, 'b', long_cases[i].post_n);
		n += long_cases[i].post_n;

		keep = long_cases[i].pre_n < NAMES_KEEP ? long_cases[i].pre_n
							: NAMES_KEEP;
		memset(want, long_cases[i].pre, keep);
		want[keep] = '\0';
		strcat(want, long_cases[i].want_mid);
		strcat(want, "~");
		strcat(want, long_cases[i].hash);

		r = names_escape(in, n, out);
		is_int(r, strlen(want), "%s: length", long_cases[i].what);
		is_str(cs(out), cs(want), "%s: name", long_cases[i].what);
		ok(r >= 0 && (size_t)r - 17 <= NAMES_KEEP,
		   "%s: prefix at most %d bytes", long_cases[i].what,
		   NAMES_KEEP);
	}
}

static void test_unique(void)
{
	char a[400], b[400], na[NAMES_MAX + 1], nb[NAMES_MAX + 1];
	int ra, rb;

	/* Differing only after byte 200: same prefix, different hash. */
	memset(a, 'q', sizeof(a));
	memcpy(b, a, sizeof(b));
	b[399] = 'r';
	ra = names_escape(a, sizeof(a), na);
	rb = names_escape(b, sizeof(b), nb);
	is_int(ra, 217, "unique: a shortened");
	is_int(rb, 217, "unique: b shortened");
	ok(memcmp(na, nb, 200) == 0, "unique: same 200-byte prefix");
	ok(strcmp(na, nb) != 0, "unique: different names");

	b[399] = 'q';
	b[250] = 'r';
	rb = names_escape(b, sizeof(b), nb);
	ok(rb == 217 && strcmp(na, nb) != 0, "unique: change at byte 250");

	/* Same value, same name (stable). */
	rb = names_escape(a, sizeof(a), nb);
	is_str(cs(nb), cs(na), "stable: same value, same name");

	/* Lengths differing only past the cut. */
	ra = names_escape(a, 300, na);
	rb = names_escape(a, 301, nb);
	ok(ra == rb && strcmp(na, nb) != 0, "unique: 300 vs 301 bytes");
}

static void test_hash(void)
{
	static const struct {
		const char *in;
		size_t len;
		uint64_t want;
	} cases[] = {
		{S(""), 0xf52a15e9a9b5e89bULL},
		{S("a"), 0x02c0bdbf481420f8ULL},
		{S("team/payments"), 0xb38de0112676b332ULL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t h = names_hash64(cases[i].in, cases[i].len);

		ok(h == cases[i].want, "hash64(\"%s\") = %016llx", cases[i].in,
		   (unsigned long long)cases[i].want);
		ok(names_hash64_more(NAMES_HASH_SEED, cases[i].in,
				     cases[i].len) == h,
		   "hash64_more(seed, \"%s\") = hash64", cases[i].in);
	}
	ok(names_hash64_more(names_hash64("a", 1), "b", 1) ==
		   0x9c6d59a3e76edcc9ULL,
	   "hash64_more(hash64(a), b) = 9c6d59a3e76edcc9");
	ok(names_hash64_more(names_hash64("a", 1), "b", 1) !=
		   names_hash64("ab", 2),
	   "chaining is not concatenation");
	ok(names_hash64("ab", 2) != names_hash64("ba", 2), "order matters");
}

/* Whatever the bytes, a name is a valid, bounded file name. */
static void test_invariants(void)
{
	char in[600], out[NAMES_MAX + 1];
	uint32_t x = 12345;
	int bad = 0;

	for (int t = 0; t < 2000; t++) {
		size_t n = 1 + t % 599;
		int r;

		for (size_t i = 0; i < n; i++) {
			x = x * 1103515245 + 12345;
			in[i] = (char)(x >> 16);
		}
		r = names_escape(in, n, out);
		if (r < 1 || r > NAMES_MAX || strlen(out) != (size_t)r ||
		    memchr(out, '/', (size_t)r) || !strcmp(out, ".") ||
		    !strcmp(out, ".."))
			bad++;
		for (int i = 0; i < r; i++)
			if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
				bad++;
	}
	is_int(bad, 0, "2000 random values: names valid and bounded");
}

int main(void)
{
	test_short();
	test_empty();
	test_boundaries();
	test_long();
	test_unique();
	test_hash();
	test_invariants();
	return tap_done();
}
