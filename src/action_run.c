/* action_run: carrying out a parsed action (action.c) against the API.
 *
 * Owns: cutting the ids into requests (the ids the tree does not list
 * alone and first, then bulk requests of at most API_BULK_MAX), never
 * sending an id twice whatever a bulk answer means, the outcome of each
 * id (ok, error, unknown, not sent) and the errno of the whole, and what
 * goes into actions.log for each.
 * Leaves to others: the endpoints, the guard and the errno table (api), the
 * log's storage and its line format (action_log).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action.h"
#include "action_log.h"
#include "api.h"
#include "timefmt.h"

static const char *errno_name(int e)
{
	switch (e) {
	case ENOENT:
		return "ENOENT";
	case EINVAL:
		return "EINVAL";
	case EACCES:
		return "EACCES";
	case EAGAIN:
		return "EAGAIN";
	case EIO:
		return "EIO";
	case EPROTO:
		return "EPROTO";
	case ECONNREFUSED:
		return "ECONNREFUSED";
	case ECONNRESET:
		return "ECONNRESET";
	case ETIMEDOUT:
		return "ETIMEDOUT";
	case EHOSTUNREACH:
		return "EHOSTUNREACH";
	case ECANCELED:
		return "ECANCELED";
	case EFBIG:
		return "EFBIG";
	case E2BIG:
		return "E2BIG";
	case EDQUOT:
		return "EDQUOT";
	case ENOMEM:
		return "ENOMEM";
	default:
		return "EIO";
	}
}

/* Records the outcome of id @i (strings copied; a copy that fails to
 * allocate is left out) and logs it. */
static void settle(struct action *act, size_t i, int err, bool unknown,
		   long status, const char *run_id, const char *text,
		   struct action_log *log)
{
	struct action_outcome *o = &act->out[i];
	struct action_log_entry e = {0};
	char line[ACTION_LOG_LINE_MAX];
	size_t n;

	o->err = err;
	o->unknown = unknown;
	o->http_status = status;
	if (run_id && run_id[0])
		o->run_id = strdup(run_id);
	if (err && text && text[0])
		o->text = strdup(text);
	if (!log)
		return;
	e.time_ms = timefmt_now_ms();
	e.verb = action_verb_names[act->verb];
	e.id = act->ids[i];
	e.id_len = strlen(act->ids[i]);
	e.outcome = unknown ? "unknown" : err ? "error" : "ok";
	e.http_status = status;
	e.run_id = run_id;
	e.error = err ? errno_name(-err) : NULL;
	e.text = err && text && text[0] ? text : NULL;
	n = action_log_line(&e, line);
	action_log_append(log, line, n);
}

/* Whether nothing more should be sent after @err. */
static bool stops(int err)
{
	return err == -ECANCELED || err == -EACCES || err == -EDQUOT;
}

/* Why the ids after a request that failed with @err were not sent. */
static const char *not_sent(int err)
{
	switch (err) {
	case -EACCES:
		return "not sent: the token was refused";
	case -EDQUOT:
		return "not sent: the daily request quota is exhausted";
	case -ECANCELED:
		return "not sent: cancelled";
	default:
		return "not sent: an earlier request failed";
	}
}

/* One id through its single endpoint. */
static int run_one(struct action *act, size_t i, struct api *a,
		   struct action_log *log)
{
	struct api_error err = {0};
	struct answer_run run = {0};
	const char *id = act->ids[i];
	int r;

	switch (act->verb) {
	case ACTION_DELETE:
		r = api_delete(a, id, &err);
		break;
	case ACTION_RESUME:
	case ACTION_RESTART:
		r = api_redeliver(a,
				  act->verb == ACTION_RESUME ? API_RESUME
							     : API_RESTART,
				  id, &act->opt, &run, &err);
		break;
	default:
		r = api_callback(a, id, &run, &err);
		break;
	}
	settle(act, i, r, r < 0 && err.unknown, err.http_status,
	       r == 0 ? run.run_id : NULL, err.text, log);
	return r;
}

/* The ids act->ids[@idx[0 .. @n - 1]] in one bulk request (halved when
 * its URL would be too long; one id goes to the single endpoint).
 * Returns the first error. */
static int run_bulk(struct action *act, const size_t *idx, size_t n,
		    struct api *a, struct action_log *log)
{
	const char *ids[API_BULK_MAX];
	struct api_error err = {0};
	int r;

	if (n == 1)
		return run_one(act, idx[0], a, log);
	for (size_t i = 0; i < n; i++)
		ids[i] = act->ids[idx[i]];
	if (act->verb == ACTION_DELETE) {
		long long deleted = -1;

		r = api_delete_bulk(a, ids, n, &deleted, &err);
		if (r == 0 && deleted >= 0 && (size_t)deleted < n) {
			char text[128];

			snprintf(
				text, sizeof(text),
				"the API deleted %lld of the %zu ids of this request: the others were not there",
				deleted, n);
			for (size_t i = 0; i < n; i++)
				settle(act, idx[i], -ENOENT, true,
				       err.http_status, NULL, text, log);
			return -ENOENT;
		}
	} else {
		struct answer_runs runs = {0};

		r = api_redeliver_bulk(a,
				       act->verb == ACTION_RESUME ? API_RESUME
								  : API_RESTART,
				       ids, n, &act->opt, &runs, &err);
		if (r == 0) {
			/* runs match ids only one for one */
			for (size_t i = 0; i < n; i++)
				settle(act, idx[i], 0, false, err.http_status,
				       runs.n == n ? runs.v[i].run_id : NULL,
				       NULL, log);
			answer_runs_release(&runs);
			return 0;
		}
		if (r == -ENOENT) {
			/* "Some DLQ messages were not found": whether the API
			 * acted on the others is not documented. Sending them
			 * again could start their workflows twice. */
			char text[sizeof(err.text) + 200];

			snprintf(
				text, sizeof(text),
				"%s: the API does not say whether it acted on the ids it found; not sent again, so that none is acted on twice (the next walk shows which runs are still there)",
				err.text);
			for (size_t i = 0; i < n; i++)
				settle(act, idx[i], -ENOENT, true,
				       err.http_status, NULL, text, log);
			return -ENOENT;
		}
	}
	if (r == -E2BIG) {
		size_t half = n / 2;
		int r1 = run_bulk(act, idx, half, a, log), r2;

		if (stops(r1)) {
			for (size_t i = half; i < n; i++)
				settle(act, idx[i], r1, false, 0, NULL,
				       not_sent(r1), log);
			return r1;
		}
		r2 = run_bulk(act, idx + half, n - half, a, log);
		return r1 ? r1 : r2;
	}
	for (size_t i = 0; i < n; i++)
		settle(act, idx[i], r, err.unknown, err.http_status, NULL,
		       err.text, log);
	return r;
}

int action_run(struct action *act, struct api *a, struct action_log *log)
{
	int first = 0, notfound = 0, r = 0;
	size_t *order, nsingle = 0, k = 0, i = 0;

	if (act->ran)
		return -EALREADY;
	act->ran = true;
	order = malloc(act->n * sizeof(*order));
	if (!order) {
		for (i = 0; i < act->n; i++)
			settle(act, i, -ENOMEM, false, 0, NULL,
			       "not sent: out of memory", log);
		return -ENOMEM;
	}
	/* Ids the tree did not list go first, one request each: in a bulk
	 * resume or restart, an id the API does not know makes the others'
	 * outcome unknown. Then the listed ones, in bulk. */
	for (i = 0; i < act->n; i++)
		if (!act->listed[i] || act->verb == ACTION_CALLBACK ||
		    act->n == 1)
			order[nsingle++] = i;
	k = nsingle;
	for (i = 0; i < act->n; i++)
		if (act->listed[i] && act->verb != ACTION_CALLBACK &&
		    act->n > 1)
			order[k++] = i;
	for (i = 0; i < act->n;) {
		size_t n = i < nsingle ? 1 : act->n - i;

		if (n > API_BULK_MAX)
			n = API_BULK_MAX;
		r = run_bulk(act, order + i, n, a, log);
		i += n;
		if (r == -ENOENT && !notfound)
			notfound = r;
		else if (r < 0 && !first)
			first = r;
		if (stops(r))
			break;
	}
	for (; i < act->n; i++)
		settle(act, order[i], r, false, 0, NULL, not_sent(r), log);
	free(order);
	return first ? first : notfound;
}
