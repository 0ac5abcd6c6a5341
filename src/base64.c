/* base64: decoding base64 text (RFC 4648).
 *
 * Owns: both alphabets, padding, and what counts as base64. Leaves to
 * others: where the text comes from (a JSON string, decoded by jsontext.c)
 * and what the bytes become (a file of a message).
 */
#include <stdint.h>

#include "base64.h"

static int value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

bool base64_decode(const char *s, size_t n, char *out, size_t *ret_len)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0, data = 0, pad = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int v;

		if (c == '\r' || c == '\n')
			continue;
		if (c == '=') {
			pad++;
			continue;
		}
		v = value(c);
		if (v < 0 || pad)
			return false;
		data++;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (out)
				out[o] = (char)((acc >> bits) & 0xff);
			o++;
			acc &= (1u << bits) - 1;
		}
	}
	if (data % 4 == 1 || pad > 2 || (pad && (data + pad) % 4))
		return false;
	*ret_len = o;
	return true;
}
