/* msgfile: a message's files as byte strings, for the tests. file_of()
 * renders a file into one of a ring of buffers (data NULL when the file
 * does not exist), with a NUL after it, and checks on the way that it
 * renders to its size, and to the same bytes twice; it aborts otherwise.
 * A result stays valid for the next FILE_OF_RING - 1 calls;
 * files_release() frees them all. */
#ifndef DLQFS_TEST_MSGFILE_H
#define DLQFS_TEST_MSGFILE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"

#define FILE_OF_RING 64

static struct {
	struct message_bytes b;
	char *buf;
} file_of_ring[FILE_OF_RING];
static unsigned file_of_next;

static const struct message_bytes *file_of(const struct message *m, int f)
{
	__typeof__(&file_of_ring[0]) slot =
		&file_of_ring[file_of_next++ % FILE_OF_RING];
	size_t n = message_file_size(m, f);
	char *a, *b;

	free(slot->buf);
	memset(slot, 0, sizeof(*slot));
	if (!message_file_exists(m, f)) {
		if (n != 0 || message_file_render(m, f, NULL) != -ENOENT) {
			fprintf(stderr, "absent file %d: size %zu\n", f, n);
			abort();
		}
		return &slot->b;
	}
	a = malloc(n + 1);
	b = malloc(n ? n : 1); /* exactly: the sanitizer sees any overrun */
	if (!a || !b)
		abort();
	if (message_file_render(m, f, a) != 0 ||
	    message_file_render(m, f, b) != 0 || memcmp(a, b, n) != 0) {
		fprintf(stderr, "file %d does not render as measured\n", f);
		abort();
	}
	free(b);
	a[n] = '\0';
	slot->buf = a;
	slot->b.data = a;
	slot->b.len = n;
	return &slot->b;
}

static void files_release(void)
{
	for (size_t i = 0; i < FILE_OF_RING; i++) {
		free(file_of_ring[i].buf);
		memset(&file_of_ring[i], 0, sizeof(file_of_ring[i]));
	}
}

#endif
