/* jsonload: JSON text into jansson trees, as exactly as jansson can.
 *
 * Owns: jansson's allocator hooks (so that running out of memory is told
 * from text that is not JSON), the flags every load uses, and the repair
 * of a text jansson could only load with every number as a real (an
 * integer beyond 64 bits in it). Leaves to others: reading the text
 * itself (jsontext.c), what the tree means (message.c, answer.c).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "jsonload.h"
#include "jsontext.h"

/* No JSON_REJECT_DUPLICATES: the last value of a repeated key wins, as in
 * every other JSON reader the users will compare with. */
#define LOAD_FLAGS JSON_ALLOW_NUL

/* jansson reports most allocation failures while loading as syntax errors
 * (or not at all); its allocator hooks tell the truth. The flag is per
 * thread, and every load goes through here, so the hooks are ours to set
 * (jansson has one set per process). */
static _Thread_local bool jansson_oom;
static pthread_once_t jansson_once = PTHREAD_ONCE_INIT;

static void *jansson_malloc(size_t n)
{
	void *p = malloc(n);

	if (!p)
		jansson_oom = true;
	return p;
}

static void jansson_setup(void)
{
	json_set_alloc_funcs(jansson_malloc, free);
}

int jsonload(const char *buf, size_t len, json_t **ret_root, bool *ret_lossy)
{
	size_t flags = LOAD_FLAGS;
	json_error_t e;
	json_t *j;

	pthread_once(&jansson_once, jansson_setup);
	if (!buf) {
		buf = "";
		len = 0;
	}
	jansson_oom = false;
	j = json_loadb(buf, len, flags, &e);
	if (!j && !jansson_oom &&
	    json_error_code(&e) == json_error_numeric_overflow) {
		flags |= JSON_DECODE_INT_AS_REAL;
		j = json_loadb(buf, len, flags, &e);
	}
	if (!j)
		return jansson_oom ? -ENOMEM : -EPROTO;
	*ret_root = j;
	*ret_lossy = flags & JSON_DECODE_INT_AS_REAL;
	return 0;
}

_Static_assert(JSONTEXT_MAX_DEPTH == JSON_PARSER_MAX_DEPTH,
	       "jsontext knows how deep jansson goes");

/* ---- putting the numbers back ------------------------------------------ *
 * The text is walked with the tree jansson made of it, value by value, and
 * each number of the text is made again what jansson would have made of it
 * on its own. */

struct walk {
	struct jsontext t;
	uint32_t lost; /* integers beyond 64 bits met */
};

/* Where a value sits in its parent (an object member or array element). */
struct slot {
	json_t *parent; /* borrowed; NULL at the top */
	const char *key;
	size_t klen;
	size_t index;
};

/* Member @key (@klen bytes, NUL-terminated) of @obj. Before 2.14, jansson
 * has no key holding a NUL: the key stops at the first one. */
static json_t *member_get(json_t *obj, const char *key, size_t klen)
{
#if JANSSON_VERSION_HEX >= 0x020e00
	return json_object_getn(obj, key, klen);
#else
	(void)klen;
	return json_object_get(obj, key);
#endif
}

static int slot_set(const struct slot *sl, json_t *v)
{
	int r;

	if (!v)
		return -ENOMEM;
	/* Both steal @v, even when they fail; the member exists already,
	 * so neither allocates. */
	if (!json_is_object(sl->parent))
		return json_array_set_new(sl->parent, sl->index, v) ? -ENOMEM
								    : 0;
#if JANSSON_VERSION_HEX >= 0x020e00
	r = json_object_setn_new_nocheck(sl->parent, sl->key, sl->klen, v);
#else
	r = json_object_set_new_nocheck(sl->parent, sl->key, v);
#endif
	return r ? -ENOMEM : 0;
}

/* Makes @node (at @sl) what the number literal @p (@n bytes) means to
 * jansson: an integer when it fits in 64 bits, else a real. With repeated
 * keys, a member written several times is visited once per occurrence, the
 * one jansson kept last: so each visit sets the value, never assumes it. */
static int restore_number(struct walk *w, const char *p, size_t n, json_t *node,
			  const struct slot *sl)
{
	int64_t i;
	double d;
	int r;

	if (!sl->parent || !json_is_number(node))
		return 0; /* an earlier occurrence, of another type */
	if (jsontext_int(p, n, &i)) {
		if (json_is_integer(node))
			return json_integer_set(node, i) ? -EPROTO : 0;
		return slot_set(sl, json_integer(i));
	}
	if (!memchr(p, '.', n) && !memchr(p, 'e', n) && !memchr(p, 'E', n) &&
	    w->lost < UINT32_MAX)
		w->lost++; /* an integer jansson cannot hold */
	r = jsontext_real(p, n, &d);
	if (r < 0)
		return r;
	if (!isfinite(d))
		return -EPROTO; /* jansson refuses it: not its text */
	if (json_is_real(node))
		return json_real_set(node, d) ? -EPROTO : 0;
	return slot_set(sl, json_real(d));
}

static int walk_value(struct walk *w, json_t *node, const struct slot *sl,
		      unsigned depth);

/* The members of an object, after its "{". */
static int walk_object(struct walk *w, json_t *node, unsigned depth)
{
	struct slot sl = {.parent = json_is_object(node) ? node : NULL};
	size_t start, save = w->t.pos;
	int tok = jsontext_next(&w->t, &start), r;

	if (tok == '}')
		return 0;
	w->t.pos = save;
	for (;;) {
		char small[128], *key = NULL;
		const char *raw;
		size_t len;

		if (jsontext_next(&w->t, &start) != JSONTEXT_STRING)
			return -EPROTO;
		raw = w->t.s + start + 1;
		len = w->t.pos - start - 2;
		if (sl.parent) {
			/* The member jansson kept under the decoded key,
			 * NUL-terminated for jansson. */
			key = len < sizeof(small) ? small : malloc(len + 1);
			if (!key)
				return -ENOMEM;
			if (!jsontext_string_decode(raw, len, key, &sl.klen)) {
				if (key != small)
					free(key);
				return -EPROTO;
			}
			key[sl.klen] = '\0';
			sl.key = key;
		}
		r = jsontext_next(&w->t, &start) == ':'
			    ? walk_value(w,
					 sl.parent ? member_get(node, sl.key,
								sl.klen)
						   : NULL,
					 &sl, depth + 1)
			    : -EPROTO;
		if (key != small)
			free(key);
		if (r < 0)
			return r;
		tok = jsontext_next(&w->t, &start);
		if (tok == '}')
			return 0;
		if (tok != ',')
			return -EPROTO;
	}
}

/* The elements of an array, after its "[". */
static int walk_array(struct walk *w, json_t *node, unsigned depth)
{
	struct slot sl = {.parent = json_is_array(node) ? node : NULL};
	size_t start, save = w->t.pos;
	int tok = jsontext_next(&w->t, &start), r;

	if (tok == ']')
		return 0;
	w->t.pos = save;
	for (;;) {
		r = walk_value(
			w, sl.parent ? json_array_get(node, sl.index) : NULL,
			&sl, depth + 1);
		if (r < 0)
			return r;
		sl.index++;
		tok = jsontext_next(&w->t, &start);
		if (tok == ']')
			return 0;
		if (tok != ',')
			return -EPROTO;
	}
}

/* Reads one value from w->t; @node (borrowed, may be NULL: nothing to
 * restore) is the tree jansson made of it, at @sl.
 * Recursion is bounded by JSONTEXT_MAX_DEPTH. Returns 0, -EPROTO (not JSON
 * text) or -ENOMEM. */
static int walk_value(struct walk *w, json_t *node, const struct slot *sl,
		      unsigned depth)
{
	size_t start;
	int tok;

	if (depth > JSONTEXT_MAX_DEPTH)
		return -EPROTO;
	tok = jsontext_next(&w->t, &start);
	switch (tok) {
	case '{':
		return walk_object(w, node, depth);
	case '[':
		return walk_array(w, node, depth);
	case JSONTEXT_NUMBER:
		if (!node)
			return 0;
		return restore_number(w, w->t.s + start, w->t.pos - start, node,
				      sl);
	case JSONTEXT_STRING:
	case JSONTEXT_WORD:
		return 0;
	default:
		return -EPROTO;
	}
}

int jsonload_restore(json_t *root, const char *buf, size_t len,
		     uint32_t *ret_lost)
{
	struct walk w = {.t = {.s = buf, .n = len}};
	struct slot top = {0};
	int r = walk_value(&w, root, &top, 0);

	if (r == 0)
		*ret_lost = w.lost;
	return r;
}
