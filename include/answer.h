/* answer: the API's answers other than list pages.
 *
 * Everything here is untrusted input from the network: every field may be
 * missing, null, or of the wrong type; a body may not be JSON at all.
 */
#ifndef DLQFS_ANSWER_H
#define DLQFS_ANSWER_H

#include <stddef.h>
#include <stdint.h>

/* Extracts the "error" string of an API error body {"error": "..."} into
 * @ret (NUL-terminated, at most @retlen bytes, control bytes replaced by
 * spaces). Returns 0, -EINVAL when the body is not such an object (or
 * @retlen is 0), or -ENOMEM. */
int answer_error_text(const char *buf, size_t len, char *ret, size_t retlen);

/* A workflow run created by resume, restart or callback. */
#define ANSWER_MAX_RUN_ID 256 /* longer workflowRunId: read as absent */
#define ANSWER_MAX_RUNS 1000  /* more runs in one answer: -EPROTO */

struct answer_run {
	char run_id[ANSWER_MAX_RUN_ID + 1]; /* workflowRunId, "" if absent */
	int64_t created_at; /* workflowCreatedAt (ms), -1 if absent */
};

/* Reads {"workflowRunId": "...", "workflowCreatedAt": n}. A missing,
 * mistyped or unusable field (not a string, empty, longer than
 * ANSWER_MAX_RUN_ID, holding a control byte) reads as absent. Returns 0
 * and fills @ret_run; -EPROTO when the body is not a JSON object; -ENOMEM.
 * @ret_run is untouched on failure. */
int answer_run_parse(const char *buf, size_t len, struct answer_run *ret_run);

/* The runs of a bulk answer {"workflowRuns": [...], "cursor": ...}. */
struct answer_runs {
	struct answer_run *v; /* new; one per element, in order: an element
				  that is not an object is an absent run */
	size_t n;
};

/* Reads a bulk answer. Returns 0 and fills @ret_runs (release with
 * answer_runs_release()); -EPROTO when the body is not a JSON object,
 * "workflowRuns" is missing or not an array, or holds more than
 * ANSWER_MAX_RUNS elements; -ENOMEM. The cursor is not read: dlqfs never
 * follows one (a follow-up call is the kind that can go unscoped). */
int answer_runs_parse(const char *buf, size_t len,
		      struct answer_runs *ret_runs);

/* Frees ->v; safe on a zeroed struct. */
void answer_runs_release(struct answer_runs *runs);

/* Reads {"deleted": n} (n an integer >= 0). Returns 0 and sets
 * @ret_deleted; -EPROTO otherwise; -ENOMEM. */
int answer_deleted_parse(const char *buf, size_t len, uint64_t *ret_deleted);

#endif
