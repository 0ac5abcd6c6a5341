/* snapshot: builds and owns the immutable set of runs and view indexes.
 *
 * Owns: deduplication by dlqId, escaping of run and value names (through
 * names), sorting, the per-view value lists, the stable keys and the
 * key -> run/value table, message.json change times across snapshots,
 * reference counting.
 * Leaves to others: parsing (message), fetching (walker), what the keys
 * mean as inodes and how the tree looks (tree), publishing (walker/fs).
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "memory.h"
#include "snapshot.h"

const char *const snapshot_view_names[VIEW_COUNT] = {
	[VIEW_LABEL] = "by-label",
	[VIEW_URL] = "by-url",
	[VIEW_RUN] = "by-run",
	[VIEW_STATE] = "by-state",
	[VIEW_STATUS] = "by-status",
	[VIEW_DATE] = "by-date",
	[VIEW_FLOW_CONTROL_KEY] = "by-flow-control-key",
	[VIEW_CALLER_IP] = "by-caller-ip",
};

struct snapshot_slot {
	uint64_t key; /* 0: empty */
	int32_t view; /* -1: run */
	uint32_t index;
};

struct snapshot_builder {
	struct message **msgs;
	/* NULL, or what was known of each message's run before (json_mtime
	 * tv_nsec -1: nothing), for seencap messages */
	struct snapshot_seen *seen;
	size_t seencap;
	size_t n, cap;
	uint32_t *set; /* open addressing on dlqId: index + 1, 0 empty */
	size_t setcap; /* power of two */
	uint64_t bytes;
};

/* Adds the name @s (@len bytes) and its NUL to the names' storage, at
 * the offset returned in @ret_off (the storage moves as it grows). */
static int strbuf_add(struct buf *sb, const char *s, size_t len,
		      size_t *ret_off)
{
	size_t off = sb->len;
	int r = buf_add(sb, s, len);

	if (r < 0)
		return r;
	sb->len++; /* the NUL after it is part of the storage */
	*ret_off = off;
	return 0;
}

struct snapshot_builder *snapshot_builder_new(void)
{
	return calloc(1, sizeof(struct snapshot_builder));
}

void snapshot_builder_free(struct snapshot_builder *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++)
		message_free(b->msgs[i]);
	free(b->msgs);
	free(b->set);
	free(b->seen);
	free(b);
}

static uint64_t id_hash(const struct message *m)
{
	return names_hash64(m->id.data, m->id.len);
}

static int builder_grow_set(struct snapshot_builder *b)
{
	size_t cap = b->setcap ? b->setcap * 2 : 1024;
	uint32_t *set = calloc(cap, sizeof(*set));

	if (!set)
		return -ENOMEM;
	for (size_t i = 0; i < b->n; i++) {
		size_t h = id_hash(b->msgs[i]) & (cap - 1);

		while (set[h])
			h = (h + 1) & (cap - 1);
		set[h] = (uint32_t)i + 1;
	}
	free(b->set);
	b->set = set;
	b->setcap = cap;
	return 0;
}

int snapshot_builder_add(struct snapshot_builder *b, struct message *msg)
{
	size_t h;

	if ((b->n + 1) * 2 > b->setcap && builder_grow_set(b) < 0)
		goto fail_free_msg;
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 1024;
		struct message **p;

		if (cap > UINT32_MAX / 2)
			goto fail_free_msg;
		p = realloc(b->msgs, cap * sizeof(*p));
		if (!p)
			goto fail_free_msg;
		b->msgs = p;
		b->cap = cap;
	}
	for (h = id_hash(msg) & (b->setcap - 1); b->set[h];
	     h = (h + 1) & (b->setcap - 1)) {
		const struct message *o = b->msgs[b->set[h] - 1];

		if (o->id.len == msg->id.len &&
		    memcmp(o->id.data, msg->id.data, msg->id.len) == 0) {
			message_free(msg);
			return 0;
		}
	}
	b->msgs[b->n] = msg;
	b->set[h] = (uint32_t)++b->n;
	return 1;

fail_free_msg:
	message_free(msg);
	return -ENOMEM;
}

int snapshot_builder_add_seen(struct snapshot_builder *b, struct message *msg,
			      const struct snapshot_seen *seen)
{
	int r = snapshot_builder_add(b, msg);

	if (r <= 0)
		return r;
	if (b->seencap < b->cap) {
		struct snapshot_seen *p = realloc(b->seen, b->cap * sizeof(*p));

		if (!p)
			return -ENOMEM; /* the message stays added */
		for (size_t i = b->seencap; i < b->cap; i++)
			p[i] = (struct snapshot_seen){{0, -1}, 0, 0};
		b->seen = p;
		b->seencap = b->cap;
	}
	b->seen[b->n - 1] = *seen;
	return 1;
}

/* Adds (sharing) every run of @prev that @skip does not pick, and counts
 * their payload bytes as @prev's times the share of runs kept. Returns the
 * number of runs kept, or -ENOMEM. */
static int add_runs_of(struct snapshot_builder *b, const struct snapshot *prev,
		       snapshot_drop_fn skip, void *ctx)
{
	size_t kept = 0;

	for (uint32_t i = 0; i < prev->nruns; i++) {
		struct message *m = prev->runs[i].msg;
		int r;

		if (skip(ctx, m))
			continue;
		r = snapshot_builder_add(b, message_ref(m));
		if (r < 0)
			return r;
		kept += (size_t)r;
	}
	if (prev->nruns)
		b->bytes += (uint64_t)((double)prev->bytes * (double)kept /
				       (double)prev->nruns);
	return (int)kept;
}

/* snapshot_drop_fn: inside the window of an incremental walk (*@ctx is
 * its since_ms), where the walk said what is there */
static bool in_window(void *ctx, const struct message *m)
{
	const int64_t *since_ms = ctx;

	return m->has_created && m->created_ms >= *since_ms;
}

int snapshot_builder_keep(struct snapshot_builder *b,
			  const struct snapshot *prev, int64_t since_ms)
{
	return add_runs_of(b, prev, in_window, &since_ms);
}

void snapshot_builder_account(struct snapshot_builder *b, uint64_t bytes)
{
	b->bytes += bytes;
}

size_t snapshot_builder_count(const struct snapshot_builder *b)
{
	return b->n;
}

/* --- keys ------------------------------------------------------------- */

static uint64_t make_key(uint64_t h)
{
	uint64_t k = h & ~((1ULL << SNAPSHOT_KEY_SHIFT) - 1);

	return k < SNAPSHOT_KEY_MIN ? k | SNAPSHOT_KEY_MIN : k;
}

/* Key of a run: from its escaped name, so one path keeps one key. */
static uint64_t run_key(const char *name, unsigned salt)
{
	uint64_t h = names_hash64("run", 4);

	h = names_hash64_more(h, name, strlen(name));
	if (salt)
		h = names_hash64_more(h, &salt, sizeof(salt));
	return make_key(h);
}

static uint64_t value_key(int view, const char *name, unsigned salt)
{
	const char *vn = snapshot_view_names[view];
	uint64_t h = names_hash64(vn, strlen(vn) + 1);

	h = names_hash64_more(h, name, strlen(name));
	if (salt)
		h = names_hash64_more(h, &salt, sizeof(salt));
	return make_key(h);
}

static struct snapshot_slot *slot_for(const struct snapshot *s, uint64_t key)
{
	size_t mask = s->nslots - 1;
	size_t i = (size_t)(names_hash64(&key, sizeof(key)) & mask);

	while (s->slots[i].key && s->slots[i].key != key)
		i = (i + 1) & mask;
	return &s->slots[i];
}

int snapshot_find_key(const struct snapshot *s, uint64_t key,
		      struct snapshot_ref *ret)
{
	const struct snapshot_slot *slot;

	key &= ~((1ULL << SNAPSHOT_KEY_SHIFT) - 1);
	if (!s->nslots || key < SNAPSHOT_KEY_MIN)
		return -ENOENT;
	slot = slot_for(s, key);
	if (!slot->key)
		return -ENOENT;
	ret->view = slot->view;
	ret->index = slot->index;
	return 0;
}

/* Inserts a key, salting it until it is unique. Returns the key used. */
/* Key of a run's message.json: from the run's name and the file's
 * content (the message's compact text stands for it: equal exactly when
 * message.json is), so it changes exactly when the content does. */
static uint64_t json_key(const char *name, const struct message *m,
			 unsigned salt)
{
	uint64_t h = names_hash64("json", 5);

	h = names_hash64_more(h, name, strlen(name) + 1);
	if (message_file_exists(m, MESSAGE_JSON))
		h = names_hash64_more(h, m->text.data, m->text.len);
	if (salt)
		h = names_hash64_more(h, &salt, sizeof(salt));
	return make_key(h);
}

static uint64_t insert_key(struct snapshot *s, int view, uint32_t index,
			   const char *name)
{
	for (unsigned salt = 0;; salt++) {
		uint64_t key =
			view == SNAPSHOT_REF_JSON
				? json_key(name, s->runs[index].msg, salt)
			: view < 0 ? run_key(name, salt)
				   : value_key(view, name, salt);
		struct snapshot_slot *slot = slot_for(s, key);

		if (!slot->key) {
			slot->key = key;
			slot->view = view;
			slot->index = index;
			return key;
		}
	}
}

/* --- building --------------------------------------------------------- */

struct named {
	size_t off;			 /* in the names buffer */
	uint32_t idx;			 /* original position */
	const struct message_bytes *raw; /* the value it escapes */
};

static int named_cmp(const void *a, const void *b, void *base)
{
	const struct named *x = a, *y = b;
	int c = strcmp((const char *)base + x->off,
		       (const char *)base + y->off);

	size_t n;

	if (c)
		return c;
	/* equal names of different values: raw byte order decides who keeps
	 * the name, so the outcome does not depend on page order */
	n = x->raw->len < y->raw->len ? x->raw->len : y->raw->len;
	c = memcmp(x->raw->data, y->raw->data, n);
	if (c)
		return c;
	return x->raw->len < y->raw->len ? -1 : x->raw->len > y->raw->len;
}

/* Sorts @v by name and renames the later of any two values with the same
 * name (names_escape_salted()), until all names differ. Two different
 * values share a name only when one is crafted to look like a shortened
 * name or a hash collides: rare, but never allowed to merge or hide. */
static int sort_unique(struct named *v, size_t n, struct buf *names)
{
	uint32_t *salt = NULL;
	int dups;

	do {
		dups = 0;
		qsort_r(v, n, sizeof(*v), named_cmp, names->data);
		for (size_t i = 1; i < n; i++) {
			char name[NAMES_MAX + 1];
			int len;

			if (strcmp(names->data + v[i].off,
				   names->data + v[i - 1].off))
				continue;
			if (!salt && !(salt = calloc(n, sizeof(*salt))))
				return -ENOMEM;
			len = names_escape_salted(v[i].raw->data, v[i].raw->len,
						  ++salt[v[i].idx], name);
			if (len < 0 || strbuf_add(names, name, (size_t)len,
						  &v[i].off) < 0) {
				free(salt);
				return -ENOMEM;
			}
			dups = 1;
		}
	} while (dups);
	free(salt);
	return 0;
}

struct value_tmp {
	const struct message_bytes *raw; /* in a message of the snapshot */
	size_t name_off;
	uint32_t nruns;
	uint32_t first; /* position in the view's run array */
	int64_t newest_ms;
};

struct pair {
	uint32_t value; /* provisional value id */
	uint32_t run;
};

/* Builds one view: value names, run lists. */
static int build_view(struct snapshot *s, int view, struct buf *names,
		      struct snapshot_view *ret)
{
	struct value_tmp *vals = NULL;
	size_t nvals = 0, capvals = 0;
	uint32_t *map = NULL; /* open addressing: value id + 1 */
	size_t mapcap = 64;
	struct pair *pairs = NULL;
	size_t npairs = 0, cappairs = 0;
	struct named *order = NULL;
	uint32_t *runs = NULL;
	struct snapshot_value *values = NULL;
	uint32_t *remap = NULL;
	int r = -ENOMEM;

	map = calloc(mapcap, sizeof(*map));
	if (!map)
		goto out;
	for (uint32_t ri = 0; ri < s->nruns; ri++) {
		const struct message *m = s->runs[ri].msg;

		for (uint32_t k = 0; k < m->view[view].n; k++) {
			const struct message_bytes *val = &m->view[view].v[k];
			size_t h;

			if ((nvals + 1) * 2 > mapcap) {
				size_t cap = mapcap * 2;
				uint32_t *nm = calloc(cap, sizeof(*nm));

				if (!nm)
					goto out;
				for (size_t i = 0; i < nvals; i++) {
					size_t j =
						names_hash64(vals[i].raw->data,
							     vals[i].raw->len) &
						(cap - 1);

					while (nm[j])
						j = (j + 1) & (cap - 1);
					nm[j] = (uint32_t)i + 1;
				}
				free(map);
				map = nm;
				mapcap = cap;
			}
			/* values are told apart by their raw bytes; their
			 * names are made unique afterwards (sort_unique) */
			for (h = names_hash64(val->data, val->len) &
				 (mapcap - 1);
			     map[h]; h = (h + 1) & (mapcap - 1)) {
				const struct message_bytes *o =
					vals[map[h] - 1].raw;

				if (o->len == val->len &&
				    !memcmp(o->data, val->data, val->len))
					break;
			}
			if (!map[h]) {
				char name[NAMES_MAX + 1];
				int len =
					names_escape(val->data, val->len, name);

				if (len < 0)
					continue; /* empty: no directory */
				if (nvals == capvals) {
					size_t cap = capvals ? capvals * 2 : 16;
					struct value_tmp *p =
						realloc(vals, cap * sizeof(*p));

					if (!p)
						goto out;
					vals = p;
					capvals = cap;
				}
				vals[nvals] = (struct value_tmp){
					.raw = val, .newest_ms = -1};
				if (strbuf_add(names, name, (size_t)len,
					       &vals[nvals].name_off) < 0)
					goto out;
				map[h] = (uint32_t)++nvals;
			}
			if (npairs == cappairs) {
				size_t cap = cappairs ? cappairs * 2 : 1024;
				struct pair *p =
					realloc(pairs, cap * sizeof(*p));

				if (!p)
					goto out;
				pairs = p;
				cappairs = cap;
			}
			pairs[npairs++] = (struct pair){map[h] - 1, ri};
			vals[map[h] - 1].nruns++;
			if (m->has_created &&
			    m->created_ms > vals[map[h] - 1].newest_ms)
				vals[map[h] - 1].newest_ms = m->created_ms;
		}
	}

	order = malloc((nvals ? nvals : 1) * sizeof(*order));
	remap = malloc((nvals ? nvals : 1) * sizeof(*remap));
	values = calloc(nvals ? nvals : 1, sizeof(*values));
	runs = malloc((npairs ? npairs : 1) * sizeof(*runs));
	if (!order || !remap || !values || !runs)
		goto out;
	for (size_t i = 0; i < nvals; i++)
		order[i] = (struct named){vals[i].name_off, (uint32_t)i,
					  vals[i].raw};
	if (sort_unique(order, nvals, names) < 0)
		goto out;
	{
		uint32_t pos = 0;

		for (size_t i = 0; i < nvals; i++) {
			struct value_tmp *v = &vals[order[i].idx];

			remap[order[i].idx] = (uint32_t)i;
			v->first = pos;
			pos += v->nruns;
			values[i].nruns = 0;
			values[i].newest_ms = v->newest_ms;
			/* names are fixed up once the buffer stops moving */
			values[i].name = (char *)(uintptr_t)order[i].off;
		}
	}
	for (size_t i = 0; i < npairs; i++) {
		struct value_tmp *v = &vals[pairs[i].value];
		struct snapshot_value *sv = &values[remap[pairs[i].value]];

		runs[v->first + sv->nruns++] = pairs[i].run;
		s->runs[pairs[i].run].nlinks++;
	}
	for (size_t i = 0; i < nvals; i++)
		values[i].runs = runs + vals[order[i].idx].first;
	ret->values = values;
	ret->nvalues = (uint32_t)nvals;
	ret->store = runs;
	values = NULL;
	runs = NULL;
	r = 0;
out:
	free(vals);
	free(map);
	free(pairs);
	free(order);
	free(remap);
	free(values);
	free(runs);
	return r;
}

static size_t pow2_at_least(size_t n)
{
	size_t p = 16;

	while (p < n)
		p *= 2;
	return p;
}

static struct timespec ms_to_timespec(int64_t ms)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec < 0) {
		ts.tv_sec--;
		ts.tv_nsec += 1000000000L;
	}
	return ts;
}

/* Whether @key is one make_key() can give. */
static bool key_valid(uint64_t key)
{
	return key >= SNAPSHOT_KEY_MIN &&
	       !(key & ((1ULL << SNAPSHOT_KEY_SHIFT) - 1));
}

/* Inserts @key for (@view, @index) if its slot is free. Returns 1 when
 * inserted, 0 when the key is taken. */
static int try_insert_key(struct snapshot *s, int view, uint32_t index,
			  uint64_t key)
{
	struct snapshot_slot *slot = slot_for(s, key);

	if (slot->key)
		return 0;
	slot->key = key;
	slot->view = view;
	slot->index = index;
	return 1;
}

/* Keys and message.json time of run @i, from @prev where it was there:
 * the same keys (stable inode numbers, and no hashing of every
 * message.json again at each refresh), and for message.json, unchanged,
 * the same key and time, and @prev's message itself (one copy in memory
 * for both, so a replaced snapshot kept for a while costs its indexes
 * only); changed, a new key and @now. Runs after the views are built:
 * nothing points into the message dropped. */
static void run_keys(struct snapshot *s, uint32_t i,
		     const struct snapshot *prev, struct timespec now)
{
	struct snapshot_run *run = &s->runs[i];
	const struct message *m = run->msg;
	int64_t pi = prev ? snapshot_find_run(prev, run->name) : -ENOENT;
	const struct snapshot_run *o = pi >= 0 ? &prev->runs[pi] : NULL;
	bool same = false;

	/* shared by an incremental walk, or listed again unchanged */
	if (o)
		same = o->msg == m ||
		       message_file_same(o->msg, m, MESSAGE_JSON);
	uint64_t seen_key = o ? 0 : run->key, seen_json = o ? 0 : run->json_key;

	if (o && try_insert_key(s, -1, i, o->key))
		run->key = o->key;
	else if (key_valid(seen_key) && try_insert_key(s, -1, i, seen_key))
		run->key = seen_key;
	else
		run->key = insert_key(s, -1, i, run->name);
	if (same && try_insert_key(s, SNAPSHOT_REF_JSON, i, o->json_key))
		run->json_key = o->json_key;
	else if (key_valid(seen_json) &&
		 try_insert_key(s, SNAPSHOT_REF_JSON, i, seen_json))
		run->json_key = seen_json;
	else
		run->json_key = insert_key(s, SNAPSHOT_REF_JSON, i, run->name);
	if (same && o->msg != m) {
		run->msg = message_ref((struct message *)o->msg);
		message_free((struct message *)m);
	}
	if (same) {
		run->json_mtime = o->json_mtime;
		s->shared_bytes += malloc_usable_size(run->msg);
	} else if (o) {
		run->json_mtime = now;
	} else if (run->json_mtime.tv_nsec >= 0) {
		/* known (snapshot_builder_add_seen()) */
	} else {
		run->json_mtime = m->has_created ? ms_to_timespec(m->created_ms)
						 : (struct timespec){0, 0};
	}
}

/* The serial of the next snapshot built. */
static atomic_uint_fast64_t serials = 1;

/* What @s costs (after run_keys(): its messages are the ones it keeps). */
static void account(struct snapshot *s, const struct snapshot *prev)
{
	s->serial =
		atomic_fetch_add_explicit(&serials, 1, memory_order_relaxed);
	s->shared_from = prev ? prev->serial : 0;
	s->index_bytes = malloc_usable_size(s) + malloc_usable_size(s->runs) +
			 malloc_usable_size(s->slots) +
			 malloc_usable_size(s->names);
	for (int v = 0; v < VIEW_COUNT; v++)
		s->index_bytes += malloc_usable_size(s->view[v].values) +
				  malloc_usable_size(s->view[v].store);
	for (uint32_t i = 0; i < s->nruns; i++)
		s->msg_bytes += malloc_usable_size(s->runs[i].msg);
}

uint64_t snapshot_kept_bytes(const struct snapshot *const *kept, size_t n,
			     const struct snapshot *served)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < n; i++) {
		const struct snapshot *next = i + 1 < n ? kept[i + 1] : served;
		uint64_t own = kept[i]->msg_bytes;

		if (next == kept[i])
			continue; /* served again: it costs nothing more */
		if (next && next->shared_from == kept[i]->serial)
			own -= next->shared_bytes < own ? next->shared_bytes
							: own;
		sum += kept[i]->index_bytes + own;
	}
	return sum;
}

/* The identity of every listing: its keys in order. */
static void listing_tags(struct snapshot *s)
{
	s->tag = names_hash64("runs", 5);
	for (uint32_t i = 0; i < s->nruns; i++)
		s->tag = names_hash64_more(s->tag, &s->runs[i].key,
					   sizeof(s->runs[i].key));
	for (int v = 0; v < VIEW_COUNT; v++) {
		struct snapshot_view *view = &s->view[v];

		view->tag = names_hash64(snapshot_view_names[v],
					 strlen(snapshot_view_names[v]) + 1);
		for (uint32_t i = 0; i < view->nvalues; i++) {
			struct snapshot_value *val = &view->values[i];

			view->tag = names_hash64_more(view->tag, &val->key,
						      sizeof(val->key));
			val->tag =
				names_hash64_more(names_hash64("value", 6),
						  &val->key, sizeof(val->key));
			for (uint32_t k = 0; k < val->nruns; k++)
				val->tag = names_hash64_more(
					val->tag, &s->runs[val->runs[k]].key,
					sizeof(uint64_t));
		}
	}
}

int snapshot_builder_finish(struct snapshot_builder *b,
			    const struct snapshot *prev, struct timespec now,
			    uint64_t generation, struct snapshot **ret)
{
	struct snapshot *s;
	struct buf names = {0};
	struct named *order = NULL;
	size_t nkeys;
	int r = -ENOMEM;

	s = calloc(1, sizeof(*s));
	if (!s)
		goto fail;
	atomic_init(&s->refs, 1);
	s->generation = generation;
	s->built = now;
	s->bytes = b->bytes;
	s->newest_ms = -1;
	order = malloc((b->n ? b->n : 1) * sizeof(*order));
	s->runs = calloc(b->n ? b->n : 1, sizeof(*s->runs));
	if (!order || !s->runs)
		goto fail;

	for (size_t i = 0; i < b->n; i++) {
		const struct message *m = b->msgs[i];
		char name[NAMES_MAX + 1];
		int len = names_escape(m->id.data, m->id.len, name);

		if (len < 0) { /* message guarantees a non-empty id */
			r = -EINVAL;
			goto fail;
		}
		order[i].idx = (uint32_t)i;
		order[i].raw = &m->id;
		if (strbuf_add(&names, name, (size_t)len, &order[i].off) < 0)
			goto fail;
	}
	if (sort_unique(order, b->n, &names) < 0)
		goto fail;

	for (size_t i = 0; i < b->n; i++) {
		struct message *m = b->msgs[order[i].idx];
		struct snapshot_run *run;

		run = &s->runs[s->nruns++];
		run->msg = m;
		if (order[i].idx < b->seencap) {
			const struct snapshot_seen *seen =
				&b->seen[order[i].idx];

			/* taken up by run_keys(), if still free */
			run->json_mtime = seen->json_mtime;
			run->key = seen->key;
			run->json_key = seen->json_key;
		} else {
			run->json_mtime = (struct timespec){0, -1};
		}
		b->msgs[order[i].idx] = NULL;
		run->name = (char *)(uintptr_t)order[i].off; /* fixed below */
		if (m->has_created && m->created_ms > s->newest_ms)
			s->newest_ms = m->created_ms;
		for (int f = 0; f < MESSAGE_NFILES; f++)
			s->file_bytes += message_file_size(m, f);
	}
	free(order);
	order = NULL;
	/* run names stay offsets until the last strbuf_add */
	for (int v = 0; v < VIEW_COUNT; v++) {
		r = build_view(s, v, &names, &s->view[v]);
		if (r < 0)
			goto fail;
	}

	/* the names buffer no longer moves: offsets become pointers */
	s->names = names.data;
	names = (struct buf)BUF_INIT;
	for (uint32_t i = 0; i < s->nruns; i++)
		s->runs[i].name = s->names + (uintptr_t)s->runs[i].name;
	for (int v = 0; v < VIEW_COUNT; v++)
		for (uint32_t i = 0; i < s->view[v].nvalues; i++)
			s->view[v].values[i].name =
				s->names + (uintptr_t)s->view[v].values[i].name;

	nkeys = s->nruns;
	for (int v = 0; v < VIEW_COUNT; v++)
		nkeys += s->view[v].nvalues;
	nkeys += s->nruns; /* message.json keys */
	/* at most 2/3 full: linear probing stays short, and the table (16
	 * bytes a slot, two keys a run) does not double at half load */
	s->nslots = pow2_at_least(nkeys + nkeys / 2 + 1);
	s->slots = calloc(s->nslots, sizeof(*s->slots));
	if (!s->slots) {
		r = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < s->nruns; i++)
		run_keys(s, i, prev, now);
	account(s, prev);
	for (int v = 0; v < VIEW_COUNT; v++)
		for (uint32_t i = 0; i < s->view[v].nvalues; i++)
			s->view[v].values[i].key =
				insert_key(s, v, i, s->view[v].values[i].name);

	listing_tags(s);

	snapshot_builder_free(b);
	*ret = s;
	return 0;

fail:
	free(order);
	buf_release(&names);
	if (s) {
		/* names were never turned into pointers: don't free them */
		s->names = NULL;
		snapshot_unref(s);
	}
	snapshot_builder_free(b);
	return r;
}

struct snapshot *snapshot_new_empty(void)
{
	struct snapshot_builder *b = snapshot_builder_new();
	struct snapshot *s = NULL;

	if (!b)
		return NULL;
	if (snapshot_builder_finish(b, NULL, (struct timespec){0, 0}, 0, &s) <
	    0)
		return NULL;
	return s;
}

struct snapshot *snapshot_ref(struct snapshot *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

void snapshot_unref(struct snapshot *s)
{
	if (!s)
		return;
	if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (uint32_t i = 0; i < s->nruns; i++)
		message_free(s->runs[i].msg);
	free(s->runs);
	for (int v = 0; v < VIEW_COUNT; v++) {
		free(s->view[v].store);
		free(s->view[v].values);
	}
	free(s->slots);
	free(s->names);
	free(s);
	/* what it held was mostly large blocks and messages no longer
	 * shared: give the pages back now rather than never */
	memory_release();
}

int snapshot_without(struct snapshot *s, snapshot_drop_fn drop, void *ctx,
		     struct snapshot **ret)
{
	struct snapshot_builder *b;
	int dropped = 0, r;

	for (uint32_t i = 0; i < s->nruns; i++)
		dropped += drop(ctx, s->runs[i].msg);
	if (!dropped) {
		*ret = snapshot_ref(s);
		return 0;
	}
	b = snapshot_builder_new();
	if (!b)
		return -ENOMEM;
	r = add_runs_of(b, s, drop, ctx);
	if (r < 0) {
		snapshot_builder_free(b);
		return r;
	}
	/* @s as the one replaced keeps every json_mtime */
	r = snapshot_builder_finish(b, s, s->built, s->generation, ret);
	return r < 0 ? r : dropped;
}
