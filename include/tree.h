/* tree: the directory tree of DESIGN.md section 1 over a snapshot.
 *
 * Owns: node kinds, inode numbers, names of fixed entries, lookup by name,
 * directory listings, attributes (modes, times, sizes, link counts),
 * symlink targets, and the difference between two snapshots as the
 * entries and inodes the kernel must forget.
 * Leaves to others: FUSE (fs), the content of .dlqfs/status (status), the
 * runs and views themselves (snapshot).
 *
 * Inode numbers: fixed ones below TREE_INO_FIXED_END; a run directory is
 * its snapshot key, its files key|2..key|6 (enum message_file + 1) but
 * message.json, which is json_key|1 (a key from its name and content: the
 * one file whose content can change gets a new inode when it does, so an
 * open copy keeps its bytes and size), and
 * the symlink that every view entry of the run shares (a hard-linked
 * symlink, nlink = number of view entries) key|7; a view value directory
 * is its snapshot key. Keys derive from names, so an inode number stays
 * the same for a path across refreshes.
 */
#ifndef DLQFS_TREE_H
#define DLQFS_TREE_H

#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "snapshot.h"

enum tree_kind {
	TREE_ROOT,
	TREE_RUNS,    /* runs/ */
	TREE_VIEW,    /* by-xxx/ (.view) */
	TREE_CTL,     /* .dlqfs/ */
	TREE_STATUS,  /* .dlqfs/status */
	TREE_REFRESH, /* .dlqfs/refresh */
	TREE_ACTION,  /* .dlqfs/{delete,resume,...} (.index = action_verb) */
	TREE_ACTLOG,  /* .dlqfs/actions.log */
	TREE_RUN,     /* runs/<id>/ (.index = run) */
	TREE_FILE,    /* runs/<id>/<file> (.index = run, .file) */
	TREE_VALUE,   /* by-xxx/<value>/ (.view, .index = value) */
	TREE_LINK,    /* by-xxx/<value>/<id> (.index = run) */
};

struct tree_node {
	enum tree_kind kind;
	int view;	/* TREE_VIEW, TREE_VALUE */
	uint32_t index; /* run or value index in the snapshot */
	int file;	/* TREE_FILE: enum message_file */
};

#define TREE_INO_ROOT 1
#define TREE_INO_RUNS 2
#define TREE_INO_VIEW0 3 /* 3 .. 3 + VIEW_COUNT - 1 */
#define TREE_INO_CTL (TREE_INO_VIEW0 + VIEW_COUNT)
#define TREE_INO_STATUS (TREE_INO_CTL + 1)
#define TREE_INO_REFRESH (TREE_INO_CTL + 2)
/* The control files .dlqfs/{delete,resume,...}: one per enum action_verb
 * (ACTION_NVERBS; tree.c checks that the two agree). Their number fixes
 * the inode numbers after them, so it is a constant here rather than a
 * reason to include the action module. */
#define TREE_NACTIONS 4
#define TREE_INO_ACTION0 (TREE_INO_CTL + 3) /* + enum action_verb */
#define TREE_INO_ACTLOG (TREE_INO_ACTION0 + TREE_NACTIONS)
#define TREE_INO_FIXED_END (TREE_INO_ACTLOG + 1)

#define TREE_CTL_NAME ".dlqfs"
#define TREE_RUNS_NAME "runs"
#define TREE_LINK_PREFIX "../../runs/"
#define TREE_ACTLOG_NAME "actions.log"

/* What the tree needs from the mount. */
struct tree_ctx {
	uid_t uid;
	gid_t gid;
	struct timespec mounted; /* time of fixed entries with no better one */
	off_t status_size;	 /* current size of .dlqfs/status */
	off_t actlog_size;	 /* current size of .dlqfs/actions.log */
};

/* The node for @ino in @s. Returns 0, or -ENOENT (not in this snapshot). */
int tree_resolve(const struct snapshot *s, uint64_t ino, struct tree_node *ret);

/* The inode number of @n. */
uint64_t tree_ino(const struct snapshot *s, const struct tree_node *n);

/* True for the directories whose content comes from the snapshot (they
 * cannot be answered before the first walk). */
int tree_needs_runs(const struct tree_node *n);

/* True for a directory: anything but a file, a symlink, or one of the
 * files of .dlqfs/. */
int tree_is_dir(const struct tree_node *n);

/* Looks @name up in directory @dir. Returns 0 and @ret, -ENOENT, or
 * -ENOTDIR when @dir is not a directory. */
int tree_lookup(const struct snapshot *s, const struct tree_node *dir,
		const char *name, struct tree_node *ret);

/* Number of entries in directory @dir, without "." and "..". */
size_t tree_dir_size(const struct snapshot *s, const struct tree_node *dir);

/* The identity of @dir's listing: equal tags (in any two snapshots) mean
 * the same entries, names and inodes, in the same order. */
uint64_t tree_dir_tag(const struct snapshot *s, const struct tree_node *dir);

/* Entry @i (< tree_dir_size()) of @dir: its name (borrowed from @s or
 * static) and node. */
void tree_dir_entry(const struct snapshot *s, const struct tree_node *dir,
		    size_t i, const char **ret_name, struct tree_node *ret);

/* Attributes of @n. A directory's st_size is its number of entries
 * (tree_dir_size()), and its st_blocks one 4 KiB block; a file's st_size
 * is the length of what a read returns. */
void tree_stat(const struct tree_ctx *ctx, const struct snapshot *s,
	       const struct tree_node *n, struct stat *ret);

/* The message whose file a TREE_FILE node is (borrowed from @s): its
 * bytes are message_file_render(tree_file(s, n), n->file, buf). */
const struct message *tree_file(const struct snapshot *s,
				const struct tree_node *n);

/* Target of a TREE_LINK node, "../../runs/<id>", NUL-terminated in @buf
 * (which holds at least TREE_LINK_MAX bytes). Returns its length. */
#define TREE_LINK_MAX (sizeof(TREE_LINK_PREFIX) + NAMES_MAX + 1)
size_t tree_readlink(const struct snapshot *s, const struct tree_node *n,
		     char *buf);

/* What the kernel must forget when @new replaces @old. */
struct tree_diff_ops {
	/* @name disappeared from, or appeared in, directory @parent */
	void (*entry)(void *ctx, uint64_t parent, const char *name);
	/* the attributes or content of @ino changed */
	void (*inode)(void *ctx, uint64_t ino);
};

/* Calls @ops for every name added or removed and every inode changed
 * between @old and @new. Returns the number of calls made. */
size_t tree_diff(const struct snapshot *old, const struct snapshot *new,
		 const struct tree_diff_ops *ops, void *ctx);

#endif
