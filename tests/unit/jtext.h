/* jtext.h: JSON in test tables, written with ' for " to stay readable. */
#ifndef DLQFS_TEST_JTEXT_H
#define DLQFS_TEST_JTEXT_H

#include <stdlib.h>
#include <string.h>

/* Returns @s with every ' turned into ", in one of a few static buffers
 * (the last four results stay valid). */
static inline const char *J(const char *s)
{
	static char bufs[4][8192];
	static int next;
	char *b = bufs[next++ % 4];
	size_t n = strlen(s);

	if (n >= sizeof(bufs[0]))
		abort();
	for (size_t i = 0; i <= n; i++)
		b[i] = s[i] == '\'' ? '"' : s[i];
	return b;
}

#endif
