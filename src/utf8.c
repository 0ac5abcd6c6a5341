/* utf8: where a well-formed UTF-8 sequence ends.
 *
 * Owns: the decoding rules (no overlong forms, no surrogates, nothing above
 * U+10FFFF). Leaves to others: what to do with bytes that are not UTF-8
 * (escape them in a name, replace them by U+FFFD in JSON, refuse a page).
 */
#include "utf8.h"

size_t utf8_seq(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned char lo = 0x80, hi = 0xbf; /* bounds of the second byte */
	size_t k;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		k = 2;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		k = 3;
		if (p[0] == 0xe0)
			lo = 0xa0; /* no overlong forms */
		else if (p[0] == 0xed)
			hi = 0x9f; /* no surrogates */
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		k = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f; /* nothing above U+10FFFF */
	} else {
		return 0;
	}
	if (n < k || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < k; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return k;
}

bool utf8_valid(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq(s + i, n - i);

		if (!k)
			return false;
		i += k;
	}
	return true;
}
