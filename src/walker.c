/* walker: turns the pages of one scope into a complete snapshot, again
 * and again.
 *
 * Owns: the page loop (cursor following, bounds, cursor loops, dedupe
 * accounting), the walk thread with its schedule and refresh requests,
 * and the outcome written to struct status.
 * Leaves to others: HTTP and retries (http, api), parsing (message),
 * building and indexing (snapshot), serving and publishing (fs via the
 * done callback).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "walker.h"

struct walker {
	struct walker_config cfg;
	const struct walker_source *src;
	struct status *st;
	walker_done_fn done;
	void *ctx;
	int pipe[2]; /* wake-ups: refresh requests and stop */
	pthread_t thread;
	int running;
	struct snapshot *served; /* walker thread only: the last good one */
	uint64_t generation;	 /* walker thread only */
};

/* The cursors a walk has seen, as hashes: a cursor that comes back means
 * the API is sending us round in a loop. */
struct cursor_set {
	uint64_t *slots; /* 0: empty */
	size_t cap, n;	 /* cap: power of two */
};

/* Adds @cursor. Returns 1 if it was new, 0 if seen before, -ENOMEM. */
static int cursor_set_add(struct cursor_set *cs, const char *cursor)
{
	uint64_t h = names_hash64(cursor, strlen(cursor)) | 1;
	size_t i;

	if ((cs->n + 1) * 2 > cs->cap) {
		size_t cap = cs->cap ? cs->cap * 2 : 256;
		uint64_t *slots = calloc(cap, sizeof(*slots));

		if (!slots)
			return -ENOMEM;
		for (size_t j = 0; j < cs->cap; j++) {
			if (!cs->slots[j])
				continue;
			for (i = cs->slots[j] & (cap - 1); slots[i];
			     i = (i + 1) & (cap - 1))
				;
			slots[i] = cs->slots[j];
		}
		free(cs->slots);
		cs->slots = slots;
		cs->cap = cap;
	}
	for (i = h & (cs->cap - 1); cs->slots[i]; i = (i + 1) & (cs->cap - 1))
		if (cs->slots[i] == h)
			return 0;
	cs->slots[i] = h;
	cs->n++;
	return 1;
}

static void progress(struct status *st, const struct message_page *page)
{
	if (!st)
		return;
	pthread_mutex_lock(&st->lock);
	st->walk_pages++;
	st->walk_runs += page->n;
	status_touch(st);
	pthread_mutex_unlock(&st->lock);
}

int walker_walk(const struct walker_source *src, size_t max_pages,
		const struct snapshot *prev, uint64_t generation,
		struct status *st, struct snapshot **ret, struct api_error *err)
{
	struct snapshot_builder *b = snapshot_builder_new();
	struct cursor_set seen = {0};
	char *cursor = NULL;
	size_t pages = 0, malformed = 0, dups = 0, problems = 0;
	struct snapshot *s;
	struct timespec now;
	int r;

	memset(err, 0, sizeof(*err));
	if (!b)
		return -ENOMEM;
	if (st) {
		pthread_mutex_lock(&st->lock);
		st->walking = true;
		st->walk_pages = 0;
		st->walk_runs = 0;
		clock_gettime(CLOCK_REALTIME, &st->walk_started);
		status_touch(st);
		pthread_mutex_unlock(&st->lock);
	}
	for (;;) {
		struct message_page page = {0};

		if (pages == max_pages) {
			snprintf(err->text, sizeof(err->text),
				 "walk stopped after %zu pages (max_pages): "
				 "narrow the scope with -o from=/to=/label=",
				 pages);
			r = -EFBIG;
			goto fail;
		}
		r = src->list(src->ctx, cursor, &page, err);
		if (r < 0)
			goto fail;
		pages++;
		malformed += page.malformed;
		snapshot_builder_account(b, page.bytes);
		for (size_t i = 0; i < page.n; i++) {
			problems += page.msgs[i]->problems;
			r = snapshot_builder_add(b, page.msgs[i]);
			page.msgs[i] = NULL; /* stolen, even on failure */
			if (r < 0) {
				message_page_release(&page);
				snprintf(err->text, sizeof(err->text),
					 "out of memory after %zu entries",
					 snapshot_builder_count(b));
				goto fail;
			}
			dups += r == 0;
		}
		progress(st, &page);
		if (page.cursor) {
			r = cursor_set_add(&seen, page.cursor);
			if (r <= 0) {
				snprintf(
					err->text, sizeof(err->text),
					r == 0 ? "the API sent the same cursor "
						 "twice (page %zu): walk "
						 "abandoned"
					       : "out of memory (page %zu)",
					pages);
				message_page_release(&page);
				r = r == 0 ? -ELOOP : r;
				goto fail;
			}
		}
		free(cursor);
		cursor = page.cursor;
		page.cursor = NULL;
		message_page_release(&page);
		if (!cursor)
			break;
	}

	free(seen.slots);
	clock_gettime(CLOCK_REALTIME, &now);
	r = snapshot_builder_finish(b, prev, now, generation, &s);
	b = NULL;
	if (r < 0) {
		snprintf(err->text, sizeof(err->text),
			 "out of memory building the snapshot");
		goto fail;
	}
	if (st) {
		pthread_mutex_lock(&st->lock);
		st->walking = false;
		st->malformed = malformed;
		st->duplicates = dups;
		st->problems = problems;
		status_touch(st);
		pthread_mutex_unlock(&st->lock);
	}
	*ret = s;
	return 0;

fail:
	free(seen.slots);
	free(cursor);
	snapshot_builder_free(b);
	if (st) {
		pthread_mutex_lock(&st->lock);
		st->walking = false;
		status_touch(st);
		pthread_mutex_unlock(&st->lock);
	}
	return r;
}

struct walker *walker_new(const struct walker_config *cfg,
			  const struct walker_source *src, struct status *st,
			  walker_done_fn done, void *ctx)
{
	struct walker *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	if (pipe2(w->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		free(w);
		return NULL;
	}
	w->cfg = *cfg;
	if (w->cfg.refresh_ms < 10)
		w->cfg.refresh_ms = 10;
	if (!w->cfg.max_pages)
		w->cfg.max_pages = WALKER_MAX_PAGES;
	w->src = src;
	w->st = st;
	w->done = done;
	w->ctx = ctx;
	return w;
}

static int cancelled(const struct walker *w)
{
	return w->cfg.cancel && atomic_load(w->cfg.cancel);
}

static void record(struct walker *w, int r, const struct snapshot *s,
		   const struct api_error *err)
{
	struct status *st = w->st;
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&st->lock);
	st->last_refresh = now;
	if (r == 0) {
		st->state = STATUS_READY;
		st->runs = s->nruns;
		st->generation = s->generation;
		st->payload_bytes = s->bytes;
		st->last_success = now;
		st->stale_since = (struct timespec){0, 0};
		st->has_error = false;
		st->walks_ok++;
	} else {
		if (st->state == STATUS_READY || st->state == STATUS_WALKING)
			st->stale_since = now;
		st->state = st->generation ? STATUS_STALE : STATUS_ERROR;
		st->has_error = true;
		snprintf(st->last_error, sizeof(st->last_error), "%s",
			 err->text[0] ? err->text : strerror(-r));
		st->walks_failed++;
	}
	status_touch(st);
	pthread_mutex_unlock(&st->lock);
}

static void *walker_main(void *arg)
{
	struct walker *w = arg;

	while (!cancelled(w)) {
		unsigned long serving = atomic_load(&w->st->refresh_requested);
		struct snapshot *s = NULL;
		struct api_error err;
		struct pollfd pfd = {.fd = w->pipe[0], .events = POLLIN};
		char drain[64];
		int r;

		r = walker_walk(w->src, w->cfg.max_pages, w->served,
				w->generation + 1, w->st, &s, &err);
		if (cancelled(w)) {
			snapshot_unref(s);
			break;
		}
		record(w, r, s, &err);
		if (r == 0) {
			w->generation++;
			snapshot_unref(w->served);
			w->served = snapshot_ref(s);
		}
		w->done(w->ctx, s, serving); /* takes s, NULL on failure */

		/* a request that came in during the walk is served by the
		 * next one: the pipe still holds its byte */
		while (poll(&pfd, 1, (int)w->cfg.refresh_ms) < 0 &&
		       errno == EINTR)
			;
		while (read(w->pipe[0], drain, sizeof(drain)) > 0)
			;
	}
	return NULL;
}

int walker_start(struct walker *w)
{
	int r = pthread_create(&w->thread, NULL, walker_main, w);

	if (r)
		return -r;
	w->running = 1;
	return 0;
}

void walker_refresh(struct walker *w)
{
	ssize_t n;

	/* lock-free atomics and write(2): safe in a signal handler */
	atomic_fetch_add(&w->st->refresh_requested, 1);
	n = write(w->pipe[1], "r", 1);
	(void)n; /* a full pipe already holds a request */
}

void walker_stop(struct walker *w)
{
	ssize_t n;

	if (!w->running)
		return;
	if (w->cfg.cancel)
		atomic_store(w->cfg.cancel, 1);
	n = write(w->pipe[1], "q", 1);
	(void)n;
	pthread_join(w->thread, NULL);
	w->running = 0;
}

void walker_free(struct walker *w)
{
	if (!w)
		return;
	walker_stop(w);
	snapshot_unref(w->served);
	close(w->pipe[0]);
	close(w->pipe[1]);
	free(w);
}
