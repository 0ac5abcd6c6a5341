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

static int canned_list(void *ctx, int64_t from, int64_t to, const char *cursor,
		       struct message_page *ret, struct api_error *err)
{
	struct canned *c = ctx;
	size_t i = c->calls++;
	char why[128];

	if (from != -1 || to != -1) {
		printf("Bail out! one worker never asks for a range\n");
		exit(1);
	}
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

static const struct walker_limits lim100 = {100, 1, 0, NULL, -1};
static const struct walker_limits lim2 = {2, 1, 0, NULL, -1};

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
	struct walker_source src = {canned_list, NULL, NULL, &c};
	struct status st;
	struct snapshot *s = NULL;
	struct api_error err;

	status_init(&st, "http://x", NULL, 0, 60);
	is_int(walker_walk(&src, &lim100, NULL, 1, &st, &s, &err), 0,
	       "three-page walk");
	is_int(c.calls, 3, "three requests");
	ok(c.cursors_seen[0] == NULL, "first page without a cursor");
	is_str(c.cursors_seen[1], "c1+/=", "cursor passed back as given");
	is_str(c.cursors_seen[2], "c2", "second cursor");
	is_int(s->nruns, 3, "three runs (duplicate 2-0 dropped)");
	is_int(st.walk_pages, 3, "status: pages");
	is_int(st.walk_runs, 3, "status: runs found");
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
	struct walker_source src = {canned_list, NULL, NULL, &c};
	struct snapshot *s = NULL;
	struct api_error err;

	is_int(walker_walk(&src, &lim100, NULL, 1, NULL, &s, &err), -EIO,
	       "failure on page 2 fails the walk");
	ok(s == NULL, "and gives no snapshot");
	is_str(err.text, "HTTP 500 from fake", "error text kept");
	canned_reset(&c);
	c = (struct canned){loop, 2, 0, {0}};
	is_int(walker_walk(&src, &lim100, NULL, 1, NULL, &s, &err), -ELOOP,
	       "a repeated cursor stops the walk");
	ok(strstr(err.text, "same cursor") != NULL, "and says so");
	canned_reset(&c);
	c = (struct canned){cycle, 3, 0, {0}};
	is_int(walker_walk(&src, &lim100, NULL, 1, NULL, &s, &err), -ELOOP,
	       "a cursor cycle (a, b, a) stops the walk");
	is_int(c.calls, 3, "at the first cursor seen again");
	canned_reset(&c);
	c = (struct canned){bad, 1, 0, {0}};
	is_int(walker_walk(&src, &lim100, NULL, 1, NULL, &s, &err), -EPROTO,
	       "a page that is not JSON fails the walk");
	canned_reset(&c);
	c = (struct canned){endless, 3, 0, {0}};
	is_int(walker_walk(&src, &lim2, NULL, 1, NULL, &s, &err), -EFBIG,
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
	struct walker_source src = {canned_list, NULL, NULL, &c};
	struct done_log d = {PTHREAD_MUTEX_INITIALIZER,
			     PTHREAD_COND_INITIALIZER,
			     0,
			     0,
			     0,
			     NULL};
	atomic_int cancel = 0;
	struct walker_config cfg = {3600 * 1000, {100, 1, 0, &cancel, -1}};
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

/* A ranged source like the API: NENTRIES entries, createdAt clustered
 * (ties included), filtered by [from, to], 100 per page, the cursor an
 * offset. Newest first, or shuffled within a range (the walk must not
 * depend on the order). */
enum { NENTRIES = 2000 };

struct ranged {
	int shuffled;
	atomic_int calls;
	atomic_int ranged_calls;
	atomic_int fail_countdown; /* fail_ranged: the request that fails */
	int tie_head; /* the newest TIE_HEAD entries share one millisecond */
	pthread_mutex_t lock;	      /* protects the log below */
	int64_t froms[256], tos[256]; /* ranged requests' first pages */
	int nlog;
};

enum { TIE_HEAD = 150 };
#define TIE_MS (1700000000000LL + NENTRIES / 20 * 997 + 5000)

static int64_t created_of(const struct ranged *rs, int i)
{
	if (rs->tie_head && i >= NENTRIES - TIE_HEAD)
		return TIE_MS;
	/* bursts: 20 entries share each millisecond in places */
	return 1700000000000LL + (i / 20) * 997 + (i % 7 == 0 ? 0 : i % 20);
}

static int ranged_list(void *ctx, int64_t from, int64_t to, const char *cursor,
		       struct message_page *ret, struct api_error *err)
{
	struct ranged *rs = ctx;
	static int idx[NENTRIES];
	int n = 0, off = cursor ? atoi(cursor) : 0, r;
	size_t cap = 100 * 128 + 256, len = 0;
	char *buf = malloc(cap), why[128];
	int sel[NENTRIES];

	(void)err;
	atomic_fetch_add(&rs->calls, 1);
	if (from >= 0 || to >= 0)
		atomic_fetch_add(&rs->ranged_calls, 1);
	if ((from >= 0 || to >= 0) && !cursor) {
		pthread_mutex_lock(&rs->lock);
		if (rs->nlog < 256) {
			rs->froms[rs->nlog] = from;
			rs->tos[rs->nlog++] = to;
		}
		pthread_mutex_unlock(&rs->lock);
	}
	for (int i = NENTRIES - 1; i >= 0; i--) {
		int64_t c = created_of(rs, i);

		if ((from < 0 || c >= from) && (to < 0 || c <= to))
			sel[n++] = i;
	}
	if (rs->shuffled) /* a fixed permutation of the selection */
		for (int i = n - 1; i > 0; i--) {
			int j = (int)(names_hash64(&i, sizeof(i)) %
				      (uint64_t)(i + 1));
			int t = sel[i];

			sel[i] = sel[j];
			sel[j] = t;
		}
	(void)idx;
	len += (size_t)snprintf(buf + len, cap - len, "{\"messages\": [");
	for (int k = off; k < off + 100 && k < n; k++)
		len += (size_t)snprintf(
			buf + len, cap - len,
			"%s{\"dlqId\": \"e%d\", \"createdAt\": %lld}",
			k > off ? ", " : "", sel[k],
			(long long)created_of(rs, sel[k]));
	if (off + 100 < n)
		len += (size_t)snprintf(buf + len, cap - len,
					"], \"cursor\": \"%d\"}", off + 100);
	else
		len += (size_t)snprintf(buf + len, cap - len, "]}");
	r = message_page_parse(buf, len, ret, why, sizeof(why));
	free(buf);
	return r;
}

static void test_parallel(void)
{
	for (int shuffled = 0; shuffled < 2; shuffled++) {
		struct ranged rs = {.shuffled = shuffled,
				    .lock = PTHREAD_MUTEX_INITIALIZER};
		struct walker_source src = {ranged_list, NULL, NULL, &rs};
		struct walker_limits one = {0, 1, 0, NULL, -1};
		struct walker_limits eight = {0, 8, 0, NULL, -1};
		struct snapshot *s1 = NULL, *s8 = NULL;
		struct api_error err;
		int same = 1;

		is_int(walker_walk(&src, &one, NULL, 1, NULL, &s1, &err), 0,
		       "sequential walk (%s)",
		       shuffled ? "shuffled" : "newest first");
		is_int(atomic_load(&rs.calls), NENTRIES / 100,
		       "one request per page");
		is_int(atomic_load(&rs.ranged_calls), 0, "no ranges");
		atomic_store(&rs.calls, 0);
		is_int(walker_walk(&src, &eight, NULL, 1, NULL, &s8, &err), 0,
		       "parallel walk (%s)",
		       shuffled ? "shuffled" : "newest first");
		ok(atomic_load(&rs.ranged_calls) > 0, "ranges were walked");
		ok(atomic_load(&rs.calls) < NENTRIES / 100 * 2,
		   "under twice the requests (%d)", atomic_load(&rs.calls));
		is_int(s8->nruns, NENTRIES, "every entry exactly once");
		for (uint32_t i = 0; same && i < s1->nruns; i++)
			same = !strcmp(s1->runs[i].name, s8->runs[i].name);
		ok(same, "the same runs as the sequential walk");
		snapshot_unref(s1);
		snapshot_unref(s8);
	}
}

/* The first page is all one millisecond: the walk still goes side by
 * side, cutting at that millisecond. */
static void test_split_tied_head(void)
{
	struct ranged rs = {.tie_head = 1, .lock = PTHREAD_MUTEX_INITIALIZER};
	struct walker_source src = {ranged_list, NULL, NULL, &rs};
	struct walker_limits eight = {0, 8, 0, NULL, -1};
	struct snapshot *s = NULL;
	struct api_error err;
	int leaf = 0, rest = 0;

	is_int(walker_walk(&src, &eight, NULL, 1, NULL, &s, &err), 0,
	       "walk with a first page of one millisecond");
	is_int(s->nruns, NENTRIES, "every entry exactly once");
	ok(atomic_load(&rs.ranged_calls) > 0, "ranges were walked (%d)",
	   atomic_load(&rs.ranged_calls));
	for (int i = 0; i < rs.nlog; i++) {
		leaf += rs.froms[i] == TIE_MS && rs.tos[i] == -1;
		rest += rs.froms[i] == -1 && rs.tos[i] == TIE_MS - 1;
	}
	is_int(leaf, 1, "that millisecond and above: one leaf");
	is_int(rest, 1, "below it: the rest, cut again");
	ok(rs.nlog > 2, "the rest was cut again (%d ranges)", rs.nlog);
	ok(atomic_load(&rs.calls) < NENTRIES / 100 * 2,
	   "under twice the requests (%d)", atomic_load(&rs.calls));
	snapshot_unref(s);
}

static int fail_ranged(void *ctx, int64_t from, int64_t to, const char *cursor,
		       struct message_page *ret, struct api_error *err)
{
	struct ranged *rs = ctx;

	if (atomic_fetch_sub(&rs->fail_countdown, 1) == 1) {
		snprintf(err->text, sizeof(err->text), "HTTP 503 from fake");
		return -EIO;
	}
	return ranged_list(ctx, from, to, cursor, ret, err);
}

static void test_parallel_failure(void)
{
	struct ranged rs = {.fail_countdown = 6, /* the 6th request fails */
			    .lock = PTHREAD_MUTEX_INITIALIZER};
	struct walker_source src = {fail_ranged, NULL, NULL, &rs};
	struct walker_limits eight = {0, 8, 0, NULL, -1};
	struct snapshot *s = NULL;
	struct api_error err;

	is_int(walker_walk(&src, &eight, NULL, 1, NULL, &s, &err), -EIO,
	       "one failed request fails a parallel walk");
	ok(s == NULL, "and gives no snapshot");
	is_str(err.text, "HTTP 503 from fake", "with that request's error");
}

int main(void)
{
	test_walk();
	test_failures();
	test_thread();
	test_parallel();
	test_split_tied_head();
	test_parallel_failure();
	return tap_done();
}
