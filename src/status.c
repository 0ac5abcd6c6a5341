/* status: the state of the mount as JSON, for .dlqfs/status.
 *
 * Owns: the fields of struct status and their rendering. Leaves to others:
 * deciding what happened (walker), serving the file (fs).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "api.h"
#include "buf.h"
#include "jsonw.h"
#include "scope.h"
#include "status.h"
#include "timefmt.h"

/* last_error and retry_text hold an api_error's text whole */
_Static_assert(sizeof(((struct api_error *)0)->text) <= STATUS_TEXT_MAX,
	       "STATUS_TEXT_MAX is smaller than an api_error text");

/* The daemon's resident set in bytes, now, or -1 when unknown. */
static long long rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "re");
	long long size, resident = -1;
	long page = sysconf(_SC_PAGESIZE);

	if (!f)
		return -1;
	if (fscanf(f, "%lld %lld", &size, &resident) != 2 || page <= 0)
		resident = -1;
	fclose(f);
	return resident < 0 ? -1 : resident * page;
}

void status_touch(struct status *st)
{
	st->version++;
	clock_gettime(CLOCK_REALTIME, &st->changed);
}

void status_retrying(void *ctx, const char *text, unsigned tries)
{
	struct status *st = ctx;

	pthread_mutex_lock(&st->lock);
	if (!text) {
		if (st->retrying && !--st->retrying)
			st->retry_text[0] = '\0';
	} else {
		if (tries == 1)
			st->retrying++;
		snprintf(st->retry_text, sizeof(st->retry_text), "%s", text);
	}
	status_touch(st);
	pthread_mutex_unlock(&st->lock);
}

/* The text being written, and the first error (then nothing more is). */
struct out {
	struct buf b;
	int err;
};

__attribute__((format(printf, 2, 3))) static void
out_printf(struct out *o, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	int n;

	if (o->err)
		return;
	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		o->err = -EINVAL;
	} else if ((size_t)n < sizeof(small)) {
		o->err = buf_add(&o->b, small, (size_t)n);
	} else {
		va_start(ap, fmt);
		o->err = buf_reserve(&o->b, (size_t)n, 0);
		if (!o->err)
			vsnprintf(o->b.data + o->b.len, (size_t)n + 1, fmt, ap);
		va_end(ap);
		if (!o->err)
			o->b.len += (size_t)n;
	}
}

/* A JSON string literal, valid whatever @s holds: a scope value comes
 * from the command line, in any bytes. */
static void out_string(struct out *o, const char *s)
{
	size_t n = strlen(s);

	if (o->err)
		return;
	o->err = buf_reserve(&o->b, jsonw_str(NULL, s, n, JSONW_NO_LIMIT), 0);
	if (o->err)
		return;
	o->b.len += jsonw_str(o->b.data + o->b.len, s, n, JSONW_NO_LIMIT);
	o->b.data[o->b.len] = '\0';
}

static char *render_scope(const struct api_filter *f, size_t n)
{
	struct out o = {0};
	int first = 1;

	out_printf(&o, "{");
	for (size_t i = 0; i < n; i++) {
		size_t j;

		for (j = 0; j < i && strcmp(f[j].param, f[i].param); j++)
			;
		if (j < i)
			continue; /* listed with its first occurrence */
		out_printf(&o, first ? "" : ", ");
		first = 0;
		out_string(&o, f[i].param);
		out_printf(&o, ": [");
		for (j = i; j < n; j++) {
			if (strcmp(f[j].param, f[i].param))
				continue;
			out_printf(&o, j == i ? "" : ", ");
			out_string(&o, f[j].value);
		}
		out_printf(&o, "]");
	}
	out_printf(&o, "}");
	if (o.err) {
		buf_release(&o.b);
		return NULL;
	}
	return buf_steal(&o.b);
}

int status_init(struct status *st, const char *api_url,
		const struct api_filter *filters, size_t nfilters,
		double refresh_s)
{
	memset(st, 0, sizeof(*st));
	st->api_url = strdup(api_url);
	st->scope = render_scope(filters, nfilters);
	if (!st->api_url || !st->scope) {
		free(st->api_url);
		free(st->scope);
		return -ENOMEM;
	}
	pthread_mutex_init(&st->lock, NULL);
	st->state = STATUS_WALKING;
	st->refresh_s = refresh_s;
	st->incremental_from = -1;
	st->cache_taken_ms = -1;
	clock_gettime(CLOCK_REALTIME, &st->changed);
	return 0;
}

void status_release(struct status *st)
{
	free(st->api_url);
	free(st->scope);
	free(st->cache_path);
	pthread_mutex_destroy(&st->lock);
}

static void out_time(struct out *o, struct timespec t)
{
	char buf[TIMEFMT_ISO_SIZE];

	if (!t.tv_sec && !t.tv_nsec) {
		out_printf(o, "null");
		return;
	}
	out_string(o,
		   timefmt_iso((int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000,
			       buf));
}

/* {"exhausted_until": ..., "reset_known": ..., "limit": ...} while the
 * daily quota is exhausted, else null. */
static void out_quota(struct out *o, const struct http_quota *q)
{
	long long until = q ? atomic_load(&q->until_ms) : 0;
	char buf[TIMEFMT_ISO_SIZE];

	if (until <= timefmt_now_ms()) {
		out_printf(o, "null");
		return;
	}
	out_printf(o, "{\"exhausted_until\": ");
	out_string(o, timefmt_iso(until, buf));
	out_printf(o, ", \"reset_known\": %s, \"limit\": ",
		   atomic_load(&q->known) ? "true" : "false");
	if (atomic_load(&q->limit) > 0)
		out_printf(o, "%lld}", (long long)atomic_load(&q->limit));
	else
		out_printf(o, "null}");
}

static const char *const state_names[] = {
	[STATUS_WALKING] = "walking", [STATUS_READY] = "ready",
	[STATUS_STALE] = "stale",     [STATUS_ERROR] = "error",
	[STATUS_CACHED] = "cached",
};

/* {"path": ..., "state": ..., "bytes": ..., "taken": ..., "age_seconds":
 * ..., "error": ...}, or null when no cache is kept. */
static void out_cache(struct out *o, const struct status *st)
{
	char buf[TIMEFMT_ISO_SIZE];

	if (!st->cache_path) {
		out_printf(o, "null");
		return;
	}
	out_printf(o, "{\"path\": ");
	out_string(o, st->cache_path);
	out_printf(o, ", \"state\": \"%s\", \"bytes\": %llu, \"taken\": ",
		   st->cache_state ? st->cache_state : "none",
		   (unsigned long long)st->cache_bytes);
	if (st->cache_taken_ms >= 0) {
		out_string(o, timefmt_iso(st->cache_taken_ms, buf));
		/* fixed width: the text's size stays that of its last change
		 * (st_size, and rsync's size-and-mtime check) while the age
		 * grows */
		out_printf(o, ", \"age_seconds\": %14.3f",
			   (double)(timefmt_now_ms() - st->cache_taken_ms) /
				   1000.0);
	} else {
		out_printf(o, "null, \"age_seconds\": null");
	}
	out_printf(o, ", \"error\": ");
	if (st->cache_has_error)
		out_string(o, st->cache_error);
	else
		out_printf(o, "null");
	out_printf(o, "}");
}

/* Longer than a function should be, for a reason: it is the file's text,
 * one field after the other in the order a user reads them (README.md
 * shows the same), under one hold of ->lock so that the fields agree. */
int status_render(struct status *st, char **ret, size_t *ret_len,
		  struct timespec *ret_changed)
{
	struct out o = {0};
	long long rss = rss_bytes(); /* not under the lock: it reads a file */
	char *text;
	size_t len;

	pthread_mutex_lock(&st->lock);
	out_printf(&o, "{\n  \"state\": \"%s\",\n", state_names[st->state]);
	out_printf(&o, "  \"runs\": %llu,\n", (unsigned long long)st->runs);
	out_printf(&o, "  \"pages\": %llu,\n",
		   (unsigned long long)st->walk_pages);
	out_printf(&o, "  \"walking\": %s,\n", st->walking ? "true" : "false");
	out_printf(&o, "  \"walk_kind\": \"%s\",\n",
		   st->walk_incremental ? "incremental" : "full");
	out_printf(&o, "  \"incremental_from\": ");
	if (st->walk_incremental && st->incremental_from >= 0)
		out_time(&o, (struct timespec){
				     (time_t)(st->incremental_from / 1000),
				     (long)(st->incremental_from % 1000) *
					     1000000L});
	else
		out_printf(&o, "null");
	out_printf(&o, ",\n");
	out_printf(&o, "  \"walk_runs\": %llu,\n",
		   (unsigned long long)st->walk_runs);
	out_printf(&o, "  \"walk_rate\": %.0f,\n", st->walk_rate);
	out_printf(&o, "  \"walk_started\": ");
	out_time(&o, st->walk_started);
	out_printf(&o, ",\n  \"last_refresh\": ");
	out_time(&o, st->last_refresh);
	out_printf(&o, ",\n  \"last_success\": ");
	out_time(&o, st->last_success);
	out_printf(&o, ",\n  \"last_full_walk\": ");
	out_time(&o, st->last_full);
	out_printf(&o, ",\n  \"stale_since\": ");
	out_time(&o, st->state == STATUS_STALE || st->state == STATUS_ERROR
			     ? st->stale_since
			     : (struct timespec){0, 0});
	out_printf(&o, ",\n  \"last_error\": ");
	if (st->has_error)
		out_string(&o, st->last_error);
	else
		out_printf(&o, "null");
	out_printf(&o, ",\n  \"retrying\": ");
	if (st->retrying && st->retry_text[0])
		out_string(&o, st->retry_text);
	else
		out_printf(&o, "null");
	out_printf(&o, ",\n  \"daily_quota\": ");
	out_quota(&o, st->quota);
	out_printf(&o, ",\n  \"cache\": ");
	out_cache(&o, st);
	out_printf(&o, ",\n  \"api_url\": ");
	out_string(&o, st->api_url);
	out_printf(&o, ",\n  \"scope\": %s,\n", st->scope);
	out_printf(&o, "  \"refresh_seconds\": %g,\n", st->refresh_s);
	out_printf(&o, "  \"reconcile_seconds\": %g,\n", st->reconcile_s);
	out_printf(&o, "  \"late_window_seconds\": %g,\n", st->late_window_s);
	out_printf(&o, "  \"generation\": %llu,\n",
		   (unsigned long long)st->generation);
	out_printf(&o, "  \"walks_ok\": %llu,\n",
		   (unsigned long long)st->walks_ok);
	out_printf(&o, "  \"walks_failed\": %llu,\n",
		   (unsigned long long)st->walks_failed);
	out_printf(&o, "  \"walks_full\": %llu,\n",
		   (unsigned long long)st->walks_full);
	out_printf(&o, "  \"walks_incremental\": %llu,\n",
		   (unsigned long long)st->walks_incremental);
	out_printf(&o, "  \"refresh_requested\": %llu,\n",
		   (unsigned long long)atomic_load(&st->refresh_requested));
	out_printf(&o, "  \"refresh_served\": %llu,\n",
		   (unsigned long long)st->refresh_served);
	out_printf(&o, "  \"lost_readdir_cookies\": %llu,\n",
		   (unsigned long long)atomic_load(&st->lost_cookies));
	out_printf(&o, "  \"payload_bytes\": %llu,\n",
		   (unsigned long long)st->payload_bytes);
	if (rss < 0)
		out_printf(&o, "  \"rss_bytes\": null,\n");
	else
		out_printf(&o, "  \"rss_bytes\": %lld,\n", rss);
	out_printf(&o, "  \"kept_snapshots\": %lu,\n",
		   (unsigned long)atomic_load(&st->kept_snapshots));
	out_printf(&o, "  \"kept_snapshot_bytes\": %llu,\n",
		   (unsigned long long)atomic_load(&st->kept_bytes));
	out_printf(&o, "  \"malformed_entries\": %llu,\n",
		   (unsigned long long)st->malformed);
	out_printf(&o, "  \"duplicate_entries\": %llu,\n",
		   (unsigned long long)st->duplicates);
	out_printf(&o, "  \"malformed_fields\": %llu,\n",
		   (unsigned long long)st->problems);
	out_printf(&o, "  \"out_of_scope_entries\": %llu,\n",
		   (unsigned long long)st->out_of_scope);
	out_printf(&o, "  \"ignored_filters\": [");
	for (int i = 0, n = 0; i < SCOPE_NPARAMS; i++) {
		if (!(st->ignored_filters & (1u << i)))
			continue;
		out_printf(&o, n++ ? ", " : "");
		out_string(&o, scope_param_name(i));
	}
	out_printf(&o, "]\n}\n");
	if (ret_changed)
		*ret_changed = st->changed;
	pthread_mutex_unlock(&st->lock);
	if (o.err) {
		buf_release(&o.b);
		return o.err;
	}
	len = o.b.len;
	text = buf_steal(&o.b);
	if (!text)
		return -ENOMEM;
	*ret = text;
	*ret_len = len;
	return 0;
}
