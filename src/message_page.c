/* message_page: a list page, {"cursor": ..., "messages": [...]}.
 *
 * Owns: deciding what a page is, and saying why when it is not one (the
 * scanner is the one authority: UTF-8, one JSON object, its last "cursor"
 * and "messages", where each entry's bytes lie); the cursor; the limits
 * on a page; the page's render budget, shared by its entries. Leaves to
 * others: each entry (message.c, which has jansson load the entry's own
 * bytes), reading JSON text (jsontext.c), fetching pages (api.c).
 *
 * An entry jansson refuses (a lone surrogate escape, as JavaScript writes
 * a broken string; a NUL escaped in a member name; a number beyond a
 * double; nesting beyond JSON_PARSER_MAX_DEPTH) is counted in ->malformed
 * like any other unusable entry, and costs the page nothing else.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsontext.h"
#include "message.h"
#include "message_page.h"
#include "utf8.h"

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
	if (n > MESSAGE_PAGE_MAX_CURSOR) {
		set_err(err, errlen, "\"cursor\" is longer than %d bytes",
			MESSAGE_PAGE_MAX_CURSOR);
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
	if (count > MESSAGE_PAGE_MAX_MESSAGES) {
		set_err(err, errlen, "%zu messages in one page (at most %d)",
			count, MESSAGE_PAGE_MAX_MESSAGES);
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
 * parsed on its own (message_parse_entry()), all of them sharing the
 * page's render budget. Returns 0, -EPROTO or -ENOMEM. */
static int page_read(const char *buf, size_t len, struct message_page *pg,
		     char *err, size_t errlen)
{
	size_t budget = message_budget(len), start;
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
		r = buf[start] == '{'
			    ? message_parse_entry(buf + start, t.pos - start,
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
