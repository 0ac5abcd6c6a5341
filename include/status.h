/* status: what .dlqfs/status says.
 *
 * The walker writes progress and outcomes here; fs renders it on demand.
 * Everything in struct status is protected by ->lock. The text is JSON
 * (written by hand: only message.c knows jansson, and this is output
 * only). The token is never stored here.
 */
#ifndef DLQFS_STATUS_H
#define DLQFS_STATUS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct api_filter;
struct http_quota;

/* Bytes of an error text kept here: an api_error's text fits (status.c
 * checks). */
#define STATUS_TEXT_MAX 512

enum status_state {
	STATUS_WALKING, /* no snapshot yet, the first walk runs */
	STATUS_READY,	/* serving a snapshot; the last walk succeeded */
	STATUS_STALE,	/* serving a snapshot; the last walk failed */
	STATUS_ERROR,	/* no snapshot; the last walk failed */
	STATUS_CACHED,	/* serving the cache loaded at mount; no walk has
			   ended yet */
};

struct status {
	pthread_mutex_t lock; /* protects every field below */
	enum status_state state;
	char *api_url; /* owned */
	char *scope;   /* owned: the filters as JSON object text */
	double refresh_s;

	bool walking;		  /* a walk is in progress */
	bool walk_incremental;	  /* the current or last walk fetched only the
				     window since incremental_from */
	int64_t incremental_from; /* ms: fromDate of that walk, else -1 */
	uint64_t walk_pages; /* pages fetched by the current or last walk */
	uint64_t walk_runs;  /* entries seen by the current or last walk */
	double walk_rate;    /* of that walk: runs per second */
	struct timespec walk_started;

	uint64_t runs;		  /* runs in the served snapshot */
	uint64_t generation;	  /* of the served snapshot */
	uint64_t payload_bytes;	  /* API bytes behind the served snapshot */
	uint64_t malformed;	  /* entries skipped by the last good walk */
	uint64_t duplicates;	  /* dlqIds seen twice by the last good walk */
	uint64_t problems;	  /* malformed fields in the served snapshot */
	uint64_t out_of_scope;	  /* entries outside the scope that the last
				     good walk was sent (and left out) */
	unsigned ignored_filters; /* bit i: scope option i let an entry
				     outside through, since the mount */
	uint64_t walks_ok, walks_failed;
	/* walks of the walker thread, any outcome, counted with walks_ok or
	 * walks_failed */
	uint64_t walks_full, walks_incremental;
	double reconcile_s;   /* a full walk at least this often (0: always) */
	double late_window_s; /* overlap of incremental walks */
	struct timespec last_full; /* end of the last good full walk */
	/* refresh requests received; atomic, not under ->lock, so that a
	 * signal handler may count one */
	atomic_ulong refresh_requested;
	uint64_t refresh_served; /* requests served by a finished walk */
	/* readdir offsets that no kept snapshot could resume (the listing
	 * went on in the handle's own); atomic, not under ->lock */
	atomic_ulong lost_cookies;
	/* The snapshots kept after their swap (fs), and the bytes they hold
	 * that the served one does not (snapshot_kept_bytes()); atomic, not
	 * under ->lock, set under fs's own lock */
	atomic_ulong kept_snapshots;
	atomic_ullong kept_bytes;

	struct timespec last_refresh; /* end of the last walk, any outcome */
	struct timespec last_success; /* end of the last good walk */
	struct timespec stale_since;  /* first failure after a success */
	bool has_error;
	char last_error[STATUS_TEXT_MAX];
	/* A request of the walk that failed and will be tried again: how
	 * many are (several workers), and the last one's attempt in words
	 * (status_retrying()). */
	unsigned retrying;
	char retry_text[STATUS_TEXT_MAX];
	/* The account's daily quota (shown while exhausted); NULL: none.
	 * Borrowed, read without ->lock. */
	const struct http_quota *quota;

	/* The cache on disk (cache.h); cache_path NULL: none is kept. */
	char *cache_path;	 /* owned */
	const char *cache_state; /* static text: "none", "loaded", "saved",
				    "error" */
	uint64_t cache_bytes;	 /* the file's size on disk */
	int64_t cache_taken_ms;	 /* end of the walk it holds; -1: none */
	bool cache_has_error;
	char cache_error[STATUS_TEXT_MAX]; /* the last write's failure */

	uint64_t version;	 /* bumped by every change of the text */
	struct timespec changed; /* when version last moved */
};

/* Initializes @st; the URL and the scope filters are copied (the scope is
 * shown as {"param": ["value", ...]}). Returns 0 or -ENOMEM. */
int status_init(struct status *st, const char *api_url,
		const struct api_filter *filters, size_t nfilters,
		double refresh_s);
void status_release(struct status *st);

/* Renders the current status as JSON text ending in "\n". Returns 0 and a
 * new string in @ret (length in @ret_len) and its change time in
 * @ret_changed (may be NULL), or -ENOMEM. */
int status_render(struct status *st, char **ret, size_t *ret_len,
		  struct timespec *ret_changed);

/* api_config.on_retry for the walk: @st is the struct status. */
void status_retrying(void *st, const char *text, unsigned tries);

/* Marks a change; call with ->lock held. */
void status_touch(struct status *st);

#endif
