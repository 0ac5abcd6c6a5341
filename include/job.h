/* job: a FUSE request that waits for its action.
 *
 * A write to a control file, its close(2), rmdir runs/<id> and rm
 * <view>/<value>/<id> become actions for the actor, which runs them on
 * its own thread; the request is answered when the action is done, and
 * a write or close only once the kernel has been told of the runs it
 * removed. Part of fs: only fs.c uses it, and nothing here speaks FUSE
 * (replies go through fs_reply_job()).
 */
#ifndef DLQFS_JOB_H
#define DLQFS_JOB_H

#include <stddef.h>

#include "action.h"

struct fs;
struct fuse_req; /* fuse_req_t */
struct handle;

/* How an action's FUSE request is answered: a write (its size, or an
 * error), a close (an error or 0: both wait, like the write, until the
 * kernel has been told of the removed runs), or rmdir/unlink (at once:
 * they hold their directory's lock, which an invalidation needs). */
enum job_reply { JOB_WRITE, JOB_FLUSH, JOB_NOW };

/* Parses @len bytes of @text for @verb, the names in it resolved in the
 * served snapshot, and hands the action to the actor; @in (may be NULL),
 * the control file's input the text came from, learns first that it was
 * accepted (action_input_acted()). Returns 1 (submitted: @req is
 * answered once the action is done) or a negative errno (the caller
 * answers). */
int job_submit(struct fs *fs, struct fuse_req *req, enum action_verb verb,
	       const char *text, size_t len, struct action_input *in,
	       enum job_reply reply, size_t size);

/* A write of @size bytes to control file @h: whole lines are acted on at
 * once, a last line without its newline waits for the next write or
 * close(2). Returns 0 (reply now), 1 (submitted) or -errno. */
int job_write(struct fs *fs, struct fuse_req *req, struct handle *h,
	      const char *buf, size_t size);

/* close(2) of control file @h: a last line not ended by a newline is
 * acted on now. Returns 0, 1 (submitted) or -errno. */
int job_flush(struct fs *fs, struct fuse_req *req, struct handle *h);

#endif
