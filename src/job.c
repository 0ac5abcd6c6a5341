/* job: a FUSE request that waits for its action.
 *
 * Owns: the request's side of an action: parsing what was written with
 * names resolved in the served snapshot, handing the action to the
 * actor, and when it is done, taking the runs it removed out of what is
 * served and answering the request, at once or once the kernel knows.
 * Leaves to others: the FUSE reply itself (fs.c), the control file's
 * input and parsing (action), running it (actor), what is served and
 * held replies (notifier.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "actor.h"
#include "fs_internal.h"
#include "handle.h"
#include "job.h"

/* A FUSE request waiting for its action. */
struct job {
	struct fs *fs;
	struct fuse_req *req;
	enum job_reply reply;
	size_t size; /* JOB_WRITE: the bytes written */
};

/* actor_done_fn */
static void job_done(void *ctx, struct action *act, int result)
{
	struct job *j = ctx;
	uint64_t gen = act->ran ? notifier_remove_runs(j->fs, act) : 0;

	/* A write's or close's reply waits until no kernel cache shows the
	 * removed runs: the notifier sends it then (the writer holds no
	 * lock an invalidation needs; the actor must not wait, an rmdir
	 * behind it in line holds one). rmdir and unlink hold their
	 * directory's, so they cannot wait: the kernel drops the entry they
	 * name itself, and the other views follow within moments. */
	if (j->reply == JOB_NOW || !gen ||
	    notifier_hold(j->fs, j->req, j->reply, result, j->size, gen) < 0)
		fs_reply_job(j->req, j->reply, result, j->size);
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

int job_submit(struct fs *fs, struct fuse_req *req, enum action_verb verb,
	       const char *text, size_t len, struct action_input *in,
	       enum job_reply reply, size_t size)
{
	struct snapshot *s = fs_acquire(fs);
	struct action *act;
	struct job *j;
	char err[256];
	int r;

	r = action_parse(verb, text, len, resolve, s, &act, err, sizeof(err));
	snapshot_unref(s);
	if (r < 0)
		return r;
	j = calloc(1, sizeof(*j));
	if (!j) {
		action_free(act);
		return -ENOMEM;
	}
	*j = (struct job){fs, req, reply, size};
	/* the reply may come before actor_submit() returns, and with it the
	 * file's next write, on another thread: nothing here touches @in
	 * after this */
	if (in)
		action_input_acted(in);
	r = actor_submit(fs->actor, act, job_done, j);
	if (r < 0) {
		action_free(act);
		free(j);
		return r;
	}
	return 1;
}

/* Hands @len bytes of lines from control file @h's input (@text, freed
 * here) to the actor. Returns 1 (submitted) or -errno. */
static int act_on(struct fs *fs, struct fuse_req *req, struct handle *h,
		  char *text, size_t len, enum job_reply reply, size_t size)
{
	int r = job_submit(fs, req, (enum action_verb)h->n.index, text, len,
			   &h->input, reply, size);

	free(text);
	return r;
}

int job_write(struct fs *fs, struct fuse_req *req, struct handle *h,
	      const char *buf, size_t size)
{
	char *text;
	size_t len;
	int r = action_input_write(&h->input, buf, size, &text, &len);

	return r == 1 ? act_on(fs, req, h, text, len, JOB_WRITE, size) : r;
}

int job_flush(struct fs *fs, struct fuse_req *req, struct handle *h)
{
	char *text;
	size_t len;
	int r = action_input_close(&h->input, &text, &len);

	return r == 1 ? act_on(fs, req, h, text, len, JOB_FLUSH, 0) : r;
}
