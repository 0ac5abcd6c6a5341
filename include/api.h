/* api: the DLQ endpoints over http.
 *
 * Builds request URLs (scope filters, percent-encoded cursor; action ids),
 * maps HTTP statuses to errno in one table, and hands bodies to the
 * message module (pages) and the answer module (the rest). Nothing above
 * this layer sees HTTP. It also holds the
 * guard that no action goes out without naming its entries.
 */
#ifndef DLQFS_API_H
#define DLQFS_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "answer.h"
#include "http.h"
#include "message.h"
#include "message_page.h"

#define API_DEFAULT_URL "https://qstash.upstash.io"
#define API_LIST_PATH "/v2/workflows/dlq"
#define API_PAGE_COUNT 100 /* the API's maximum page size */

/* One list filter, sent as "param=value"; a parameter given several times
 * is OR within the parameter, and AND across parameters. */
struct api_filter {
	const char *param; /* API spelling: "label", "workflowUrl", ... */
	const char *value;
};

struct api_config {
	const char *base_url; /* without trailing slash, e.g. API_DEFAULT_URL */
	const char *token;
	const struct api_filter *filters;
	size_t nfilters;
	struct http_config http; /* its on_retry is the API client's own */
	/* Told of each failed attempt that will be retried, in words with
	 * the try count ("HTTP 500 from https://...: internal error (try 2
	 * of 5)"; @tries is that count, 1 for a request's first retry), and
	 * with NULL when a request that was retried ends. May be NULL. */
	void (*on_retry)(void *ctx, const char *text, unsigned tries);
	void *retry_ctx;
};

/* What went wrong, for .dlqfs/status and start-up messages. */
struct api_error {
	long http_status; /* 0 when no response arrived */
	/* An action that failed may have been carried out all the same: a
	 * POST cut or timed out once sent, or answered 5xx; a DELETE that
	 * failed so after a try that may have been carried out, or that
	 * found nothing after a retry. */
	bool unknown;
	char text[512]; /* one line, in words; never the token */
};

struct api;

/* Returns a new client (copying everything in @cfg), or NULL (out of
 * memory). One client per thread. */
struct api *api_new(const struct api_config *cfg);
void api_free(struct api *a);

/* Fetches one list page: the first when @cursor is NULL, else the page
 * after @cursor. Returns 0 and fills @ret_page (release with
 * message_page_release()); on failure a negative errno and @err filled:
 * -EACCES (401/403: token refused), -EINVAL (400: request refused),
 * -ENOENT (404), -EAGAIN (429 still after retries), -EDQUOT (the daily
 * request quota is exhausted: answered so, or not sent), -EIO (5xx, other
 * statuses), -EPROTO (a body that is not a list page), or a transport
 * error from http_get(). */
int api_list(struct api *a, const char *cursor, struct message_page *ret_page,
	     struct api_error *err);

/* Like api_list(), for entries with createdAt in [@from, @to] (ms,
 * inclusive; -1: unbounded on that side), within the scope: a range is
 * intersected with the scope's own fromDate/toDate. An empty intersection
 * returns an empty last page without a request. */
int api_list_range(struct api *a, int64_t from, int64_t to, const char *cursor,
		   struct message_page *ret_page, struct api_error *err);

/* The list URL for @cursor (new string, or NULL when out of memory).
 * Exposed for tests. */
char *api_list_url(const struct api *a, const char *cursor);
char *api_list_range_url(const struct api *a, int64_t from, int64_t to,
			 const char *cursor);

/* ---- actions (issue 5) ------------------------------------------------
 *
 * Every call below changes the DLQ. Each one names the entries it acts
 * on: a bulk call with no id would act on the whole DLQ (API.md), so the
 * guard against it lives here, at the lowest layer. A bulk call with
 * @n == 0, @n > API_BULK_MAX, or any id that is NULL, empty or longer
 * than API_MAX_ID, or holding a ',' (the API reads dlqIds=a,b as two
 * ids), returns -EINVAL without sending anything, and so does a single
 * call with such an id. Ids are percent-encoded in paths and
 * queries; scope filters are never added to these calls.
 *
 * Errors are those of api_list() (-ENOENT for 404: the entry is gone,
 * -EINVAL for 400: refused, e.g. a callback not in CALLBACK_FAIL,
 * -EACCES, -EAGAIN, -EIO, transport errors), with @err filled; also
 * -E2BIG when the bulk URL would exceed the URL limit (nothing sent:
 * split the batch). Any 2xx is success. A 2xx whose body cannot be read
 * still counts as done (the action happened): the run id is then empty,
 * the deleted count unknown. POSTs follow http_request()'s rules: never
 * retried once they may have been processed.
 */
#define API_BULK_MAX 50		  /* ids per bulk request (the API's limit) */
#define API_MAX_ID MESSAGE_MAX_ID /* bytes of one dlqId */

/* Options of resume and restart, sent as headers; unset ones are not. */
struct api_action_options {
	int retries;		 /* Upstash-Retries; -1: not sent */
	const char *delay;	 /* Upstash-Delay ("10s"); NULL: not sent */
	const char *retry_delay; /* Upstash-Retry-Delay (expression) */
	const char *flow_control_key;	/* Upstash-Flow-Control-Key */
	const char *flow_control_value; /* Upstash-Flow-Control-Value */
	const char *label;		/* Upstash-Label (a comma list) */
	const char *failure_callback;	/* Upstash-Failure-Callback (URL) */
};

/* Which run an action makes. */
enum api_redeliver {
	API_RESUME,  /* from the failed step */
	API_RESTART, /* from the first step */
};

/* DELETE /v2/workflows/dlq/{id}. Returns 0 (deleted) or a negative errno;
 * -ENOENT when the entry is not there (also after a retry whose first
 * attempt did delete it). */
int api_delete(struct api *a, const char *id, struct api_error *err);

/* DELETE /v2/workflows/dlq?dlqIds=..&dlqIds=.. for @n ids. Returns 0 and
 * in @ret_deleted the count the API reports (-1 when its answer does not
 * say), or a negative errno. */
int api_delete_bulk(struct api *a, const char *const *ids, size_t n,
		    long long *ret_deleted, struct api_error *err);

/* POST /v2/workflows/dlq/{resume,restart}/{id} with the headers of @opt
 * (NULL: none). Returns 0 and the new run in @ret_run, or a negative
 * errno. */
int api_redeliver(struct api *a, enum api_redeliver how, const char *id,
		  const struct api_action_options *opt,
		  struct answer_run *ret_run, struct api_error *err);

/* POST /v2/workflows/dlq/{resume,restart}?dlqIds=.. for @n ids. Returns 0
 * and the runs of the answer in @ret_runs (new, release with
 * answer_runs_release(); in the order the API gives them: one per id
 * when ret_runs->n == @n, else not to be matched to ids), or a negative
 * errno. The answer's cursor is never followed. */
int api_redeliver_bulk(struct api *a, enum api_redeliver how,
		       const char *const *ids, size_t n,
		       const struct api_action_options *opt,
		       struct answer_runs *ret_runs, struct api_error *err);

/* Shorthands for api_redeliver() and api_redeliver_bulk(). */
int api_resume(struct api *a, const char *id,
	       const struct api_action_options *opt, struct answer_run *ret_run,
	       struct api_error *err);
int api_restart(struct api *a, const char *id,
		const struct api_action_options *opt,
		struct answer_run *ret_run, struct api_error *err);
int api_resume_bulk(struct api *a, const char *const *ids, size_t n,
		    const struct api_action_options *opt,
		    struct answer_runs *ret_runs, struct api_error *err);
int api_restart_bulk(struct api *a, const char *const *ids, size_t n,
		     const struct api_action_options *opt,
		     struct answer_runs *ret_runs, struct api_error *err);

/* POST /v2/workflows/dlq/callback/{id}: run the failure callback again
 * (the API accepts it only in CALLBACK_FAIL: else 400, -EINVAL). No bulk
 * form exists. Returns 0 and the run in @ret_run, or a negative errno. */
int api_callback(struct api *a, const char *id, struct answer_run *ret_run,
		 struct api_error *err);

/* The URL of an action (new string; NULL when out of memory or when the
 * ids break the guard above). @path is "" (delete), "/resume", "/restart"
 * or "/callback"; with @bulk the ids go in the query, else the one id in
 * the path. Exposed for tests. */
char *api_action_url(const struct api *a, const char *path, bool bulk,
		     const char *const *ids, size_t n);

#endif
