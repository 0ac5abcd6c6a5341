/* notifier: what is served, and telling the kernel when it changes.
 *
 * Owns: swapping the served snapshot (a walk's, through fs_publish(); or
 * the one without the runs an action removed), the numbering of what is
 * served, the snapshots kept after their swap and when they go, the
 * tombstones (runs an action removed, kept out of the snapshots a walk
 * publishes until a walk that started after the action says what is
 * true), the replies held until the kernel knows of a removal, and the
 * notifier thread that tells the kernel what changed after each swap and
 * releases the requests that waited for the first walk.
 * Leaves to others: speaking FUSE (fs.c: the notifications, the replies,
 * answering kept requests), what changed between two snapshots (tree),
 * building snapshots (walker, snapshot).
 * struct fs and its locks are in fs_internal.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "action.h"
#include "fs_internal.h"
#include "tree.h"

/* The reply to a write or close, held until the kernel has been told of
 * the snapshot without the runs its action removed. */
struct held {
	struct held *next;
	struct fuse_req *req;
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

static const struct tree_diff_ops tell = {fs_notify_entry, fs_notify_inode};

/* --- tombstones -------------------------------------------------------- */

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

/* --- swapping ---------------------------------------------------------- */

static double monotonic_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Tells the status what the snapshots in fs->retired cost. Call with
 * fs->lock held. */
static void account_kept(struct fs *fs)
{
	uint64_t bytes = 0;

	/* the chain's cost is the sum of each one's against the next */
	for (size_t i = 0; i < fs->nretired; i++) {
		const struct snapshot *kept = fs->retired[i].s;

		bytes += snapshot_kept_bytes(&kept, 1,
					     i + 1 < fs->nretired
						     ? fs->retired[i + 1].s
						     : fs->current);
	}
	atomic_store(&fs->st->kept_snapshots, fs->nretired);
	atomic_store(&fs->st->kept_bytes, bytes);
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
	account_kept(fs);
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

/* --- publishing -------------------------------------------------------- */

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
	struct snapshot *s = fs_acquire(fs);

	if (!s->generation) { /* the empty one served before any walk */
		snapshot_unref(s);
		return NULL;
	}
	return s;
}

uint64_t notifier_remove_runs(struct fs *fs, const struct action *act)
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
		base = fs_acquire(fs);
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

/* --- held replies ------------------------------------------------------ */

int notifier_hold(struct fs *fs, struct fuse_req *req, enum job_reply reply,
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

		fs_reply_job(ready->req, ready->reply, ready->result,
			     ready->size);
		free(ready);
		ready = next;
	}
}

/* --- the thread -------------------------------------------------------- */

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
		bool stopping = false;
		struct snapshot *cur;
		uint64_t served;

		while (!fs->stop && fs->current == last && fs->served == told &&
		       !(fs->first_done && fs->deferred) && !fs->held)
			if (wait_or_prune(fs) < 0)
				break; /* cannot wait: go round */
		if (fs->first_done || fs->stop) {
			waiting = fs->deferred;
			fs->deferred = NULL;
			stopping = fs->stop;
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
				fs_notify_inode(fs, TREE_INO_ROOT);
				fs_notify_inode(fs, TREE_INO_RUNS);
				for (int v = 0; v < VIEW_COUNT; v++)
					fs_notify_inode(fs,
							TREE_INO_VIEW0 +
								(uint64_t)v);
			} else {
				tree_diff(from, to, &tell, fs);
			}
		}
		unref_all(chain, nchain);
		free(chain);
		fs_replay(fs, waiting, stopping);
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

int notifier_start(struct fs *fs)
{
	int r = pthread_create(&fs->notifier, NULL, notifier_main, fs);

	if (r)
		return -r;
	fs->notifier_running = 1;
	return 0;
}

void notifier_stop(struct fs *fs)
{
	if (!fs->notifier_running)
		return;
	pthread_mutex_lock(&fs->lock);
	fs->stop = 1;
	pthread_cond_broadcast(&fs->wake);
	pthread_mutex_unlock(&fs->lock);
	pthread_join(fs->notifier, NULL);
	fs->notifier_running = 0;
}

void notifier_release(struct fs *fs)
{
	for (size_t i = 0; i < fs->nretired; i++)
		snapshot_unref(fs->retired[i].s);
	free(fs->retired);
	for (size_t i = 0; i < fs->ntombs; i++)
		free(fs->tombs[i].id);
	free(fs->tombs);
}
