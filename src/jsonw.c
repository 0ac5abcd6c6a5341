/* jsonw: strings from anywhere as JSON string literals.
 *
 * Owns: the escaping rules and the cut of a string that does not fit its
 * budget. Leaves to others: where a UTF-8 sequence ends (utf8.c), the rest
 * of the JSON around the string (the writers of status and actions.log).
 */
#include <string.h>

#include "jsonw.h"
#include "utf8.h"

size_t jsonw_str(char *buf, const char *s, size_t n, size_t budget)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t len = 0, used = 2, i = 0;

	if (buf)
		buf[len] = '"';
	len++;
	while (i < n) {
		char unit[8];
		size_t k = utf8_seq(s + i, n - i), u = 0;

		if (k == 0) {
			memcpy(unit, "\xef\xbf\xbd", 3); /* U+FFFD */
			u = 3;
			k = 1;
		} else if (p[i] == '"' || p[i] == '\\') {
			unit[u++] = '\\';
			unit[u++] = (char)p[i];
		} else if (p[i] < 0x20 || p[i] == 0x7f) {
			memcpy(unit, "\\u00", 4);
			unit[4] = hex[p[i] >> 4];
			unit[5] = hex[p[i] & 15];
			u = 6;
		} else {
			memcpy(unit, p + i, k);
			u = k;
		}
		/* room is kept for "..." until the last unit */
		if (used + u + 3 > budget && (i + k < n || used + u > budget)) {
			if (buf)
				memcpy(buf + len, "...", 3);
			len += 3;
			break;
		}
		if (buf)
			memcpy(buf + len, unit, u);
		len += u;
		used += u;
		i += k;
	}
	if (buf)
		buf[len] = '"';
	return len + 1;
}
