/* action_log: .dlqfs/actions.log, its lines and its bytes.
 *
 * Owns: the JSON line that records what one action did to one id, and the
 * log itself: append-only, in memory, bounded, safe to share between
 * threads. Leaves to others: running actions and deciding their outcomes
 * (action.c), the JSON string escapes (jsonw.c), the time format
 * (timefmt.c), serving the file (fs.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action_log.h"
#include "buf.h"
#include "jsonw.h"
#include "timefmt.h"

/* ---- lines ------------------------------------------------------------ */

/* The log line. Each string has its own budget of output bytes, so a huge
 * id cannot push the other fields out, and the sum stays within
 * ACTION_LOG_LINE_MAX. */
#define LOG_BUDGET_ID 6000
#define LOG_BUDGET_TEXT 1200
#define LOG_BUDGET_SHORT 64 /* verb, outcome, error name */
#define LOG_BUDGET_RUN 400  /* ANSWER_MAX_RUN_ID, a few escapes */
#define LOG_FIXED 160	    /* keys, punctuation, time, status */
_Static_assert(LOG_BUDGET_ID + LOG_BUDGET_TEXT + 3 * LOG_BUDGET_SHORT +
			       LOG_BUDGET_RUN + LOG_FIXED <
		       ACTION_LOG_LINE_MAX,
	       "log line budgets exceed the line");

struct logw {
	char *buf;
	size_t len;
};

static void logw_raw(struct logw *w, const char *s)
{
	size_t n = strlen(s);

	memcpy(w->buf + w->len, s, n);
	w->len += n;
}

static void logw_field(struct logw *w, const char *key, const char *s, size_t n,
		       size_t budget)
{
	w->buf[w->len++] = ',';
	w->len +=
		jsonw_str(w->buf + w->len, key, strlen(key), LOG_BUDGET_SHORT);
	w->buf[w->len++] = ':';
	w->len += jsonw_str(w->buf + w->len, s, n, budget);
}

size_t action_log_line(const struct action_log_entry *e,
		       char buf[ACTION_LOG_LINE_MAX])
{
	struct logw w = {buf, 0};
	char tbuf[64], iso[TIMEFMT_ISO_SIZE];

	snprintf(tbuf, sizeof(tbuf), "{\"time\":\"%s\"",
		 timefmt_iso(e->time_ms, iso));
	logw_raw(&w, tbuf);
	logw_field(&w, "verb", e->verb ? e->verb : "",
		   e->verb ? strlen(e->verb) : 0, LOG_BUDGET_SHORT);
	logw_field(&w, "dlqId", e->id ? e->id : "", e->id ? e->id_len : 0,
		   LOG_BUDGET_ID);
	logw_field(&w, "outcome", e->outcome ? e->outcome : "",
		   e->outcome ? strlen(e->outcome) : 0, LOG_BUDGET_SHORT);
	if (e->http_status > 0 && e->http_status < 1000)
		snprintf(tbuf, sizeof(tbuf), ",\"status\":%ld", e->http_status);
	else
		snprintf(tbuf, sizeof(tbuf), ",\"status\":null");
	logw_raw(&w, tbuf);
	if (e->run_id && e->run_id[0])
		logw_field(&w, "workflowRunId", e->run_id, strlen(e->run_id),
			   LOG_BUDGET_RUN);
	if (e->error)
		logw_field(&w, "error", e->error, strlen(e->error),
			   LOG_BUDGET_SHORT);
	if (e->text)
		logw_field(&w, "text", e->text, strlen(e->text),
			   LOG_BUDGET_TEXT);
	logw_raw(&w, "}\n");
	buf[w.len] = '\0';
	return w.len;
}

/* ---- the log ---------------------------------------------------------- */

struct action_log {
	pthread_mutex_t lock;
	/* all below under lock */
	struct buf b;
	size_t max;
	bool full; /* the "full" line is written */
	uint64_t dropped;
};

struct action_log *action_log_new(size_t max_bytes)
{
	struct action_log *log = calloc(1, sizeof(*log));

	if (!log)
		return NULL;
	if (max_bytes == 0)
		max_bytes = ACTION_LOG_MAX_BYTES;
	if (max_bytes < 2 * ACTION_LOG_RESERVE)
		max_bytes = 2 * ACTION_LOG_RESERVE;
	log->max = max_bytes;
	pthread_mutex_init(&log->lock, NULL);
	return log;
}

void action_log_free(struct action_log *log)
{
	if (!log)
		return;
	pthread_mutex_destroy(&log->lock);
	buf_release(&log->b);
	free(log);
}

/* Appends @n bytes of @p within log->max; false when memory ran out. */
static bool log_add(struct action_log *log, const char *p, size_t n)
{
	return buf_reserve(&log->b, n, log->max) == 0 &&
	       buf_add(&log->b, p, n) == 0;
}

static void log_full_line(struct action_log *log)
{
	char line[ACTION_LOG_RESERVE], iso[TIMEFMT_ISO_SIZE];
	int n;

	log->full = true;
	n = snprintf(
		line, sizeof(line),
		"{\"time\":\"%s\",\"log\":\"full\","
		"\"text\":\"actions.log holds at most %zu bytes: later actions are not logged\"}\n",
		timefmt_iso(timefmt_now_ms(), iso), log->max);
	if (n > 0 && (size_t)n < sizeof(line))
		log_add(log, line, (size_t)n);
}

int action_log_append(struct action_log *log, const char *line, size_t len)
{
	int r = 0;

	if (!len || line[len - 1] != '\n')
		return -EINVAL;
	pthread_mutex_lock(&log->lock);
	if (log->full || len > log->max - ACTION_LOG_RESERVE - log->b.len) {
		if (!log->full)
			log_full_line(log);
		log->dropped++;
		r = -ENOSPC;
	} else if (!log_add(log, line, len)) {
		log->dropped++;
		r = -ENOMEM;
	}
	pthread_mutex_unlock(&log->lock);
	return r;
}

size_t action_log_read(struct action_log *log, uint64_t off, char *buf,
		       size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&log->lock);
	if (off < log->b.len) {
		n = log->b.len - (size_t)off;
		if (n > len)
			n = len;
		memcpy(buf, log->b.data + off, n);
	}
	pthread_mutex_unlock(&log->lock);
	return n;
}

uint64_t action_log_size(struct action_log *log)
{
	uint64_t n;

	pthread_mutex_lock(&log->lock);
	n = log->b.len;
	pthread_mutex_unlock(&log->lock);
	return n;
}

uint64_t action_log_dropped(struct action_log *log)
{
	uint64_t n;

	pthread_mutex_lock(&log->lock);
	n = log->dropped;
	pthread_mutex_unlock(&log->lock);
	return n;
}
