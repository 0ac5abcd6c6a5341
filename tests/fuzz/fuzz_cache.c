/* fuzz_cache: the cache loader on any bytes. cache_decode() is run twice,
 * with the checksum checked (what a mount does) and without it (so that
 * the fuzzer reaches the records behind a checksum it cannot forge).
 * Beyond not crashing or leaking: a file it accepts gives a snapshot
 * whose runs have usable ids and whose every file renders within the
 * size it says: exactly (file_of() checks) when the checksum held, or
 * else -EIO at worst (a forged record may lie about a size). A file it
 * refuses says why. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "../unit/msgfile.h"
#include "fuzz.h"

static void run(const char *p, size_t n, bool check_sum)
{
	struct snapshot *s = NULL;
	struct cache_meta meta;
	const char *why = NULL;
	int r = cache_decode(p, n, NULL,
			     check_sum ? CACHE_CHECK_INDEX | CACHE_CHECK_TEXTS
				       : 0,
			     NULL, &s, &meta, &why);

	if (r < 0) {
		CHECK(r == -EINVAL || r == -ENOMEM);
		CHECK(s == NULL && why && *why);
		return;
	}
	CHECK(s);
	for (uint32_t i = 0; i < s->nruns; i++) {
		const struct message *m = s->runs[i].msg;

		CHECK(m->id.len > 0 && strlen(m->id.data) == m->id.len);
		for (int f = 0; f < MESSAGE_NFILES; f++) {
			size_t len = message_file_size(m, f);
			char *buf;

			if (check_sum) {
				file_of(m, f);
				continue;
			}
			if (!message_file_exists(m, f) || len > (64u << 20))
				continue;
			buf = malloc(len ? len : 1); /* exactly: ASan sees */
			CHECK(buf);
			r = message_file_render(m, f, buf);
			CHECK(r == 0 || r == -EIO || r == -ENOMEM);
			free(buf);
		}
	}
	snapshot_unref(s);
	files_release();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the loader reads a mapping, which is page-aligned */
	size_t cap = size ? (size + 7) & ~(size_t)7 : 8;
	char *p = aligned_alloc(8, cap);

	CHECK(p);
	if (size)
		memcpy(p, data, size);
	run(p, size, true);
	run(p, size, false);
	free(p);
	return 0;
}
