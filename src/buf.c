/* buf: a byte buffer that grows.
 *
 * Owns: the growth policy (at least double, within a caller's limit) and
 * the NUL kept after the bytes. Leaves to others: what the bytes mean.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define BUF_FIRST 256 /* first allocation */

int buf_reserve(struct buf *b, size_t more, size_t limit)
{
	size_t need, cap;
	char *p;

	if (more > SIZE_MAX - 1 - b->len)
		return -E2BIG;
	need = b->len + more + 1;
	if (limit && need > limit + 1)
		return -E2BIG;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : BUF_FIRST;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (limit && cap > limit + 1)
		cap = limit + 1;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_add(struct buf *b, const void *p, size_t n)
{
	int r = buf_reserve(b, n, 0);

	if (r < 0)
		return r == -E2BIG ? -ENOMEM : r;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	r = buf_reserve(b, (size_t)n, 0);
	if (r < 0)
		return r == -E2BIG ? -ENOMEM : r;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void buf_release(struct buf *b)
{
	free(b->data);
	*b = (struct buf)BUF_INIT;
}

char *buf_steal(struct buf *b)
{
	char *s = b->data;

	if (!s)
		s = calloc(1, 1);
	*b = (struct buf)BUF_INIT;
	return s;
}
