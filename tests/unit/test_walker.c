/* Unit tests for walker: page loop, failures, status, the walk thread.
 * Pages come from a canned source: no network. */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include "msgs.h"
#include "tap.h"
#include "walker.h"

struct canned {
	const char *const *pages; /* JSON texts, NULL = fail with -EIO */
	size_t n;
	size_t calls;
	const char *cursors_seen[16];
};

static int canned_list(void *ctx, const char *cursor, struct message_page *ret,
		       struct api_error *err)
{
	struct canned *c = ctx;
	size_t i = c->calls++;
	char why[128];

	if (i < 16)
		c->cursors_seen[i] = cursor ? strdup(cursor) : NULL;
	if (i >= c->n || !c->pages[i]) {
		snprintf(err->text, sizeof(err->text), "HTTP 500 from fake");
		err->http_status = 500;
		return -EIO;
	}
	if (message_page_parse(c->pages[i], strlen(c->pages[i]), ret, why,
			       sizeof(why)) < 0) {
		snprintf(err->text, sizeof(err->text), "bad page: %s", why);
		return -EPROTO;
	}
	return 0;
}

static void canned_reset(struct canned *c)
{
	for (size_t i = 0; i < c->calls && i < 16; i++)
		free((char *)c->cursors_seen[i]);
	c->calls = 0;
}

static const char *const three_pages[] = {
	"{\"cursor\": \"c1+/=\", \"messages\": [{\"dlqId\": \"3-0\", "
	"\"createdAt\": 3}, {\"dlqId\": \"2-0\", \"createdAt\": 2}]}",
	"{\"cursor\": \"c2\", \"messages\": [{\"dlqId\": \"2-0\"}, "
	"{\"nodlqId\": 1}, 7]}",
	"{\"cursor\": \"\", \"messages\": [{\"dlqId\": \"1-0\", "
	"\"labels\": \"oops\"}]}",
};

static void test_walk(void)
{
	struct canned c = {three_pages, 3, 0, {0}};
	struct walker_source src = {canned_list, &c};
	struct status st;
	struct snapshot *s = NULL;
	struct api_error err;

	status_init(&st, "http://x", NULL, 0, 60);
	is_int(walker_walk(&src, 100, NULL, 1, &st, &s, &err), 0,
	       "three-page walk");
	is_int(c.calls, 3, "three requests");
	ok(c.cursors_seen[0] == NULL, "first page without a cursor");
	is_str(c.cursors_seen[1], "c1+/=", "cursor passed back as given");
	is_str(c.cursors_seen[2], "c2", "second cursor");
	is_int(s->nruns, 3, "three runs (duplicate 2-0 dropped)");
	is_int(st.walk_pages, 3, "status: pages");
	is_int(st.walk_runs, 4, "status: entries seen");
	is_int(st.duplicates, 1, "status: duplicates");
	is_int(st.malformed, 2, "status: malformed entries");
	is_int(st.problems, 1, "status: malformed fields");
	ok(!st.walking, "status: walk over");
	snapshot_unref(s);
	canned_reset(&c);
	status_release(&st);
}

static void test_failures(void)
{
	static const char *const fail_mid[] = {
		"{\"cursor\": \"c1\", \"messages\": [{\"dlqId\": \"3-0\"}]}",
		NULL,
	};
	static const char *const loop[] = {
		"{\"cursor\": \"same\", \"messages\": []}",
		"{\"cursor\": \"same\", \"messages\": []}",
	};
	static const char *const cycle[] = {
		"{\"cursor\": \"a\", \"messages\": []}",
		"{\"cursor\": \"b\", \"messages\": []}",
		"{\"cursor\": \"a\", \"messages\": []}",
	};
	static const char *const bad[] = {"<html>502</html>"};
	static const char *const endless[] = {
		"{\"cursor\": \"a\", \"messages\": []}",
		"{\"cursor\": \"b\", \"messages\": []}",
		"{\"cursor\": \"c\", \"messages\": []}",
	};
	struct canned c = {fail_mid, 2, 0, {0}};
	struct walker_source src = {canned_list, &c};
	struct snapshot *s = NULL;
	struct api_error err;

	is_int(walker_walk(&src, 100, NULL, 1, NULL, &s, &err), -EIO,
	       "failure on page 2 fails the walk");
	ok(s == NULL, "and gives no snapshot");
	is_str(err.text, "HTTP 500 from fake", "error text kept");
	canned_reset(&c);
	c = (struct canned){loop, 2, 0, {0}};
	is_int(walker_walk(&src, 100, NULL, 1, NULL, &s, &err), -ELOOP,
	       "a repeated cursor stops the walk");
	ok(strstr(err.text, "same cursor") != NULL, "and says so");
	canned_reset(&c);
	c = (struct canned){cycle, 3, 0, {0}};
	is_int(walker_walk(&src, 100, NULL, 1, NULL, &s, &err), -ELOOP,
	       "a cursor cycle (a, b, a) stops the walk");
	is_int(c.calls, 3, "at the first cursor seen again");
	canned_reset(&c);
	c = (struct canned){bad, 1, 0, {0}};
	is_int(walker_walk(&src, 100, NULL, 1, NULL, &s, &err), -EPROTO,
	       "a page that is not JSON fails the walk");
	canned_reset(&c);
	c = (struct canned){endless, 3, 0, {0}};
	is_int(walker_walk(&src, 2, NULL, 1, NULL, &s, &err), -EFBIG,
	       "max_pages bounds a walk");
	is_int(c.calls, 2, "no request past the bound");
	canned_reset(&c);
}

struct done_log {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int ok, failed;
	uint64_t served;
	struct snapshot *last;
};

static void on_done(void *ctx, struct snapshot *s, uint64_t served)
{
	struct done_log *d = ctx;

	pthread_mutex_lock(&d->lock);
	d->served = served;
	if (s) {
		d->ok++;
		snapshot_unref(d->last);
		d->last = s;
	} else {
		d->failed++;
	}
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

static int wait_for(struct done_log *d, int total)
{
	struct timespec until;
	int r = 0;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&d->lock);
	while (d->ok + d->failed < total && r == 0)
		r = pthread_cond_timedwait(&d->cond, &d->lock, &until);
	pthread_mutex_unlock(&d->lock);
	return r == 0;
}

static void test_thread(void)
{
	static const char *const pages[] = {
		"{\"messages\": [{\"dlqId\": \"1-0\"}]}",
		NULL,
		"{\"cursor\": null, \"messages\": [{\"dlqId\": \"1-0\"}, "
		"{\"dlqId\": \"2-0\"}]}",
	};
	struct canned c = {pages, 3, 0, {0}};
	struct walker_source src = {canned_list, &c};
	struct done_log d = {PTHREAD_MUTEX_INITIALIZER,
			     PTHREAD_COND_INITIALIZER,
			     0,
			     0,
			     0,
			     NULL};
	atomic_int cancel = 0;
	struct walker_config cfg = {3600 * 1000, 100, &cancel};
	struct status st;
	struct walker *w;

	status_init(&st, "http://x", NULL, 0, 3600);
	w = walker_new(&cfg, &src, &st, on_done, &d);
	is_int(walker_start(w), 0, "walker starts");
	ok(wait_for(&d, 1), "first walk at start");
	is_int(st.state, STATUS_READY, "ready after a good walk");
	is_int(st.runs, 1, "one run");
	walker_refresh(w);
	ok(wait_for(&d, 2), "a refresh request walks again");
	is_int(st.state, STATUS_STALE, "a failed walk makes it stale");
	ok(st.has_error && strstr(st.last_error, "HTTP 500"),
	   "with the error in words");
	ok(st.stale_since.tv_sec > 0, "and since when");
	is_int(d.last->nruns, 1, "the good snapshot stays");
	walker_refresh(w);
	ok(wait_for(&d, 3), "another refresh");
	is_int(st.state, STATUS_READY, "the next good walk clears it");
	ok(!st.has_error, "no error");
	is_int(d.last->nruns, 2, "new snapshot");
	is_int(d.last->generation, 2, "generation counts good walks");
	is_int(d.served, 2, "both refresh requests served");
	is_int(st.refresh_served, 0,
	       "the walker leaves refresh_served to whoever publishes");
	walker_free(w);
	ok(1, "walker stops and frees");
	snapshot_unref(d.last);
	canned_reset(&c);
	status_release(&st);
}

int main(void)
{
	test_walk();
	test_failures();
	test_thread();
	return tap_done();
}
