/* base64: the one base64 decoder.
 *
 * bodyBase64 and responseBodyBase64 come as base64 in any of the forms
 * senders write: standard or URL-safe alphabet, with or without padding,
 * wrapped in lines.
 */
#ifndef DLQFS_BASE64_H
#define DLQFS_BASE64_H

#include <stdbool.h>
#include <stddef.h>

/* Decodes the @n bytes of base64 at @s (standard or URL-safe alphabet,
 * padding optional, CR and LF ignored) into @out, or only measures when
 * @out is NULL; the decoded length in *@ret_len (at most 3 * @n / 4).
 * Returns false when the text is not base64 (@ret_len untouched). */
bool base64_decode(const char *s, size_t n, char *out, size_t *ret_len);

#endif
