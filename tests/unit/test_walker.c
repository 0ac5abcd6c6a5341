/* Unit tests for walker: page loop, failures, status, the walk thread.
 * Pages come from a canned source: no network. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>

#include "msgs.h"
#include "scope.h"
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

static const struct walker_limits lim100 = {100, 1, 0, NULL, -1, NULL};
static const struct walker_limits lim2 = {2, 1, 0, NULL, -1, NULL};

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

/* A filter the API ignored: what it sent outside the scope is left out,
 * counted, and the filter named; whatever it did, the tree is the same. */
static void test_scope(void)
{
	static const char *const pages[] = {
		"{\"cursor\": \"c1\", \"messages\": ["
		"{\"dlqId\": \"3-0\", \"labels\": [\"x\"], "
		"\"callerIP\": \"1.1.1.1\"}, "
		"{\"dlqId\": \"2-0\", \"labels\": [\"y\"], "
		"\"callerIP\": \"1.1.1.1\"}]}",
		"{\"cursor\": null, \"messages\": ["
		"{\"dlqId\": \"2-0\", \"labels\": [\"y\"]}, "
		"{\"dlqId\": \"1-0\", \"labels\": [\"x\"], "
		"\"callerIP\": \"2.2.2.2\"}, "
		"{\"dlqId\": \"0-0\", \"labels\": [\"x\"], "
		"\"failureCallbackInfo\": {\"state\": \"CALLBACK_FAIL\"}, "
		"\"callerIP\": \"1.1.1.1\"}]}",
	};
	struct canned c = {pages, 2, 0, {0}};
	struct walker_source src = {canned_list, NULL, NULL, &c};
	struct walker_limits lim = {100, 1, 0, NULL, -1, NULL};
	struct scope *scope = scope_new();
	struct snapshot *s = NULL;
	struct api_error err;
	struct status st;

	scope_add(scope, "label", "x", NULL, 0);
	scope_add(scope, "caller_ip", "1.1.1.1", NULL, 0);
	lim.scope = scope;
	status_init(&st, "http://x", NULL, 0, 60);
	is_int(walker_walk(&src, &lim, NULL, 1, &st, &s, &err), 0,
	       "scoped walk");
	if (ok(s != NULL, "scoped walk: a snapshot")) {
		is_int(s->nruns, 2, "two runs inside label=x, caller_ip=...");
		is_int(snapshot_find_run(s, "3-0") >= 0, 1, "3-0 kept");
		is_int(snapshot_find_run(s, "0-0") >= 0, 1, "0-0 kept");
		is_int(snapshot_find_run(s, "2-0"), -ENOENT, "2-0 left out");
		is_int(snapshot_find_run(s, "1-0"), -ENOENT, "1-0 left out");
	}
	is_int(st.out_of_scope, 2,
	       "status: two entries outside (2-0, sent twice, once)");
	is_int(st.walk_runs, 2, "status: runs found are those kept");
	ok(st.ignored_filters & (1u << 0), "status: label seemed ignored");
	ok(st.ignored_filters & (1u << 7), "status: callerIp seemed ignored");
	is_int(st.ignored_filters & ~((1u << 0) | (1u << 7)), 0,
	       "status: no other filter named");
	is_str(scope_param_name(7), "callerIp", "bit 7 is callerIp");
	snapshot_unref(s);
	canned_reset(&c);

	/* the same pages without a scope: everything */
	is_int(walker_walk(&src, &lim100, NULL, 2, &st, &s, &err), 0,
	       "unscoped walk");
	is_int(s ? s->nruns : 0, 4, "unscoped: four runs");
	is_int(st.out_of_scope, 0, "unscoped: none outside");
	snapshot_unref(s);
	canned_reset(&c);
	scope_free(scope);
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
	struct walker_config cfg = {.refresh_ms = 3600 * 1000,
				    .limits = {100, 1, 0, &cancel, -1, NULL}};
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
		struct walker_limits one = {0, 1, 0, NULL, -1, NULL};
		struct walker_limits eight = {0, 8, 0, NULL, -1, NULL};
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
	struct walker_limits eight = {0, 8, 0, NULL, -1, NULL};
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
	struct walker_limits eight = {0, 8, 0, NULL, -1, NULL};
	struct snapshot *s = NULL;
	struct api_error err;

	is_int(walker_walk(&src, &eight, NULL, 1, NULL, &s, &err), -EIO,
	       "one failed request fails a parallel walk");
	ok(s == NULL, "and gives no snapshot");
	is_str(err.text, "HTTP 503 from fake", "with that request's error");
}

/* A small DLQ that changes between walks, listed like the API: entries
 * with createdAt in [from, to], newest first, 100 a page, the cursor an
 * offset. */
enum { DB_MAX = 600 };

struct db {
	pthread_mutex_t lock; /* protects everything below */
	int n;
	int64_t created[DB_MAX];
	char state[DB_MAX][24];
	bool deleted[DB_MAX];
	int calls, full_calls; /* requests; those without fromDate */
	int64_t last_from;
};

static int db_list(void *ctx, int64_t from, int64_t to, const char *cursor,
		   struct message_page *ret, struct api_error *err)
{
	struct db *db = ctx;
	int off = cursor ? atoi(cursor) : 0, k = 0, shown = 0, r;
	size_t cap = 100 * 160 + 256, len = 0;
	char *buf = malloc(cap), why[128];

	(void)err;
	pthread_mutex_lock(&db->lock);
	db->calls++;
	db->full_calls += from < 0;
	db->last_from = from;
	len += (size_t)snprintf(buf + len, cap - len, "{\"messages\": [");
	for (int i = db->n - 1; i >= 0; i--) {
		if (db->deleted[i] || (from >= 0 && db->created[i] < from) ||
		    (to >= 0 && db->created[i] > to))
			continue;
		if (k++ < off)
			continue;
		if (shown == 100) {
			len += (size_t)snprintf(buf + len, cap - len,
						"], \"cursor\": \"%d\"}",
						off + 100);
			break;
		}
		len += (size_t)snprintf(
			buf + len, cap - len,
			"%s{\"dlqId\": \"e%d\", \"createdAt\": %lld%s%s%s}",
			shown ? ", " : "", i, (long long)db->created[i],
			db->state[i][0] ? ", \"failureFunctionState\": \"" : "",
			db->state[i], db->state[i][0] ? "\"" : "");
		shown++;
	}
	if (shown < 100 || k <= off + 100)
		len += (size_t)snprintf(buf + len, cap - len, "]}");
	pthread_mutex_unlock(&db->lock);
	r = message_page_parse(buf, len, ret, why, sizeof(why));
	free(buf);
	return r;
}

static void db_add(struct db *db, int64_t created)
{
	pthread_mutex_lock(&db->lock);
	db->created[db->n++] = created;
	pthread_mutex_unlock(&db->lock);
}

#define DB_T0 1700000000000LL
#define MINUTE_MS 60000LL

static void db_fill(struct db *db, int n)
{
	memset(db, 0, sizeof(*db));
	pthread_mutex_init(&db->lock, NULL);
	for (int i = 0; i < n; i++)
		db_add(db, DB_T0 + i * MINUTE_MS); /* one a minute */
}

static int has_run(const struct snapshot *s, int i)
{
	char name[32];

	snprintf(name, sizeof(name), "e%d", i);
	return snapshot_find_run(s, name) >= 0;
}

static void test_walk_since(void)
{
	static struct db db;
	struct walker_source src = {db_list, NULL, NULL, &db};
	struct walker_limits lim = {0, 4, 0, NULL, -1, NULL};
	struct snapshot *s0 = NULL, *s1 = NULL, *s2 = NULL;
	int64_t newest, since;
	struct api_error err;
	struct status st;
	int64_t i;

	status_init(&st, "http://x", NULL, 0, 60);
	db_fill(&db, 500);
	is_int(walker_walk(&src, &lim, NULL, 1, &st, &s0, &err), 0,
	       "full walk");
	is_int(s0->nruns, 500, "500 runs");
	ok(!st.walk_incremental, "status: a full walk");
	newest = s0->newest_ms;
	since = newest - 60 * MINUTE_MS; /* an hour's overlap */

	/* nothing changed: one page, the same runs */
	db.calls = db.full_calls = 0;
	is_int(walker_walk_since(&src, &lim, s0, since, 2, &st, &s1, &err), 0,
	       "incremental walk");
	is_int(db.calls, 1, "an unchanged DLQ costs one request");
	is_int(db.full_calls, 0, "and it has a fromDate");
	is_int(db.last_from, since, "fromDate = newest - the window");
	ok(st.walk_incremental && st.incremental_from == since,
	   "status: incremental, and from when");
	is_int(s1->nruns, 500, "the same 500 runs");
	ok(s1->runs[0].msg == s0->runs[0].msg, "old runs shared, not copied");

	/* a new entry, a late lander inside the window, one outside it, a
	 * deletion and a state change on each side of the window */
	db_add(&db, newest + 1000);	       /* e500: new */
	db_add(&db, newest - 30 * MINUTE_MS);  /* e501: late, inside */
	db_add(&db, newest - 300 * MINUTE_MS); /* e502: late, outside */
	db.deleted[499] = true;		       /* inside the window */
	db.deleted[10] = true;		       /* older */
	snprintf(db.state[480], sizeof(db.state[480]), "CALLBACK_SUCCESS");
	snprintf(db.state[20], sizeof(db.state[20]), "CALLBACK_SUCCESS");
	is_int(walker_walk_since(&src, &lim, s1, since, 3, &st, &s2, &err), 0,
	       "incremental walk after changes");
	ok(has_run(s2, 500), "a new entry appears");
	ok(has_run(s2, 501), "a late lander inside the window appears");
	ok(!has_run(s2, 502), "one older than the window waits for a full "
			      "walk");
	ok(!has_run(s2, 499), "a deletion inside the window shows");
	ok(has_run(s2, 10), "a deletion older than the window waits");
	i = snapshot_find_value(s2, VIEW_STATE, "CALLBACK_SUCCESS");
	ok(i >= 0 && s2->view[VIEW_STATE].values[i].nruns == 1,
	   "a state change inside the window shows, the older one waits");
	snapshot_unref(s1);
	s1 = s2;
	s2 = NULL;
	is_int(walker_walk(&src, &lim, s1, 4, &st, &s2, &err), 0,
	       "full walk (reconcile)");
	ok(has_run(s2, 502) && !has_run(s2, 10),
	   "the full walk catches the rest");
	i = snapshot_find_value(s2, VIEW_STATE, "CALLBACK_SUCCESS");
	ok(i >= 0 && s2->view[VIEW_STATE].values[i].nruns == 2,
	   "and the older state change");
	snapshot_unref(s0);
	snapshot_unref(s1);
	snapshot_unref(s2);
	status_release(&st);
}

static void test_schedule(void)
{
	static struct db db;
	struct walker_source src = {db_list, NULL, NULL, &db};
	struct done_log d = {PTHREAD_MUTEX_INITIALIZER,
			     PTHREAD_COND_INITIALIZER,
			     0,
			     0,
			     0,
			     NULL};
	atomic_int cancel = 0;
	struct walker_config cfg = {.refresh_ms = 20,
				    .reconcile_ms = 3600 * 1000,
				    .late_window_ms = 60 * MINUTE_MS,
				    .limits = {0, 2, 0, &cancel, -1, NULL}};
	struct status st;
	struct walker *w;
	int fulls, incs;

	db_fill(&db, 300);
	status_init(&st, "http://x", NULL, 0, 0.02);
	w = walker_new(&cfg, &src, &st, on_done, &d);
	is_int(walker_start(w), 0, "walker starts");
	ok(wait_for(&d, 4), "four walks on the timer");
	pthread_mutex_lock(&st.lock);
	fulls = (int)st.walks_full;
	incs = (int)st.walks_incremental;
	pthread_mutex_unlock(&st.lock);
	is_int(fulls, 1, "the first walk is full");
	ok(incs >= 3, "the timer's walks are incremental (%d)", incs);
	ok(st.last_full.tv_sec > 0, "status: when the last full walk was");
	pthread_mutex_lock(&d.lock);
	fulls = d.ok + d.failed;
	pthread_mutex_unlock(&d.lock);
	walker_refresh(w);
	ok(wait_for(&d, fulls + 2), "a walk asked for, and more");
	pthread_mutex_lock(&st.lock);
	fulls = (int)st.walks_full;
	pthread_mutex_unlock(&st.lock);
	is_int(fulls, 2, "a walk asked for is full");
	walker_free(w);
	pthread_mutex_lock(&d.lock);
	is_int(d.last->nruns, 300, "every run, all along");
	pthread_mutex_unlock(&d.lock);
	snapshot_unref(d.last);
	status_release(&st);

	/* reconcile due: every timer walk is full again */
	memset(&d, 0, sizeof(d));
	pthread_mutex_init(&d.lock, NULL);
	pthread_cond_init(&d.cond, NULL);
	atomic_store(&cancel, 0);
	cfg.reconcile_ms = 1;
	status_init(&st, "http://x", NULL, 0, 0.02);
	w = walker_new(&cfg, &src, &st, on_done, &d);
	walker_start(w);
	ok(wait_for(&d, 3), "three walks");
	walker_free(w);
	is_int(st.walks_incremental, 0, "a reconcile that is due is full");
	snapshot_unref(d.last);
	status_release(&st);
}

/* The default reconcile grows with the DLQ: full walks take at most 1%
 * of the time (and requests) the rate cap allows; a reconcile given with
 * -o reconcile= is kept as given. */
static void test_reconcile_budget(void)
{
	struct walker_config c = {.refresh_ms = 60000,
				  .reconcile_ms = 600000,
				  .reconcile_auto = true,
				  .limits = {.max_rps = 90}};
	static const struct {
		uint64_t runs;
		int64_t want_ms;
	} cases[] = {
		{0, 600000},
		{10000, 600000},     /* 100 pages: 111 s x 100 < 10 min */
		{54000, 600000},     /* 540 pages: exactly 10 min */
		{100000, 1111111},   /* 1,000 pages: 18.5 min */
		{1000000, 11111111}, /* 10,000 pages: 3.1 h */
		{1000001, 11112222}, /* a page more */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		is_int(walker_reconcile_ms(&c, cases[i].runs), cases[i].want_ms,
		       "reconcile at %llu runs",
		       (unsigned long long)cases[i].runs);
	c.reconcile_auto = false;
	is_int(walker_reconcile_ms(&c, 1000000), 600000,
	       "a reconcile given is kept at 1M runs");
	c.reconcile_auto = true;
	c.reconcile_ms = 0;
	is_int(walker_reconcile_ms(&c, 1000000), 0,
	       "reconcile=0 stays every walk full");
}

int main(void)
{
	test_reconcile_budget();
	test_walk();
	test_scope();
	test_failures();
	test_thread();
	test_parallel();
	test_split_tied_head();
	test_parallel_failure();
	test_walk_since();
	test_schedule();
	return tap_done();
}
