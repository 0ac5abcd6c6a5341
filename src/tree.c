/* tree: the directory tree of DESIGN.md section 1 over a snapshot.
 *
 * Owns: the mapping between (inode number | parent + name) and nodes,
 * listings, attributes, symlink targets and snapshot-to-snapshot diffs.
 * Leaves to others: FUSE replies and kernel notifications (fs), building
 * the snapshot (snapshot), the status text (status).
 * Everything here is a pure function of a snapshot: no locks, no I/O.
 */
#include <errno.h>
#include <string.h>

#include "action_verb.h"
#include "tree.h"

_Static_assert(TREE_NACTIONS == ACTION_NVERBS,
	       "one control file per action verb");

#define KEY_MASK (~((1ULL << SNAPSHOT_KEY_SHIFT) - 1))
#define LINK_SLOT 7
/* A directory occupies one 4 KiB block, whatever it lists: its st_size
 * counts entries (see tree_stat()), which are no measure of space. */
#define DIR_BLOCKS 8

/* .dlqfs/: status, refresh, actions.log, then one file per action verb */
#define CTL_NFIXED 3
#define CTL_SIZE (CTL_NFIXED + ACTION_NVERBS)
static const char *const ctl_names[CTL_NFIXED] = {"status", "refresh",
						  TREE_ACTLOG_NAME};

static void ctl_node(size_t i, struct tree_node *n)
{
	static const enum tree_kind kinds[CTL_NFIXED] = {
		TREE_STATUS, TREE_REFRESH, TREE_ACTLOG};

	if (i < CTL_NFIXED) {
		n->kind = kinds[i];
	} else {
		n->kind = TREE_ACTION;
		n->index = (uint32_t)(i - CTL_NFIXED);
	}
}

static const char *ctl_name(size_t i)
{
	return i < CTL_NFIXED ? ctl_names[i]
			      : action_verb_names[i - CTL_NFIXED];
}

int tree_resolve(const struct snapshot *s, uint64_t ino, struct tree_node *ret)
{
	struct snapshot_ref ref;
	unsigned low = (unsigned)(ino & ~KEY_MASK);
	struct tree_node n = {0};

	if (ino < TREE_INO_FIXED_END) {
		if (ino == TREE_INO_ROOT)
			n.kind = TREE_ROOT;
		else if (ino == TREE_INO_RUNS)
			n.kind = TREE_RUNS;
		else if (ino >= TREE_INO_VIEW0 &&
			 ino < TREE_INO_VIEW0 + VIEW_COUNT) {
			n.kind = TREE_VIEW;
			n.view = (int)(ino - TREE_INO_VIEW0);
		} else if (ino == TREE_INO_CTL)
			n.kind = TREE_CTL;
		else if (ino == TREE_INO_STATUS)
			n.kind = TREE_STATUS;
		else if (ino == TREE_INO_REFRESH)
			n.kind = TREE_REFRESH;
		else if (ino == TREE_INO_ACTLOG)
			n.kind = TREE_ACTLOG;
		else if (ino >= TREE_INO_ACTION0 &&
			 ino < TREE_INO_ACTION0 + ACTION_NVERBS) {
			n.kind = TREE_ACTION;
			n.index = (uint32_t)(ino - TREE_INO_ACTION0);
		} else
			return -ENOENT;
		*ret = n;
		return 0;
	}
	if (snapshot_find_key(s, ino, &ref) < 0)
		return -ENOENT;
	n.index = ref.index;
	if (ref.view == SNAPSHOT_REF_JSON) {
		if (low != MESSAGE_JSON + 1)
			return -ENOENT;
		n.kind = TREE_FILE;
		n.file = MESSAGE_JSON;
	} else if (ref.view >= 0) {
		if (low)
			return -ENOENT;
		n.kind = TREE_VALUE;
		n.view = ref.view;
	} else if (low == 0) {
		n.kind = TREE_RUN;
	} else if (low <= MESSAGE_NFILES && low != MESSAGE_JSON + 1) {
		n.kind = TREE_FILE;
		n.file = (int)low - 1;
		if (!message_file_exists(s->runs[n.index].msg, n.file))
			return -ENOENT;
	} else if (low == LINK_SLOT && s->runs[n.index].nlinks) {
		n.kind = TREE_LINK;
	} else {
		return -ENOENT;
	}
	*ret = n;
	return 0;
}

uint64_t tree_ino(const struct snapshot *s, const struct tree_node *n)
{
	switch (n->kind) {
	case TREE_ROOT:
		return TREE_INO_ROOT;
	case TREE_RUNS:
		return TREE_INO_RUNS;
	case TREE_VIEW:
		return TREE_INO_VIEW0 + (uint64_t)n->view;
	case TREE_CTL:
		return TREE_INO_CTL;
	case TREE_STATUS:
		return TREE_INO_STATUS;
	case TREE_REFRESH:
		return TREE_INO_REFRESH;
	case TREE_ACTION:
		return TREE_INO_ACTION0 + n->index;
	case TREE_ACTLOG:
		return TREE_INO_ACTLOG;
	case TREE_RUN:
		return s->runs[n->index].key;
	case TREE_FILE:
		return (n->file == MESSAGE_JSON ? s->runs[n->index].json_key
						: s->runs[n->index].key) |
		       (uint64_t)(n->file + 1);
	case TREE_LINK:
		return s->runs[n->index].key | LINK_SLOT;
	case TREE_VALUE:
		return s->view[n->view].values[n->index].key;
	}
	return 0;
}

int tree_needs_runs(const struct tree_node *n)
{
	return n->kind == TREE_RUNS || n->kind == TREE_VIEW;
}

int tree_is_dir(const struct tree_node *n)
{
	return n->kind != TREE_FILE && n->kind != TREE_LINK &&
	       n->kind != TREE_STATUS && n->kind != TREE_REFRESH &&
	       n->kind != TREE_ACTION && n->kind != TREE_ACTLOG;
}

int tree_lookup(const struct snapshot *s, const struct tree_node *dir,
		const char *name, struct tree_node *ret)
{
	struct tree_node n = {0};
	int64_t i;

	switch (dir->kind) {
	case TREE_ROOT:
		if (!strcmp(name, TREE_RUNS_NAME)) {
			n.kind = TREE_RUNS;
		} else if (!strcmp(name, TREE_CTL_NAME)) {
			n.kind = TREE_CTL;
		} else {
			for (n.view = 0; n.view < VIEW_COUNT; n.view++)
				if (!strcmp(name, snapshot_view_names[n.view]))
					break;
			if (n.view == VIEW_COUNT)
				return -ENOENT;
			n.kind = TREE_VIEW;
		}
		break;
	case TREE_CTL:
		for (i = 0; i < CTL_SIZE; i++)
			if (!strcmp(name, ctl_name((size_t)i)))
				break;
		if (i == CTL_SIZE)
			return -ENOENT;
		ctl_node((size_t)i, &n);
		break;
	case TREE_RUNS:
		i = snapshot_find_run(s, name);
		if (i < 0)
			return -ENOENT;
		n.kind = TREE_RUN;
		n.index = (uint32_t)i;
		break;
	case TREE_VIEW:
		i = snapshot_find_value(s, dir->view, name);
		if (i < 0)
			return -ENOENT;
		n.kind = TREE_VALUE;
		n.view = dir->view;
		n.index = (uint32_t)i;
		break;
	case TREE_RUN:
		for (n.file = 0; n.file < MESSAGE_NFILES; n.file++)
			if (!strcmp(name, message_file_names[n.file]))
				break;
		if (n.file == MESSAGE_NFILES ||
		    !message_file_exists(s->runs[dir->index].msg, n.file))
			return -ENOENT;
		n.kind = TREE_FILE;
		n.index = dir->index;
		break;
	case TREE_VALUE:
		i = snapshot_find_run(s, name);
		if (i < 0 || snapshot_value_find_run(
				     s, &s->view[dir->view].values[dir->index],
				     (uint32_t)i) < 0)
			return -ENOENT;
		n.kind = TREE_LINK;
		n.index = (uint32_t)i;
		break;
	default:
		return -ENOTDIR;
	}
	*ret = n;
	return 0;
}

static int run_nfiles(const struct snapshot *s, uint32_t run)
{
	int n = 0;

	for (int f = 0; f < MESSAGE_NFILES; f++)
		n += message_file_exists(s->runs[run].msg, f);
	return n;
}

size_t tree_dir_size(const struct snapshot *s, const struct tree_node *dir)
{
	switch (dir->kind) {
	case TREE_ROOT:
		return 2 + VIEW_COUNT;
	case TREE_CTL:
		return CTL_SIZE;
	case TREE_RUNS:
		return s->nruns;
	case TREE_VIEW:
		return s->view[dir->view].nvalues;
	case TREE_RUN:
		return (size_t)run_nfiles(s, dir->index);
	case TREE_VALUE:
		return s->view[dir->view].values[dir->index].nruns;
	default:
		return 0;
	}
}

uint64_t tree_dir_tag(const struct snapshot *s, const struct tree_node *dir)
{
	switch (dir->kind) {
	case TREE_RUNS:
		return s->tag;
	case TREE_VIEW:
		return s->view[dir->view].tag;
	case TREE_VALUE:
		return s->view[dir->view].values[dir->index].tag;
	case TREE_RUN:
		/* its files follow from message.json's content */
		return s->runs[dir->index].json_key;
	default:
		return (uint64_t)dir->kind; /* fixed listings */
	}
}

void tree_dir_entry(const struct snapshot *s, const struct tree_node *dir,
		    size_t i, const char **ret_name, struct tree_node *ret)
{
	struct tree_node n = {0};
	const struct snapshot_value *v;

	switch (dir->kind) {
	case TREE_ROOT:
		if (i == 0) {
			n.kind = TREE_RUNS;
			*ret_name = TREE_RUNS_NAME;
		} else if (i <= VIEW_COUNT) {
			n.kind = TREE_VIEW;
			n.view = (int)i - 1;
			*ret_name = snapshot_view_names[n.view];
		} else {
			n.kind = TREE_CTL;
			*ret_name = TREE_CTL_NAME;
		}
		break;
	case TREE_CTL:
		ctl_node(i, &n);
		*ret_name = ctl_name(i);
		break;
	case TREE_RUNS:
		n.kind = TREE_RUN;
		n.index = (uint32_t)i;
		*ret_name = s->runs[i].name;
		break;
	case TREE_VIEW:
		n.kind = TREE_VALUE;
		n.view = dir->view;
		n.index = (uint32_t)i;
		*ret_name = s->view[dir->view].values[i].name;
		break;
	case TREE_RUN:
		n.kind = TREE_FILE;
		n.index = dir->index;
		for (n.file = 0; n.file < MESSAGE_NFILES; n.file++) {
			if (!message_file_exists(s->runs[dir->index].msg,
						 n.file))
				continue;
			if (i-- == 0)
				break;
		}
		*ret_name = message_file_names[n.file];
		break;
	case TREE_VALUE:
		v = &s->view[dir->view].values[dir->index];
		n.kind = TREE_LINK;
		n.index = v->runs[i];
		*ret_name = s->runs[n.index].name;
		break;
	default:
		break;
	}
	*ret = n;
}

static struct timespec ms_time(int64_t ms, struct timespec fallback)
{
	struct timespec ts;

	if (ms < 0)
		return fallback;
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	return ts;
}

static struct timespec created(const struct snapshot *s, uint32_t run)
{
	const struct message *m = s->runs[run].msg;

	return m->has_created && m->created_ms >= 0
		       ? ms_time(m->created_ms, (struct timespec){0, 0})
		       : (struct timespec){0, 0};
}

void tree_stat(const struct tree_ctx *ctx, const struct snapshot *s,
	       const struct tree_node *n, struct stat *ret)
{
	struct stat st;
	struct timespec t = ctx->mounted;

	memset(&st, 0, sizeof(st));
	st.st_ino = tree_ino(s, n);
	st.st_uid = ctx->uid;
	st.st_gid = ctx->gid;
	st.st_blksize = 4096;
	st.st_mode = S_IFDIR | 0555;
	st.st_nlink = 2;
	/* entries, as ZFS counts them: ls -l by-status/ says how many runs
	 * failed with each status. The swap's diff invalidates a directory
	 * whose listing changed, so the kernel never keeps a stale count. */
	st.st_size = (off_t)tree_dir_size(s, n);

	switch (n->kind) {
	case TREE_ROOT:
		st.st_nlink = 2 + 2 + VIEW_COUNT;
		t = ms_time(s->newest_ms, ctx->mounted);
		break;
	case TREE_RUNS:
		st.st_nlink = 2 + s->nruns;
		t = ms_time(s->newest_ms, ctx->mounted);
		break;
	case TREE_VIEW:
		st.st_nlink = 2 + s->view[n->view].nvalues;
		t = ms_time(s->newest_ms, ctx->mounted);
		break;
	case TREE_CTL:
		break;
	case TREE_STATUS:
		st.st_mode = S_IFREG | 0444;
		st.st_nlink = 1;
		st.st_size = ctx->status_size;
		break;
	case TREE_REFRESH:
		st.st_mode = S_IFREG | 0644;
		st.st_nlink = 1;
		st.st_size = 0;
		break;
	case TREE_ACTION:
		/* writable by the owner even on a read-only mount, so that a
		 * write is refused with EROFS, which says why; readable (and
		 * empty), so that rsync -a of the mount needs no exclusions */
		st.st_mode = S_IFREG | 0644;
		st.st_nlink = 1;
		st.st_size = 0;
		break;
	case TREE_ACTLOG:
		st.st_mode = S_IFREG | 0444;
		st.st_nlink = 1;
		st.st_size = ctx->actlog_size;
		break;
	case TREE_RUN:
		t = created(s, n->index);
		break;
	case TREE_FILE:
		st.st_mode = S_IFREG | 0444;
		st.st_nlink = 1;
		st.st_size = (off_t)message_file_size(s->runs[n->index].msg,
						      n->file);
		t = n->file == MESSAGE_JSON ? s->runs[n->index].json_mtime
					    : created(s, n->index);
		break;
	case TREE_VALUE:
		t = ms_time(s->view[n->view].values[n->index].newest_ms,
			    ctx->mounted);
		break;
	case TREE_LINK:
		st.st_mode = S_IFLNK | 0777;
		st.st_nlink = s->runs[n->index].nlinks;
		st.st_size = (off_t)(strlen(TREE_LINK_PREFIX) +
				     strlen(s->runs[n->index].name));
		t = created(s, n->index);
		break;
	}
	st.st_blocks =
		S_ISDIR(st.st_mode) ? DIR_BLOCKS : (st.st_size + 511) / 512;
	st.st_mtim = st.st_ctim = st.st_atim = t;
	*ret = st;
}

const struct message *tree_file(const struct snapshot *s,
				const struct tree_node *n)
{
	return s->runs[n->index].msg;
}

size_t tree_readlink(const struct snapshot *s, const struct tree_node *n,
		     char *buf)
{
	const char *name = s->runs[n->index].name;
	size_t p = strlen(TREE_LINK_PREFIX), l = strlen(name);

	memcpy(buf, TREE_LINK_PREFIX, p);
	memcpy(buf + p, name, l + 1);
	return p + l;
}

/* --- diff ------------------------------------------------------------- */

struct differ {
	const struct tree_diff_ops *ops;
	void *ctx;
	size_t calls;
};

static void d_entry(struct differ *d, uint64_t parent, const char *name)
{
	d->ops->entry(d->ctx, parent, name);
	d->calls++;
}

static void d_inode(struct differ *d, uint64_t ino)
{
	d->ops->inode(d->ctx, ino);
	d->calls++;
}

static void diff_run(struct differ *d, const struct snapshot_run *o,
		     const struct snapshot_run *n)
{
	for (int f = 0; f < MESSAGE_NFILES; f++) {
		bool a = message_file_exists(o->msg, f);
		bool b = message_file_exists(n->msg, f);

		/* may say "changed" for the same bytes sent another way: an
		 * invalidation too many, never one too few */
		if (o->msg == n->msg || message_file_same(o->msg, n->msg, f))
			continue;
		if (a != b) {
			d_entry(d, n->key, message_file_names[f]);
			d_inode(d, n->key);
		} else if (f == MESSAGE_JSON) {
			/* a new content is a new inode: move the name */
			d_entry(d, n->key, message_file_names[f]);
		} else
			d_inode(d, n->key | (uint64_t)(f + 1));
	}
	if (o->nlinks != n->nlinks)
		d_inode(d, n->key | LINK_SLOT);
}

/* Merges two sorted run lists (as run indexes into their snapshots) and
 * reports names only in one of them. Returns non-zero when they differ. */
static int diff_run_lists(struct differ *d, uint64_t parent,
			  const struct snapshot *os, const uint32_t *ol,
			  size_t on, const struct snapshot *ns,
			  const uint32_t *nl, size_t nn, int deep)
{
	size_t i = 0, j = 0;
	int changed = 0;

	while (i < on || j < nn) {
		const struct snapshot_run *o =
			i < on ? &os->runs[ol ? ol[i] : i] : NULL;
		const struct snapshot_run *n =
			j < nn ? &ns->runs[nl ? nl[j] : j] : NULL;
		int c = !o ? 1 : !n ? -1 : strcmp(o->name, n->name);

		if (c < 0) {
			d_entry(d, parent, o->name);
			changed = 1;
			i++;
		} else if (c > 0) {
			d_entry(d, parent, n->name);
			changed = 1;
			j++;
		} else {
			if (deep)
				diff_run(d, o, n);
			i++;
			j++;
		}
	}
	return changed;
}

static void diff_view(struct differ *d, int view, const struct snapshot *os,
		      const struct snapshot *ns)
{
	const struct snapshot_view *ov = &os->view[view], *nv = &ns->view[view];
	uint64_t dir = TREE_INO_VIEW0 + (uint64_t)view;
	size_t i = 0, j = 0;
	int changed = 0;

	while (i < ov->nvalues || j < nv->nvalues) {
		const struct snapshot_value *o =
			i < ov->nvalues ? &ov->values[i] : NULL;
		const struct snapshot_value *n =
			j < nv->nvalues ? &nv->values[j] : NULL;
		int c = !o ? 1 : !n ? -1 : strcmp(o->name, n->name);

		if (c < 0) {
			d_entry(d, dir, o->name);
			changed = 1;
			i++;
		} else if (c > 0) {
			d_entry(d, dir, n->name);
			changed = 1;
			j++;
		} else {
			if (diff_run_lists(d, n->key, os, o->runs, o->nruns, ns,
					   n->runs, n->nruns, 0) ||
			    o->newest_ms != n->newest_ms)
				d_inode(d, n->key);
			i++;
			j++;
		}
	}
	if (changed || os->newest_ms != ns->newest_ms)
		d_inode(d, dir);
}

size_t tree_diff(const struct snapshot *old, const struct snapshot *new,
		 const struct tree_diff_ops *ops, void *ctx)
{
	struct differ d = {ops, ctx, 0};

	if (diff_run_lists(&d, TREE_INO_RUNS, old, NULL, old->nruns, new, NULL,
			   new->nruns, 1) ||
	    old->newest_ms != new->newest_ms)
		d_inode(&d, TREE_INO_RUNS);
	for (int v = 0; v < VIEW_COUNT; v++)
		diff_view(&d, v, old, new);
	if (old->newest_ms != new->newest_ms)
		d_inode(&d, TREE_INO_ROOT);
	return d.calls;
}
