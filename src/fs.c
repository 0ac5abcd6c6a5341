/* fs: FUSE low-level operations over the served snapshot.
 *
 * Owns: the served snapshot pointer and its swap, file and directory
 * handles (each keeps the snapshot it was opened on, so listings and open
 * files stay consistent across swaps), the requests that wait for the
 * first walk (kept and answered later from the notifier thread, so no
 * FUSE thread ever blocks), kernel cache parameters, and the notifier
 * thread that invalidates kernel caches after a swap.
 * Also owns the action log and the actor, and the tombstones: runs an
 * action removed, kept out of the snapshots a walk publishes until a walk
 * that started after the action says what is true.
 * Leaves to others: what the tree looks like (tree), the status text
 * (status), fetching (walker), parsing and running actions (action, actor).
 * Callbacks decode, call one function and reply exactly once.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include <fuse_lowlevel.h>

#include "action.h"
#include "action_log.h"
#include "actor.h"
#include "fs.h"
#include "tree.h"

enum op { OP_LOOKUP, OP_OPENDIR };

/* Snapshots kept after their swap (see struct fs): every one until the
 * kernel has been told it is gone, then for FS_RETIRED_GRACE seconds (a
 * listing read from the kernel's cache just before it was invalidated
 * goes on with its cookies; a lookup answered just before it was
 * replaced is used), the newest FS_RETIRED_MAX of those. */
#define FS_RETIRED_MAX 8
#define FS_RETIRED_GRACE 30.0

/* A request that came before the first walk finished. */
struct deferred {
	struct deferred *next;
	fuse_req_t req;
	enum op op;
	fuse_ino_t ino;
	struct fuse_file_info fi;
	char name[]; /* OP_LOOKUP */
};

struct fs {
	struct fs_config cfg;
	struct status *st;
	struct fuse_session *se;
	struct timespec mounted;

	pthread_mutex_t lock;	   /* protects the fields below */
	pthread_cond_t wake;	   /* notifier: something to do */
	struct snapshot *current;  /* served; never NULL */
	int first_done;		   /* the first walk has finished */
	int ready;		   /* a walked snapshot is served */
	struct deferred *deferred; /* waiting for the first walk */
	struct handle *handles;	   /* open files and directories */
	/* the snapshots served before, oldest first: the kernel may still
	 * use their inodes and readdir cookies until it has been told */
	struct retired *retired;
	size_t nretired, capretired;
	uint64_t served;   /* refresh requests answered by walks */
	uint64_t told;	   /* generation the kernel has been told of */
	struct held *held; /* write replies waiting for told */
	int stop;
	bool no_opendir; /* the kernel may open directories itself */

	pthread_t notifier;
	int notifier_running;

	struct action_log *log; /* .dlqfs/actions.log; NULL without actions */
	struct actor *actor;	/* NULL without actions */
	/* Serializes swaps (walker and actor) and protects the fields
	 * below; taken before fs->lock, never inside it. */
	pthread_mutex_t publish_lock;
	uint64_t gen; /* generation of the last snapshot published */
	struct tombstone *tombs;
	size_t ntombs;
};

/* A snapshot served before. */
struct retired {
	struct snapshot *s;
	double told_at; /* when the kernel was told of a newer one, or 0 */
};

/* The reply to a write, held until the kernel has been told of the
 * snapshot without the runs it removed. */
/* How an action's FUSE request is answered: a write (its size, or an
 * error), a close (an error or 0: both wait, like the write, until the
 * kernel has been told of the removed runs), or rmdir/unlink (at once:
 * they hold their directory's lock, which an invalidation needs). */
enum job_reply { JOB_WRITE, JOB_FLUSH, JOB_NOW };

struct held {
	struct held *next;
	fuse_req_t req;
	enum job_reply reply;
	size_t size;
	int result;
	uint64_t gen;
};

/* A run an action removed. A walk published after the action may have
 * listed it before the action (it is kept out); the one after that
 * started after the action, and is the truth (resumed runs may stay in
 * the DLQ: the API does not say). */
struct tombstone {
	char *id; /* raw dlqId */
	size_t len;
	int publishes; /* walks published since the action */
};

/* A run file's bytes, rendered at the first read of a handle (a warm
 * open, its pages in the kernel's cache, never reads and costs nothing).
 * Each read holds a reference until its reply is sent: RELEASE may free
 * the handle meanwhile (see fs_read()). */
struct rendered {
	atomic_uint refs;
	size_t len;
	char data[];
};

static void rendered_put(struct rendered *b)
{
	if (b &&
	    atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
		free(b);
}

/* An open file or directory. */
struct handle {
	struct handle *prev, *next; /* fs->handles, under fs->lock */
	struct snapshot *s;	    /* the snapshot it was opened on */
	struct tree_node n;
	char *text; /* .dlqfs/status: the text at open */
	size_t len;
	/* a run file: its bytes once read (set once, by the first read to
	 * finish rendering; reads of a handle may run side by side) */
	_Atomic(struct rendered *) file;
	int gone; /* directory: not in the served snapshot any more */
	/* an action control file: the part of the last line not yet ended
	 * by a newline, the option lines that came before the first id */
	char *pending, *prefix;
	size_t npending, nprefix;
	bool ids_started;
};

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct handle *handle_of(const struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

/* Registers a new handle on @s (taking that reference). NULL when out of
 * memory (the reference is dropped then). */
static struct handle *handle_new(struct fs *fs, struct snapshot *s,
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

static void handle_free(struct fs *fs, struct handle *h)
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
	rendered_put(atomic_load_explicit(&h->file, memory_order_acquire));
	free(h->text);
	free(h->pending);
	free(h->prefix);
	free(h);
}

/* Takes the served snapshot and resolves @ino in it. Returns 0 with a
 * reference in @ret_s; 1 when the request was kept for after the first
 * walk (then it owns @req); a negative errno. */
static int begin(struct fs *fs, fuse_req_t req, enum op op, fuse_ino_t ino,
		 const char *name, const struct fuse_file_info *fi,
		 struct snapshot **ret_s, struct tree_node *ret_n)
{
	struct tree_node n;
	int r;

	pthread_mutex_lock(&fs->lock);
	r = tree_resolve(fs->current, ino, &n);
	if (r < 0)
		goto out;
	if (tree_needs_runs(&n) && !fs->ready) {
		struct deferred *d;
		size_t nl = name ? strlen(name) + 1 : 1;

		if (fs->first_done) {
			r = -EIO; /* status says why */
			goto out;
		}
		d = calloc(1, sizeof(*d) + nl);
		if (!d) {
			r = -ENOMEM;
			goto out;
		}
		d->req = req;
		d->op = op;
		d->ino = ino;
		if (fi)
			d->fi = *fi;
		if (name)
			memcpy(d->name, name, nl);
		d->next = fs->deferred;
		fs->deferred = d;
		r = 1;
		goto out;
	}
	*ret_s = snapshot_ref(fs->current);
	*ret_n = n;
out:
	pthread_mutex_unlock(&fs->lock);
	return r;
}

static struct snapshot *acquire(struct fs *fs)
{
	struct snapshot *s;

	pthread_mutex_lock(&fs->lock);
	s = snapshot_ref(fs->current);
	pthread_mutex_unlock(&fs->lock);
	return s;
}

static int is_dir(const struct tree_node *n)
{
	return n->kind != TREE_FILE && n->kind != TREE_LINK &&
	       n->kind != TREE_STATUS && n->kind != TREE_REFRESH &&
	       n->kind != TREE_ACTION && n->kind != TREE_ACTLOG;
}

static void stat_node(struct fs *fs, const struct snapshot *s,
		      const struct tree_node *n, struct stat *st)
{
	struct tree_ctx ctx = {
		.uid = fs->cfg.uid,
		.gid = fs->cfg.gid,
		.mounted = fs->mounted,
	};
	struct timespec changed = fs->mounted;

	if (n->kind == TREE_STATUS) {
		char *text;
		size_t len;

		if (status_render(fs->st, &text, &len, &changed) == 0) {
			ctx.status_size = (off_t)len;
			free(text);
		}
	}
	if (n->kind == TREE_ACTLOG && fs->log)
		ctx.actlog_size = (off_t)action_log_size(fs->log);
	tree_stat(&ctx, s, n, st);
	if (n->kind == TREE_STATUS)
		st->st_mtim = st->st_ctim = st->st_atim = changed;
}

static double attr_timeout(const struct fs *fs, const struct tree_node *n)
{
	switch (n->kind) {
	case TREE_RUN:
		return fs->cfg.file_timeout;
	case TREE_FILE:
		return n->file == MESSAGE_JSON ? fs->cfg.dir_timeout
					       : fs->cfg.file_timeout;
	case TREE_STATUS:
		return 1.0;
	case TREE_ACTLOG:
		return 0; /* grows: tail -f polls its size */
	default:
		return fs->cfg.dir_timeout;
	}
}

static double entry_timeout(const struct fs *fs, const struct tree_node *n)
{
	return n->kind == TREE_FILE ? fs->cfg.file_timeout
				    : fs->cfg.dir_timeout;
}

static void fill_entry(struct fs *fs, const struct snapshot *s,
		       const struct tree_node *n, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = tree_ino(s, n);
	stat_node(fs, s, n, &e->attr);
	e->attr_timeout = attr_timeout(fs, n);
	e->entry_timeout = entry_timeout(fs, n);
}

/* --- lookup, getattr, readlink ---------------------------------------- */

static void do_lookup(struct fs *fs, fuse_req_t req, fuse_ino_t parent,
		      const char *name)
{
	struct snapshot *s;
	struct tree_node dir, n;
	struct fuse_entry_param e;
	int r = begin(fs, req, OP_LOOKUP, parent, name, NULL, &s, &dir);

	if (r == 1)
		return;
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	r = tree_lookup(s, &dir, name, &n);
	if (r == -ENOENT) {
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->cfg.neg_timeout;
		fuse_reply_entry(req, &e);
	} else if (r < 0) {
		fuse_reply_err(req, -r);
	} else {
		fill_entry(fs, s, &n, &e);
		fuse_reply_entry(req, &e);
	}
	snapshot_unref(s);
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	do_lookup(fs_of(req), req, parent, name);
}

/* Resolves @ino in the served snapshot, else in one that an open handle
 * still pins (an open file whose run is gone, or an older message.json):
 * fstat() on an open file must keep working. Returns a reference. */
static struct snapshot *resolve_any(struct fs *fs, fuse_ino_t ino,
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

static void fs_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct handle *h = fi ? handle_of(fi) : NULL;
	struct tree_node n;
	struct snapshot *s;
	struct stat st;

	if (h) {
		s = snapshot_ref(h->s);
		n = h->n;
	} else {
		s = resolve_any(fs, ino, &n);
	}
	if (!s) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	stat_node(fs, s, &n, &st);
	fuse_reply_attr(req, &st, attr_timeout(fs, &n));
	snapshot_unref(s);
}

static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct snapshot *s = acquire(fs);
	struct tree_node n;
	struct stat st;

	(void)attr;
	(void)fi;
	/* "echo > .dlqfs/refresh" truncates first: accept and ignore that
	 * (and so for the action control files) */
	if (tree_resolve(s, ino, &n) < 0) {
		fuse_reply_err(req, ENOENT);
	} else if ((n.kind != TREE_REFRESH && n.kind != TREE_ACTION) ||
		   (to_set &
		    ~(FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME |
		      FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
		      FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME))) {
		fuse_reply_err(req, EROFS);
	} else {
		stat_node(fs, s, &n, &st);
		fuse_reply_attr(req, &st, attr_timeout(fs, &n));
	}
	snapshot_unref(s);
}

static void fs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct tree_node n;
	struct snapshot *s = resolve_any(fs_of(req), ino, &n);
	char buf[TREE_LINK_MAX];

	if (!s)
		fuse_reply_err(req, ENOENT);
	else if (n.kind != TREE_LINK)
		fuse_reply_err(req, EINVAL);
	else {
		tree_readlink(s, &n, buf);
		fuse_reply_readlink(req, buf);
	}
	snapshot_unref(s);
}

/* --- directories ------------------------------------------------------ */

static void do_opendir(struct fs *fs, fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct snapshot *s;
	struct tree_node n;
	struct handle *h;
	int r = begin(fs, req, OP_OPENDIR, ino, NULL, fi, &s, &n);

	if (r == 1)
		return;
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	if (!is_dir(&n)) {
		snapshot_unref(s);
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (fs->no_opendir && s->generation) {
		/* once a walk is served, the kernel opens directories
		 * itself from now on: readdir cookies name their listing */
		snapshot_unref(s);
		fuse_reply_err(req, ENOSYS);
		return;
	}
	h = handle_new(fs, s, &n);
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fi->fh = (uintptr_t)h;
	/* listings change only with a swap, which invalidates them */
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	if (fuse_reply_open(req, fi) == -ENOENT) /* interrupted */
		handle_free(fs, h);
}

static void fs_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	do_opendir(fs_of(req), req, ino, fi);
}

static fuse_ino_t parent_ino(const struct snapshot *s,
			     const struct tree_node *n)
{
	switch (n->kind) {
	case TREE_RUN:
		return TREE_INO_RUNS;
	case TREE_VALUE:
		return TREE_INO_VIEW0 + (fuse_ino_t)n->view;
	default:
		(void)s;
		return TREE_INO_ROOT;
	}
}

/* Readdir cookies: the listing's identity (tree_dir_tag()) above the
 * entry's position. The kernel's readdir cache (one per directory, shared
 * by every handle, and kept while the listing does not change) hands a
 * handle cookies of whatever listing filled it, perhaps in a snapshot
 * long replaced; the cookie still names the listing, which any snapshot
 * that lists the same entries (the served one, while the directory is
 * unchanged) goes on with. */
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

static size_t cookie_index(off_t off)
{
	return off <= 0 ? 0 : (size_t)((uint64_t)off & 0xffffffffULL);
}

/* Whether directory @ino of @s is the listing tagged @tag (then in @ret). */
static bool lists(const struct snapshot *s, fuse_ino_t ino, uint64_t tag,
		  struct tree_node *ret)
{
	return tree_resolve(s, ino, ret) == 0 && is_dir(ret) &&
	       listing_tag(s, ret) == tag;
}

/* A snapshot in which directory @ino is the listing tagged @tag: the
 * served one first (its entries may make kernel dentries), then @mine
 * (the handle's), the ones served before, those open handles pin. NULL if
 * none. Call with fs->lock held. */
static struct snapshot *snapshot_listing(struct fs *fs, fuse_ino_t ino,
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

/* Binds handle @h to the snapshot to list from @off: at offset 0
 * (opendir, rewinddir) the served one (an empty listing if the directory
 * is gone); else one with the listing the cookie came from. Returns
 * whether that is the served snapshot; when it is not (a listing that
 * began before a swap), its entries must not create kernel dentries,
 * which would bring back removed names. */
static int rebind(struct fs *fs, struct handle *h, fuse_ino_t ino, off_t off)
{
	struct snapshot *old = NULL, *to = NULL;
	struct tree_node n;
	bool listed = false;
	int current;

	pthread_mutex_lock(&fs->lock);
	if (off != 0) {
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
	if (listed) {
		h->gone = 0;
		h->n = n;
	} else if (to != h->s) {
		h->gone = tree_resolve(to, ino, &n) < 0 || !is_dir(&n);
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

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, int plus)
{
	struct fs *fs = fs_of(req);
	/* no handle once the kernel opens directories itself */
	struct handle none = {0}, *h = fi->fh ? handle_of(fi) : &none;
	int current = rebind(fs, h, ino, off);
	size_t total = 2 + (h->gone ? 0 : tree_dir_size(h->s, &h->n)), pos = 0;
	uint64_t tag = h->gone ? 0 : listing_tag(h->s, &h->n);
	char *buf;

	if (size > 1024 * 1024)
		size = 1024 * 1024;
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		if (h == &none)
			snapshot_unref(none.s);
		return;
	}
	for (size_t i = cookie_index(off); i < total; i++) {
		struct fuse_entry_param e;
		struct tree_node n;
		const char *name;
		size_t need;

		memset(&e, 0, sizeof(e));
		if (i < 2) {
			name = i == 0 ? "." : "..";
			e.ino = i == 0 ? tree_ino(h->s, &h->n)
				       : parent_ino(h->s, &h->n);
			e.attr.st_ino = e.ino;
			e.attr.st_mode = S_IFDIR;
		} else {
			tree_dir_entry(h->s, &h->n, i - 2, &name, &n);
			if (plus) {
				fill_entry(fs, h->s, &n, &e);
				/* d_ino stays; ino 0: the kernel makes no
				 * dentry (ls -l then looks names up anew) */
				if (!current)
					e.ino = 0;
			} else {
				e.attr.st_ino = tree_ino(h->s, &n);
				e.attr.st_mode = is_dir(&n) ? S_IFDIR
						 : n.kind == TREE_LINK
							 ? S_IFLNK
							 : S_IFREG;
			}
		}
		if (plus)
			need = fuse_add_direntry_plus(
				req, buf + pos, size - pos, name, &e,
				(off_t)(tag << COOKIE_SHIFT | (i + 1)));
		else
			need = fuse_add_direntry(
				req, buf + pos, size - pos, name, &e.attr,
				(off_t)(tag << COOKIE_SHIFT | (i + 1)));
		if (need > size - pos)
			break;
		pos += need;
	}
	fuse_reply_buf(req, buf, pos);
	free(buf);
	if (h == &none)
		snapshot_unref(none.s);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 0);
}

static void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 1);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	(void)ino;
	handle_free(fs_of(req), handle_of(fi));
	fuse_reply_err(req, 0);
}

/* --- actions ---------------------------------------------------------- */

static bool allowed(const struct fs *fs, uint32_t verb)
{
	if (!fs->actor)
		return false;
	return verb == ACTION_DELETE ? fs->cfg.allow_delete
				     : fs->cfg.allow_resume;
}

static int tomb_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

static int tomb_sort(const void *a, const void *b)
{
	const struct tombstone *x = a, *y = b;

	return tomb_cmp(x->id, x->len, y->id, y->len);
}

/* snapshot_drop_fn: is @m's run a tombstone? (fs->tombs is sorted;
 * called under publish_lock) */
static bool tombstoned(void *ctx, const struct message *m)
{
	struct fs *fs = ctx;
	size_t lo = 0, hi = fs->ntombs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = tomb_cmp(m->id.data, m->id.len, fs->tombs[mid].id,
				 fs->tombs[mid].len);

		if (c == 0)
			return true;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

static double monotonic_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Takes out of fs->retired what no one may need any more (see
 * FS_RETIRED_MAX), up to @max of them into @out; returns how many. Call
 * with fs->lock held, unref them without. */
static size_t prune_retired(struct fs *fs, struct snapshot **out, size_t max)
{
	double now = monotonic_now();
	size_t n = 0, k = 0;

	for (size_t i = 0; i < fs->nretired; i++) {
		struct retired *r = &fs->retired[i];
		size_t newer = fs->nretired - 1 - i;
		bool keep =
			!r->told_at || (newer < FS_RETIRED_MAX &&
					now - r->told_at < FS_RETIRED_GRACE);

		if (!keep && n < max)
			out[n++] = r->s;
		else
			fs->retired[k++] = *r;
	}
	fs->nretired = k;
	return n;
}

static void unref_all(struct snapshot **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		snapshot_unref(v[i]);
}

/* Moves the served snapshot to fs->retired. Returns 0, or -ENOMEM (then
 * it is dropped: readers holding it finish on it). Call with fs->lock. */
static int retire_current(struct fs *fs)
{
	if (fs->nretired == fs->capretired) {
		size_t cap = fs->capretired ? fs->capretired * 2 : 8;
		struct retired *p =
			realloc(fs->retired, cap * sizeof(*fs->retired));

		if (!p)
			return -ENOMEM;
		fs->retired = p;
		fs->capretired = cap;
	}
	fs->retired[fs->nretired++] = (struct retired){fs->current, 0};
	return 0;
}

/* Serves @snap (taking its reference; NULL: a failed walk). Called under
 * publish_lock. Returns the generation it gave @snap (0 for NULL). */
static uint64_t swap_in(struct fs *fs, struct snapshot *snap, uint64_t served)
{
	struct snapshot *old[FS_RETIRED_MAX + 1];
	size_t nold = 0;
	uint64_t gen = 0;

	pthread_mutex_lock(&fs->lock);
	if (served > fs->served)
		fs->served = served;
	if (snap) {
		/* walks and actions both publish: one numbering for both,
		 * which the notifier relies on (not yet visible to anyone) */
		gen = snap->generation = ++fs->gen;
		if (retire_current(fs) < 0)
			old[nold++] = fs->current;
		fs->current = snap;
		fs->ready = 1;
		nold += prune_retired(fs, old + nold, FS_RETIRED_MAX);
	}
	fs->first_done = 1;
	pthread_cond_broadcast(&fs->wake);
	pthread_mutex_unlock(&fs->lock);
	unref_all(old, nold); /* readers holding them finish on them */
	return gen;
}

/* After @act ran: the runs it removed from the DLQ leave the served
 * snapshot now, and stay out of the next walk published (it may have
 * listed them before the action). */
static uint64_t remove_runs(struct fs *fs, const struct action *act)
{
	struct snapshot *base, *next;
	uint64_t gen = 0;
	size_t added = 0;
	int r;

	if (act->verb == ACTION_CALLBACK)
		return 0; /* the run stays in the DLQ; its state changes */
	pthread_mutex_lock(&fs->publish_lock);
	for (size_t i = 0; i < act->n; i++) {
		const struct action_outcome *o = &act->out[i];
		struct tombstone *t;

		/* after a delete, a run the API did not know (404, or
		 * "unknown": a bulk delete that deleted fewer) is not in the
		 * DLQ either */
		if (o->err &&
		    !(o->err == -ENOENT && act->verb == ACTION_DELETE))
			continue;
		t = realloc(fs->tombs, (fs->ntombs + 1) * sizeof(*t));
		if (!t)
			break;
		fs->tombs = t;
		t = &fs->tombs[fs->ntombs];
		t->len = strlen(act->ids[i]);
		t->id = strdup(act->ids[i]);
		t->publishes = 0;
		if (!t->id)
			break;
		fs->ntombs++;
		added++;
	}
	if (added) {
		qsort(fs->tombs, fs->ntombs, sizeof(*fs->tombs), tomb_sort);
		base = acquire(fs);
		r = snapshot_without(base, tombstoned, fs, &next);
		if (r > 0)
			gen = swap_in(fs, next, 0);
		else if (r == 0)
			snapshot_unref(next); /* base again: nothing to drop */
		snapshot_unref(base); /* -ENOMEM: the next walk drops them */
	}
	pthread_mutex_unlock(&fs->publish_lock);
	return gen;
}

static void reply_job(fuse_req_t req, enum job_reply reply, int result,
		      size_t size)
{
	if (reply == JOB_WRITE && result >= 0)
		fuse_reply_write(req, size);
	else
		fuse_reply_err(req, result < 0 ? -result : 0);
}

/* Holds the reply to a write or close until the kernel has been told of
 * @gen; 0, or -ENOMEM / -ESHUTDOWN: reply now. */
static int hold_reply(struct fs *fs, fuse_req_t req, enum job_reply reply,
		      int result, size_t size, uint64_t gen)
{
	struct held *h = malloc(sizeof(*h));
	int r = 0;

	if (!h)
		return -ENOMEM;
	*h = (struct held){NULL, req, reply, size, result, gen};
	pthread_mutex_lock(&fs->lock);
	if (fs->stop || !fs->notifier_running || fs->told >= gen) {
		r = -ESHUTDOWN;
	} else {
		h->next = fs->held;
		fs->held = h;
		pthread_cond_broadcast(&fs->wake);
	}
	pthread_mutex_unlock(&fs->lock);
	if (r < 0)
		free(h);
	return r;
}

/* Answers the held writes the kernel now knows about (all of them with
 * @all). Called by the notifier, without fs->lock. */
static void release_held(struct fs *fs, bool all)
{
	struct held *ready = NULL, **p;

	pthread_mutex_lock(&fs->lock);
	for (p = &fs->held; *p;) {
		struct held *h = *p;

		if (all || h->gen <= fs->told) {
			*p = h->next;
			h->next = ready;
			ready = h;
		} else {
			p = &h->next;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	while (ready) {
		struct held *next = ready->next;

		reply_job(ready->req, ready->reply, ready->result, ready->size);
		free(ready);
		ready = next;
	}
}

/* A FUSE request waiting for its action. */
struct job {
	struct fs *fs;
	fuse_req_t req;
	enum job_reply reply;
	size_t size; /* JOB_WRITE: the bytes written */
};

/* actor_done_fn */
static void job_done(void *ctx, struct action *act, int result)
{
	struct job *j = ctx;
	uint64_t gen = act->ran ? remove_runs(j->fs, act) : 0;

	/* A write's or close's reply waits until no kernel cache shows the
	 * removed runs: the notifier sends it then (the writer holds no
	 * lock an invalidation needs; the actor must not wait, an rmdir
	 * behind it in line holds one). rmdir and unlink hold their
	 * directory's, so they cannot wait: the kernel drops the entry they
	 * name itself, and the other views follow within moments. */
	if (j->reply == JOB_NOW || !gen ||
	    hold_reply(j->fs, j->req, j->reply, result, j->size, gen) < 0)
		reply_job(j->req, j->reply, result, j->size);
	action_free(act);
	free(j);
}

/* action_resolve_fn over a snapshot: a run's name gives its raw dlqId
 * (1: listed); another name goes to the API as it is (0: a run not
 * walked yet, or gone: the API answers 404). */
static int resolve(void *ctx, const char *name, char **ret_id)
{
	const struct snapshot *s = ctx;
	int64_t i = snapshot_find_run(s, name);
	char *id = i >= 0 ? strndup(s->runs[i].msg->id.data,
				    s->runs[i].msg->id.len)
			  : strdup(name);

	if (!id)
		return -ENOMEM;
	*ret_id = id;
	return i >= 0;
}

/* Parses @len bytes for @verb and hands the action to the actor, which
 * answers @req. Returns 1 (submitted) or a negative errno. */
static int submit(struct fs *fs, fuse_req_t req, uint32_t verb,
		  const char *text, size_t len, enum job_reply reply,
		  size_t size)
{
	struct snapshot *s = acquire(fs);
	struct action *act;
	struct job *j;
	char err[256];
	int r;

	r = action_parse((enum action_verb)verb, text, len, resolve, s, &act,
			 err, sizeof(err));
	snapshot_unref(s);
	if (r < 0)
		return r;
	j = calloc(1, sizeof(*j));
	if (!j) {
		action_free(act);
		return -ENOMEM;
	}
	*j = (struct job){fs, req, reply, size};
	r = actor_submit(fs->actor, act, job_done, j);
	if (r < 0) {
		action_free(act);
		free(j);
		return r;
	}
	return 1;
}

/* The kinds of line in @len bytes of whole lines, as a bit set. */
static unsigned line_kinds(const char *text, size_t len)
{
	unsigned kinds = 0;

	while (len) {
		const char *nl = memchr(text, '\n', len);
		size_t l = nl ? (size_t)(nl - text) : len;

		kinds |= 1u << action_line_kind(text, l);
		l += nl != NULL;
		text += l;
		len -= l;
	}
	return kinds;
}

/* Acts on @len bytes of whole lines written to @h. Option lines before
 * the first id are kept and apply to every id written after them on this
 * open file. Returns 0 (nothing to send), 1 (submitted) or -errno. */
static int act_on(struct fs *fs, fuse_req_t req, struct handle *h,
		  const char *text, size_t len, enum job_reply reply,
		  size_t size)
{
	unsigned kinds = line_kinds(text, len);
	char *all;
	int r;

	if (!(kinds & (1u << ACTION_LINE_ID))) {
		if (h->ids_started)
			return kinds & (1u << ACTION_LINE_OPTION) ? -EINVAL : 0;
		if (!(kinds & (1u << ACTION_LINE_OPTION)))
			return -EINVAL; /* blank: no id to act on */
		if (h->nprefix + len > ACTION_MAX_INPUT)
			return -EFBIG;
		all = realloc(h->prefix, h->nprefix + len);
		if (!all)
			return -ENOMEM;
		memcpy(all + h->nprefix, text, len);
		h->prefix = all;
		h->nprefix += len;
		return 0;
	}
	if (h->ids_started && (kinds & (1u << ACTION_LINE_OPTION)))
		return -EINVAL; /* an option after ids */
	if (h->nprefix + len > ACTION_MAX_INPUT)
		return -EFBIG;
	all = malloc(h->nprefix + len + 1);
	if (!all)
		return -ENOMEM;
	if (h->nprefix)
		memcpy(all, h->prefix, h->nprefix);
	memcpy(all + h->nprefix, text, len);
	r = submit(fs, req, h->n.index, all, h->nprefix + len, reply, size);
	free(all);
	if (r >= 0)
		h->ids_started = true;
	return r;
}

/* A write to a control file: whole lines are acted on at once, a last
 * line without its newline waits for the next write or close(2).
 * Returns 0 (reply now), 1 (the actor replies) or -errno. */
static int action_write(struct fs *fs, fuse_req_t req, struct handle *h,
			const char *buf, size_t size)
{
	const char *nl;
	char *p;
	size_t whole;
	int r;

	if (h->npending + size > ACTION_MAX_INPUT) {
		h->npending = 0;
		return -EFBIG;
	}
	p = realloc(h->pending, h->npending + size + 1); /* +1: size 0 */
	if (!p)
		return -ENOMEM;
	memcpy(p + h->npending, buf, size);
	h->pending = p;
	h->npending += size;
	nl = memrchr(p, '\n', h->npending);
	if (!nl) {
		if (h->npending <= ACTION_MAX_LINE)
			return 0;
		h->npending = 0;
		return -EINVAL; /* a line too long: refused whole */
	}
	whole = (size_t)(nl - p) + 1;
	/* the whole lines leave h->pending before they are handed on: once
	 * submitted, the reply (and so this file's next write, on another
	 * thread) may come before this function returns */
	p = malloc(whole);
	if (!p)
		return -ENOMEM;
	memcpy(p, h->pending, whole);
	memmove(h->pending, h->pending + whole, h->npending - whole);
	h->npending -= whole;
	r = act_on(fs, req, h, p, whole, JOB_WRITE, size);
	free(p);
	return r;
}

/* close(2) with a last line not ended by a newline. Returns 0, 1 (the
 * actor replies) or -errno. */
static int action_flush(struct fs *fs, fuse_req_t req, struct handle *h)
{
	char *p = h->pending;
	size_t n = h->npending;
	int r;

	h->pending = NULL;
	h->npending = 0;
	r = act_on(fs, req, h, p, n, JOB_FLUSH, 0);
	free(p);
	return r;
}

/* rmdir runs/<id>, rm <view>/<value>/<id>: delete that one run. */
static void remove_entry(fuse_req_t req, fuse_ino_t parent, const char *name,
			 enum tree_kind parent_kind)
{
	struct fs *fs = fs_of(req);
	struct tree_node dir, n;
	struct snapshot *s;
	char *text;
	size_t len = strlen(name);
	int r;

	if (!allowed(fs, ACTION_DELETE)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	s = resolve_any(fs, parent, &dir);
	if (!s) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	r = dir.kind != parent_kind ? -EROFS : tree_lookup(s, &dir, name, &n);
	snapshot_unref(s);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	text = malloc(len + 2);
	if (!text) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memcpy(text, name, len);
	memcpy(text + len, "\n", 2);
	r = submit(fs, req, ACTION_DELETE, text, len + 1, JOB_NOW, 0);
	free(text);
	if (r < 0)
		fuse_reply_err(req, -r);
}

static void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_entry(req, parent, name, TREE_RUNS);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_entry(req, parent, name, TREE_VALUE);
}

/* --- files ------------------------------------------------------------ */

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct tree_node n;
	/* an inode the kernel still has from a recent snapshot opens there */
	struct snapshot *s = resolve_any(fs, ino, &n);
	struct handle *h;
	char *text = NULL;
	size_t len = 0;
	int wr = (fi->flags & O_ACCMODE) != O_RDONLY;
	int r = 0;

	if (!s) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (is_dir(&n))
		r = -EISDIR;
	else if (wr && n.kind != TREE_REFRESH && n.kind != TREE_ACTION)
		r = -EACCES;
	else if (wr && n.kind == TREE_ACTION && !allowed(fs, n.index))
		r = -EROFS;
	else if (wr && fuse_req_ctx(req)->uid != fs->cfg.uid &&
		 fuse_req_ctx(req)->uid != 0)
		r = -EACCES; /* allow_other: only the owner writes */
	else if (n.kind == TREE_STATUS)
		r = status_render(fs->st, &text, &len, NULL);
	if (r < 0) {
		snapshot_unref(s);
		fuse_reply_err(req, -r);
		return;
	}
	h = handle_new(fs, s, &n);
	if (!h) {
		free(text);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	h->text = text;
	h->len = len;
	fi->fh = (uintptr_t)h;
	/* only a control file has anything to do at close(2): no FLUSH
	 * round trip for the others (grep and rsync close thousands) */
	fi->noflush = n.kind != TREE_ACTION;
	if (n.kind == TREE_FILE)
		fi->keep_cache = 1; /* a run file's inode never changes content
				       (message.json gets a new one) */
	else
		fi->direct_io = 1; /* generated at open */
	if (fuse_reply_open(req, fi) == -ENOENT)
		handle_free(fs, h);
}

/* The bytes of run file @h, rendered by the first read; a new reference in
 * @ret. Returns 0, -ENOMEM or -EIO. */
static int file_bytes(struct handle *h, struct rendered **ret)
{
	struct rendered *b =
		atomic_load_explicit(&h->file, memory_order_acquire);
	struct rendered *none = NULL;

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

/* The bytes of a read: @len bytes at @data from @b, from @off. */
static size_t read_span(struct message_bytes b, off_t off, size_t size,
			const char **data)
{
	size_t n;

	if (off < 0 || (size_t)off >= b.len)
		return 0;
	n = b.len - (size_t)off;
	*data = b.data + off;
	return n < size ? n : size;
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct handle *h = handle_of(fi);
	struct rendered *file = NULL;
	const char *data = NULL;
	char *copy = NULL;
	size_t n = 0;
	int r;

	(void)ino;
	/* The bytes must outlive the reply: once the kernel has them, the
	 * reader may close the file and RELEASE may run on another thread
	 * before fuse_reply_buf() returns. So a run file's bytes are held by
	 * a reference, and the (small) status text is copied. */
	if (h->n.kind == TREE_FILE) {
		r = file_bytes(h, &file);
		if (r < 0) {
			fuse_reply_err(req, -r);
			return;
		}
		n = read_span((struct message_bytes){file->data, file->len},
			      off, size, &data);
	} else if (h->n.kind == TREE_ACTLOG && fs_of(req)->log && off >= 0) {
		copy = malloc(size ? size : 1);
		if (!copy) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		n = action_log_read(fs_of(req)->log, (uint64_t)off, copy, size);
		data = copy;
	} else if (h->n.kind == TREE_STATUS) {
		n = read_span((struct message_bytes){h->text, h->len}, off,
			      size, &data);
		if (n) {
			copy = malloc(n);
			if (!copy) {
				fuse_reply_err(req, ENOMEM);
				return;
			}
			data = memcpy(copy, data, n);
		}
	}
	fuse_reply_buf(req, n ? data : NULL, n);
	free(copy);
	rendered_put(file);
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct handle *h = handle_of(fi);
	int r;

	(void)ino;
	(void)off; /* a control file is a stream: writes append */
	if (h->n.kind == TREE_ACTION) {
		r = action_write(fs, req, h, buf, size);
		if (r < 0)
			fuse_reply_err(req, -r);
		else if (r == 0)
			fuse_reply_write(req, size);
		return; /* r == 1: the actor replies */
	}
	if (h->n.kind != TREE_REFRESH) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (fs->cfg.refresh)
		fs->cfg.refresh(fs->cfg.refresh_ctx);
	fuse_reply_write(req, size);
}

/* close(2): a last line without its newline is acted on now, and close
 * returns its outcome (shells ignore it: end ids with a newline). */
static void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct handle *h = handle_of(fi);
	int r = 0;

	(void)ino;
	if (h->n.kind == TREE_ACTION && h->npending)
		r = action_flush(fs_of(req), req, h);
	else if (h->n.kind == TREE_ACTION && h->nprefix && !h->ids_started)
		r = -EINVAL; /* options, and no id to apply them to */
	if (r < 0)
		fuse_reply_err(req, -r);
	else if (r == 0)
		fuse_reply_err(req, 0);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct snapshot *s = acquire(fs_of(req));
	struct statvfs sv;
	uint64_t inodes = TREE_INO_FIXED_END + s->nruns * (MESSAGE_NFILES + 2);

	(void)ino;
	for (int v = 0; v < VIEW_COUNT; v++)
		inodes += s->view[v].nvalues;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	/* what the files hold, never zero (df hides zero-sized mounts) */
	sv.f_blocks = (s->file_bytes + 4095) / 4096 + 1;
	sv.f_files = inodes;
	sv.f_namemax = NAMES_MAX;
	snapshot_unref(s);
	fuse_reply_statfs(req, &sv);
}

/* Everything that would change the tree: read-only. */
static void fs_erofs_entry(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent;
	(void)name;
	fuse_reply_err(req, EROFS);
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	(void)mode;
	fs_erofs_entry(req, parent, name);
}

static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	(void)mode;
	(void)rdev;
	fs_erofs_entry(req, parent, name);
}

static void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	(void)mode;
	(void)fi;
	fs_erofs_entry(req, parent, name);
}

static void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	(void)link;
	fs_erofs_entry(req, parent, name);
}

static void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent,
		    const char *name)
{
	(void)ino;
	fs_erofs_entry(req, parent, name);
}

static void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	(void)newparent;
	(void)newname;
	(void)flags;
	fs_erofs_entry(req, parent, name);
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	/* inode numbers come from names, not from a table: nothing to drop */
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req);
}

static void fs_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	(void)count;
	(void)forgets;
	fuse_reply_none(req);
}

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;

	fs->no_opendir = fs->cfg.zero_opendir &&
			 (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT);
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	/* times have millisecond resolution */
	conn->time_gran = 1000000;
}

static const struct fuse_lowlevel_ops ops = {
	.init = fs_init,
	.lookup = fs_lookup,
	.forget = fs_forget,
	.forget_multi = fs_forget_multi,
	.getattr = fs_getattr,
	.setattr = fs_setattr,
	.readlink = fs_readlink,
	.mknod = fs_mknod,
	.mkdir = fs_mkdir,
	.unlink = fs_unlink,
	.rmdir = fs_rmdir,
	.symlink = fs_symlink,
	.rename = fs_rename,
	.link = fs_link,
	.open = fs_open,
	.read = fs_read,
	.write = fs_write,
	.flush = fs_flush,
	.release = fs_release,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.readdirplus = fs_readdirplus,
	.releasedir = fs_release,
	.statfs = fs_statfs,
	.create = fs_create,
};

const struct fuse_lowlevel_ops *fs_ops(void)
{
	return &ops;
}

size_t fs_ops_size(void)
{
	return sizeof(ops);
}

/* --- publishing and the notifier -------------------------------------- */

struct fs *fs_new(const struct fs_config *cfg, struct status *st)
{
	struct fs *fs = calloc(1, sizeof(*fs));

	if (!fs)
		return NULL;
	fs->current = snapshot_new_empty();
	if (!fs->current) {
		free(fs);
		return NULL;
	}
	fs->cfg = *cfg;
	fs->st = st;
	fs->log = action_log_new(0);
	if (!fs->log) {
		snapshot_unref(fs->current);
		free(fs);
		return NULL;
	}
	clock_gettime(CLOCK_REALTIME, &fs->mounted);
	pthread_mutex_init(&fs->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&fs->wake, &ca);
		pthread_condattr_destroy(&ca);
	}
	pthread_mutex_init(&fs->publish_lock, NULL);
	return fs;
}

void fs_publish(void *arg, struct snapshot *snap, uint64_t served)
{
	struct fs *fs = arg;

	pthread_mutex_lock(&fs->publish_lock);
	if (snap && fs->ntombs) {
		struct snapshot *kept;
		size_t k = 0;

		/* a walk published after the one that followed an action
		 * started after it: it is the truth */
		for (size_t i = 0; i < fs->ntombs; i++) {
			if (fs->tombs[i].publishes >= 1)
				free(fs->tombs[i].id);
			else
				fs->tombs[k++] = fs->tombs[i];
		}
		fs->ntombs = k;
		if (k && snapshot_without(snap, tombstoned, fs, &kept) >= 0) {
			snapshot_unref(snap);
			snap = kept;
		}
		for (size_t i = 0; i < fs->ntombs; i++)
			fs->tombs[i].publishes++;
	}
	swap_in(fs, snap, served);
	pthread_mutex_unlock(&fs->publish_lock);
}

struct snapshot *fs_served(void *arg)
{
	struct fs *fs = arg;
	struct snapshot *s = acquire(fs);

	if (!s->generation) { /* the empty one served before any walk */
		snapshot_unref(s);
		return NULL;
	}
	return s;
}

static void notify_entry(void *ctx, uint64_t parent, const char *name)
{
	struct fs *fs = ctx;

	fuse_lowlevel_notify_inval_entry(fs->se, parent, name, strlen(name));
}

static void notify_inode(void *ctx, uint64_t ino)
{
	struct fs *fs = ctx;

	fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0);
}

static const struct tree_diff_ops notify_ops = {notify_entry, notify_inode};

static void replay(struct fs *fs, struct deferred *d)
{
	while (d) {
		struct deferred *next = d->next;

		if (fs->stop)
			fuse_reply_err(d->req, EIO);
		else if (d->op == OP_LOOKUP)
			do_lookup(fs, d->req, d->ino, d->name);
		else
			do_opendir(fs, d->req, d->ino, &d->fi);
		free(d);
		d = next;
	}
}

/* The notifier's wait for something to do, in which it drops the
 * snapshots whose grace has passed. Called and returns with fs->lock
 * held. Returns 0, or -1 when the wait failed. */
static int wait_or_prune(struct fs *fs)
{
	struct snapshot *old[FS_RETIRED_MAX];
	double due = 0;
	size_t nold;
	int r;

	for (size_t i = 0; i < fs->nretired; i++)
		if (fs->retired[i].told_at &&
		    (!due || fs->retired[i].told_at < due))
			due = fs->retired[i].told_at;
	if (!due)
		return pthread_cond_wait(&fs->wake, &fs->lock) ? -1 : 0;
	due += FS_RETIRED_GRACE + 0.01;
	r = pthread_cond_timedwait(
		&fs->wake, &fs->lock,
		&(struct timespec){(time_t)due,
				   (long)((due - (double)(time_t)due) * 1e9)});
	if (r && r != ETIMEDOUT)
		return -1;
	nold = prune_retired(fs, old, FS_RETIRED_MAX);
	if (nold) {
		pthread_mutex_unlock(&fs->lock);
		unref_all(old, nold);
		pthread_mutex_lock(&fs->lock);
	}
	return 0;
}

/* After each swap: answer the requests that waited for the first walk,
 * then tell the kernel what changed. Runs outside every request and holds
 * no lock while notifying (libfuse: notifying from a request path or under
 * a lock a request needs can deadlock). */
static void *notifier_main(void *arg)
{
	struct fs *fs = arg;
	struct snapshot *last, **chain;
	size_t nchain;
	uint64_t told = 0; /* refresh requests whose changes the kernel has */

	pthread_mutex_lock(&fs->lock);
	last = snapshot_ref(fs->current);
	for (;;) {
		struct deferred *waiting = NULL;
		struct snapshot *cur;
		uint64_t served;

		while (!fs->stop && fs->current == last && fs->served == told &&
		       !(fs->first_done && fs->deferred) && !fs->held)
			if (wait_or_prune(fs) < 0)
				break; /* cannot wait: go round */
		if (fs->first_done || fs->stop) {
			waiting = fs->deferred;
			fs->deferred = NULL;
		}
		cur = snapshot_ref(fs->current);
		served = fs->served;
		/* Every snapshot served since the last one told, oldest first:
		 * the kernel may have looked names up in each. Told only the
		 * difference between the ends, a name that changed and changed
		 * back (A, B, A) would keep B's inode in the kernel, after B's
		 * snapshot is gone. (They are all kept until told; short of
		 * memory for the chain, only the ends are compared.) */
		nchain = 0;
		chain = NULL;
		if (cur != last && fs->nretired)
			chain = malloc(fs->nretired * sizeof(*chain));
		for (size_t i = 0; chain && i < fs->nretired; i++)
			if (fs->retired[i].s->generation > last->generation)
				chain[nchain++] =
					snapshot_ref(fs->retired[i].s);
		pthread_mutex_unlock(&fs->lock);

		for (size_t i = 0; cur != last && i <= nchain; i++) {
			struct snapshot *from = i ? chain[i - 1] : last;
			struct snapshot *to = i < nchain ? chain[i] : cur;

			if (from->generation == 0) {
				/* nothing below runs/ was ever answered */
				notify_inode(fs, TREE_INO_ROOT);
				notify_inode(fs, TREE_INO_RUNS);
				for (int v = 0; v < VIEW_COUNT; v++)
					notify_inode(fs, TREE_INO_VIEW0 +
								 (uint64_t)v);
			} else {
				tree_diff(from, to, &notify_ops, fs);
			}
		}
		unref_all(chain, nchain);
		free(chain);
		replay(fs, waiting);
		snapshot_unref(last);
		last = cur;
		pthread_mutex_lock(&fs->lock);
		fs->told = cur->generation;
		{
			struct snapshot *old[FS_RETIRED_MAX];
			double now = monotonic_now();
			size_t nold;

			for (size_t i = 0; i < fs->nretired; i++)
				if (!fs->retired[i].told_at &&
				    fs->retired[i].s->generation < fs->told)
					fs->retired[i].told_at = now;
			nold = prune_retired(fs, old, FS_RETIRED_MAX);
			pthread_mutex_unlock(&fs->lock);
			unref_all(old, nold);
		}
		release_held(fs, false);
		if (served != told) {
			told = served;
			pthread_mutex_lock(&fs->st->lock);
			fs->st->refresh_served = served;
			status_touch(fs->st);
			pthread_mutex_unlock(&fs->st->lock);
		}

		pthread_mutex_lock(&fs->lock);
		if (fs->stop && !fs->deferred)
			break;
	}
	pthread_mutex_unlock(&fs->lock);
	release_held(fs, true); /* the loop still answers: no write waits */
	snapshot_unref(last);
	return NULL;
}

int fs_start(struct fs *fs, struct fuse_session *se)
{
	int r;

	fs->se = se;
	r = pthread_create(&fs->notifier, NULL, notifier_main, fs);
	if (r)
		return -r;
	fs->notifier_running = 1;
	if (!fs->cfg.api)
		return 0;
	fs->actor = actor_new(fs->cfg.api, fs->log);
	if (!fs->actor)
		return -ENOMEM;
	return actor_start(fs->actor);
}

void fs_stop(struct fs *fs)
{
	if (!fs)
		return;
	/* first: finishing actions publish, which the notifier tells */
	actor_stop(fs->actor);
	if (!fs->notifier_running)
		return;
	pthread_mutex_lock(&fs->lock);
	fs->stop = 1;
	pthread_cond_broadcast(&fs->wake);
	pthread_mutex_unlock(&fs->lock);
	pthread_join(fs->notifier, NULL);
	fs->notifier_running = 0;
}

void fs_free(struct fs *fs)
{
	if (!fs)
		return;
	fs_stop(fs);
	while (fs->handles) /* never released by the kernel (unmounted) */
		handle_free(fs, fs->handles);
	for (size_t i = 0; i < fs->nretired; i++)
		snapshot_unref(fs->retired[i].s);
	free(fs->retired);
	snapshot_unref(fs->current);
	actor_free(fs->actor);
	action_log_free(fs->log);
	for (size_t i = 0; i < fs->ntombs; i++)
		free(fs->tombs[i].id);
	free(fs->tombs);
	pthread_mutex_destroy(&fs->publish_lock);
	pthread_mutex_destroy(&fs->lock);
	pthread_cond_destroy(&fs->wake);
	free(fs);
}
