/* errtext: a one-line error text into the caller's buffer, the way every
 * module that explains a refusal writes it. */
#ifndef DLQFS_ERRTEXT_H
#define DLQFS_ERRTEXT_H

#include <stddef.h>

/* Formats into @err (@errlen bytes, cut to fit; nothing when @err is NULL
 * or @errlen 0) and returns @r, so that a refusal is one statement:
 *     return errtext(err, errlen, -EINVAL, "line %zu: ...", n); */
__attribute__((format(printf, 4, 5))) int errtext(char *err, size_t errlen,
						  int r, const char *fmt, ...);

#endif
