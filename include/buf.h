/* buf: the one growable byte buffer.
 *
 * A struct buf is embedded where it is used (zero-initialize it, or
 * BUF_INIT) and released with buf_release(). Its bytes move as it grows:
 * keep offsets, not pointers, across calls that add. After buf_add(),
 * buf_addf() and buf_addc() the bytes are followed by a NUL, not counted
 * in ->len, so a buffer of text is a C string.
 */
#ifndef DLQFS_BUF_H
#define DLQFS_BUF_H

#include <stddef.h>

struct buf {
	char *data; /* NULL until the first byte */
	size_t len, cap;
};

#define BUF_INIT                                                               \
	{                                                                      \
		NULL, 0, 0                                                     \
	}

/* Makes room for @more bytes after ->len and a NUL after them, growing the
 * capacity at least twofold but never beyond @limit + 1 bytes (0: no
 * limit). Returns 0; -E2BIG when ->len + @more is over @limit (or would
 * overflow); -ENOMEM. The buffer is untouched on failure. */
int buf_reserve(struct buf *b, size_t more, size_t limit);

/* Appends @n bytes of @p (a NUL follows them). Returns 0 or -ENOMEM. */
int buf_add(struct buf *b, const void *p, size_t n);

/* Appends the text printf() makes of @fmt. Returns 0, -EINVAL (a format
 * error) or -ENOMEM. */
int buf_addf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Frees the bytes; the buffer is empty again, ready for reuse. */
void buf_release(struct buf *b);

/* Hands the bytes over (a new string, "" for an empty buffer; NULL when
 * out of memory) and leaves the buffer empty. */
char *buf_steal(struct buf *b);

#endif
