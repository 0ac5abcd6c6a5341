/* message: one WorkflowDLQMessage, from its JSON text; and list pages.
 *
 * Owns: deciding, from the tree jansson makes of an entry, what each file
 * shows (which field, which kind, the fallbacks) and the raw values of the
 * eight views (the render plan); measuring the files and keeping those
 * that fit the render budget; laying the message out in one allocation;
 * references; reading a list page. Leaves to others: loading the JSON
 * (jsonload.c), reading it as text (jsontext.c), rendering the files'
 * bytes (message_file.c), escaping values into names (names.c), and what
 * the messages become (snapshot, inodes, times) to the modules above.
 *
 * Each message is one allocation: the struct, then its view arrays, then
 * its dlqId and the entry's own text without its whitespace (each followed
 * by a NUL), then the view values that are not in that text as they are
 * (most point into it). The files are not stored: their sizes are
 * measured once here, with the functions that render them on demand.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonload.h"
#include "jsontext.h"
#include "message.h"
#include "utf8.h"

/* Most values any view holds: every label, one of each other view. */
#define MAX_VIEW_VALUES (MESSAGE_MAX_LABELS + VIEW_COUNT - 1)

static size_t add_sat(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static void problem(uint32_t *problems)
{
	if (*problems < UINT32_MAX)
		(*problems)++;
}

/* The members a file or a view value can come from. */
enum field {
	FIELD_BODY,
	FIELD_BODY64,
	FIELD_HEADER,
	FIELD_RBODY,
	FIELD_RBODY64,
	FIELD_RHEADER,
	FIELD_STATUS,
	FIELD_LABELS,
	FIELD_LABEL,
	FIELD_URL,
	FIELD_RUN,
	FIELD_STATE,
	FIELD_FLOW_CONTROL_KEY,
	FIELD_CALLER_IP,
	FIELD_COUNT,
	FIELD_TEXT = FIELD_COUNT, /* message.json: the whole text */
	FIELD_NONE,		  /* a value made here (by-date) */
};

static const char *const field_names[FIELD_COUNT] = {
	[FIELD_BODY] = "body",
	[FIELD_BODY64] = "bodyBase64",
	[FIELD_HEADER] = "header",
	[FIELD_RBODY] = "responseBody",
	[FIELD_RBODY64] = "responseBodyBase64",
	[FIELD_RHEADER] = "responseHeader",
	[FIELD_STATUS] = "responseStatus",
	[FIELD_LABELS] = "labels",
	[FIELD_LABEL] = "label",
	[FIELD_URL] = "workflowUrl",
	[FIELD_RUN] = "workflowRunId",
	[FIELD_STATE] = "failureFunctionState",
	[FIELD_FLOW_CONTROL_KEY] = "flowControlKey",
	[FIELD_CALLER_IP] = "callerIP",
};

#define FIELD_NAME_MAX 24 /* longer than every field name */

/* Where the value of each field lies in the text @s (@n bytes, one
 * object): at the last occurrence of its key, compared as jansson decodes
 * it; SIZE_MAX when absent. Returns 0, -EPROTO (not an object) or
 * -ENOMEM. */
static int text_fields(const char *s, size_t n, size_t ret_at[FIELD_COUNT])
{
	struct jsontext t = {.s = s, .n = n};
	size_t start;
	int tok, r;

	for (int i = 0; i < FIELD_COUNT; i++)
		ret_at[i] = SIZE_MAX;
	if (jsontext_next(&t, &start) != '{')
		return -EPROTO;
	tok = jsontext_next(&t, &start);
	if (tok == '}')
		return 0;
	for (;;) {
		char key[FIELD_NAME_MAX];
		const char *raw = s + start + 1;
		size_t rawlen = t.pos - start - 2, klen;
		int which = -1;

		if (tok != JSONTEXT_STRING)
			return -EPROTO;
		if (jsontext_string_decode(raw, rawlen, NULL, &klen) &&
		    klen < sizeof(key)) {
			jsontext_string_decode(raw, rawlen, key, &klen);
			for (int i = 0; i < FIELD_COUNT && which < 0; i++)
				if (strlen(field_names[i]) == klen &&
				    !memcmp(field_names[i], key, klen))
					which = i;
		}
		if (jsontext_next(&t, &start) != ':')
			return -EPROTO;
		jsontext_skip_ws(&t);
		if (which >= 0)
			ret_at[which] = t.pos;
		r = jsontext_skip(&t, NULL);
		if (r < 0)
			return r;
		tok = jsontext_next(&t, &start);
		if (tok == '}')
			return 0;
		if (tok != ',')
			return -EPROTO;
		tok = jsontext_next(&t, &start);
	}
}

/* ---- the render plan -------------------------------------------------- */

/* What a file will be: decided from the tree, measured from the text. */
struct src {
	enum message_file_kind kind;
	enum field field;
	size_t len; /* rendered length, once measured */
};

/* What a message will hold, decided before anything is laid out. Every
 * pointer in it is borrowed from the json_t or the plan itself. */
struct plan {
	json_t *obj;
	struct message_bytes id;
	int64_t created_ms, wf_created_ms;
	bool has_created, has_wf_created;
	uint32_t problems;
	struct src file[MESSAGE_NFILES];
	struct message_bytes val[MAX_VIEW_VALUES]; /* in view order */
	size_t val_at[MAX_VIEW_VALUES]; /* in the text, or SIZE_MAX */
	enum field vfield[VIEW_COUNT];	/* where each view's values are */
	uint32_t nval[VIEW_COUNT];
	size_t nvals;
	char status[24]; /* responseStatus, an integer, in decimal */
	char date[32];
};

/* A string field: 1 with its bytes, 0 when absent or null, -1 for any
 * other type. */
static int get_string(json_t *obj, const char *key, const char **ret_p,
		      size_t *ret_n)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -1;
	*ret_p = json_string_value(v);
	*ret_n = json_string_length(v);
	return 1;
}

/* Adds a value to view @view (the last one being filled): empty values
 * and duplicates are dropped. Returns false when the view is full. */
static bool plan_value(struct plan *pl, enum message_view view, const char *p,
		       size_t n)
{
	size_t first = pl->nvals - pl->nval[view];

	if (n == 0)
		return true;
	for (size_t i = first; i < pl->nvals; i++)
		if (pl->val[i].len == n && memcmp(pl->val[i].data, p, n) == 0)
			return true;
	if (pl->nval[view] >= (view == VIEW_LABEL ? MESSAGE_MAX_LABELS : 1))
		return false;
	pl->val[pl->nvals].data = p;
	pl->val[pl->nvals].len = n;
	pl->nvals++;
	pl->nval[view]++;
	return true;
}

static void plan_string_view(struct plan *pl, enum message_view view,
			     enum field field)
{
	const char *key = field_names[field];
	const char *p;
	size_t n;
	int r = get_string(pl->obj, key, &p, &n);

	pl->vfield[view] = field;
	if (r < 0)
		problem(&pl->problems);
	else if (r > 0)
		plan_value(pl, view, p, n);
}

/* failureFunctionState, else failureCallbackInfo.state: only the newest
 * OpenAPI has the state at the top level, the SDK's types and the docs'
 * example response carry it only inside failureCallbackInfo (API.md). The
 * first that is a string decides; a value of another type is a problem and
 * the other place is read. A nested value is copied (its bytes are not
 * where the view's field would point). */
static void plan_state(struct plan *pl)
{
	json_t *info = json_object_get(pl->obj, "failureCallbackInfo");
	const char *p;
	size_t n;
	int r = get_string(pl->obj, field_names[FIELD_STATE], &p, &n);

	pl->vfield[VIEW_STATE] = FIELD_STATE;
	if (r > 0) {
		plan_value(pl, VIEW_STATE, p, n);
		return;
	}
	if (r < 0)
		problem(&pl->problems);
	if (!info || json_is_null(info))
		return;
	if (!json_is_object(info)) {
		problem(&pl->problems);
		return;
	}
	r = get_string(info, "state", &p, &n);
	if (r < 0)
		problem(&pl->problems);
	if (r <= 0)
		return;
	pl->vfield[VIEW_STATE] = FIELD_NONE;
	plan_value(pl, VIEW_STATE, p, n);
}

/* labels (an array; a lone string is tolerated), else the deprecated
 * label when labels is absent. */
static void plan_labels(struct plan *pl)
{
	json_t *labels = json_object_get(pl->obj, "labels");

	pl->vfield[VIEW_LABEL] = FIELD_LABELS;
	if (json_is_array(labels)) {
		for (size_t i = 0; i < json_array_size(labels); i++) {
			json_t *l = json_array_get(labels, i);

			if (!json_is_string(l)) {
				problem(&pl->problems);
				continue;
			}
			if (!plan_value(pl, VIEW_LABEL, json_string_value(l),
					json_string_length(l))) {
				problem(&pl->problems); /* over the limit */
				break;
			}
		}
	} else if (json_is_string(labels)) {
		problem(&pl->problems);
		plan_value(pl, VIEW_LABEL, json_string_value(labels),
			   json_string_length(labels));
	} else if (labels && !json_is_null(labels)) {
		problem(&pl->problems);
	} else {
		plan_string_view(pl, VIEW_LABEL, FIELD_LABEL);
	}
}

/* A time in ms (createdAt, workflowCreatedAt): an integer; a real is
 * truncated, and with @problems counted, another type only counted.
 * (workflowCreatedAt is no file and no view: only the scope reads it.) */
static void plan_ms(struct plan *pl, const char *key, int64_t *ret_ms,
		    bool *ret_has, uint32_t *problems)
{
	json_t *v = json_object_get(pl->obj, key);

	if (json_is_integer(v)) {
		*ret_ms = json_integer_value(v);
		*ret_has = true;
	} else if (json_is_real(v)) {
		double d = json_real_value(v);

		if (problems)
			problem(problems);
		if (isfinite(d) && d > -9223372036854775808.0 &&
		    d < 9223372036854775808.0) {
			*ret_ms = (int64_t)d;
			*ret_has = true;
		}
	} else if (v && !json_is_null(v) && problems) {
		problem(problems);
	}
}

static void plan_date(struct plan *pl)
{
	int64_t ms = pl->created_ms;
	time_t s;
	struct tm tm;
	int n;

	pl->vfield[VIEW_DATE] = FIELD_NONE;
	if (!pl->has_created)
		return;
	/* Floor division: the instant before the epoch is 1969-12-31. */
	s = (time_t)(ms / 1000 - (ms % 1000 < 0));
	if (!gmtime_r(&s, &tm))
		return;
	n = snprintf(pl->date, sizeof(pl->date), "%04lld-%02d-%02d",
		     (long long)tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
	if (n > 0 && (size_t)n < sizeof(pl->date))
		plan_value(pl, VIEW_DATE, pl->date, (size_t)n);
}

/* responseStatus: the file and the by-status value. */
static void plan_status(struct plan *pl)
{
	json_t *v = json_object_get(pl->obj, "responseStatus");
	struct src *f = &pl->file[MESSAGE_RESPONSE_STATUS];

	f->field = FIELD_STATUS;
	pl->vfield[VIEW_STATUS] = FIELD_STATUS;
	if (json_is_integer(v)) {
		int n = snprintf(pl->status, sizeof(pl->status), "%lld",
				 (long long)json_integer_value(v));

		f->kind = MESSAGE_FILE_INT;
		plan_value(pl, VIEW_STATUS, pl->status, (size_t)n);
	} else if (json_is_string(v)) {
		f->kind = MESSAGE_FILE_LINE;
		plan_value(pl, VIEW_STATUS, json_string_value(v),
			   json_string_length(v));
	} else if (v && !json_is_null(v)) {
		problem(&pl->problems);
	}
}

/* body / bodyBase64 (and the response pair): the decoded base64 when there
 * is some, else the plain string, else an empty file for bodyBase64 "". */
static void plan_body(struct plan *pl, struct src *f, const char *key,
		      enum field field, const char *key64, enum field field64)
{
	const char *p, *p64;
	size_t n, n64;
	int r = get_string(pl->obj, key, &p, &n);
	int r64 = get_string(pl->obj, key64, &p64, &n64);

	if (r < 0)
		problem(&pl->problems);
	if (r64 < 0)
		problem(&pl->problems);
	if (r64 > 0 && n64 > 0) {
		f->kind = MESSAGE_FILE_BASE64; /* checked when measured */
		f->field = field64;
	} else if (r > 0) {
		f->kind = MESSAGE_FILE_STRING;
		f->field = field;
	} else if (r64 > 0) {
		f->kind = MESSAGE_FILE_STRING; /* "" */
		f->field = field64;
	}
}

static void plan_header(struct plan *pl, struct src *f, const char *key,
			enum field field)
{
	json_t *h = json_object_get(pl->obj, key);

	if (!h || json_is_null(h))
		return;
	if (!json_is_object(h)) {
		problem(&pl->problems);
		return;
	}
	f->kind = MESSAGE_FILE_HEADER; /* lines counted when measured */
	f->field = field;
}

/* Fills @pl from the entry @obj (borrowed: it must outlive the plan).
 * Returns 0 or -EINVAL (not an object, no usable dlqId). */
static int plan_message(struct plan *pl, json_t *obj)
{
	const char *id;
	size_t idlen;

	memset(pl, 0, sizeof(*pl));
	pl->obj = obj;
	if (!json_is_object(obj))
		return -EINVAL;
	if (get_string(obj, "dlqId", &id, &idlen) <= 0 || idlen == 0 ||
	    idlen > MESSAGE_MAX_ID || memchr(id, '\0', idlen))
		return -EINVAL;
	pl->id.data = id;
	pl->id.len = idlen;

	plan_ms(pl, "createdAt", &pl->created_ms, &pl->has_created,
		&pl->problems);
	plan_ms(pl, "workflowCreatedAt", &pl->wf_created_ms,
		&pl->has_wf_created, NULL);
	/* Views in enum order: plan_value() fills one view at a time. */
	plan_labels(pl);
	plan_string_view(pl, VIEW_URL, FIELD_URL);
	plan_string_view(pl, VIEW_RUN, FIELD_RUN);
	plan_state(pl);
	plan_status(pl);
	plan_date(pl);
	plan_string_view(pl, VIEW_FLOW_CONTROL_KEY, FIELD_FLOW_CONTROL_KEY);
	plan_string_view(pl, VIEW_CALLER_IP, FIELD_CALLER_IP);

	plan_body(pl, &pl->file[MESSAGE_BODY], "body", FIELD_BODY, "bodyBase64",
		  FIELD_BODY64);
	plan_body(pl, &pl->file[MESSAGE_RESPONSE_BODY], "responseBody",
		  FIELD_RBODY, "responseBodyBase64", FIELD_RBODY64);
	plan_header(pl, &pl->file[MESSAGE_HEADER], "header", FIELD_HEADER);
	plan_header(pl, &pl->file[MESSAGE_RESPONSE_HEADER], "responseHeader",
		    FIELD_RHEADER);
	pl->file[MESSAGE_JSON].kind = MESSAGE_FILE_JSON;
	pl->file[MESSAGE_JSON].field = FIELD_TEXT;
	return 0;
}

/* Measures every file of @pl from the text @s (@n bytes; @at from
 * text_fields()), giving up on one beyond @budget bytes (it is absent
 * then, and so is a bodyBase64 that is not base64: both are problems).
 * Returns 0, -EPROTO (the text is not the entry's: cannot happen) or
 * -ENOMEM. */
static int plan_measure(struct plan *pl, const char *s, size_t n,
			const size_t at[FIELD_COUNT], size_t budget)
{
	for (int f = 0; f < MESSAGE_NFILES; f++) {
		struct src *src = &pl->file[f];
		size_t where = 0, left_out = 0;
		int r;

		if (src->kind == MESSAGE_FILE_NONE)
			continue;
		if (src->field != FIELD_TEXT) {
			where = at[src->field];
			if (where == SIZE_MAX)
				return -EPROTO;
		}
		r = message_file_measure(s, n, src->kind, where, budget,
					 &src->len, &left_out);
		pl->problems = left_out > UINT32_MAX - pl->problems
				       ? UINT32_MAX
				       : pl->problems + (uint32_t)left_out;
		if (r == -EILSEQ || r == -EFBIG) {
			src->kind = MESSAGE_FILE_NONE;
			problem(&pl->problems);
			continue;
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* Keeps the files that fit in @budget bytes, message.json and the bodies
 * first. Returns the bytes they take (each counted with one byte more:
 * the same budget as when they were stored). */
static size_t plan_fit(struct plan *pl, size_t budget)
{
	static const enum message_file order[] = {
		MESSAGE_JSON,
		MESSAGE_BODY,
		MESSAGE_RESPONSE_BODY,
		MESSAGE_HEADER,
		MESSAGE_RESPONSE_HEADER,
		MESSAGE_RESPONSE_STATUS,
	};
	size_t used = 0;

	_Static_assert(sizeof(order) / sizeof(order[0]) == MESSAGE_NFILES,
		       "every file has a rank");
	for (size_t i = 0; i < MESSAGE_NFILES; i++) {
		struct src *f = &pl->file[order[i]];

		if (f->kind == MESSAGE_FILE_NONE)
			continue;
		if (f->len >= budget - used) {
			f->kind = MESSAGE_FILE_NONE;
			problem(&pl->problems);
			continue;
		}
		used += f->len + 1;
	}
	return used;
}

/* ---- layout ----------------------------------------------------------- */

_Static_assert(sizeof(struct message) % _Alignof(struct message_bytes) == 0,
	       "view arrays follow the struct");

static bool add_size(size_t *total, size_t n)
{
	/* + 1: every byte string is followed by a NUL. */
	return !__builtin_add_overflow(*total, n, total) &&
	       !__builtin_add_overflow(*total, 1, total);
}

static char *put(char *w, const char *p, size_t n, struct message_bytes *ret)
{
	if (n)
		memcpy(w, p, n);
	w[n] = '\0';
	ret->data = w;
	ret->len = n;
	return w + n + 1;
}

/* Whether the token at @t (string body or number) is @v byte for byte. */
static bool token_is(const struct jsontext *t, size_t start, int tok,
		     const struct message_bytes *v, size_t *ret_at)
{
	size_t at = tok == JSONTEXT_STRING ? start + 1 : start;
	size_t len =
		tok == JSONTEXT_STRING ? t->pos - start - 2 : t->pos - start;

	if ((tok != JSONTEXT_STRING && tok != JSONTEXT_NUMBER) ||
	    len != v->len || memcmp(t->s + at, v->data, len))
		return false;
	*ret_at = at;
	return true;
}

/* Where view value @v, read from the member at @at of the text @s (@n
 * bytes), lies in that text as it is: a string without escapes, an
 * integer in its plain form, or a string of an array (labels). SIZE_MAX
 * when its bytes are not there as they are (it is copied then). */
static size_t value_in_text(const char *s, size_t n, size_t at,
			    const struct message_bytes *v)
{
	struct jsontext t = {.s = s, .n = n, .pos = at};
	size_t start, where;
	int tok;

	if (at >= n)
		return SIZE_MAX;
	tok = jsontext_next(&t, &start);
	if (tok != '[')
		return token_is(&t, start, tok, v, &where) ? where : SIZE_MAX;
	/* labels: MESSAGE_MAX_LABELS values, each looked for once */
	tok = jsontext_next(&t, &start);
	while (tok != ']' && tok != JSONTEXT_END && tok != JSONTEXT_BAD) {
		if (token_is(&t, start, tok, v, &where))
			return where;
		if (tok == '{' || tok == '[') {
			t.pos = start;
			if (jsontext_skip(&t, NULL) < 0)
				return SIZE_MAX;
		}
		tok = jsontext_next(&t, &start);
		if (tok == ',')
			tok = jsontext_next(&t, &start);
	}
	return SIZE_MAX;
}

/* Lays @pl out in one allocation with the entry's text @text (@textlen
 * bytes, compacted on the way), measures its files and keeps those that
 * fit in @budget. A view value whose bytes are in the text as they are is
 * not copied: it points there. Returns 0 and the bytes the files take in
 * @ret_used; -EPROTO (the text is not the entry's: cannot happen) or
 * -ENOMEM. */
static int render(struct plan *pl, const char *text, size_t textlen,
		  size_t budget, struct message **ret_msg, size_t *ret_used)
{
	size_t total = sizeof(struct message) +
		       pl->nvals * sizeof(struct message_bytes);
	size_t clen, at[FIELD_COUNT];
	struct message_bytes *arr;
	struct message *m;
	char *tmp, *w;
	size_t k = 0;
	int r;

	/* The compact text first, on its own: where the fields are in it
	 * decides what the message holds besides. It is never longer than
	 * the text: one pass writes it. */
	tmp = malloc(textlen + 1);
	if (!tmp)
		return -ENOMEM;
	clen = jsontext_compact(text, textlen, tmp);
	if (clen == SIZE_MAX) {
		free(tmp);
		return -EPROTO;
	}
	tmp[clen] = '\0';
	r = text_fields(tmp, clen, at);
	if (r == 0)
		r = plan_measure(pl, tmp, clen, at, budget);
	if (r < 0)
		goto out;

	r = -ENOMEM;
	if (!add_size(&total, pl->id.len) || !add_size(&total, clen))
		goto out;
	for (int v = 0; v < VIEW_COUNT; v++) {
		enum field fd = pl->vfield[v];

		for (uint32_t i = 0; i < pl->nval[v]; i++, k++) {
			pl->val_at[k] =
				fd < FIELD_COUNT && at[fd] != SIZE_MAX
					? value_in_text(tmp, clen, at[fd],
							&pl->val[k])
					: SIZE_MAX;
			if (pl->val_at[k] == SIZE_MAX &&
			    !add_size(&total, pl->val[k].len))
				goto out;
		}
	}

	m = malloc(total);
	if (!m)
		goto out;
	memset(m, 0, sizeof(*m));
	atomic_init(&m->refs, 1);
	arr = (struct message_bytes *)(m + 1);
	w = (char *)(arr + pl->nvals);

	w = put(w, pl->id.data, pl->id.len, &m->id);
	w = put(w, tmp, clen, &m->text);
	k = 0;
	for (int v = 0; v < VIEW_COUNT; v++) {
		m->view[v].n = pl->nval[v];
		m->view[v].v = pl->nval[v] ? arr + k : NULL;
		for (uint32_t i = 0; i < pl->nval[v]; i++, k++) {
			if (pl->val_at[k] == SIZE_MAX) {
				w = put(w, pl->val[k].data, pl->val[k].len,
					&arr[k]);
				continue;
			}
			arr[k].data = m->text.data + pl->val_at[k];
			arr[k].len = pl->val[k].len;
		}
	}

	*ret_used = plan_fit(pl, budget);
	for (int f = 0; f < MESSAGE_NFILES; f++) {
		m->file_kind[f] = (uint8_t)pl->file[f].kind;
		if (pl->file[f].kind == MESSAGE_FILE_NONE)
			continue;
		m->file_at[f] = pl->file[f].field == FIELD_TEXT
					? 0
					: at[pl->file[f].field];
		m->file_len[f] = pl->file[f].len;
	}
	m->created_ms = pl->created_ms;
	m->has_created = pl->has_created;
	m->wf_created_ms = pl->wf_created_ms;
	m->has_wf_created = pl->has_wf_created;
	m->problems = pl->problems;
	*ret_msg = m;
	r = 0;
out:
	free(tmp);
	return r;
}

size_t message_budget(size_t len)
{
	return len > SIZE_MAX / MESSAGE_RENDER_FACTOR
		       ? SIZE_MAX
		       : len * MESSAGE_RENDER_FACTOR;
}

/* jansson loads the entry's own bytes for its fields; when it had to read
 * every number as a real (jsonload()), the numbers are put back from the
 * text first. */
int message_parse_entry(const char *json, size_t len, size_t *budget,
			struct message **ret_msg)
{
	size_t avail = add_sat(*budget, MESSAGE_RENDER_SLACK), used;
	uint32_t lost = 0;
	struct plan pl;
	json_t *root;
	bool lossy;
	int r;

	r = jsonload(json, len, &root, &lossy);
	if (r < 0)
		return r == -ENOMEM ? -ENOMEM : -EINVAL;
	if (lossy)
		r = jsonload_restore(root, json, len, &lost);
	if (r == 0)
		r = plan_message(&pl, root);
	if (r == 0) {
		pl.problems = pl.problems > UINT32_MAX - lost
				      ? UINT32_MAX
				      : pl.problems + lost;
		/* the whitespace around the value is dropped with the rest */
		r = render(&pl, json, len, avail, ret_msg, &used);
	}
	json_decref(root);
	if (r == 0)
		*budget = avail - used;
	return r == -EPROTO ? -EINVAL : r;
}

/* ---- public ----------------------------------------------------------- */

int message_parse(const char *json, size_t len, struct message **ret_msg)
{
	size_t budget = message_budget(len);

	return message_parse_entry(json ? json : "", json ? len : 0, &budget,
				   ret_msg);
}

struct message *message_ref(struct message *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	return m;
}

void message_free(struct message *m)
{
	struct message_store *st;

	if (!m ||
	    atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
		return;
	st = m->store;
	free(m);
	if (st &&
	    atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) == 1)
		st->release(st);
}
