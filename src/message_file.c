/* message_file: the six files of runs/<dlqId>/, rendered from a message.
 *
 * Owns: how each kind of file is rendered from the entry's compact text:
 * message.json re-indented (its tokens as sent, only the whitespace between
 * them changes), decoded strings and base64 bodies, header objects as
 * sorted "Name: value" lines, responseStatus; measuring a file (its exact
 * size, what it leaves out) and writing it with the same functions, so
 * sizes and bytes cannot disagree; comparing a file across two messages.
 * Leaves to others: which field and which kind each file takes, and the
 * budget (message.c), reading JSON text (jsontext.c), base64 (base64.c).
 *
 * A message keeps its entry's text (compact: no whitespace between
 * tokens) and, for each file, the kind of rendering it takes and where its
 * value lies in that text (for a repeated key, its last occurrence, the
 * one jansson keeps).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "jsontext.h"
#include "message.h"

const char *const message_file_names[MESSAGE_NFILES] = {
	[MESSAGE_JSON] = "message.json",
	[MESSAGE_BODY] = "body",
	[MESSAGE_HEADER] = "header",
	[MESSAGE_RESPONSE_BODY] = "responseBody",
	[MESSAGE_RESPONSE_HEADER] = "responseHeader",
	[MESSAGE_RESPONSE_STATUS] = "responseStatus",
};

/* A file being rendered: measured only while @w is NULL; stops counting
 * beyond @limit bytes (@over set). */
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
 * anything else is counted in *@left_out (when not NULL), and so is every
 * line beyond MESSAGE_MAX_HEADER_VALUES. Returns 0, 1 when the limit is
 * reached, -EPROTO or -ENOMEM. */
static int header_lines(struct out *o, const char *s, size_t n,
			const struct hkey *k, size_t *lines, size_t *left_out)
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
			if (left_out)
				(*left_out)++;
		} else if (*lines == MESSAGE_MAX_HEADER_VALUES) {
			if (left_out)
				(*left_out)++;
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
static int out_header(struct out *o, struct jsontext *t, size_t *left_out)
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
		r = header_lines(o, t->s, t->n, &keys[i], &lines, left_out);
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
 * *@left_out when not NULL. A file beyond o->limit sets o->over. Returns
 * 0, -EILSEQ (not base64), -EPROTO (the text there is not what @kind
 * reads: cannot happen) or -ENOMEM. */
static int file_out(const char *s, size_t n, enum message_file_kind kind,
		    size_t at, struct out *o, size_t *left_out)
{
	struct jsontext t = {.s = s, .n = n, .pos = at};
	char num[24];
	int64_t v;
	size_t start, len;
	int tok;

	if (kind == MESSAGE_FILE_JSON) {
		if (!reindent(s, n, o))
			return -EPROTO;
		out_put(o, "\n", 1);
		return 0;
	}
	if (at > n)
		return -EPROTO;
	tok = jsontext_next(&t, &start);
	switch (kind) {
	case MESSAGE_FILE_STRING:
	case MESSAGE_FILE_LINE:
		if (tok != JSONTEXT_STRING ||
		    !out_string(o, s + start + 1, t.pos - start - 2, false,
				&len))
			return -EPROTO;
		if (kind == MESSAGE_FILE_LINE && len > 0)
			out_put(o, "\n", 1);
		return 0;
	case MESSAGE_FILE_INT:
		if (tok != JSONTEXT_NUMBER ||
		    !jsontext_int(s + start, t.pos - start, &v))
			return -EPROTO;
		out_put(o, num,
			(size_t)snprintf(num, sizeof(num), "%lld\n",
					 (long long)v));
		return 0;
	case MESSAGE_FILE_BASE64:
		if (tok != JSONTEXT_STRING)
			return -EPROTO;
		return out_base64(o, s + start + 1, t.pos - start - 2);
	case MESSAGE_FILE_HEADER:
		if (tok != '{')
			return -EPROTO;
		return out_header(o, &t, left_out);
	default:
		return -EPROTO;
	}
}

bool message_file_exists(const struct message *m, enum message_file f)
{
	return f >= 0 && f < MESSAGE_NFILES &&
	       m->file_kind[f] != MESSAGE_FILE_NONE;
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
	if (a->file_kind[f] == MESSAGE_FILE_JSON) {
		x = a->text;
		y = b->text;
	} else if (!value_text(a, a->file_at[f], &x) ||
		   !value_text(b, b->file_at[f], &y)) {
		return false;
	}
	return x.len == y.len && !memcmp(x.data, y.data, x.len);
}

int message_file_measure(const char *s, size_t n, enum message_file_kind kind,
			 size_t at, size_t limit, size_t *ret_len,
			 size_t *left_out)
{
	struct out o = {.limit = limit};
	int r = file_out(s, n, kind, at, &o, left_out);

	if (r < 0)
		return r;
	if (o.over)
		return -EFBIG;
	*ret_len = o.len;
	return 0;
}
