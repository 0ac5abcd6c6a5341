/* fuzz_names: names_escape() on any bytes. Beyond not crashing, every name
 * must be a valid file name of at most NAMES_MAX bytes, and either unescape
 * back to the value or be a prefix of its escaped form plus the hash. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "fuzz.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Unescapes @n bytes of @name into @out; returns the length, or -1 when an
 * escape is malformed. */
static long unescape(const char *name, size_t n, unsigned char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (name[i] != '%') {
			out[o++] = (unsigned char)name[i];
			continue;
		}
		if (i + 2 >= n)
			return -1;
		if (hexval(name[i + 1]) < 0 || hexval(name[i + 2]) < 0)
			return -1;
		out[o++] = (unsigned char)(hexval(name[i + 1]) * 16 +
					   hexval(name[i + 2]));
		i += 2;
	}
	return (long)o;
}

static bool needs_escape(uint8_t c)
{
	return c == '%' || c == '/' || c < 0x20 || c == 0x7f;
}

/* A unit of the value: an escaped byte, a well-formed UTF-8 sequence
 * (decoded and range-checked, unlike names.c's table of lead bytes), or
 * any other single byte. */
static size_t unit(const uint8_t *p, size_t avail)
{
	uint32_t cp;
	size_t n;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return 1;
	}
	if (avail < n)
		return 1;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 1;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
	    (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 1;
	return n;
}

/* @raw_cut bytes of the value, @esc_cut bytes of the name, end at a unit
 * boundary, and the next unit would not fit in NAMES_KEEP. */
static bool cut_ok(const uint8_t *data, size_t size, size_t raw_cut,
		   size_t esc_cut)
{
	size_t i = 0, e = 0;

	while (i < raw_cut) {
		size_t u = needs_escape(data[i]) ? 1 : unit(data + i, size - i);

		e += needs_escape(data[i]) ? 3 : u;
		i += u;
	}
	if (i != raw_cut || e != esc_cut || e > NAMES_KEEP)
		return false;
	if (i < size) {
		size_t u = needs_escape(data[i]) ? 3 : unit(data + i, size - i);

		return e + u > NAMES_KEEP;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[NAMES_MAX + 1], again[NAMES_MAX + 1];
	unsigned char back[NAMES_MAX + 1];
	const char *value = (const char *)data;
	size_t escaped = 0;
	int r;

	memset(name, 'Z', sizeof(name));
	r = names_escape(value, size, name);
	if (size == 0) {
		CHECK(r == -EINVAL);
		CHECK(name[0] == 'Z');
		return 0;
	}
	CHECK(r >= 1 && r <= NAMES_MAX);
	CHECK(strlen(name) == (size_t)r);
	CHECK(strcmp(name, ".") != 0 && strcmp(name, "..") != 0);
	for (int i = 0; i < r; i++) {
		unsigned char c = (unsigned char)name[i];

		CHECK(c != '/' && c >= 0x20 && c != 0x7f);
	}
	CHECK(names_escape(value, size, again) == r);
	CHECK(memcmp(name, again, (size_t)r + 1) == 0);

	for (size_t i = 0; i < size; i++)
		escaped += needs_escape(data[i]) ? 3 : 1;
	if (escaped <= NAMES_MAX) {
		long n = unescape(name, (size_t)r, back);

		CHECK(n == (long)size);
		if (size <= 2 && memcmp(value, "..", size) == 0)
			CHECK((size_t)r == 3 * size);
		else
			CHECK((size_t)r == escaped);
		CHECK(memcmp(back, data, size) == 0);
	} else {
		uint64_t h = names_hash64(data, size);
		char hex[17];
		long n;

		CHECK(r >= 17 && r - 17 <= NAMES_KEEP &&
		      r - 17 >= NAMES_KEEP - 3);
		CHECK(name[r - 17] == '~');
		snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)h);
		CHECK(memcmp(name + r - 16, hex, 16) == 0);
		n = unescape(name, (size_t)r - 17, back);
		CHECK(n > 0 && (size_t)n <= size);
		CHECK(memcmp(back, data, (size_t)n) == 0);
		/* The cut is the last unit boundary within NAMES_KEEP. */
		CHECK(cut_ok(data, size, (size_t)n, (size_t)r - 17));
	}
	return 0;
}
