/* jsontext: reading JSON text token by token.
 *
 * Owns: the RFC 8259 tokens, string escapes and number literals as jansson
 * reads them, skipping a value at any depth, and dropping the whitespace
 * between tokens. Leaves to others: UTF-8 (utf8.c), trees and values
 * (jansson, in the modules that include it), what the text means (pages,
 * messages, files).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "jsontext.h"

void jsontext_skip_ws(struct jsontext *t)
{
	while (t->pos < t->n && (t->s[t->pos] == ' ' || t->s[t->pos] == '\t' ||
				 t->s[t->pos] == '\n' || t->s[t->pos] == '\r'))
		t->pos++;
}

/* Records why the text is not JSON, and where; returns JSONTEXT_BAD. */
static int bad(struct jsontext *t, size_t at, const char *why)
{
	t->why = why;
	t->why_at = at;
	return JSONTEXT_BAD;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Runs of digits at *@i; false when there is none. */
static bool digits(const char *s, size_t n, size_t *i)
{
	size_t start = *i;

	while (*i < n && is_digit(s[*i]))
		(*i)++;
	return *i > start;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? at t->pos. */
static int tok_number(struct jsontext *t)
{
	const char *s = t->s;
	size_t i = t->pos, n = t->n;

	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0')
		i++;
	else if (!digits(s, n, &i))
		return bad(t, t->pos,
			   s[t->pos] == '-' ? "invalid number"
					    : "unexpected character");
	if (i < n && s[i] == '.') {
		i++;
		if (!digits(s, n, &i))
			return bad(t, t->pos, "invalid number");
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (!digits(s, n, &i))
			return bad(t, t->pos, "invalid number");
	}
	t->pos = i;
	return JSONTEXT_NUMBER;
}

/* A string at t->pos (on its opening quote): escapes checked, raw control
 * bytes refused; whether its bytes are UTF-8 is for the caller to check. */
static int tok_string(struct jsontext *t)
{
	const char *s = t->s;
	size_t i = t->pos + 1, n = t->n;

	while (i < n) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"') {
			t->pos = i + 1;
			return JSONTEXT_STRING;
		}
		if (c < 0x20)
			return bad(t, i, "control byte in a string");
		if (c != '\\') {
			i++;
			continue;
		}
		if (i + 1 >= n)
			break;
		if (s[i + 1] == 'u') {
			if (n - i < 6 || !is_hex(s[i + 2]) ||
			    !is_hex(s[i + 3]) || !is_hex(s[i + 4]) ||
			    !is_hex(s[i + 5]))
				return bad(t, i, "invalid \\u escape");
			i += 6;
		} else if (strchr("\"\\/bfnrt", s[i + 1]) && s[i + 1]) {
			i += 2;
		} else {
			return bad(t, i, "invalid escape");
		}
	}
	return bad(t, t->pos, "string not closed");
}

int jsontext_next(struct jsontext *t, size_t *ret_start)
{
	static const char *const words[] = {"true", "false", "null"};
	char c;

	jsontext_skip_ws(t);
	*ret_start = t->pos;
	if (t->pos >= t->n)
		return JSONTEXT_END;
	c = t->s[t->pos];
	switch (c) {
	case '{':
	case '}':
	case '[':
	case ']':
	case ',':
	case ':':
		t->pos++;
		return c;
	case '"':
		return tok_string(t);
	case 't':
	case 'f':
	case 'n':
		for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
			size_t k = strlen(words[i]);

			if (t->n - t->pos >= k &&
			    memcmp(t->s + t->pos, words[i], k) == 0) {
				t->pos += k;
				return JSONTEXT_WORD;
			}
		}
		return bad(t, t->pos, "invalid literal");
	default:
		return tok_number(t);
	}
}

static unsigned hex4(const char *p)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];

		v = v * 16 + (unsigned)(is_digit(c) ? c - '0'
					: (c >= 'a' && c <= 'f')
						? c - 'a' + 10
						: c - 'A' + 10);
	}
	return v;
}

bool jsontext_string_decode(const char *p, size_t n, char *out, size_t *ret_len)
{
	size_t o = 0;

	for (size_t i = 0; i < n;) {
		unsigned u;

		if (p[i] != '\\') {
			if (out)
				out[o] = p[i];
			o++;
			i++;
			continue;
		}
		if (p[i + 1] != 'u') {
			static const char from[] = "\"\\/bfnrt",
					  to[] = "\"\\/\b\f\n\r\t";

			if (out)
				out[o] = to[strchr(from, p[i + 1]) - from];
			o++;
			i += 2;
			continue;
		}
		u = hex4(p + i + 2);
		i += 6;
		if (u >= 0xdc00 && u <= 0xdfff)
			return false;
		if (u >= 0xd800 && u <= 0xdbff) {
			unsigned lo;

			if (n - i < 6 || p[i] != '\\' || p[i + 1] != 'u')
				return false;
			lo = hex4(p + i + 2);
			if (lo < 0xdc00 || lo > 0xdfff)
				return false;
			i += 6;
			u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
		}
		if (out) {
			if (u < 0x80) {
				out[o] = (char)u;
			} else if (u < 0x800) {
				out[o] = (char)(0xc0 | (u >> 6));
				out[o + 1] = (char)(0x80 | (u & 0x3f));
			} else if (u < 0x10000) {
				out[o] = (char)(0xe0 | (u >> 12));
				out[o + 1] = (char)(0x80 | ((u >> 6) & 0x3f));
				out[o + 2] = (char)(0x80 | (u & 0x3f));
			} else {
				out[o] = (char)(0xf0 | (u >> 18));
				out[o + 1] = (char)(0x80 | ((u >> 12) & 0x3f));
				out[o + 2] = (char)(0x80 | ((u >> 6) & 0x3f));
				out[o + 3] = (char)(0x80 | (u & 0x3f));
			}
		}
		o += u < 0x80 ? 1 : u < 0x800 ? 2 : u < 0x10000 ? 3 : 4;
	}
	*ret_len = o;
	return true;
}

bool jsontext_string_is(const char *p, size_t n, const char *want)
{
	char buf[16];
	size_t len, wlen = strlen(want);

	if (n < 2 || !jsontext_string_decode(p + 1, n - 2, NULL, &len) ||
	    len != wlen || len > sizeof(buf))
		return false;
	jsontext_string_decode(p + 1, n - 2, buf, &len);
	return memcmp(buf, want, wlen) == 0;
}

bool jsontext_int(const char *p, size_t n, int64_t *ret)
{
	bool neg = n > 0 && p[0] == '-';
	uint64_t v = 0, max = neg ? (uint64_t)INT64_MAX + 1 : INT64_MAX;

	for (size_t i = neg; i < n; i++) {
		unsigned d;

		if (!is_digit(p[i]))
			return false;
		d = (unsigned)(p[i] - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (neg)
		*ret = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	else
		*ret = (int64_t)v;
	return true;
}

int jsontext_real(const char *p, size_t n, double *ret)
{
	char small[64], *buf = n < sizeof(small) ? small : malloc(n + 1);

	if (!buf)
		return -ENOMEM;
	memcpy(buf, p, n);
	buf[n] = '\0';
	*ret = strtod(buf, NULL);
	if (buf != small)
		free(buf);
	return 0;
}

int jsontext_expected(struct jsontext *t, int tok, size_t at, const char *what)
{
	if (tok == JSONTEXT_END)
		bad(t, t->n, "the text ends early");
	else if (tok != JSONTEXT_BAD) /* else jsontext_next() said why */
		bad(t, at, what);
	return -EPROTO;
}

bool jsontext_member(struct jsontext *t)
{
	size_t start;
	int tok = jsontext_next(t, &start);

	if (tok != JSONTEXT_STRING) {
		jsontext_expected(t, tok, start, "a member name expected");
		return false;
	}
	tok = jsontext_next(t, &start);
	if (tok != ':') {
		jsontext_expected(t, tok, start, "':' expected");
		return false;
	}
	return true;
}

static bool bit_get(const unsigned char *bits, size_t i)
{
	return bits[i / CHAR_BIT] >> (i % CHAR_BIT) & 1;
}

static void bit_set(unsigned char *bits, size_t i, bool v)
{
	unsigned char m = (unsigned char)(1u << (i % CHAR_BIT));

	bits[i / CHAR_BIT] = (unsigned char)(v ? bits[i / CHAR_BIT] | m
					       : bits[i / CHAR_BIT] & ~m);
}

/* No recursion and no depth limit: jansson refuses nesting beyond
 * JSON_PARSER_MAX_DEPTH, and such an entry must not take its page with it.
 * Each open container takes one bit (object or array): on the stack up to
 * JSONTEXT_MAX_DEPTH levels, so text jansson loaded never allocates here;
 * beyond, on the heap, doubling (each level is one byte of text). */
int jsontext_skip(struct jsontext *t, size_t *ret_elems)
{
	unsigned char small[JSONTEXT_MAX_DEPTH / CHAR_BIT], *is_obj = small;
	size_t cap = sizeof(small) * CHAR_BIT, depth = 0, elems = 0, start;
	bool top_array = false;
	int tok, r = -EPROTO;

	for (;;) {
		/* A value is expected. */
		tok = jsontext_next(t, &start);
		if (tok == '{' || tok == '[') {
			size_t save;

			if (depth == cap) {
				unsigned char *p =
					is_obj == small
						? malloc(cap / CHAR_BIT * 2)
						: realloc(is_obj,
							  cap / CHAR_BIT * 2);

				if (!p) {
					r = -ENOMEM;
					goto out;
				}
				if (is_obj == small)
					memcpy(p, small, sizeof(small));
				is_obj = p;
				cap *= 2;
			}
			bit_set(is_obj, depth, tok == '{');
			top_array |= depth == 0 && tok == '[';
			depth++;
			save = t->pos;
			if (jsontext_next(t, &start) ==
			    (tok == '{' ? '}' : ']')) {
				depth--;
			} else {
				t->pos = save;
				if (tok == '{' && !jsontext_member(t))
					goto out;
				continue;
			}
		} else if (tok != JSONTEXT_STRING && tok != JSONTEXT_NUMBER &&
			   tok != JSONTEXT_WORD) {
			jsontext_expected(t, tok, start, "a value expected");
			goto out;
		}
		/* A value is complete: close what it completes. */
		for (;;) {
			bool obj;

			if (depth == 0) {
				r = 0;
				goto out;
			}
			if (depth == 1 && top_array)
				elems++;
			obj = bit_get(is_obj, depth - 1);
			tok = jsontext_next(t, &start);
			if (tok == ',') {
				if (obj && !jsontext_member(t))
					goto out;
				break;
			}
			if (tok != (obj ? '}' : ']')) {
				jsontext_expected(t, tok, start,
						  obj ? "',' or '}' expected"
						      : "',' or ']' expected");
				goto out;
			}
			depth--;
		}
	}
out:
	if (is_obj != small)
		free(is_obj);
	if (r == 0 && ret_elems)
		*ret_elems = elems;
	return r;
}

size_t jsontext_compact(const char *s, size_t n, char *w)
{
	struct jsontext t = {.s = s, .n = n};
	size_t len = 0, start;
	int tok;

	while ((tok = jsontext_next(&t, &start)) != JSONTEXT_END) {
		if (tok == JSONTEXT_BAD)
			return SIZE_MAX;
		if (w)
			memcpy(w + len, s + start, t.pos - start);
		len += t.pos - start;
	}
	return len;
}

void jsontext_where(const char *s, size_t at, size_t *ret_line,
		    size_t *ret_column)
{
	size_t line = 1, bol = 0;

	for (size_t i = 0; i < at; i++)
		if (s[i] == '\n') {
			line++;
			bol = i + 1;
		}
	*ret_line = line;
	*ret_column = at - bol + 1;
}
