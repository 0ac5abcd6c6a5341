/* utf8: the one UTF-8 decoder (RFC 3629).
 *
 * Names, JSON text and the JSON dlqfs writes all need to know where a
 * well-formed sequence ends; they ask here.
 */
#ifndef DLQFS_UTF8_H
#define DLQFS_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* The length (1 to 4) of the well-formed UTF-8 sequence at the start of
 * the @n bytes at @p (n >= 1), or 0 when they do not start with one: a
 * stray continuation byte, an overlong form, a surrogate, a code point
 * above U+10FFFF, or a sequence cut short. */
size_t utf8_seq(const char *p, size_t n);

/* Whether all @n bytes at @s are well-formed UTF-8. */
bool utf8_valid(const char *s, size_t n);

#endif
