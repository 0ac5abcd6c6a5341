/* cache: the served snapshot on disk, so that a mount starts from what
 * was last seen.
 *
 * One file per (API URL, scope, token): its name is an HMAC-SHA256 of
 * the URL and the scope keyed by the token, so the token is never written
 * and a different token or scope never finds another's cache. The file is
 * versioned and checksummed, and replaced atomically (a new file, fsync,
 * rename, fsync of the directory): a daemon killed while writing leaves
 * the previous cache whole. A cache that is corrupt, truncated or of
 * another version is set aside (renamed *.bad) with one warning, never
 * served. The directory is 0700 and the files 0600.
 *
 * The walker saves after every good walk (cache_save() skips a snapshot
 * it already wrote); main loads at mount (cache_load()). A loaded
 * snapshot's texts stay in the file, mapped: they are paged in when read,
 * and the kernel may drop them again, so they are not the daemon's heap.
 */
#ifndef DLQFS_CACHE_H
#define DLQFS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "snapshot.h"
#include "status.h"

#define CACHE_VERSION 2

/* What a cache says besides its runs. */
struct cache_meta {
	int64_t taken_ms;	/* end of the walk it holds (wall clock, ms) */
	int64_t last_full_ms;	/* start of the last good full walk, or -1 */
	uint64_t payload_bytes; /* API bytes behind it */
};

struct cache;

/* The directory a cache goes in by default: $XDG_CACHE_HOME/dlqfs, else
 * ~/.cache/dlqfs. A new string, or NULL (no home: no default). */
char *cache_default_dir(void);

/* The cache of (@url, @scope, @token) in @dir, which is created (0700)
 * when missing. @st (may be NULL, borrowed) receives the cache's path,
 * state, size and age. Returns 0 and a new cache in @ret; -EPERM when
 * @dir is reachable by other users (a new string saying so in @ret_why),
 * or -errno when it cannot be created (@ret_why too). */
int cache_open(const char *dir, const char *url, const char *scope,
	       const char *token, struct status *st, struct cache **ret,
	       char **ret_why);
void cache_free(struct cache *c);

/* The file's path (borrowed). */
const char *cache_path(const struct cache *c);

/* Loads the cache: returns 0, a new snapshot (generation 0) in @ret and
 * its meta in @ret_meta; -ENOENT when there is none; -EINVAL when it was
 * set aside (corrupt, truncated, another version, another identity: said
 * once on stderr); -ENOMEM. */
int cache_load(struct cache *c, struct snapshot **ret,
	       struct cache_meta *ret_meta);

/* Writes @s with @meta, atomically, unless this cache already holds the
 * same runs and @meta is not newer in its last full walk. Returns 1 when
 * written, 0 when skipped, or -errno (the previous file stays; said on
 * stderr once until a write succeeds again, and in status). */
int cache_save(struct cache *c, const struct snapshot *s,
	       const struct cache_meta *meta);

/* What cache_decode() checks beside the structure. */
#define CACHE_CHECK_INDEX 1 /* the header's and the index's checksums */
#define CACHE_CHECK_TEXTS 2 /* the texts' checksum */

/* Decodes a whole cache file of @n bytes at @p (8-aligned), for the
 * loader and the fuzz target: checks the header, the identity (when
 * @identity is not NULL, SHA256_LEN bytes), the checksums @flags asks
 * for, and every record. With @store NULL the messages are copies (the
 * NUL after each text checked); else they point into @p, which @store
 * keeps (cache_load(): the texts are checked apart). Returns 0 and a new
 * snapshot in @ret; -EINVAL with a short reason in *@ret_why (static
 * text); -ENOMEM. */
int cache_decode(const char *p, size_t n, const unsigned char *identity,
		 unsigned flags, struct message_store *store,
		 struct snapshot **ret, struct cache_meta *ret_meta,
		 const char **ret_why);

#endif
