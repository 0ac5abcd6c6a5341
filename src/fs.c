/* fs: FUSE low-level operations over the served snapshot.
 *
 * Owns: the FUSE side of the mount: its requests and replies, the
 * requests that wait for the first walk (kept, and answered later from
 * the notifier thread, so no FUSE thread ever blocks), kernel cache
 * parameters, and which requests may act (-o allow_delete, allow_resume;
 * only the owner writes).
 * Leaves to others: the mount context's life (struct fs, in
 * fs_internal.h), with the action log and the actor, and the kernel
 * notifications the notifier asks for (fs_mount.c); open files and
 * directories and the snapshots they
 * read (handle.c), requests that wait for their action (job.c), swapping
 * snapshots, the snapshots kept after a swap, the tombstones, held
 * replies and the notifier thread (notifier.c), what the tree looks like
 * (tree), the status text (status), fetching (walker), control-file
 * input, parsing and running actions (action, actor).
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
#include "fs_internal.h"
#include "handle.h"
#include "job.h"
#include "tree.h"

enum op { OP_LOOKUP, OP_OPENDIR };

/* A request that came before the first walk finished. */
struct deferred {
	struct deferred *next;
	fuse_req_t req;
	enum op op;
	fuse_ino_t ino;
	struct fuse_file_info fi;
	char name[]; /* OP_LOOKUP */
};

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct handle *handle_of(const struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
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

struct snapshot *fs_acquire(struct fs *fs)
{
	struct snapshot *s;

	pthread_mutex_lock(&fs->lock);
	s = snapshot_ref(fs->current);
	pthread_mutex_unlock(&fs->lock);
	return s;
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

/* Looks @name up in directory @parent. Returns 0 and the entry in @ret
 * (a negative one, with its timeout, for a name that does not exist), 1
 * when @req was kept for after the first walk, or -errno. */
static int lookup(struct fs *fs, fuse_req_t req, fuse_ino_t parent,
		  const char *name, struct fuse_entry_param *ret)
{
	struct snapshot *s;
	struct tree_node dir, n;
	int r = begin(fs, req, OP_LOOKUP, parent, name, NULL, &s, &dir);

	if (r != 0)
		return r;
	r = tree_lookup(s, &dir, name, &n);
	if (r == -ENOENT) {
		memset(ret, 0, sizeof(*ret));
		ret->entry_timeout = fs->cfg.neg_timeout;
		r = 0;
	} else if (r == 0) {
		fill_entry(fs, s, &n, ret);
	}
	snapshot_unref(s);
	return r;
}

static void do_lookup(struct fs *fs, fuse_req_t req, fuse_ino_t parent,
		      const char *name)
{
	struct fuse_entry_param e;
	int r = lookup(fs, req, parent, name, &e);

	if (r < 0)
		fuse_reply_err(req, -r);
	else if (r == 0)
		fuse_reply_entry(req, &e);
	/* 1: kept, and answered after the first walk (fs_replay()) */
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	do_lookup(fs_of(req), req, parent, name);
}

/* The attributes of @ino, or of the node of the handle in @fi (may be
 * NULL): 0 with them in @ret and their timeout in @ret_timeout, or
 * -ENOENT. */
static int getattr(struct fs *fs, fuse_ino_t ino,
		   const struct fuse_file_info *fi, struct stat *ret,
		   double *ret_timeout)
{
	struct handle *h = fi ? handle_of(fi) : NULL;
	struct tree_node n;
	struct snapshot *s;

	if (h) {
		s = snapshot_ref(h->s);
		n = h->n;
	} else {
		s = handle_resolve_any(fs, ino, &n);
	}
	if (!s)
		return -ENOENT;
	stat_node(fs, s, &n, ret);
	*ret_timeout = attr_timeout(fs, &n);
	snapshot_unref(s);
	return 0;
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct stat st;
	double timeout = 0;
	int r = getattr(fs_of(req), ino, fi, &st, &timeout);

	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, timeout);
}

/* Changes the attributes @to_set of @ino: only a truncation (or times)
 * of .dlqfs/refresh or a control file, which is accepted and ignored
 * ("echo > .dlqfs/refresh" truncates first). Returns 0 with the
 * attributes in @ret and their timeout in @ret_timeout, -ENOENT or
 * -EROFS. */
static int setattr(struct fs *fs, fuse_ino_t ino, int to_set, struct stat *ret,
		   double *ret_timeout)
{
	struct snapshot *s = fs_acquire(fs);
	struct tree_node n;
	int r = tree_resolve(s, ino, &n);

	if (r == 0 &&
	    ((n.kind != TREE_REFRESH && n.kind != TREE_ACTION) ||
	     (to_set & ~(FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME |
			 FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
			 FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME))))
		r = -EROFS;
	if (r == 0) {
		stat_node(fs, s, &n, ret);
		*ret_timeout = attr_timeout(fs, &n);
	}
	snapshot_unref(s);
	return r;
}

static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct stat st;
	double timeout = 0;
	int r;

	(void)attr;
	(void)fi;
	r = setattr(fs_of(req), ino, to_set, &st, &timeout);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, timeout);
}

/* The target of symlink @ino into @buf (TREE_LINK_MAX bytes). Returns 0,
 * -ENOENT or -EINVAL (not a symlink). */
static int readlink_of(struct fs *fs, fuse_ino_t ino, char *buf)
{
	struct tree_node n;
	struct snapshot *s = handle_resolve_any(fs, ino, &n);
	int r = !s ? -ENOENT : n.kind != TREE_LINK ? -EINVAL : 0;

	if (r == 0)
		tree_readlink(s, &n, buf);
	snapshot_unref(s);
	return r;
}

static void fs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[TREE_LINK_MAX];
	int r = readlink_of(fs_of(req), ino, buf);

	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_readlink(req, buf);
}

/* --- directories ------------------------------------------------------ */

/* Opens directory @ino: a handle on the served snapshot in @fi. Returns
 * 0, 1 when @req was kept for after the first walk, or -errno. */
static int opendir_handle(struct fs *fs, fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct snapshot *s;
	struct tree_node n;
	struct handle *h;
	int r = begin(fs, req, OP_OPENDIR, ino, NULL, fi, &s, &n);

	if (r != 0)
		return r;
	if (!tree_is_dir(&n))
		r = -ENOTDIR;
	else if (fs->no_opendir && s->generation)
		/* once a walk is served, the kernel opens directories
		 * itself from now on: readdir cookies name their listing */
		r = -ENOSYS;
	if (r < 0) {
		snapshot_unref(s);
		return r;
	}
	h = handle_new(fs, s, &n);
	if (!h)
		return -ENOMEM;
	fi->fh = (uintptr_t)h;
	/* listings change only with a swap, which invalidates them */
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	return 0;
}

static void do_opendir(struct fs *fs, fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	int r = opendir_handle(fs, req, ino, fi);

	if (r < 0)
		fuse_reply_err(req, -r);
	else if (r == 0 && fuse_reply_open(req, fi) == -ENOENT)
		handle_free(fs, handle_of(fi)); /* interrupted */
	/* 1: kept, and answered after the first walk (fs_replay()) */
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

/* The entries of directory @ino for handle @h from @off, as many as fit
 * in @size bytes: a new buffer in @ret_buf, @ret_len bytes of it used.
 * Returns 0 or -ENOMEM. */
static int listing(struct fs *fs, fuse_req_t req, struct handle *h,
		   fuse_ino_t ino, size_t size, off_t off, int plus,
		   char **ret_buf, size_t *ret_len)
{
	int current = handle_rebind(fs, h, ino, off);
	size_t total = 2 + (h->gone ? 0 : tree_dir_size(h->s, &h->n)), pos = 0;
	char *buf;

	if (size > 1024 * 1024)
		size = 1024 * 1024;
	buf = malloc(size);
	if (!buf)
		return -ENOMEM;
	for (size_t i = handle_cookie_index(off); i < total; i++) {
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
				e.attr.st_mode = tree_is_dir(&n) ? S_IFDIR
						 : n.kind == TREE_LINK
							 ? S_IFLNK
							 : S_IFREG;
			}
		}
		if (plus)
			need = fuse_add_direntry_plus(req, buf + pos,
						      size - pos, name, &e,
						      handle_cookie(h, i));
		else
			need = fuse_add_direntry(req, buf + pos, size - pos,
						 name, &e.attr,
						 handle_cookie(h, i));
		if (need > size - pos)
			break;
		pos += need;
	}
	*ret_buf = buf;
	*ret_len = pos;
	return 0;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, int plus)
{
	/* no handle once the kernel opens directories itself */
	struct handle none = {0}, *h = fi->fh ? handle_of(fi) : &none;
	char *buf = NULL;
	size_t len = 0;
	int r = listing(fs_of(req), req, h, ino, size, off, plus, &buf, &len);

	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_buf(req, buf, len);
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

void fs_reply_job(fuse_req_t req, enum job_reply reply, int result, size_t size)
{
	if (reply == JOB_WRITE && result >= 0)
		fuse_reply_write(req, size);
	else
		fuse_reply_err(req, result < 0 ? -result : 0);
}

/* Deletes run @name of directory @parent, which must be of
 * @parent_kind: runs/ (rmdir runs/<id>) or a view value (rm
 * <view>/<value>/<id>). Returns 1 (the actor replies) or -errno. */
static int remove_run(struct fs *fs, fuse_req_t req, fuse_ino_t parent,
		      const char *name, enum tree_kind parent_kind)
{
	struct tree_node dir, n;
	struct snapshot *s;
	char *text;
	size_t len = strlen(name);
	int r;

	if (!allowed(fs, ACTION_DELETE))
		return -EROFS;
	s = handle_resolve_any(fs, parent, &dir);
	if (!s)
		return -ENOENT;
	r = dir.kind != parent_kind ? -EROFS : tree_lookup(s, &dir, name, &n);
	snapshot_unref(s);
	if (r < 0)
		return r;
	text = malloc(len + 2);
	if (!text)
		return -ENOMEM;
	memcpy(text, name, len);
	memcpy(text + len, "\n", 2);
	r = job_submit(fs, req, ACTION_DELETE, text, len + 1, NULL, JOB_NOW, 0);
	free(text);
	return r;
}

static void remove_entry(fuse_req_t req, fuse_ino_t parent, const char *name,
			 enum tree_kind parent_kind)
{
	int r = remove_run(fs_of(req), req, parent, name, parent_kind);

	if (r < 0)
		fuse_reply_err(req, -r);
	/* 1: the actor replies */
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

/* Opens @ino for a process of user @uid: a handle in @fi, and how the
 * kernel may cache it. Returns 0 or -errno. */
static int open_handle(struct fs *fs, uid_t uid, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct tree_node n;
	/* an inode the kernel still has from a recent snapshot opens there */
	struct snapshot *s = handle_resolve_any(fs, ino, &n);
	struct handle *h;
	char *text = NULL;
	size_t len = 0;
	int wr = (fi->flags & O_ACCMODE) != O_RDONLY;
	int r = 0;

	if (!s)
		return -ENOENT;
	if (tree_is_dir(&n))
		r = -EISDIR;
	else if (wr && n.kind != TREE_REFRESH && n.kind != TREE_ACTION)
		r = -EACCES;
	else if (wr && n.kind == TREE_ACTION && !allowed(fs, n.index))
		r = -EROFS;
	else if (wr && uid != fs->cfg.uid && uid != 0)
		r = -EACCES; /* allow_other: only the owner writes */
	else if (n.kind == TREE_STATUS)
		r = status_render(fs->st, &text, &len, NULL);
	if (r < 0) {
		snapshot_unref(s);
		return r;
	}
	h = handle_new(fs, s, &n);
	if (!h) {
		free(text);
		return -ENOMEM;
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
	return 0;
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	int r = open_handle(fs, fuse_req_ctx(req)->uid, ino, fi);

	if (r < 0)
		fuse_reply_err(req, -r);
	else if (fuse_reply_open(req, fi) == -ENOENT)
		handle_free(fs, handle_of(fi)); /* interrupted */
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

/* What a read answers: @len bytes at @data. The bytes must outlive the
 * reply: once the kernel has them, the reader may close the file and
 * RELEASE may run on another thread before fuse_reply_buf() returns. So
 * a run file's bytes are held by a reference (@file), and the status
 * text and the log are copied (@copy, new). */
struct read_reply {
	const char *data;
	size_t len;
	struct handle_bytes *file;
	char *copy;
};

/* Reads up to @size bytes at @off of @h into @ret (released by
 * read_reply_release(), on failure too). Returns 0 or -errno. */
static int read_handle(struct fs *fs, struct handle *h, size_t size, off_t off,
		       struct read_reply *ret)
{
	int r;

	if (h->n.kind == TREE_FILE) {
		r = handle_bytes(h, &ret->file);
		if (r < 0)
			return r;
		ret->len = read_span(
			(struct message_bytes){ret->file->data, ret->file->len},
			off, size, &ret->data);
	} else if (h->n.kind == TREE_ACTLOG && fs->log && off >= 0) {
		ret->copy = malloc(size ? size : 1);
		if (!ret->copy)
			return -ENOMEM;
		ret->len = action_log_read(fs->log, (uint64_t)off, ret->copy,
					   size);
		ret->data = ret->copy;
	} else if (h->n.kind == TREE_STATUS) {
		ret->len = read_span((struct message_bytes){h->text, h->len},
				     off, size, &ret->data);
		if (ret->len) {
			ret->copy = malloc(ret->len);
			if (!ret->copy)
				return -ENOMEM;
			ret->data = memcpy(ret->copy, ret->data, ret->len);
		}
	}
	return 0;
}

static void read_reply_release(struct read_reply *rr)
{
	free(rr->copy);
	handle_bytes_put(rr->file);
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct read_reply rr = {NULL, 0, NULL, NULL};
	int r = read_handle(fs_of(req), handle_of(fi), size, off, &rr);

	(void)ino;
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_buf(req, rr.len ? rr.data : NULL, rr.len);
	read_reply_release(&rr);
}

/* A write to @h: a control file's lines go to the actor, and a write to
 * .dlqfs/refresh asks for a walk. Returns 0 (reply now), 1 (the actor
 * replies) or -errno. */
static int write_handle(struct fs *fs, fuse_req_t req, struct handle *h,
			const char *buf, size_t size)
{
	if (h->n.kind == TREE_ACTION)
		return job_write(fs, req, h, buf, size);
	if (h->n.kind != TREE_REFRESH)
		return -EROFS;
	if (fs->cfg.refresh)
		fs->cfg.refresh(fs->cfg.refresh_ctx);
	return 0;
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	int r = write_handle(fs_of(req), req, handle_of(fi), buf, size);

	(void)ino;
	(void)off; /* a control file is a stream: writes append */
	if (r < 0)
		fuse_reply_err(req, -r);
	else if (r == 0)
		fuse_reply_write(req, size);
	/* 1: the actor replies */
}

/* close(2): a last line without its newline is acted on now, and close
 * returns its outcome (shells ignore it: end ids with a newline). */
static void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct handle *h = handle_of(fi);
	int r = h->n.kind == TREE_ACTION ? job_flush(fs_of(req), req, h) : 0;

	(void)ino;
	if (r <= 0)
		fuse_reply_err(req, -r); /* 0: success */
					 /* 1: the actor replies */
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct snapshot *s = fs_acquire(fs_of(req));
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

/* --- requests kept for after the first walk -------------------------- */

void fs_replay(struct fs *fs, struct deferred *d, bool stopping)
{
	while (d) {
		struct deferred *next = d->next;

		if (stopping)
			fuse_reply_err(d->req, EIO);
		else if (d->op == OP_LOOKUP)
			do_lookup(fs, d->req, d->ino, d->name);
		else
			do_opendir(fs, d->req, d->ino, &d->fi);
		free(d);
		d = next;
	}
}
