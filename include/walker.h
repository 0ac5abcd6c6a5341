/* walker: walks the pages of the scope and produces a new snapshot.
 *
 * walker_walk() is one full walk: pages in, snapshot out, progress and
 * outcome in struct status; walker_walk_since() an incremental one, which
 * fetches only the newest entries and merges them into the snapshot
 * served. A struct walker runs walks on its own thread: a full one at
 * start, every reconcile interval and when asked (walker_refresh(), which
 * is safe in a signal handler), an incremental one every refresh interval
 * in between. A failed or partial walk never produces a snapshot: the one
 * already served stays.
 */
#ifndef DLQFS_WALKER_H
#define DLQFS_WALKER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "cache.h"
#include "snapshot.h"
#include "status.h"

#define WALKER_MAX_PAGES 100000 /* default bound of one walk: 10M entries */

/* Where pages come from: api_list_range() in the daemon, canned pages in
 * tests. */
struct walker_source {
	/* One page of the entries with createdAt in [@from, @to] (ms; -1:
	 * unbounded on that side) after @cursor (NULL: the first page). */
	int (*list)(void *conn, int64_t from, int64_t to, const char *cursor,
		    struct message_page *ret_page, struct api_error *err);
	/* A connection for one worker thread (NULL when out of memory), and
	 * its release. Without @open, every worker uses @ctx. */
	void *(*open)(void *ctx);
	void (*close)(void *conn);
	void *ctx;
};

#define WALKER_WORKERS 8    /* default parallel requests of a walk */
#define WALKER_MAX_RPS 90.0 /* default cap, below the API's burst limit */

struct scope;

/* How far and how fast one walk may go, and what it keeps. */
struct walker_limits {
	size_t max_pages;   /* 0: WALKER_MAX_PAGES */
	unsigned workers;   /* parallel requests; 0 or 1: one cursor */
	double max_rps;	    /* requests per second, all workers; 0: none */
	atomic_int *cancel; /* set by another thread to stop; may be NULL */
	int progress_fd;    /* >= 0: a progress line is written there */
	/* Entries outside it are left out and counted (NULL: all kept);
	 * borrowed. */
	const struct scope *scope;
};

/* One walk. The scope is cut into createdAt ranges walked side by side
 * when workers are idle; every range is walked to the end of its own
 * cursor chain, so no entry depends on the API's order. Returns 0 and a
 * new snapshot (generation @generation) in @ret, or a negative errno with
 * @err filled; a partial walk never returns a snapshot. @prev (may be
 * NULL) is the served snapshot, for message.json change times. @st (may
 * be NULL) receives progress. */
int walker_walk(const struct walker_source *src,
		const struct walker_limits *lim, const struct snapshot *prev,
		uint64_t generation, struct status *st, struct snapshot **ret,
		struct api_error *err);

/* An incremental walk: like walker_walk(), but only the window of
 * entries with createdAt >= @since_ms is fetched; the new snapshot is that
 * window merged into @prev (not NULL), which keeps every run older than
 * the window (snapshot_builder_keep()). A run of @prev inside the window
 * that the walk did not find is gone; one found again is replaced by what
 * the API sent now. */
int walker_walk_since(const struct walker_source *src,
		      const struct walker_limits *lim,
		      const struct snapshot *prev, int64_t since_ms,
		      uint64_t generation, struct status *st,
		      struct snapshot **ret, struct api_error *err);

/* Called on the walker thread after every walk: @snap is the new snapshot
 * (the callee takes the reference), or NULL when the walk failed. @served
 * is the number of refresh requests this walk answers: the callee records
 * it in status->refresh_served once what the walk changed is visible. */
typedef void (*walker_done_fn)(void *ctx, struct snapshot *snap,
			       uint64_t served);

/* Incremental walks fetch from the newest createdAt seen minus this
 * overlap: an entry lands in the DLQ after its retries, with the createdAt
 * of its message, so it can be older than entries already listed. Those
 * that land later than this after being created wait for a full walk. */
#define WALKER_LATE_WINDOW_MS (3600 * 1000LL)
/* By default a full walk (reconcile) runs every this many refreshes... */
#define WALKER_RECONCILE_FACTOR 10
/* ...or, for a DLQ too big for that, so seldom that full walks take at
 * most 1/this of the time and of the requests max_rps allows: a full walk
 * of P pages every WALKER_RECONCILE_SHARE * P / max_rps seconds. */
#define WALKER_RECONCILE_SHARE 100

struct walker_config {
	unsigned refresh_ms; /* between walks, >= 10 */
	/* The walk every refresh_ms is incremental (walker_walk_since(),
	 * from the newest createdAt seen minus late_window_ms) unless the
	 * last good full walk started reconcile_ms ago or more; 0: every
	 * walk is full. The first walk, and each one asked for
	 * (walker_refresh()), is full. */
	int64_t reconcile_ms;
	/* reconcile_ms is the default: it grows with the DLQ, so that full
	 * walks take at most 1/WALKER_RECONCILE_SHARE of the time and of the
	 * requests the rate cap allows (walker_reconcile_ms()) */
	bool reconcile_auto;
	int64_t late_window_ms;
	struct walker_limits limits;
	/* The snapshot being served (a new reference, or NULL), called with
	 * the ctx of walker_new(): incremental walks merge into it, so that
	 * what was taken out of it (an action's runs) stays out. NULL: the
	 * walker's own last good snapshot. */
	struct snapshot *(*served)(void *ctx);
	/* Where the snapshot served after each good walk is saved (NULL:
	 * nowhere); borrowed. */
	struct cache *cache;
};

struct walker;

/* The reconcile interval in ms for a DLQ of @nruns runs: @cfg's
 * reconcile_ms, or with reconcile_auto at least WALKER_RECONCILE_SHARE
 * times the least time a full walk of it takes under the rate cap (one
 * page per API_PAGE_COUNT runs at limits.max_rps). */
int64_t walker_reconcile_ms(const struct walker_config *cfg, uint64_t nruns);

/* A new walker (not started), or NULL when out of memory. @src, @st and
 * @cfg->limits.cancel are borrowed and must outlive it. The progress line
 * (limits.progress_fd) is written for the first walk only. */
struct walker *walker_new(const struct walker_config *cfg,
			  const struct walker_source *src, struct status *st,
			  walker_done_fn done, void *ctx);

/* Before walker_start(): the snapshot served was loaded from a cache
 * whose last good full walk started at @last_full_ms (wall clock; -1:
 * none), so the first walk is incremental unless a reconcile is due by
 * then, and the schedule goes on from that walk. */
void walker_resume(struct walker *w, int64_t last_full_ms);

/* Starts the thread; the first walk begins at once. Returns 0 or -errno. */
int walker_start(struct walker *w);

/* Asks for a full walk that starts after this call. Async-signal-safe. */
void walker_refresh(struct walker *w);

/* Cancels any walk in progress and joins the thread. */
void walker_stop(struct walker *w);

/* x_free(NULL) is a no-op; stops the walker first if needed. */
void walker_free(struct walker *w);

#endif
