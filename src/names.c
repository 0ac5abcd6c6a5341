/* names: values to file names, and the hash that keeps long names unique.
 *
 * Owns the escaping rules of DESIGN.md section 1 and names_hash64(), which
 * shortened names and (elsewhere) inode numbers are built on. It only
 * turns bytes into a name: which values get a name, and what a name points
 * to, belong to the snapshot and fs modules. Pure functions, libc only, no
 * allocation.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "names.h"
#include "utf8.h"

#define FNV64_PRIME 0x100000001b3ULL

static uint64_t fnv1a64(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= FNV64_PRIME;
	}
	return h;
}

/* splitmix64's finalizer: FNV-1a alone mixes its last bytes poorly. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

uint64_t names_hash64(const void *data, size_t len)
{
	return mix64(fnv1a64(NAMES_HASH_SEED, data, len));
}

uint64_t names_hash64_more(uint64_t h, const void *data, size_t len)
{
	return mix64(fnv1a64(h, data, len));
}

static bool needs_escape(unsigned char c)
{
	return c == '%' || c == '/' || c < 0x20 || c == 0x7f;
}

/* Length of the well-formed UTF-8 sequence starting at @p, or 1 when
 * there is none: a stray byte is a unit of its own. */
static size_t utf8_unit(const unsigned char *p, size_t avail)
{
	size_t k = utf8_seq((const char *)p, avail);

	return k ? k : 1;
}

static int escape(const char *value, size_t len, uint32_t salt,
		  char ret[NAMES_MAX + 1]);

int names_escape(const char *value, size_t len, char ret[NAMES_MAX + 1])
{
	return escape(value, len, 0, ret);
}

int names_escape_salted(const char *value, size_t len, uint32_t salt,
			char ret[NAMES_MAX + 1])
{
	return escape(value, len, salt ? salt : 1, ret);
}

/* salt 0: the contract's name; otherwise always the shortened form, with
 * @salt mixed into the hash. */
static int escape(const char *value, size_t len, uint32_t salt,
		  char ret[NAMES_MAX + 1])
{
	static const char hex[] = "0123456789ABCDEF";
	static const char lhex[] = "0123456789abcdef";
	const unsigned char *v = (const unsigned char *)value;
	char buf[NAMES_MAX + 1];
	size_t out = 0;	 /* escaped bytes in buf */
	size_t keep = 0; /* last unit boundary at or below NAMES_KEEP */
	size_t i = 0;

	if (!value || len == 0)
		return -EINVAL;
	if (!salt && (len == 1 || len == 2) && memcmp(value, "..", len) == 0) {
		memcpy(ret, len == 1 ? "%2E" : "%2E%2E", 3 * len + 1);
		return (int)(3 * len);
	}

	/* Escape unit by unit (a %XX, a whole UTF-8 sequence, or one byte),
	 * so that a cut at a unit boundary never splits one. */
	while (i < len) {
		bool escape = needs_escape(v[i]);
		size_t in, esc;

		if (escape) {
			in = 1;
			esc = 3;
		} else {
			in = v[i] < 0x80 ? 1 : utf8_unit(v + i, len - i);
			esc = in;
		}
		if (out + esc > NAMES_MAX)
			break;
		if (escape) {
			buf[out] = '%';
			buf[out + 1] = hex[v[i] >> 4];
			buf[out + 2] = hex[v[i] & 0xf];
		} else {
			memcpy(buf + out, v + i, in);
		}
		out += esc;
		i += in;
		if (out <= NAMES_KEEP)
			keep = out;
	}

	if (i < len || salt) {
		/* Too long: a readable prefix, then the hash of the whole
		 * value so that names sharing that prefix stay apart. */
		uint64_t h = names_hash64(value, len);

		if (salt)
			h = names_hash64_more(h, &salt, sizeof(salt));

		memcpy(ret, buf, keep);
		ret[keep] = '~';
		for (int k = 0; k < 16; k++)
			ret[keep + 1 + k] = lhex[(h >> (60 - 4 * k)) & 0xf];
		ret[keep + 17] = '\0';
		return (int)(keep + 17);
	}
	memcpy(ret, buf, out);
	ret[out] = '\0';
	return (int)out;
}
