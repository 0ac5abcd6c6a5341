/* fs: the FUSE low-level operations over the current snapshot.
 *
 * Holds the served snapshot (swapped atomically by fs_publish()), answers
 * every request from memory, defers the requests that need runs until the
 * first walk has finished (replying from another thread, so no FUSE
 * thread waits), and tells the kernel what changed after each swap from
 * its own notifier thread. Actions go the other way: a write to a control
 * file, rmdir or rm becomes an action for the actor, and the runs it
 * removed leave the served snapshot at once.
 * In four files: fs.c answers the requests, handle.c keeps what is open,
 * job.c hands actions to the actor and answers when they are done,
 * notifier.c publishes and tells the kernel (fs_publish(), fs_served()).
 */
#ifndef DLQFS_FS_H
#define DLQFS_FS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "api.h"
#include "snapshot.h"
#include "status.h"

struct fuse_session;
struct fuse_lowlevel_ops;

struct fs_config {
	uid_t uid;
	gid_t gid;
	double dir_timeout;  /* entries and attributes that may change */
	double file_timeout; /* run files, which never change for an inode */
	double neg_timeout;  /* names that do not exist */
	/* called on a write to .dlqfs/refresh */
	void (*refresh)(void *ctx);
	void *refresh_ctx;
	/* actions (.dlqfs/{delete,...}, rmdir, rm): through a client of its
	 * own for @api (borrowed until fs_start() copies it; NULL: none);
	 * each verb refused with EROFS unless allowed */
	const struct api_config *api;
	bool allow_delete; /* delete, rmdir runs/<id>, rm <view>/<v>/<id> */
	bool allow_resume; /* resume, restart, callback */
	/* directories are opened by the kernel, without a request (once the
	 * first walk is served, where the kernel supports it) */
	bool zero_opendir;
};

struct fs;

/* A new fs serving an empty snapshot, or NULL. @st is borrowed. */
struct fs *fs_new(const struct fs_config *cfg, struct status *st);

/* The operations to give fuse_session_new(), with the fs as userdata. */
const struct fuse_lowlevel_ops *fs_ops(void);
size_t fs_ops_size(void);

/* Starts the notifier thread (and the actor's) on @se. Returns 0 or
 * -errno. */
int fs_start(struct fs *fs, struct fuse_session *se);

/* Serves @snap (taking its reference); NULL records a failed walk, which
 * releases requests waiting for the first walk with EIO. Once the kernel
 * has been told what changed, status->refresh_served becomes @served, so a
 * reader of .dlqfs/status who sees its request served sees no stale name.
 * Called by the walker thread (walker_done_fn). */
void fs_publish(void *fs, struct snapshot *snap, uint64_t served);

/* The snapshot served now, a new reference (NULL before the first good
 * walk): the base an incremental walk merges into, so that a run an action
 * took out stays out. Called by the walker thread. */
struct snapshot *fs_served(void *fs);

/* Stops the actor (actions still queued fail with ECANCELED) and the
 * notifier thread; call it while the FUSE loop still answers requests.
 * x_free(NULL) is a no-op. */
void fs_stop(struct fs *fs);
void fs_free(struct fs *fs);

#endif
