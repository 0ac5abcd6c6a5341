/* walker: turns the pages of one scope into a complete snapshot, again
 * and again.
 *
 * Owns: the page loop (cursor following, bounds, cursor loops, dedupe
 * accounting), the cutting of the scope into createdAt ranges, the rate
 * cap, the walk thread with its schedule (full or incremental, the late
 * window, the reconcile) and refresh requests, and the outcome written to
 * struct status.
 * Leaves to others: HTTP and retries (http, api), parsing (message),
 * building and indexing (snapshot), serving and publishing (fs via the
 * done callback).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scope.h"
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
	/* walker thread only: start of the last good full walk (monotonic),
	 * and the refresh requests that walks have begun to answer */
	struct timespec full_started;
	int64_t full_started_ms; /* the same, on the wall clock */
	bool has_full;
	unsigned long answered;
};

/* Strings seen, as hashes: the cursors of a chain (one that comes back
 * means the API is sending us round in a loop), the dlqIds of the entries
 * a walk left out of the scope (counted once each). */
struct seen_set {
	uint64_t *slots; /* 0: empty */
	size_t cap, n;	 /* cap: power of two */
};

/* Adds @cursor. Returns 1 if it was new, 0 if seen before, -ENOMEM. */
static int seen_set_add(struct seen_set *cs, const char *str)
{
	uint64_t h = names_hash64(str, strlen(str)) | 1;
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

/* A leaf (a range cut off a dense one) aims at SPLIT_PAGES_MIN pages for
 * the first SPLIT_GROW cuts, so that the parallel walk starts soon (and a
 * small DLQ is still walked side by side), then twice that for as many
 * cuts, and so on up to SPLIT_PAGES_MAX. Each cut costs about one and a
 * half requests (the leaf fetches the rest's first page again, and its
 * last page is partial), so big leaves waste less; but leaves share the
 * rate cap evenly and end together only if they are about the same size,
 * and the last ones run alone, slower than the cap allows. */
#define SPLIT_PAGES_MIN 4
#define SPLIT_PAGES_MAX 32
#define SPLIT_GROW 4
#define PROGRESS_EVERY_MS 200
#define RATE_JITTER_MS 20 /* of request arrival times, for the rate cap */

/* A createdAt range of the scope and where its cursor chain stands. */
struct range {
	struct range *next;
	int64_t from, to;     /* ms, inclusive; -1: unbounded */
	char *cursor;	      /* NULL: the first page */
	int leaf;	      /* a piece cut to size: never cut again */
	struct seen_set seen; /* this chain's cursors */
};

/* One walk in progress, shared by its workers. */
struct walk {
	const struct walker_source *src;
	const struct walker_limits *lim;
	struct status *st;
	pthread_mutex_t lock; /* protects everything below */
	pthread_cond_t cond;
	struct range *queue;
	unsigned active; /* workers waiting for a page */
	unsigned idle;	 /* workers waiting for a range */
	int error;	 /* the first failure */
	struct api_error err;
	struct snapshot_builder *b;
	size_t pages, malformed, dups, problems;
	size_t outside;		     /* entries outside the scope, left out */
	struct seen_set outside_ids; /* their dlqIds: each counted once */
	unsigned missed;	     /* bit i: an entry failed scope option i */
	size_t cuts;		     /* ranges cut so far */
	struct timespec next_slot;   /* rate cap: the next request's turn */
	struct timespec started, shown;
};

static void range_free(struct range *r)
{
	if (!r)
		return;
	free(r->cursor);
	free(r->seen.slots);
	free(r);
}

static struct range *range_new(int64_t from, int64_t to)
{
	struct range *r = calloc(1, sizeof(*r));

	if (r) {
		r->from = from;
		r->to = to;
	}
	return r;
}

static int walk_cancelled(const struct walk *wk)
{
	return wk->lim->cancel && atomic_load(wk->lim->cancel);
}

static double ms_between(struct timespec a, struct timespec b)
{
	return (double)(b.tv_sec - a.tv_sec) * 1e3 +
	       (double)(b.tv_nsec - a.tv_nsec) / 1e6;
}

/* Records the first failure; call with ->lock held. */
static void walk_fail(struct walk *wk, int r, const struct api_error *err,
		      const char *text)
{
	if (wk->error)
		return;
	wk->error = r;
	if (err)
		wk->err = *err;
	if (text)
		snprintf(wk->err.text, sizeof(wk->err.text), "%s", text);
	pthread_cond_broadcast(&wk->cond);
}

/* Progress in status and on the terminal; call with ->lock held. */
static void walk_progress(struct walk *wk, int last)
{
	struct timespec now;
	size_t runs = snapshot_builder_count(wk->b);
	double ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = ms_between(wk->started, now);
	if (wk->st) {
		pthread_mutex_lock(&wk->st->lock);
		wk->st->walk_pages = wk->pages;
		wk->st->walk_runs = runs;
		wk->st->walk_rate = ms > 0 ? (double)runs * 1000.0 / ms : 0;
		status_touch(wk->st);
		pthread_mutex_unlock(&wk->st->lock);
	}
	if (wk->lim->progress_fd >= 0 &&
	    (last || ms_between(wk->shown, now) >= PROGRESS_EVERY_MS)) {
		dprintf(wk->lim->progress_fd,
			"\rdlqfs: walking the DLQ: %zu pages, %zu runs, %.0f "
			"runs/s%s",
			wk->pages, runs, ms > 0 ? runs * 1000.0 / ms : 0.0,
			last ? "\n" : "");
		wk->shown = now;
	}
}

/* Waits for this request's turn under the rate cap. Returns 0, or
 * -ECANCELED. Call with ->lock held; it is released while waiting. */
static int walk_pace(struct walk *wk)
{
	struct timespec now, slot;
	double gap;

	if (wk->lim->max_rps <= 0)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	slot = ms_between(now, wk->next_slot) > 0 ? wk->next_slot : now;
	/* max_rps requests in (1 s + the jitter): requests spaced exactly
	 * arrive a few ms closer or further apart, and the API counts them
	 * per second at its end */
	gap = (1e9 + RATE_JITTER_MS * 1e6) / wk->lim->max_rps;
	wk->next_slot = slot;
	wk->next_slot.tv_nsec += (long)gap;
	while (wk->next_slot.tv_nsec >= 1000000000L) {
		wk->next_slot.tv_sec++;
		wk->next_slot.tv_nsec -= 1000000000L;
	}
	pthread_mutex_unlock(&wk->lock);
	for (;;) {
		double left;

		clock_gettime(CLOCK_MONOTONIC, &now);
		left = ms_between(now, slot);
		if (left <= 0 || walk_cancelled(wk))
			break;
		if (left > 50)
			left = 50; /* stay responsive to cancel */
		nanosleep(&(struct timespec){0, (long)(left * 1e6)}, NULL);
	}
	pthread_mutex_lock(&wk->lock);
	return walk_cancelled(wk) ? -ECANCELED : 0;
}

/* Cuts @r, whose first page @page showed more to come, into disjoint
 * ranges covering it, each walked from its own first page: so no entry is
 * missed whatever order the API lists in. The page's createdAt spread only
 * guides where to cut: going down from the newest entry, up to @parts - 1
 * "leaf" ranges of about @leaf_pages pages each (walked by their cursor,
 * never cut again), then the rest of @r (cut again when its first page
 * shows it is still dense). The walk cuts one leaf at a time: cutting
 * many at once wastes a request on each empty range below the data of a
 * small DLQ, while one leaf per cut stays ahead of the workers (a cut
 * costs one request, a leaf takes about @leaf_pages). A first page that is
 * all one millisecond T (a burst, or a generator's clamp) cuts at T - 1:
 * [T, to] is a leaf, [from, T - 1] the rest. Returns the number of ranges
 * queued (0: @r cannot be cut: an API listing in another order, or a range
 * that starts at T). Call with ->lock held. */
static int walk_split(struct walk *wk, const struct range *r,
		      const struct message_page *page, unsigned parts)
{
	size_t leaf_pages = SPLIT_PAGES_MIN;
	int64_t newest = -1, oldest = -1, cut[16], hi, width;
	struct range *made[17];
	unsigned n = 0;

	for (size_t i = 0; i < page->n; i++) {
		const struct message *m = page->msgs[i];

		if (!m->has_created || m->created_ms < 0)
			continue;
		if (newest < 0 || m->created_ms > newest)
			newest = m->created_ms;
		if (oldest < 0 || m->created_ms < oldest)
			oldest = m->created_ms;
	}
	if (newest < 0)
		return 0;
	for (size_t c = wk->cuts;
	     c >= SPLIT_GROW && leaf_pages < SPLIT_PAGES_MAX; c -= SPLIT_GROW)
		leaf_pages *= 2;
	if (parts > 16)
		parts = 16;
	hi = r->to >= 0 && r->to < newest ? r->to : newest;
	width = (newest - oldest + 1) * (int64_t)(leaf_pages * API_PAGE_COUNT) /
		(int64_t)(page->n ? page->n : 1);
	if (width < 1)
		return 0;
	if (oldest == newest) {
		/* a page of one millisecond says nothing of the density below
		 * it: that millisecond (and anything above) becomes a leaf
		 * walked by its cursor, the rest is cut again once its own
		 * first page shows its spread */
		if (hi == newest && newest - 1 >= 0 &&
		    (r->from < 0 || newest - 1 >= r->from))
			cut[n++] = newest - 1;
		parts = 0;
	}
	for (unsigned i = 0; i + 1 < parts; i++) {
		int64_t c = hi - width * (int64_t)(i + 1);

		if (c < 0 || (r->from >= 0 && c < r->from))
			break;
		cut[n++] = c;
	}
	if (!n)
		return 0;
	/* (cut[0], to], (cut[1], cut[0]], ..., [from, cut[n - 1]] */
	for (unsigned i = 0; i <= n; i++) {
		made[i] = range_new(i == n ? r->from : cut[i] + 1,
				    i == 0 ? r->to : cut[i - 1]);
		if (!made[i]) {
			while (i--)
				range_free(made[i]);
			walk_fail(wk, -ENOMEM, NULL, "out of memory");
			return -ENOMEM;
		}
		made[i]->leaf = i < n;
	}
	wk->cuts++;
	/* the rest goes last: leaves keep the idle workers busy */
	for (unsigned i = n + 1; i-- > 0;) {
		made[i]->next = wk->queue;
		wk->queue = made[i];
	}
	return (int)n + 1;
}

/* Takes a page's messages into the builder; call with ->lock held. */
static int walk_take(struct walk *wk, struct message_page *page)
{
	wk->pages++;
	wk->malformed += page->malformed;
	snapshot_builder_account(wk->b, page->bytes);
	for (size_t i = 0; i < page->n; i++) {
		int miss = wk->lim->scope
				   ? scope_miss(wk->lim->scope, page->msgs[i])
				   : -1;
		int r;

		if (miss >= 0) {
			/* the API did not apply that filter */
			r = seen_set_add(&wk->outside_ids,
					 page->msgs[i]->id.data);
			wk->outside += r > 0;
			wk->missed |= 1u << miss;
			message_free(page->msgs[i]);
			page->msgs[i] = NULL;
			if (r < 0)
				return r;
			continue;
		}
		wk->problems += page->msgs[i]->problems;
		r = snapshot_builder_add(wk->b, page->msgs[i]);
		page->msgs[i] = NULL; /* stolen, even on failure */
		if (r < 0)
			return r;
		wk->dups += r == 0;
	}
	return 0;
}

static void *walk_worker(void *arg)
{
	struct walk *wk = arg;
	const struct walker_source *src = wk->src;
	void *conn = src->open ? src->open(src->ctx) : src->ctx;
	unsigned workers = wk->lim->workers ? wk->lim->workers : 1;
	size_t max_pages =
		wk->lim->max_pages ? wk->lim->max_pages : WALKER_MAX_PAGES;

	pthread_mutex_lock(&wk->lock);
	if (!conn)
		walk_fail(wk, -ENOMEM, NULL, "out of memory");
	for (;;) {
		struct message_page page = {0};
		struct api_error err;
		struct range *r;
		int rc;

		while (!wk->queue && wk->active && !wk->error &&
		       !walk_cancelled(wk)) {
			wk->idle++;
			pthread_cond_wait(&wk->cond, &wk->lock);
			wk->idle--;
		}
		if (walk_cancelled(wk))
			walk_fail(wk, -ECANCELED, NULL, "walk cancelled");
		if (wk->error || !wk->queue)
			break; /* failed, or nothing left and nobody busy */
		r = wk->queue;
		wk->queue = r->next;
		if (wk->pages >= max_pages) {
			char text[200];

			snprintf(text, sizeof(text),
				 "walk stopped after %zu pages (max_pages): "
				 "narrow the scope with -o from=/to=/label=",
				 wk->pages);
			walk_fail(wk, -EFBIG, NULL, text);
			range_free(r);
			break;
		}
		wk->active++;
		rc = walk_pace(wk);
		if (rc == 0) {
			pthread_mutex_unlock(&wk->lock);
			memset(&err, 0, sizeof(err));
			rc = src->list(conn, r->from, r->to, r->cursor, &page,
				       &err);
			pthread_mutex_lock(&wk->lock);
		}
		wk->active--;
		if (rc < 0) {
			walk_fail(wk, rc, &err, NULL);
			range_free(r);
			break;
		}
		/* a dense range is cut only on its first page (later, its
		 * cursor is cheaper), and a leaf never */
		rc = page.cursor && !r->cursor && !r->leaf && workers > 1
			     ? walk_split(wk, r, &page, 2)
			     : 0;
		if (walk_take(wk, &page) < 0) {
			walk_fail(wk, -ENOMEM, NULL, "out of memory");
			message_page_release(&page);
			range_free(r);
			break;
		}
		if (rc == 0 && page.cursor) {
			/* a chain that comes back to a cursor is a loop */
			rc = seen_set_add(&r->seen, page.cursor);
			if (rc <= 0) {
				char text[200];

				snprintf(
					text, sizeof(text),
					rc == 0 ? "the API sent the same cursor "
						  "twice (page %zu): walk "
						  "abandoned"
						: "out of memory (page %zu)",
					wk->pages);
				walk_fail(wk, rc == 0 ? -ELOOP : rc, NULL,
					  text);
				message_page_release(&page);
				range_free(r);
				break;
			}
			rc = 0;
		}
		if (rc > 0 || !page.cursor) {
			range_free(r); /* cut, or walked to its end */
		} else {
			free(r->cursor);
			r->cursor = page.cursor;
			page.cursor = NULL;
			r->next = wk->queue;
			wk->queue = r;
		}
		message_page_release(&page);
		walk_progress(wk, 0);
		pthread_cond_broadcast(&wk->cond);
	}
	pthread_cond_broadcast(&wk->cond);
	pthread_mutex_unlock(&wk->lock);
	if (conn && src->open && src->close)
		src->close(conn);
	return NULL;
}

/* Says once, on stderr, that the API seems to ignore each scope option
 * of @missed (a bit per option): it sent entries outside them. */
static void warn_ignored(unsigned missed)
{
	for (int i = 0; i < SCOPE_NPARAMS; i++)
		if (missed & (1u << i))
			fprintf(stderr,
				"dlqfs: the API sent entries outside -o %s=: "
				"it seems to ignore the %s filter; dlqfs "
				"leaves them out (out_of_scope_entries in "
				".dlqfs/status)\n",
				scope_option_name(i), scope_param_name(i));
}

int walker_walk(const struct walker_source *src,
		const struct walker_limits *lim, const struct snapshot *prev,
		uint64_t generation, struct status *st, struct snapshot **ret,
		struct api_error *err)
{
	return walker_walk_since(src, lim, prev, -1, generation, st, ret, err);
}

int walker_walk_since(const struct walker_source *src,
		      const struct walker_limits *lim,
		      const struct snapshot *prev, int64_t since_ms,
		      uint64_t generation, struct status *st,
		      struct snapshot **ret, struct api_error *err)
{
	struct walk wk = {.src = src, .lim = lim, .st = st};
	bool incremental = since_ms >= 0 && prev;
	unsigned workers = lim->workers ? lim->workers : 1;
	pthread_t threads[64];
	unsigned started = 0;
	struct snapshot *s;
	struct timespec now;
	int r;

	memset(err, 0, sizeof(*err));
	if (workers > 64)
		workers = 64;
	wk.b = snapshot_builder_new();
	wk.queue = range_new(incremental ? since_ms : -1, -1);
	if (!wk.b || !wk.queue) {
		snapshot_builder_free(wk.b);
		range_free(wk.queue);
		return -ENOMEM;
	}
	pthread_mutex_init(&wk.lock, NULL);
	pthread_cond_init(&wk.cond, NULL);
	clock_gettime(CLOCK_MONOTONIC, &wk.started);
	wk.next_slot = wk.shown = wk.started;
	if (st) {
		pthread_mutex_lock(&st->lock);
		st->walking = true;
		st->walk_incremental = incremental;
		st->incremental_from = incremental ? since_ms : -1;
		st->walk_pages = 0;
		st->walk_runs = 0;
		st->walk_rate = 0;
		clock_gettime(CLOCK_REALTIME, &st->walk_started);
		status_touch(st);
		pthread_mutex_unlock(&st->lock);
	}
	/* the calling thread is worker 0 */
	for (unsigned i = 1; i < workers; i++) {
		if (pthread_create(&threads[started], NULL, walk_worker, &wk))
			break;
		started++;
	}
	walk_worker(&wk);
	for (unsigned i = 0; i < started; i++)
		pthread_join(threads[i], NULL);

	while (wk.queue) {
		struct range *next = wk.queue->next;

		range_free(wk.queue);
		wk.queue = next;
	}
	pthread_mutex_lock(&wk.lock);
	walk_progress(&wk, 1);
	pthread_mutex_unlock(&wk.lock);
	free(wk.outside_ids.slots);
	pthread_mutex_destroy(&wk.lock);
	pthread_cond_destroy(&wk.cond);
	if (st) {
		unsigned fresh;

		pthread_mutex_lock(&st->lock);
		st->walking = false;
		if (!wk.error) {
			st->malformed = wk.malformed;
			st->duplicates = wk.dups;
			st->problems = wk.problems;
			st->out_of_scope = wk.outside;
		}
		fresh = wk.missed & ~st->ignored_filters;
		st->ignored_filters |= wk.missed;
		status_touch(st);
		pthread_mutex_unlock(&st->lock);
		warn_ignored(fresh);
	}
	if (wk.error) {
		*err = wk.err;
		snapshot_builder_free(wk.b);
		return wk.error;
	}
	if (incremental && snapshot_builder_keep(wk.b, prev, since_ms) < 0) {
		snapshot_builder_free(wk.b);
		snprintf(err->text, sizeof(err->text),
			 "out of memory merging the snapshot");
		return -ENOMEM;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	r = snapshot_builder_finish(wk.b, prev, now, generation, &s);
	if (r < 0) {
		snprintf(err->text, sizeof(err->text),
			 "out of memory building the snapshot");
		return r;
	}
	*ret = s;
	return 0;
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
	w->src = src;
	w->st = st;
	w->done = done;
	w->ctx = ctx;
	return w;
}

static int cancelled(const struct walker *w)
{
	return w->cfg.limits.cancel && atomic_load(w->cfg.limits.cancel);
}

static void record(struct walker *w, int r, bool full, const struct snapshot *s,
		   const struct api_error *err)
{
	struct status *st = w->st;
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&st->lock);
	st->last_refresh = now;
	if (r == 0 && full)
		st->last_full = now;
	if (full)
		st->walks_full++;
	else
		st->walks_incremental++;
	if (r == 0) {
		st->state = STATUS_READY;
		st->reconcile_s =
			(double)walker_reconcile_ms(&w->cfg, s->nruns) / 1000.0;
		st->runs = s->nruns;
		st->generation = s->generation;
		st->payload_bytes = s->bytes;
		st->last_success = now;
		st->stale_since = (struct timespec){0, 0};
		st->has_error = false;
		st->walks_ok++;
	} else {
		if (st->state == STATUS_READY || st->state == STATUS_WALKING ||
		    st->state == STATUS_CACHED)
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

int64_t walker_reconcile_ms(const struct walker_config *cfg, uint64_t nruns)
{
	double pages = (double)((nruns + API_PAGE_COUNT - 1) / API_PAGE_COUNT);
	double floor_ms;

	if (!cfg->reconcile_auto || cfg->reconcile_ms <= 0 ||
	    cfg->limits.max_rps <= 0)
		return cfg->reconcile_ms;
	floor_ms =
		WALKER_RECONCILE_SHARE * pages * 1000.0 / cfg->limits.max_rps;
	return floor_ms > (double)cfg->reconcile_ms ? (int64_t)floor_ms
						    : cfg->reconcile_ms;
}

/* Where the next walk starts: -1 for a full walk (the first one, one
 * asked for, a reconcile that is due, nothing to start from), else the
 * fromDate of an incremental one. */
static int64_t next_since(const struct walker *w, const struct snapshot *base,
			  unsigned long asked)
{
	struct timespec now, wall;
	int64_t newest, now_ms;

	int64_t reconcile;

	if (!base || !w->has_full || w->cfg.reconcile_ms <= 0 ||
	    asked != w->answered)
		return -1;
	reconcile = walker_reconcile_ms(&w->cfg, base->nruns);
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (ms_between(w->full_started, now) >= (double)reconcile)
		return -1;
	newest = base->newest_ms;
	if (newest < 0)
		return -1;
	/* an entry dated in the future must not hide the ones after it */
	clock_gettime(CLOCK_REALTIME, &wall);
	now_ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
	if (newest > now_ms)
		newest = now_ms;
	newest -= w->cfg.late_window_ms;
	return newest > 0 ? newest : -1;
}

static int64_t wall_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Saves the snapshot served now (what the walk made of it, less what
 * actions took out since) to the cache; a failure is the cache's to say,
 * and changes nothing served. */
static void save(struct walker *w)
{
	struct snapshot *cur = w->cfg.served ? w->cfg.served(w->ctx) : NULL;
	struct cache_meta meta;

	if (!cur && w->served)
		cur = snapshot_ref(w->served);
	if (!cur)
		return;
	meta.taken_ms = wall_ms();
	meta.last_full_ms = w->has_full ? w->full_started_ms : -1;
	meta.payload_bytes = cur->bytes;
	cache_save(w->cfg.cache, cur, &meta);
	snapshot_unref(cur);
}

void walker_resume(struct walker *w, int64_t last_full_ms)
{
	struct timespec now;
	int64_t ago;

	if (last_full_ms < 0)
		return;
	ago = wall_ms() - last_full_ms;
	if (ago < 0)
		ago = 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	/* the monotonic clock may not reach that far back: then the
	 * reconcile is long due anyway */
	if ((int64_t)now.tv_sec * 1000 <= ago)
		return;
	now.tv_sec -= (time_t)(ago / 1000);
	now.tv_nsec -= (long)(ago % 1000) * 1000000L;
	if (now.tv_nsec < 0) {
		now.tv_sec--;
		now.tv_nsec += 1000000000L;
	}
	w->full_started = now;
	w->full_started_ms = last_full_ms;
	w->has_full = true;
}

static void *walker_main(void *arg)
{
	struct walker *w = arg;

	while (!cancelled(w)) {
		unsigned long serving = atomic_load(&w->st->refresh_requested);
		struct snapshot *base =
			w->cfg.served ? w->cfg.served(w->ctx) : NULL;
		int64_t since, started_ms;
		struct snapshot *s = NULL;
		struct timespec started;
		struct api_error err;
		struct pollfd pfd = {.fd = w->pipe[0], .events = POLLIN};
		char drain[64];
		int r;

		if (!base && w->served)
			base = snapshot_ref(w->served);
		since = next_since(w, base, serving);
		clock_gettime(CLOCK_MONOTONIC, &started);
		started_ms = wall_ms();
		w->answered = serving;
		r = walker_walk_since(w->src, &w->cfg.limits, base, since,
				      w->generation + 1, w->st, &s, &err);
		snapshot_unref(base);
		w->cfg.limits.progress_fd = -1; /* the first walk only */
		if (cancelled(w)) {
			snapshot_unref(s);
			break;
		}
		record(w, r, since < 0, s, &err);
		if (r == 0) {
			w->generation++;
			snapshot_unref(w->served);
			w->served = snapshot_ref(s);
			if (since < 0) {
				w->full_started = started;
				w->full_started_ms = started_ms;
				w->has_full = true;
			}
		}
		w->done(w->ctx, s, serving); /* takes s, NULL on failure */
		if (r == 0 && w->cfg.cache)
			save(w);

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
	if (w->cfg.limits.cancel)
		atomic_store(w->cfg.limits.cancel, 1);
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
