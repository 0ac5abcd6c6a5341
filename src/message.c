/* message: WorkflowDLQMessage JSON to rendered files and view values.
 *
 * Owns everything that knows JSON: loading a list page (cursor, entries),
 * rendering each entry into the files of DESIGN.md section 1 (message.json,
 * decoded bodies, header files, responseStatus) and the raw values of the
 * eight views, and reading API error bodies. It is the only includer of
 * <jansson.h>. It leaves escaping values into names to names.c, and what
 * the rendered messages become (snapshot, inodes, times) to the modules
 * above.
 *
 * Each message is one allocation: the struct, then its view arrays, then
 * its dlqId and the entry's own text without its whitespace (each followed
 * by a NUL), then the view values that are not in that text as they are
 * (most point into it). The files are not stored: the views
 * and the choice of what each file shows come from the json_t; the
 * files' bytes are rendered from the text, measured once at parse time
 * (the exact sizes) and written on demand by message_file_render(), with
 * the same functions, so sizes and bytes cannot disagree. message.json is
 * that text re-indented (numbers and escapes read as they were sent).
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

#include "base64.h"
#include "jsonload.h"
#include "jsontext.h"
#include "message.h"
#include "utf8.h"

const char *const message_file_names[MESSAGE_NFILES] = {
	[MESSAGE_JSON] = "message.json",
	[MESSAGE_BODY] = "body",
	[MESSAGE_HEADER] = "header",
	[MESSAGE_RESPONSE_BODY] = "responseBody",
	[MESSAGE_RESPONSE_HEADER] = "responseHeader",
	[MESSAGE_RESPONSE_STATUS] = "responseStatus",
};

const char *const message_view_names[VIEW_COUNT] = {
	[VIEW_LABEL] = "by-label",
	[VIEW_URL] = "by-url",
	[VIEW_RUN] = "by-run",
	[VIEW_STATE] = "by-state",
	[VIEW_STATUS] = "by-status",
	[VIEW_DATE] = "by-date",
	[VIEW_FLOW_CONTROL_KEY] = "by-flow-control-key",
	[VIEW_CALLER_IP] = "by-caller-ip",
};

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

/* ---- the text as sent ------------------------------------------------- *
 * message.json is the entry's own bytes, re-indented: its tokens are copied
 * as they are (numbers and string escapes as sent), only the whitespace
 * between them changes. So the parser keeps, for each entry, where its text
 * lies in what was received, and reads that text with jsontext.h. The
 * scanner decides what a page is (see "pages" below); jansson then loads
 * each entry's own bytes, and the scanner still checks all it reads of
 * them. */

/* Output of a re-indentation: measured only while @w is NULL; stops
 * counting beyond @limit bytes. */
struct out {
	char *w;
	size_t len, limit;
	bool over;
};

static void out_put(struct out *o, const char *p, size_t n)
{
	if (o->over)
		return;
	if (n > o->limit - o->len) {
		o->over = true;
		return;
	}
	if (o->w)
		memcpy(o->w + o->len, p, n);
	o->len += n;
}

static void out_newline(struct out *o, unsigned depth)
{
	static const char spaces[] = "\n                                "
				     "                                ";
	size_t left = (size_t)depth * 2;

	out_put(o, spaces, 1);
	while (left > 0 && !o->over) {
		size_t k =
			left < sizeof(spaces) - 2 ? left : sizeof(spaces) - 2;

		out_put(o, spaces + 1, k);
		left -= k;
	}
}

/* Re-indents the JSON text @s (@n bytes, one value) into @o the way
 * jansson's JSON_INDENT(2) lays out a tree: "{" or "[" then a new line,
 * two spaces per level, "\"key\": value", "," at the end of a line, empty
 * containers as "{}" and "[]". Tokens are copied byte for byte. Returns
 * false when the text is not a run of JSON tokens (nesting, too). */
static bool reindent(const char *s, size_t n, struct out *o)
{
	struct jsontext t = {.s = s, .n = n};
	unsigned depth = 0;

	for (;;) {
		size_t start, save;
		int tok = jsontext_next(&t, &start);

		switch (tok) {
		case JSONTEXT_END:
			return depth == 0;
		case '{':
		case '[':
			save = t.pos;
			if (jsontext_next(&t, &start) ==
			    (tok == '{' ? '}' : ']')) {
				out_put(o, tok == '{' ? "{}" : "[]", 2);
				break;
			}
			t.pos = save;
			if (depth == JSONTEXT_MAX_DEPTH)
				return false;
			out_put(o, tok == '{' ? "{" : "[", 1);
			out_newline(o, ++depth);
			break;
		case '}':
		case ']':
			if (depth == 0)
				return false;
			out_newline(o, --depth);
			out_put(o, tok == '}' ? "}" : "]", 1);
			break;
		case ',':
			out_put(o, ",", 1);
			out_newline(o, depth);
			break;
		case ':':
			out_put(o, ": ", 2);
			break;
		case JSONTEXT_STRING:
		case JSONTEXT_NUMBER:
		case JSONTEXT_WORD:
			out_put(o, s + start, t.pos - start);
			break;
		default:
			return false;
		}
	}
}

/* ---- the files -------------------------------------------------------- *
 * A message keeps its entry's text (compact: no whitespace between
 * tokens) and, for each file, the kind of rendering it takes and where its
 * value lies in that text. The same functions measure a file when the
 * message is parsed (its exact size, and the problems it shows) and write
 * it when it is read, so sizes and bytes cannot disagree. Which field
 * and which kind is decided from jansson's tree (types, fallbacks); the
 * bytes come from the text, read by the scanner above, where a repeated
 * key is read at its last occurrence, as jansson keeps it. */

enum file_kind {
	FILE_NONE,   /* no file */
	FILE_STRING, /* a string, decoded */
	FILE_LINE,   /* a string, decoded, then "\n" unless it is empty */
	FILE_INT,    /* an integer literal in decimal, then "\n" */
	FILE_BASE64, /* a string, decoded, then base64-decoded */
	FILE_HEADER, /* an object: "Name: value\n" lines, names sorted */
	FILE_JSON,   /* the whole text re-indented (reindent()), then "\n" */
};

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

/* Replaces CR and LF in @n bytes at @w by spaces, so one value is one
 * line. */
static void one_line(char *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (w[i] == '\r' || w[i] == '\n')
			w[i] = ' ';
}

/* Puts the decoded body of a string token (@p, @n bytes between the
 * quotes) in @o, with CR and LF as spaces when @line. Its decoded length
 * in *@ret_len when not NULL. Returns false for an escape jansson refuses
 * (a lone surrogate). */
static bool out_string(struct out *o, const char *p, size_t n, bool line,
		       size_t *ret_len)
{
	/* a raw CR or LF cannot be in a token: only an escape makes one */
	bool plain = !memchr(p, '\\', n);
	size_t len = n;

	if (!plain && !jsontext_string_decode(p, n, NULL, &len))
		return false;
	if (ret_len)
		*ret_len = len;
	if (o->over)
		return true;
	if (len > o->limit - o->len) {
		o->over = true;
		return true;
	}
	if (o->w && plain) {
		memcpy(o->w + o->len, p, n);
	} else if (o->w) {
		jsontext_string_decode(p, n, o->w + o->len, &len);
		if (line)
			one_line(o->w + o->len, len);
	}
	o->len += len;
	return true;
}

/* Puts the base64 string token body @p (@n bytes) in @o, decoded twice.
 * Returns 0, -EILSEQ (not base64) or -ENOMEM. */
static int out_base64(struct out *o, const char *p, size_t n)
{
	char *tmp = NULL;
	size_t len;
	int r = 0;

	if (memchr(p, '\\', n)) { /* "\/" is common in JSON's base64 */
		tmp = malloc(n ? n : 1);
		if (!tmp)
			return -ENOMEM;
		if (!jsontext_string_decode(p, n, tmp, &n)) {
			free(tmp);
			return -EILSEQ;
		}
		p = tmp;
	}
	if (!base64_decode(p, n, NULL, &len))
		r = -EILSEQ;
	else if (!o->over && len > o->limit - o->len)
		o->over = true;
	else if (!o->over) {
		if (o->w)
			base64_decode(p, n, o->w + o->len, &len);
		o->len += len;
	}
	free(tmp);
	return r;
}

/* A member of a header object. */
struct hkey {
	const char *k; /* decoded name: in the text, or in a scratch buffer */
	size_t klen;
	size_t at;    /* its value in the text */
	size_t order; /* its position in the object */
};

static int hkey_cmp(const void *a, const void *b)
{
	const struct hkey *x = a, *y = b;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int c = n ? memcmp(x->k, y->k, n) : 0;

	if (c)
		return c;
	if (x->klen != y->klen)
		return x->klen < y->klen ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* One "Name: value\n" line, the value being the string token body @p
 * (@n bytes). */
static bool header_line(struct out *o, const struct hkey *k, const char *p,
			size_t n)
{
	size_t at = o->len;

	out_put(o, k->k, k->klen);
	if (o->w && !o->over)
		one_line(o->w + at, k->klen);
	out_put(o, ": ", 2);
	if (!out_string(o, p, n, true, NULL))
		return false;
	out_put(o, "\n", 1);
	return true;
}

/* The lines of header @k: one for a string, one per string of an array;
 * anything else is counted in *@problems (when not NULL), and so is every
 * line beyond MESSAGE_MAX_HEADER_VALUES. Returns 0, 1 when the limit is
 * reached, -EPROTO or -ENOMEM. */
static int header_lines(struct out *o, const char *s, size_t n,
			const struct hkey *k, size_t *lines, uint32_t *problems)
{
	struct jsontext t = {.s = s, .n = n, .pos = k->at};
	size_t start, save;
	int tok = jsontext_next(&t, &start), r;
	bool array = tok == '[';

	if (array) {
		save = t.pos;
		if (jsontext_next(&t, &start) == ']')
			return 0;
		t.pos = save;
	}
	for (;;) {
		if (array) {
			jsontext_skip_ws(&t);
			save = t.pos;
			tok = jsontext_next(&t, &start);
			if (tok != JSONTEXT_STRING) {
				t.pos = save;
				r = jsontext_skip(&t, NULL);
				if (r < 0)
					return r;
			}
		}
		if (tok != JSONTEXT_STRING) {
			if (problems)
				problem(problems);
		} else if (*lines == MESSAGE_MAX_HEADER_VALUES) {
			if (problems)
				problem(problems);
			return 1;
		} else {
			if (!header_line(o, k, s + start + 1,
					 t.pos - start - 2))
				return -EPROTO;
			(*lines)++;
		}
		if (!array)
			return 0;
		tok = jsontext_next(&t, &start);
		if (tok == ']')
			return 0;
		if (tok != ',')
			return -EPROTO;
	}
}

/* Puts the header object whose "{" is just read from @t in @o: names
 * sorted (by their bytes), the last value of a repeated name. Returns 0,
 * -EPROTO or -ENOMEM. */
static int out_header(struct out *o, struct jsontext *t, uint32_t *problems)
{
	const size_t first = t->pos;
	size_t start, count = 0, escaped = 0, used = 0, lines = 0;
	struct hkey *keys = NULL;
	char *scratch = NULL;
	int tok, r = -EPROTO;

	/* Count the members, and the bytes of the names to decode. */
	for (tok = jsontext_next(t, &start); tok != '}';) {
		if (tok != JSONTEXT_STRING)
			return -EPROTO;
		if (memchr(t->s + start + 1, '\\', t->pos - start - 2))
			escaped += t->pos - start - 2;
		count++;
		if (jsontext_next(t, &start) != ':')
			return -EPROTO;
		r = jsontext_skip(t, NULL);
		if (r < 0)
			return r;
		tok = jsontext_next(t, &start);
		if (tok == ',')
			tok = jsontext_next(t, &start);
		else if (tok != '}')
			return -EPROTO;
	}
	if (count == 0)
		return 0;
	keys = calloc(count, sizeof(*keys));
	scratch = escaped ? malloc(escaped) : NULL;
	if (!keys || (escaped && !scratch)) {
		r = -ENOMEM;
		goto out;
	}
	t->pos = first;
	for (size_t i = 0; i < count; i++) {
		const char *raw;
		size_t rawlen;

		if (i > 0)
			jsontext_next(t, &start); /* "," */
		jsontext_next(t, &start);
		raw = t->s + start + 1;
		rawlen = t->pos - start - 2;
		if (memchr(raw, '\\', rawlen)) {
			keys[i].k = scratch + used;
			if (!jsontext_string_decode(raw, rawlen, scratch + used,
						    &keys[i].klen)) {
				r = -EPROTO;
				goto out;
			}
			used += keys[i].klen;
		} else {
			keys[i].k = raw;
			keys[i].klen = rawlen;
		}
		keys[i].order = i;
		jsontext_next(t, &start); /* ":" */
		jsontext_skip_ws(t);
		keys[i].at = t->pos;
		r = jsontext_skip(t, NULL);
		if (r < 0)
			goto out;
	}
	qsort(keys, count, sizeof(*keys), hkey_cmp);
	r = 0;
	for (size_t i = 0; i < count && r == 0; i++) {
		/* equal names sort by position: the last one is kept */
		if (i + 1 < count && keys[i].klen == keys[i + 1].klen &&
		    (keys[i].klen == 0 ||
		     !memcmp(keys[i].k, keys[i + 1].k, keys[i].klen)))
			continue;
		r = header_lines(o, t->s, t->n, &keys[i], &lines, problems);
	}
	if (r == 1)
		r = 0;
out:
	free(keys);
	free(scratch);
	return r;
}

/* Measures (o->w NULL) or writes the file of @kind whose value starts at
 * @at in the text @s (@n bytes) into @o, counting what it leaves out in
 * *@problems when not NULL. A file beyond o->limit sets o->over. Returns
 * 0, -EILSEQ (not base64), -EPROTO (the text there is not what @kind
 * reads: cannot happen) or -ENOMEM. */
static int file_out(const char *s, size_t n, enum file_kind kind, size_t at,
		    struct out *o, uint32_t *problems)
{
	struct jsontext t = {.s = s, .n = n, .pos = at};
	char num[24];
	int64_t v;
	size_t start, len;
	int tok;

	if (kind == FILE_JSON) {
		if (!reindent(s, n, o))
			return -EPROTO;
		out_put(o, "\n", 1);
		return 0;
	}
	if (at > n)
		return -EPROTO;
	tok = jsontext_next(&t, &start);
	switch (kind) {
	case FILE_STRING:
	case FILE_LINE:
		if (tok != JSONTEXT_STRING ||
		    !out_string(o, s + start + 1, t.pos - start - 2, false,
				&len))
			return -EPROTO;
		if (kind == FILE_LINE && len > 0)
			out_put(o, "\n", 1);
		return 0;
	case FILE_INT:
		if (tok != JSONTEXT_NUMBER ||
		    !jsontext_int(s + start, t.pos - start, &v))
			return -EPROTO;
		out_put(o, num,
			(size_t)snprintf(num, sizeof(num), "%lld\n",
					 (long long)v));
		return 0;
	case FILE_BASE64:
		if (tok != JSONTEXT_STRING)
			return -EPROTO;
		return out_base64(o, s + start + 1, t.pos - start - 2);
	case FILE_HEADER:
		if (tok != '{')
			return -EPROTO;
		return out_header(o, &t, problems);
	default:
		return -EPROTO;
	}
}

bool message_file_exists(const struct message *m, enum message_file f)
{
	return f >= 0 && f < MESSAGE_NFILES && m->file_kind[f] != FILE_NONE;
}

size_t message_file_size(const struct message *m, enum message_file f)
{
	return message_file_exists(m, f) ? m->file_len[f] : 0;
}

int message_file_render(const struct message *m, enum message_file f, char *buf)
{
	struct out o;
	int r;

	if (!message_file_exists(m, f))
		return -ENOENT;
	o = (struct out){.w = buf, .limit = m->file_len[f]};
	r = file_out(m->text.data, m->text.len, m->file_kind[f], m->file_at[f],
		     &o, NULL);
	if (r == -ENOMEM)
		return r;
	if (r < 0 || o.over || o.len != m->file_len[f])
		return -EIO;
	return 0;
}

/* The text of the value at @at in @m's text, in @ret. */
static bool value_text(const struct message *m, size_t at,
		       struct message_bytes *ret)
{
	struct jsontext t = {.s = m->text.data, .n = m->text.len, .pos = at};

	if (at > m->text.len || jsontext_skip(&t, NULL) < 0)
		return false;
	ret->data = m->text.data + at;
	ret->len = t.pos - at;
	return true;
}

bool message_file_same(const struct message *a, const struct message *b,
		       enum message_file f)
{
	struct message_bytes x, y;

	if (!message_file_exists(a, f) || !message_file_exists(b, f))
		return message_file_exists(a, f) == message_file_exists(b, f);
	if (a->file_kind[f] != b->file_kind[f] ||
	    a->file_len[f] != b->file_len[f])
		return false;
	if (a->file_kind[f] == FILE_JSON) {
		x = a->text;
		y = b->text;
	} else if (!value_text(a, a->file_at[f], &x) ||
		   !value_text(b, b->file_at[f], &y)) {
		return false;
	}
	return x.len == y.len && !memcmp(x.data, y.data, x.len);
}

/* ---- the render plan -------------------------------------------------- */

/* What a file will be: decided from the tree, measured from the text. */
struct src {
	enum file_kind kind;
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

		f->kind = FILE_INT;
		plan_value(pl, VIEW_STATUS, pl->status, (size_t)n);
	} else if (json_is_string(v)) {
		f->kind = FILE_LINE;
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
		f->kind = FILE_BASE64; /* checked when measured */
		f->field = field64;
	} else if (r > 0) {
		f->kind = FILE_STRING;
		f->field = field;
	} else if (r64 > 0) {
		f->kind = FILE_STRING; /* "" */
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
	f->kind = FILE_HEADER; /* lines counted when measured */
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
	pl->file[MESSAGE_JSON].kind = FILE_JSON;
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
		struct out o = {.limit = budget};
		size_t where = 0;
		int r;

		if (src->kind == FILE_NONE)
			continue;
		if (src->field != FIELD_TEXT) {
			where = at[src->field];
			if (where == SIZE_MAX)
				return -EPROTO;
		}
		r = file_out(s, n, src->kind, where, &o, &pl->problems);
		if (r == -EILSEQ || (r == 0 && o.over)) {
			src->kind = FILE_NONE;
			problem(&pl->problems);
			continue;
		}
		if (r < 0)
			return r;
		src->len = o.len;
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

		if (f->kind == FILE_NONE)
			continue;
		if (f->len >= budget - used) {
			f->kind = FILE_NONE;
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
	size_t clen = jsontext_compact(text, textlen, NULL), at[FIELD_COUNT];
	struct message_bytes *arr;
	struct message *m;
	char *tmp, *w;
	size_t k = 0;
	int r;

	if (clen == SIZE_MAX)
		return -EPROTO;
	/* The compact text first, on its own: where the fields are in it
	 * decides what the message holds besides. */
	tmp = malloc(clen + 1);
	if (!tmp)
		return -ENOMEM;
	jsontext_compact(text, textlen, tmp);
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
		if (pl->file[f].kind == FILE_NONE)
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

/* The render budget of text of @len bytes, before each message's slack. */
static size_t budget_of(size_t len)
{
	return len > SIZE_MAX / MESSAGE_RENDER_FACTOR
		       ? SIZE_MAX
		       : len * MESSAGE_RENDER_FACTOR;
}

/* Parses the entry whose text is @json (@len bytes, one JSON value), its
 * files taking at most MESSAGE_RENDER_SLACK more than *@budget bytes
 * (what they take is deducted). jansson loads the entry's own bytes for
 * its fields; when it had to read every number as a real (jsonload()), the
 * numbers are put back from the text first. Returns 0, -EINVAL (not a
 * usable entry: text jansson refuses, not an object, no usable dlqId) or
 * -ENOMEM. */
static int parse_entry(const char *json, size_t len, size_t *budget,
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
	size_t budget = budget_of(len);

	return parse_entry(json ? json : "", json ? len : 0, &budget, ret_msg);
}

struct message *message_ref(struct message *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	return m;
}

void message_free(struct message *m)
{
	if (m &&
	    atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
		free(m);
}

/* ---- pages ------------------------------------------------------------ *
 * The scanner (jsontext.h) is the one authority on what a page is: its
 * cursor, its entries and where each entry's bytes lie, and whether they
 * are UTF-8. jansson then loads each entry's own bytes for its fields. An
 * entry jansson refuses (a lone surrogate escape, as JavaScript writes a
 * broken string; a NUL escaped in a member name; a number beyond a double;
 * nesting beyond JSON_PARSER_MAX_DEPTH) is counted in ->malformed like any
 * other unusable entry, and costs the page nothing else. */

/* Writes a reason into @err, as printable ASCII (it may quote the page,
 * and the page is hostile). */
__attribute__((format(printf, 3, 4))) static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	for (char *p = err; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
}

/* Bytes of the page quoted near an error. */
#define PAGE_ERR_QUOTE 12

/* Why the text of @t is not a page, for people: what is wrong, where
 * (line and column, counted in bytes from 1), and the bytes there. */
static void page_not_json(const struct jsontext *t, char *err, size_t errlen)
{
	size_t line, column, at = t->why_at < t->n ? t->why_at : t->n;
	int quote =
		(int)(t->n - at < PAGE_ERR_QUOTE ? t->n - at : PAGE_ERR_QUOTE);

	jsontext_where(t->s, at, &line, &column);
	if (!t->why)
		set_err(err, errlen, "not a JSON object");
	else if (quote == 0)
		set_err(err, errlen, "not JSON: %s at line %zu, column %zu",
			t->why, line, column);
	else
		set_err(err, errlen,
			"not JSON: %s at line %zu, column %zu, near '%.*s'",
			t->why, line, column, quote, t->s + at);
}

/* Whether the page @t holds is UTF-8 (JSON text is); when it is not,
 * t->why says where. */
static bool page_utf8(struct jsontext *t)
{
	for (size_t i = 0; i < t->n;) {
		size_t k;

		if ((unsigned char)t->s[i] < 0x80) { /* the common case */
			i++;
			continue;
		}
		k = utf8_seq(t->s + i, t->n - i);
		if (!k) {
			t->why = "invalid UTF-8";
			t->why_at = i;
			return false;
		}
		i += k;
	}
	return true;
}

/* Where the members of a page that count lie in its text. */
struct page_text {
	size_t cursor;	 /* the last "cursor" value; SIZE_MAX: none */
	size_t messages; /* the last "messages" value; SIZE_MAX: none */
	size_t count;	 /* elements of that value, when an array */
};

/* Reads the text of @t as one object and nothing after it, and finds its
 * last "cursor" and "messages" members: a repeated key's last value is the
 * one every JSON reader keeps, and the key is compared as jansson decodes
 * it. Values are skipped at any depth (jsontext_skip()). Returns 0,
 * -EPROTO (t->why says why; NULL: JSON text, but not an object) or
 * -ENOMEM. */
static int page_scan(struct jsontext *t, struct page_text *ret)
{
	struct page_text pt = {.cursor = SIZE_MAX, .messages = SIZE_MAX};
	const char *s = t->s;
	size_t start, count;
	int tok = jsontext_next(t, &start), r;
	bool is_msgs, is_cursor;

	if (tok != '{') {
		if (tok == JSONTEXT_END) {
			t->why = "no value at all";
			t->why_at = start;
			return -EPROTO;
		}
		if (tok == JSONTEXT_BAD)
			return -EPROTO;
		t->pos = start;
		r = jsontext_skip(t, NULL);
		if (r == 0 && jsontext_next(t, &start) == JSONTEXT_END)
			t->why = NULL;
		else if (r == 0)
			jsontext_expected(t, JSONTEXT_STRING, start,
					  "nothing expected after the value");
		return r == -ENOMEM ? r : -EPROTO;
	}
	tok = jsontext_next(t, &start);
	while (tok != '}') {
		if (tok != JSONTEXT_STRING)
			return jsontext_expected(t, tok, start,
						 "a member name expected");
		is_msgs = jsontext_string_is(s + start, t->pos - start,
					     "messages");
		is_cursor =
			jsontext_string_is(s + start, t->pos - start, "cursor");
		tok = jsontext_next(t, &start);
		if (tok != ':')
			return jsontext_expected(t, tok, start, "':' expected");
		jsontext_skip_ws(t);
		start = t->pos;
		count = 0;
		r = jsontext_skip(t, &count);
		if (r < 0)
			return r;
		if (is_msgs) {
			pt.messages = start;
			pt.count = count;
		}
		if (is_cursor)
			pt.cursor = start;
		tok = jsontext_next(t, &start);
		if (tok == ',') {
			tok = jsontext_next(t, &start);
			if (tok != JSONTEXT_STRING)
				return jsontext_expected(
					t, tok, start,
					"a member name expected");
		} else if (tok != '}') {
			return jsontext_expected(t, tok, start,
						 "',' or '}' expected");
		}
	}
	if (jsontext_next(t, &start) != JSONTEXT_END) {
		t->why = "nothing expected after the object";
		t->why_at = start;
		return -EPROTO;
	}
	*ret = pt;
	return 0;
}

/* Keeps the cursor whose value starts at @at in the text of @t in @pg:
 * none when it is null or empty. Returns 0, -EPROTO (not a string, too
 * long, holding a NUL or a lone surrogate) or -ENOMEM. */
static int page_cursor(struct message_page *pg, struct jsontext *t, size_t at,
		       char *err, size_t errlen)
{
	size_t start, n;
	const char *raw;
	int tok;

	t->pos = at;
	tok = jsontext_next(t, &start);
	if (tok == JSONTEXT_WORD && t->s[start] == 'n')
		return 0; /* null */
	if (tok != JSONTEXT_STRING) {
		set_err(err, errlen, "\"cursor\" is not a string");
		return -EPROTO;
	}
	raw = t->s + start + 1;
	if (!jsontext_string_decode(raw, t->pos - start - 2, NULL, &n)) {
		set_err(err, errlen, "\"cursor\" holds a lone surrogate");
		return -EPROTO;
	}
	if (n > MESSAGE_MAX_CURSOR) {
		set_err(err, errlen, "\"cursor\" is longer than %d bytes",
			MESSAGE_MAX_CURSOR);
		return -EPROTO;
	}
	if (n == 0)
		return 0;
	pg->cursor = malloc(t->pos - start - 1);
	if (!pg->cursor) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	jsontext_string_decode(raw, t->pos - start - 2, pg->cursor, &n);
	pg->cursor[n] = '\0';
	if (memchr(pg->cursor, '\0', n)) {
		set_err(err, errlen, "\"cursor\" holds a NUL byte");
		return -EPROTO;
	}
	return 0;
}

/* Allocates room for @count messages in @pg. Returns 0, -EPROTO (too many)
 * or -ENOMEM. */
static int page_alloc(struct message_page *pg, size_t count, char *err,
		      size_t errlen)
{
	if (count > MESSAGE_MAX_PAGE_MESSAGES) {
		set_err(err, errlen, "%zu messages in one page (at most %d)",
			count, MESSAGE_MAX_PAGE_MESSAGES);
		return -EPROTO;
	}
	if (count == 0)
		return 0;
	pg->msgs = calloc(count, sizeof(*pg->msgs));
	if (!pg->msgs) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* Reads @buf (@len bytes) as a page into @pg (release it on failure too):
 * the scanner finds the cursor and each entry's bytes, each entry is
 * parsed on its own (parse_entry()), all of them sharing the page's render
 * budget. Returns 0, -EPROTO or -ENOMEM. */
static int page_read(const char *buf, size_t len, struct message_page *pg,
		     char *err, size_t errlen)
{
	size_t budget = budget_of(len), start;
	struct jsontext t = {.s = buf, .n = len};
	struct page_text pt = {0};
	int tok, r;

	r = page_utf8(&t) ? page_scan(&t, &pt) : -EPROTO;
	if (r == -ENOMEM)
		goto fail_nomem;
	if (r < 0) {
		page_not_json(&t, err, errlen);
		return r;
	}
	if (pt.cursor != SIZE_MAX) {
		r = page_cursor(pg, &t, pt.cursor, err, errlen);
		if (r < 0)
			return r;
	}
	if (pt.messages == SIZE_MAX) {
		set_err(err, errlen, "no \"messages\"");
		return -EPROTO;
	}
	t.pos = pt.messages;
	tok = jsontext_next(&t, &start);
	if (tok != '[') {
		if (tok == JSONTEXT_WORD && buf[start] == 'n')
			return 0; /* null: no entries */
		set_err(err, errlen, "\"messages\" is not an array");
		return -EPROTO;
	}
	r = page_alloc(pg, pt.count, err, errlen);
	if (r < 0)
		return r;
	for (size_t i = 0; i < pt.count; i++) {
		if (i > 0 && jsontext_next(&t, &start) != ',')
			return -EPROTO; /* cannot happen: scanned already */
		jsontext_skip_ws(&t);
		start = t.pos;
		r = jsontext_skip(&t, NULL);
		if (r == -ENOMEM)
			goto fail_nomem;
		if (r < 0)
			return r; /* cannot happen: scanned already */
		/* jansson loads objects only; nothing else is a message */
		r = buf[start] == '{' ? parse_entry(buf + start, t.pos - start,
						    &budget, &pg->msgs[pg->n])
				      : -EINVAL;
		if (r == -ENOMEM)
			goto fail_nomem;
		if (r < 0)
			pg->malformed++;
		else
			pg->n++;
	}
	return 0;

fail_nomem:
	set_err(err, errlen, "out of memory");
	return -ENOMEM;
}

int message_page_parse(const char *buf, size_t len,
		       struct message_page *ret_page, char *err, size_t errlen)
{
	struct message_page pg = {.bytes = len};
	int r;

	if (!buf) {
		buf = "";
		len = 0;
	}
	r = page_read(buf, len, &pg, err, errlen);
	if (r < 0) {
		message_page_release(&pg);
		return r;
	}
	*ret_page = pg;
	return 0;
}

void message_page_release(struct message_page *page)
{
	if (!page)
		return;
	for (size_t i = 0; i < page->n; i++)
		message_free(page->msgs ? page->msgs[i] : NULL);
	free(page->msgs);
	free(page->cursor);
	memset(page, 0, sizeof(*page));
}
