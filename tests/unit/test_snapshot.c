/* Unit tests for snapshot: dedupe, order, names, views, keys, times. */
#include <errno.h>
#include <malloc.h>
#include <string.h>

#include "msgs.h"
#include "snapshot.h"
#include "tap.h"

static struct snapshot *build(const struct snapshot *prev, struct timespec now,
			      struct message **msgs, size_t n)
{
	struct snapshot_builder *b = snapshot_builder_new();
	struct snapshot *s = NULL;

	for (size_t i = 0; i < n; i++)
		snapshot_builder_add(b, msgs[i]);
	if (snapshot_builder_finish(b, prev, now,
				    prev ? prev->generation + 1 : 1, &s) < 0) {
		printf("Bail out! finish failed\n");
		exit(1);
	}
	return s;
}

static void test_dedupe_and_order(void)
{
	struct snapshot_builder *b = snapshot_builder_new();
	struct snapshot *s;

	is_int(snapshot_builder_add(b, msg_make("3-0", 3000, NULL, NULL)), 1,
	       "first add");
	is_int(snapshot_builder_add(b, msg_make("1-0", 1000, NULL, NULL)), 1,
	       "second id");
	is_int(snapshot_builder_add(b, msg_make("3-0", 9000, NULL, NULL)), 0,
	       "duplicate dlqId is dropped");
	is_int(snapshot_builder_add(b, msg_make("a/b", 2000, NULL, NULL)), 1,
	       "id with a slash");
	is_int(snapshot_builder_count(b), 3, "three runs counted");
	snapshot_builder_account(b, 1234);
	is_int(snapshot_builder_finish(b, NULL, (struct timespec){5, 0}, 1, &s),
	       0, "finish");
	is_int(s->nruns, 3, "three runs");
	is_str(s->runs[0].name, "1-0", "sorted: 1-0 first");
	is_str(s->runs[1].name, "3-0", "sorted: 3-0");
	is_str(s->runs[2].name, "a%2Fb", "slash escaped in a run name");
	is_int(s->runs[1].msg->created_ms, 3000, "first copy of a dup kept");
	is_int(s->bytes, 1234, "payload bytes accounted");
	is_int(s->newest_ms, 3000, "newest createdAt");
	is_int(snapshot_find_run(s, "a%2Fb"), 2, "find by escaped name");
	is_int(snapshot_find_run(s, "a/b"), -ENOENT, "raw name not found");
	is_int(snapshot_find_run(s, "2-0"), -ENOENT, "unknown run");
	snapshot_unref(s);
}

static void test_views(void)
{
	struct message *m[] = {
		msg_make("1-0", 86400000LL * 3, "CALLBACK_FAIL",
			 "[\"payments\", \"team/payments\"]"),
		msg_make("2-0", 86400000LL * 3 + 5, "CALLBACK_SUCCESS",
			 "[\"payments\"]"),
		msg_make("3-0", 86400000LL * 4, NULL, "[]"),
		msg_json("{\"dlqId\": \"4-0\", \"label\": \"billing\"}"),
	};
	struct snapshot *s = build(NULL, (struct timespec){1, 0}, m, 4);
	const struct snapshot_view *lv = &s->view[VIEW_LABEL];
	int64_t i;

	is_int(lv->nvalues, 3, "three labels");
	is_str(lv->values[0].name, "billing", "label-only entry listed");
	is_str(lv->values[1].name, "payments", "labels sorted");
	is_str(lv->values[2].name, "team%2Fpayments", "label escaped");
	is_int(lv->values[1].nruns, 2, "payments has two runs");
	is_int(lv->values[1].runs[0], 0, "run list sorted (1-0)");
	is_int(lv->values[1].runs[1], 1, "run list sorted (2-0)");
	is_int(lv->values[1].newest_ms, 86400000LL * 3 + 5,
	       "value's newest createdAt");
	i = snapshot_find_value(s, VIEW_STATE, "CALLBACK_FAIL");
	ok(i >= 0 && s->view[VIEW_STATE].values[i].nruns == 1,
	   "by-state value");
	is_int(s->view[VIEW_STATE].nvalues, 2, "absent state: no directory");
	is_int(s->view[VIEW_DATE].nvalues, 2, "two dates");
	is_str(s->view[VIEW_DATE].values[0].name, "1970-01-04", "date name");
	is_int(s->view[VIEW_STATUS].nvalues, 1, "one status");
	is_str(s->view[VIEW_STATUS].values[0].name, "500", "status name");
	is_str(s->view[VIEW_URL].values[0].name, "https:%2F%2Fa.example%2Fwf",
	       "url escaped");
	is_int(s->view[VIEW_RUN].nvalues, 3, "runs of entries that have one");
	/* 1-0: 2 labels + url + run + state + status + date = 7 */
	is_int(s->runs[0].nlinks, 7, "links of 1-0");
	is_int(s->runs[3].nlinks, 1, "links of 4-0 (label only)");
	is_int(snapshot_value_find_run(s, &lv->values[1], 1), 1,
	       "run in value");
	is_int(snapshot_value_find_run(s, &lv->values[1], 2), -ENOENT,
	       "run not in value");
	snapshot_unref(s);
}

static void test_keys_and_times(void)
{
	struct message *a[] = {
		msg_make("1-0", 1000, "CALLBACK_INPROGRESS", "[\"x\"]"),
		msg_make("2-0", 2000, "CALLBACK_INPROGRESS", "[\"x\"]"),
	};
	struct message *b[] = {
		msg_make("2-0", 2000, "CALLBACK_SUCCESS", "[\"x\"]"),
		msg_make("1-0", 1000, "CALLBACK_INPROGRESS", "[\"x\"]"),
		msg_make("0-0", 500, NULL, NULL),
	};
	struct snapshot *s1 = build(NULL, (struct timespec){100, 0}, a, 2);
	struct snapshot *s2 = build(s1, (struct timespec){200, 0}, b, 3);
	struct snapshot_ref ref;
	int64_t i1 = snapshot_find_run(s2, "1-0"),
		i2 = snapshot_find_run(s2, "2-0");
	int keys_ok = 1;

	for (uint32_t i = 0; i < s2->nruns; i++)
		keys_ok &= s2->runs[i].key >= SNAPSHOT_KEY_MIN &&
			   (s2->runs[i].key & 15) == 0;
	ok(keys_ok, "keys are >= KEY_MIN with the low bits clear");
	ok(s1->runs[0].key == s2->runs[i1].key, "key of 1-0 is stable");
	ok(s1->runs[1].key == s2->runs[i2].key, "key of 2-0 is stable");
	ok(s1->view[VIEW_LABEL].values[0].key ==
		   s2->view[VIEW_LABEL].values[0].key,
	   "key of a label is stable");
	ok(s1->runs[0].key != s1->view[VIEW_LABEL].values[0].key,
	   "run and value keys differ");
	is_int(snapshot_find_key(s2, s2->runs[i1].key | 3, &ref), 0,
	       "find key ignores low bits");
	ok(ref.view == -1 && ref.index == (uint32_t)i1, "key maps to its run");
	is_int(snapshot_find_key(s2, s2->view[VIEW_LABEL].values[0].key, &ref),
	       0, "value key found");
	ok(ref.view == VIEW_LABEL && ref.index == 0, "key maps to its value");
	is_int(snapshot_find_key(s2, 12345, &ref), -ENOENT, "small key");
	is_int(snapshot_find_key(s2, SNAPSHOT_KEY_MIN + 16, &ref), -ENOENT,
	       "unknown key");
	is_int(s1->runs[0].json_mtime.tv_sec, 1, "new run: json at createdAt");
	is_int(s2->runs[i1].json_mtime.tv_sec, 1, "unchanged: time kept");
	is_int(s2->runs[i2].json_mtime.tv_sec, 200,
	       "changed state: time of the change");
	is_int(s2->runs[0].json_mtime.tv_sec, 0, "0-0 new: createdAt 0.5 s");
	is_int(s2->runs[0].json_mtime.tv_nsec, 500000000, "ms kept");
	is_int(s2->generation, 2, "generation");
	ok(s2->runs[i1].msg == s1->runs[0].msg,
	   "unchanged: one message for both snapshots");
	ok(s2->runs[i2].msg != s1->runs[1].msg,
	   "changed: a message of its own");
	snapshot_unref(s1);
	is_int(s2->runs[i1].msg->created_ms, 1000,
	       "the shared message outlives the snapshot it came from");
	is_int(message_file_size(s2->runs[i1].msg, MESSAGE_JSON) > 0, 1,
	       "and renders");
	snapshot_unref(s2);
}

static void test_refs(void)
{
	struct snapshot *e = snapshot_new_empty();

	ok(e && e->nruns == 0 && e->generation == 0, "empty snapshot");
	snapshot_ref(e);
	snapshot_unref(e);
	is_int(atomic_load(&e->refs), 1, "ref and unref balance");
	snapshot_unref(e);
	snapshot_unref(NULL);
	ok(1, "unref(NULL) is a no-op");
}

static void test_many(void)
{
	enum { N = 5000 };
	struct snapshot_builder *b = snapshot_builder_new();
	struct snapshot *s;
	int sorted = 1, found = 1;

	for (int i = 0; i < N; i++) {
		char id[32], lab[32];

		snprintf(id, sizeof(id), "%d-%d", 1000 + (i * 7919) % N, i);
		snprintf(lab, sizeof(lab), "[\"l%d\", \"all\"]", i % 37);
		snapshot_builder_add(b, msg_make(id, i, NULL, lab));
	}
	snapshot_builder_finish(b, NULL, (struct timespec){0, 0}, 1, &s);
	is_int(s->nruns, N, "5000 runs");
	for (uint32_t i = 1; i < s->nruns; i++)
		sorted &= strcmp(s->runs[i - 1].name, s->runs[i].name) < 0;
	ok(sorted, "runs strictly sorted");
	for (uint32_t i = 0; i < s->nruns; i++) {
		struct snapshot_ref ref;

		found &= snapshot_find_run(s, s->runs[i].name) == i;
		found &= snapshot_find_key(s, s->runs[i].key, &ref) == 0 &&
			 ref.index == i;
	}
	ok(found, "every run found by name and key");
	is_int(s->view[VIEW_LABEL].nvalues, 38, "37 labels + all");
	is_int(s->view[VIEW_LABEL].values[0].nruns, N, "'all' has every run");
	snapshot_unref(s);
}

/* A value crafted to look like the shortened name of another one must
 * neither hide nor merge with it. */
static void test_collisions(void)
{
	char longv[301], crafted[NAMES_MAX + 1], json[2048];
	struct snapshot *s[2];

	memset(longv, 'x', 300);
	longv[300] = '\0';
	names_escape(longv, 300, crafted); /* "xxx...~<16 hex>" */
	for (int round = 0; round < 2; round++) {
		struct snapshot_builder *b = snapshot_builder_new();
		const char *ids[2] = {longv, crafted};

		for (int k = 0; k < 2; k++) {
			const char *id = ids[round ? 1 - k : k];

			snprintf(json, sizeof(json),
				 "{\"dlqId\": \"%s\", \"label\": \"%s\"}", id,
				 id);
			snapshot_builder_add(b, msg_json(json));
		}
		snapshot_builder_finish(b, NULL, (struct timespec){0, 0}, 1,
					&s[round]);
	}
	is_int(s[0]->nruns, 2, "both colliding runs are kept");
	ok(strcmp(s[0]->runs[0].name, s[0]->runs[1].name) != 0,
	   "with different names");
	is_int(s[0]->view[VIEW_LABEL].nvalues, 2,
	       "colliding labels are two directories");
	ok(s[0]->view[VIEW_LABEL].values[0].nruns == 1 &&
		   s[0]->view[VIEW_LABEL].values[1].nruns == 1,
	   "each with its own run");
	ok(!strcmp(s[0]->runs[0].name, s[1]->runs[0].name) &&
		   !strcmp(s[0]->runs[1].name, s[1]->runs[1].name),
	   "names do not depend on the order entries came in");
	ok(snapshot_find_run(s[0], crafted) >= 0,
	   "one of them keeps the contract name");
	ok(strlen(s[0]->runs[0].name) <= NAMES_MAX &&
		   strlen(s[0]->runs[1].name) <= NAMES_MAX,
	   "names stay within NAME_MAX");
	snapshot_unref(s[0]);
	snapshot_unref(s[1]);
}

static bool drop_named(void *ctx, const struct message *m)
{
	const char *id = ctx;

	return m->id.len == strlen(id) && !memcmp(m->id.data, id, m->id.len);
}

static bool drop_none(void *ctx, const struct message *m)
{
	(void)ctx;
	(void)m;
	return false;
}

static void test_without(void)
{
	struct message *m[] = {
		msg_make("1-0", 1000, "CALLBACK_FAIL", "[\"payments\"]"),
		msg_make("2-0", 2000, "CALLBACK_FAIL", "[\"payments\"]"),
		msg_make("3-0", 3000, NULL, "[\"other\"]"),
	};
	struct snapshot *s = build(NULL, (struct timespec){7, 0}, m, 3), *t;
	int64_t pay = snapshot_find_value(s, VIEW_LABEL, "payments");

	is_int(snapshot_without(s, drop_none, NULL, &t), 0, "nothing dropped");
	ok(t == s, "the same snapshot when nothing is dropped");
	snapshot_unref(t);
	is_int(snapshot_without(s, drop_named, (char[]){"2-0"}, &t), 1,
	       "one dropped");
	is_int(t->nruns, 2, "two runs left");
	is_str(t->runs[0].name, "1-0", "1-0 kept");
	is_str(t->runs[1].name, "3-0", "3-0 kept");
	ok(t->runs[0].msg == s->runs[0].msg, "messages are shared");
	is_int(t->runs[0].key, s->runs[0].key, "keys kept");
	is_int(t->runs[1].json_key, s->runs[2].json_key, "json keys kept");
	ok(pay >= 0, "payments label in the original");
	is_int(t->view[VIEW_LABEL]
		       .values[snapshot_find_value(t, VIEW_LABEL, "payments")]
		       .nruns,
	       1, "the label lists one run less");
	is_int(snapshot_find_run(t, "2-0"), -ENOENT, "dropped run is gone");
	is_int(snapshot_find_run(s, "2-0"), 1, "the original is untouched");
	snapshot_unref(s); /* t keeps the shared messages alive */
	is_int(t->runs[1].msg->created_ms, 3000, "shared message still valid");
	is_int(snapshot_without(t, drop_named, (char[]){"3-0"}, &s), 1,
	       "again");
	is_int(snapshot_find_value(s, VIEW_LABEL, "other"), -ENOENT,
	       "a value with no run left is gone");
	snapshot_unref(t);
	snapshot_unref(s);
}

/* The merge of an incremental walk: the window replaces, the rest stays. */
static void test_keep(void)
{
	struct message *m[] = {
		msg_make("a", 1000, NULL, NULL),
		msg_make("b", 2000, "CALLBACK_INPROGRESS", NULL),
		msg_make("c", 3000, NULL, NULL),
		msg_json("{\"dlqId\": \"d\"}"),
	};
	struct snapshot *prev = build(NULL, (struct timespec){1, 0}, m, 4);
	struct snapshot_builder *b = snapshot_builder_new();
	struct message *a = prev->runs[0].msg;
	struct snapshot *s = NULL;
	int64_t i;

	prev->bytes = 4000;
	/* the window [2000, now]: b changed state, e landed late (older
	 * than c, the newest seen), b came twice, c was deleted */
	is_int(snapshot_builder_add(
		       b, msg_make("b", 2000, "CALLBACK_SUCCESS", NULL)),
	       1, "window: b again");
	is_int(snapshot_builder_add(b, msg_make("e", 2500, NULL, NULL)), 1,
	       "window: e, a late lander");
	is_int(snapshot_builder_add(b,
				    msg_make("b", 2000, "CALLBACK_FAIL", NULL)),
	       0, "window: b twice, deduplicated");
	snapshot_builder_account(b, 500);
	is_int(snapshot_builder_keep(b, prev, 2000), 2,
	       "kept: a (older than the window) and d (no createdAt)");
	is_int(snapshot_builder_finish(b, prev, (struct timespec){9, 0}, 2, &s),
	       0, "finish the merge");
	is_int(s->nruns, 4, "a, b, d, e");
	is_str(s->runs[0].name, "a", "a kept");
	ok(s->runs[0].msg == a, "a is shared with the old snapshot");
	ok(s->runs[0].key == prev->runs[0].key &&
		   s->runs[0].json_key == prev->runs[0].json_key,
	   "a keeps its keys");
	ok(s->runs[1].key == prev->runs[1].key &&
		   s->runs[1].json_key != prev->runs[1].json_key,
	   "b keeps its key, message.json changed: a new key");
	is_int(s->runs[0].json_mtime.tv_sec, 1, "a keeps its change time");
	is_str(s->runs[1].name, "b", "b");
	is_int(s->runs[1].json_mtime.tv_sec, 9, "b changed: now");
	i = snapshot_find_value(s, VIEW_STATE, "CALLBACK_SUCCESS");
	ok(i >= 0 && s->view[VIEW_STATE].values[i].nruns == 1,
	   "b's new state is what the window said");
	ok(snapshot_find_value(s, VIEW_STATE, "CALLBACK_INPROGRESS") < 0,
	   "its old state is gone");
	is_int(snapshot_find_run(s, "c"), -ENOENT,
	       "c, inside the window and not found again, is gone");
	ok(snapshot_find_run(s, "d") >= 0, "d kept");
	ok(snapshot_find_run(s, "e") >= 0, "the late lander e is in");
	is_int(s->newest_ms, 2500, "newest createdAt of the merge");
	is_int(s->bytes, 500 + 4000 * 2 / 4, "payload: window + share kept");
	snapshot_unref(prev);
	is_str(s->runs[0].msg->id.data, "a",
	       "a shared message outlives the old snapshot");
	snapshot_unref(s);

	/* a window that reaches past everything keeps only the undated */
	prev = build(NULL, (struct timespec){1, 0},
		     (struct message *[]){msg_make("x", 5, NULL, NULL),
					  msg_json("{\"dlqId\": \"y\"}")},
		     2);
	b = snapshot_builder_new();
	is_int(snapshot_builder_keep(b, prev, 0), 1, "window from 0: y only");
	is_int(snapshot_builder_finish(b, prev, (struct timespec){2, 0}, 2, &s),
	       0, "finish");
	is_int(s->nruns, 1, "x, not found again, is gone");
	snapshot_unref(prev);
	snapshot_unref(s);
}

/* Listing tags: the same listing has the same tag in any snapshot; a
 * listing that changed (a name, or only an inode) has another. */
/* What kept snapshots cost: their indexes, and the messages no later one
 * shares, each counted once. */
static void test_kept_bytes(void)
{
	struct message *a[] = {
		msg_make("1-0", 1000, "CALLBACK_FAIL", "[\"x\"]"),
		msg_make("2-0", 2000, NULL, NULL),
		msg_make("3-0", 3000, NULL, NULL),
	};
	/* 1-0 unchanged (shared), 2-0 changed, 3-0 gone, 4-0 new */
	struct message *b[] = {
		msg_make("1-0", 1000, "CALLBACK_FAIL", "[\"x\"]"),
		msg_make("2-0", 2000, "CALLBACK_SUCCESS", NULL),
		msg_make("4-0", 4000, NULL, NULL),
	};
	/* all of s2 again: everything shared */
	struct message *c[] = {
		msg_make("1-0", 1000, "CALLBACK_FAIL", "[\"x\"]"),
		msg_make("2-0", 2000, "CALLBACK_SUCCESS", NULL),
		msg_make("4-0", 4000, NULL, NULL),
	};
	struct snapshot *s1 = build(NULL, (struct timespec){1, 0}, a, 3);
	struct snapshot *s2 = build(s1, (struct timespec){2, 0}, b, 3);
	struct snapshot *s3 = build(s2, (struct timespec){3, 0}, c, 3);
	struct snapshot *other = snapshot_new_empty();
	const struct snapshot *kept[2];
	uint64_t gone1, m1, m2;

	ok(s1->index_bytes > sizeof(*s1) && s1->msg_bytes > 0,
	   "a snapshot knows its own bytes");
	ok(s2->serial != s1->serial && s2->shared_from == s1->serial,
	   "built from the one before");
	m1 = malloc_usable_size(s1->runs[0].msg);
	ok(s2->runs[0].msg == s1->runs[0].msg, "unchanged message shared");
	is_int(s2->shared_bytes, m1, "shared bytes: the one unchanged message");
	/* s1 alone, before s2: its indexes, 2-0 and 3-0 */
	gone1 = malloc_usable_size(s1->runs[1].msg) +
		malloc_usable_size(s1->runs[2].msg);
	kept[0] = s1;
	is_int(snapshot_kept_bytes(kept, 1, s2), s1->index_bytes + gone1,
	       "kept before the served: indexes and unshared messages");
	is_int(snapshot_kept_bytes(kept, 1, s1), 0,
	       "the served one, kept too, costs nothing more");
	/* s1 and s2 before s3: s3 shares all of s2's messages */
	m2 = s2->msg_bytes;
	is_int(s3->shared_bytes, m2, "everything shared");
	kept[1] = s2;
	is_int(snapshot_kept_bytes(kept, 2, s3),
	       s1->index_bytes + gone1 + s2->index_bytes,
	       "a chain: each message counted once");
	/* served built from neither: nothing known shared */
	is_int(snapshot_kept_bytes(kept, 2, other),
	       s1->index_bytes + gone1 + s2->index_bytes + m2,
	       "built from another: all its messages count");
	is_int(snapshot_kept_bytes(kept, 0, s3), 0, "nothing kept");
	snapshot_unref(other);
	snapshot_unref(s3);
	snapshot_unref(s2);
	snapshot_unref(s1);
}

static void test_listing_tags(void)
{
	struct message *m[] = {
		msg_make("1-0", 1000, "CALLBACK_FAIL", "[\"payments\"]"),
		msg_make("2-0", 2000, "CALLBACK_FAIL", "[\"payments\"]"),
		msg_make("3-0", 3000, NULL, "[\"other\"]"),
	};
	struct message *again[] = {
		msg_make("3-0", 3000, NULL, "[\"other\"]"),
		msg_make("1-0", 1000, "CALLBACK_FAIL", "[\"payments\"]"),
		msg_make("2-0", 2000, "CALLBACK_FAIL", "[\"payments\"]"),
	};
	struct snapshot *s = build(NULL, (struct timespec){7, 0}, m, 3), *t, *u;
	const struct snapshot_view *sl = &s->view[VIEW_LABEL], *tl;
	int64_t spay = snapshot_find_value(s, VIEW_LABEL, "payments");
	int64_t soth = snapshot_find_value(s, VIEW_LABEL, "other");
	int64_t tpay, toth;

	/* a new walk of the same runs, in another order, without @prev */
	t = build(NULL, (struct timespec){9, 0}, again, 3);
	tl = &t->view[VIEW_LABEL];
	is_int(t->tag, s->tag, "same runs: same runs/ tag");
	is_int(tl->tag, sl->tag, "same labels: same by-label/ tag");
	tpay = snapshot_find_value(t, VIEW_LABEL, "payments");
	is_int(tl->values[tpay].tag, sl->values[spay].tag,
	       "same value listing: same tag");
	ok(sl->values[spay].tag != sl->values[soth].tag,
	   "two values' listings differ");
	ok(s->tag != sl->tag, "runs/ and by-label/ differ");
	snapshot_unref(t);

	is_int(snapshot_without(s, drop_named, (char[]){"2-0"}, &t), 1,
	       "2-0 dropped");
	tl = &t->view[VIEW_LABEL];
	tpay = snapshot_find_value(t, VIEW_LABEL, "payments");
	toth = snapshot_find_value(t, VIEW_LABEL, "other");
	ok(t->tag != s->tag, "a run less: runs/ tag changes");
	ok(tl->values[tpay].tag != sl->values[spay].tag,
	   "payments lost a run: its tag changes");
	is_int(tl->values[toth].tag, sl->values[soth].tag,
	       "other is unchanged: same tag");
	is_int(tl->tag, sl->tag, "the same labels: by-label/ tag kept");
	is_int(t->view[VIEW_STATUS].tag, s->view[VIEW_STATUS].tag,
	       "by-status/ lists the same value");

	is_int(snapshot_without(t, drop_named, (char[]){"3-0"}, &u), 1,
	       "3-0 dropped");
	ok(u->view[VIEW_LABEL].tag != tl->tag,
	   "a label gone: by-label/ tag changes");
	snapshot_unref(u);
	snapshot_unref(t);
	snapshot_unref(s);
}

int main(void)
{
	test_listing_tags();
	test_dedupe_and_order();
	test_views();
	test_keys_and_times();
	test_refs();
	test_many();
	test_collisions();
	test_without();
	test_keep();
	test_kept_bytes();
	return tap_done();
}
