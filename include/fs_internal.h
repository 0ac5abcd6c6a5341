/* fs_internal: the mount context that the parts of fs share, and what
 * fs.c and notifier.c call of each other. Only fs.c, notifier.c,
 * handle.c and job.c include it.
 *
 * fs.c answers FUSE requests (and alone speaks FUSE); notifier.c
 * publishes snapshots (walks, and the runs actions removed) and tells the
 * kernel what changed, from its own thread, through fs.c; handle.c keeps
 * the open files and directories, listed here.
 */
#ifndef DLQFS_FS_INTERNAL_H
#define DLQFS_FS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "fs.h"
#include "job.h"

struct action;
struct action_log;
struct actor;
struct deferred;
struct fuse_req; /* fuse_req_t */
struct fuse_session;
struct handle;
struct held;
struct tombstone;

/* Snapshots kept after their swap (see struct fs): every one until the
 * kernel has been told it is gone, then for FS_RETIRED_GRACE seconds (a
 * listing read from the kernel's cache just before it was invalidated
 * goes on with its cookies; a lookup answered just before it was
 * replaced is used), the newest FS_RETIRED_MAX of those. */
#define FS_RETIRED_MAX 8
#define FS_RETIRED_GRACE 30.0

/* A snapshot served before. */
struct retired {
	struct snapshot *s;
	double told_at; /* when the kernel was told of a newer one, or 0 */
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

/* ---- fs.c, for the notifier ---- */

/* The served snapshot, a new reference. Takes fs->lock. */
struct snapshot *fs_acquire(struct fs *fs);

/* Answers @req: a write's @size when @result >= 0 (JOB_WRITE), else the
 * error @result, or 0. */
void fs_reply_job(struct fuse_req *req, enum job_reply reply, int result,
		  size_t size);

/* Answers the requests @d kept for after the first walk (a list, freed):
 * with EIO when @stopping, else as they would have been. Call without
 * fs->lock. */
void fs_replay(struct fs *fs, struct deferred *d, bool stopping);

/* tree_diff_ops for @fs: tells the kernel to forget a name, an inode.
 * Never from a request, never under a lock a request needs. */
void fs_notify_entry(void *fs, uint64_t parent, const char *name);
void fs_notify_inode(void *fs, uint64_t ino);

/* ---- notifier.c, for the requests ---- */

/* After @act ran: the runs it removed from the DLQ leave the served
 * snapshot now, and stay out of the next walk published (it may have
 * listed them before the action). Returns the generation of the snapshot
 * without them, or 0 when nothing changed. Takes publish_lock. */
uint64_t notifier_remove_runs(struct fs *fs, const struct action *act);

/* Holds the reply to @req (see fs_reply_job()) until the kernel has been
 * told of generation @gen; the notifier sends it then. Returns 0, or
 * -ENOMEM / -ESHUTDOWN: then the caller replies now. */
int notifier_hold(struct fs *fs, struct fuse_req *req, enum job_reply reply,
		  int result, size_t size, uint64_t gen);

/* Starts the notifier thread (fs->se is set). Returns 0 or -errno. */
int notifier_start(struct fs *fs);

/* Stops it: it answers what it holds first. Call while the FUSE loop
 * still answers requests. */
void notifier_stop(struct fs *fs);

/* Frees the snapshots kept after their swap and the tombstones. */
void notifier_release(struct fs *fs);

#endif
