/* fs_mount: the mount context's life, from fs_new() to fs_free(), and
 * what the notifier asks of FUSE (the kernel's caches invalidated, by
 * name or by inode). The requests themselves are fs.c's.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <fuse_lowlevel.h>

#include "action_log.h"
#include "actor.h"
#include "fs_internal.h"
#include "handle.h"
#include "snapshot.h"

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

void fs_notify_entry(void *ctx, uint64_t parent, const char *name)
{
	struct fs *fs = ctx;

	fuse_lowlevel_notify_inval_entry(fs->se, parent, name, strlen(name));
}

void fs_notify_inode(void *ctx, uint64_t ino)
{
	struct fs *fs = ctx;

	fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0);
}

int fs_start(struct fs *fs, struct fuse_session *se)
{
	int r;

	fs->se = se;
	r = notifier_start(fs);
	if (r < 0)
		return r;
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
	notifier_stop(fs);
}

void fs_free(struct fs *fs)
{
	if (!fs)
		return;
	fs_stop(fs);
	while (fs->handles) /* never released by the kernel (unmounted) */
		handle_free(fs, fs->handles);
	notifier_release(fs);
	snapshot_unref(fs->current);
	actor_free(fs->actor);
	action_log_free(fs->log);
	pthread_mutex_destroy(&fs->publish_lock);
	pthread_mutex_destroy(&fs->lock);
	pthread_cond_destroy(&fs->wake);
	free(fs);
}
