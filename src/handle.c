/* handle: open files and directories, and the snapshots they read.
 *
 * Owns: struct handle and its list in struct fs, a run file's bytes
 * rendered once per handle, finding a node in any snapshot still in use
 * (served, kept after a swap, pinned by a handle), and a directory
 * handle's listing across swaps: which snapshot a readdir cookie resumes
 * in, and the cookies themselves.
 * Leaves to others: FUSE and what a request answers (fs.c), when kept
 * snapshots go (notifier.c), what the tree looks like (tree).
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "fs_internal.h"
#include "handle.h"

struct handle *handle_new(struct fs *fs, struct snapshot *s,
			  const struct tree_node *n)
{
	struct handle *h = calloc(1, sizeof(*h));

	if (!h) {
		snapshot_unref(s);
		return NULL;
	}
	h->s = s;
	h->n = *n;
	pthread_mutex_lock(&fs->lock);
	h->next = fs->handles;
	if (h->next)
		h->next->prev = h;
	fs->handles = h;
	pthread_mutex_unlock(&fs->lock);
	return h;
}

void handle_free(struct fs *fs, struct handle *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&fs->lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		fs->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&fs->lock);
	snapshot_unref(h->s);
	handle_bytes_put(atomic_load_explicit(&h->file, memory_order_acquire));
	free(h->text);
	action_input_release(&h->input);
	free(h);
}

/* --- a run file's bytes ------------------------------------------------ */

void handle_bytes_put(struct handle_bytes *b)
{
	if (b &&
	    atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
		free(b);
}

int handle_bytes(struct handle *h, struct handle_bytes **ret)
{
	struct handle_bytes *b =
		atomic_load_explicit(&h->file, memory_order_acquire);
	struct handle_bytes *none = NULL;

	if (!b) {
		const struct message *m = tree_file(h->s, &h->n);
		size_t len = message_file_size(m, h->n.file);
		int r;

		b = malloc(sizeof(*b) + (len ? len : 1));
		if (!b)
			return -ENOMEM;
		atomic_init(&b->refs, 1); /* the handle's */
		b->len = len;
		r = message_file_render(m, h->n.file, b->data);
		if (r < 0) {
			free(b);
			return r == -ENOMEM ? r : -EIO;
		}
		if (!atomic_compare_exchange_strong_explicit(
			    &h->file, &none, b, memory_order_acq_rel,
			    memory_order_acquire)) {
			free(b); /* another read was first */
			b = none;
		}
	}
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	*ret = b;
	return 0;
}

/* --- snapshots in use -------------------------------------------------- */

struct snapshot *handle_resolve_any(struct fs *fs, uint64_t ino,
				    struct tree_node *ret)
{
	struct snapshot *s = NULL;

	pthread_mutex_lock(&fs->lock);
	if (tree_resolve(fs->current, ino, ret) == 0) {
		s = snapshot_ref(fs->current);
	} else {
		for (size_t i = fs->nretired; i-- > 0 && !s;)
			if (tree_resolve(fs->retired[i].s, ino, ret) == 0)
				s = snapshot_ref(fs->retired[i].s);
		for (struct handle *h = fs->handles; h && !s; h = h->next) {
			if (h->s != fs->current &&
			    tree_resolve(h->s, ino, ret) == 0) {
				s = snapshot_ref(h->s);
				break;
			}
		}
	}
	pthread_mutex_unlock(&fs->lock);
	return s;
}

/* --- listings and their cookies ---------------------------------------- */

#define COOKIE_SHIFT 32
#define COOKIE_TAG_MASK 0x3fffffffULL

static uint64_t listing_tag(const struct snapshot *s, const struct tree_node *n)
{
	return ((tree_dir_tag(s, n) * 0x9e3779b97f4a7c15ULL) >> 34) &
	       COOKIE_TAG_MASK;
}

static uint64_t cookie_tag(off_t off)
{
	return ((uint64_t)off >> COOKIE_SHIFT) & COOKIE_TAG_MASK;
}

size_t handle_cookie_index(off_t off)
{
	return off <= 0 ? 0 : (size_t)((uint64_t)off & 0xffffffffULL);
}

off_t handle_cookie(const struct handle *h, size_t i)
{
	uint64_t tag = h->gone ? 0 : listing_tag(h->s, &h->n);

	return (off_t)(tag << COOKIE_SHIFT | (i + 1));
}

/* Whether directory @ino of @s is the listing tagged @tag (then in @ret). */
static bool lists(const struct snapshot *s, uint64_t ino, uint64_t tag,
		  struct tree_node *ret)
{
	return tree_resolve(s, ino, ret) == 0 && tree_is_dir(ret) &&
	       listing_tag(s, ret) == tag;
}

/* A snapshot in which directory @ino is the listing tagged @tag: the
 * served one first (its entries may make kernel dentries), then @mine
 * (the handle's), the ones served before, those open handles pin. NULL if
 * none. Call with fs->lock held. */
static struct snapshot *snapshot_listing(struct fs *fs, uint64_t ino,
					 uint64_t tag, struct snapshot *mine,
					 struct tree_node *ret)
{
	if (lists(fs->current, ino, tag, ret))
		return fs->current;
	if (mine && lists(mine, ino, tag, ret))
		return mine;
	for (size_t i = fs->nretired; i-- > 0;)
		if (lists(fs->retired[i].s, ino, tag, ret))
			return fs->retired[i].s;
	for (struct handle *h = fs->handles; h; h = h->next)
		if (h->s != mine && lists(h->s, ino, tag, ret))
			return h->s;
	return NULL;
}

int handle_rebind(struct fs *fs, struct handle *h, uint64_t ino, off_t off)
{
	struct snapshot *old = NULL, *to = NULL;
	struct tree_node n;
	bool listed = false, ended = false;
	int current;

	pthread_mutex_lock(&fs->lock);
	if (off != 0 && cookie_tag(off) == 0) {
		/* the listing of a directory already gone ("." and ".."
		 * only, untagged): it stays gone, and ends there */
		ended = true;
		to = h->s;
	} else if (off != 0) {
		to = snapshot_listing(fs, ino, cookie_tag(off), h->s, &n);
		listed = to != NULL;
		if (!listed) {
			/* a cookie older than every snapshot kept: the
			 * handle's own listing is the best guess left, else
			 * the served one */
			atomic_fetch_add(&fs->st->lost_cookies, 1);
			to = h->s;
		}
	}
	if (!to) /* offset 0 (opendir, rewinddir), or no guess left */
		to = fs->current;
	if (ended) {
		h->gone = 1;
	} else if (listed) {
		h->gone = 0;
		h->n = n;
	} else if (to != h->s) {
		h->gone = tree_resolve(to, ino, &n) < 0 || !tree_is_dir(&n);
		if (!h->gone)
			h->n = n;
	}
	if (to != h->s) {
		old = h->s;
		h->s = snapshot_ref(to);
	}
	current = h->s == fs->current;
	pthread_mutex_unlock(&fs->lock);
	snapshot_unref(old);
	return current;
}
