/* handle: an open file or directory of the mount, and the snapshot it
 * reads from.
 *
 * Each handle keeps the snapshot it was opened on, so an open file and a
 * listing stay consistent across swaps; the handles are listed in struct
 * fs (under fs->lock), whose kept snapshots they may also read from. Part
 * of fs: only fs.c uses it, and nothing here speaks FUSE.
 */
#ifndef DLQFS_HANDLE_H
#define DLQFS_HANDLE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "action.h"
#include "tree.h"

struct fs;
struct snapshot;

/* A run file's bytes, rendered at the first read of a handle (a warm
 * open, its pages in the kernel's cache, never reads and costs nothing).
 * Refcounted: each read holds a reference until its reply is sent, since
 * RELEASE may free the handle meanwhile. */
struct handle_bytes {
	atomic_uint refs;
	size_t len;
	char data[];
};

/* An open file or directory. */
struct handle {
	struct handle *prev, *next; /* fs->handles, under fs->lock */
	struct snapshot *s;	    /* the snapshot it was opened on */
	struct tree_node n;
	char *text; /* .dlqfs/status: the text at open */
	size_t len;
	/* a run file: its bytes once read (set once, by the first read to
	 * finish rendering; reads of a handle may run side by side) */
	_Atomic(struct handle_bytes *) file;
	int gone; /* directory: not in the served snapshot any more */
	struct action_input input; /* an action control file: its lines */
};

/* A new handle on node @n of @s, listed in @fs (taking the reference to
 * @s). NULL when out of memory (the reference is dropped then). */
struct handle *handle_new(struct fs *fs, struct snapshot *s,
			  const struct tree_node *n);

/* Unlists and frees @h. x_free(NULL) is a no-op. */
void handle_free(struct fs *fs, struct handle *h);

/* The bytes of run file @h, rendered by the first read: a new reference
 * in @ret (handle_bytes_put()). Returns 0, -ENOMEM or -EIO. */
int handle_bytes(struct handle *h, struct handle_bytes **ret);

/* Drops a reference; NULL is a no-op. */
void handle_bytes_put(struct handle_bytes *b);

/* Resolves @ino in the served snapshot, else in one that @fs keeps or an
 * open handle still pins (an open file whose run is gone, or an older
 * message.json: fstat() on an open file must keep working). Returns a
 * new reference, with the node in @ret, or NULL. Takes fs->lock. */
struct snapshot *handle_resolve_any(struct fs *fs, uint64_t ino,
				    struct tree_node *ret);

/* Binds directory handle @h to the snapshot to list @ino from @off: at
 * offset 0 (opendir, rewinddir) the served one (an empty listing, with
 * h->gone set, when the directory is gone); else one with the listing
 * the cookie came from. Returns whether that is the served snapshot;
 * when it is not (a listing that began before a swap), its entries must
 * not create kernel dentries, which would bring back removed names.
 * Takes fs->lock. */
int handle_rebind(struct fs *fs, struct handle *h, uint64_t ino, off_t off);

/* The readdir cookie after entry @i of @h's listing (0 and 1 are "." and
 * ".."), and the entry a cookie resumes at (0 for offset 0). A cookie
 * holds the listing's identity (tree_dir_tag()) above the position: the
 * kernel's readdir cache (one per directory, shared by every handle, and
 * kept while the listing does not change) hands a handle cookies of
 * whatever listing filled it, perhaps in a snapshot long replaced; the
 * cookie still names the listing, which any snapshot that lists the same
 * entries (the served one, while the directory is unchanged) goes on
 * with. */
off_t handle_cookie(const struct handle *h, size_t i);
size_t handle_cookie_index(off_t off);

#endif
