/* jsontext: JSON as bytes (RFC 8259), without building a tree.
 *
 * message.json is an entry's own bytes re-indented, and a page is read by
 * where its values lie in what was received: both need JSON read as text,
 * token by token, where jansson only gives values. Everything here is
 * strict (RFC 8259 tokens), never reads past the end of the text, and
 * never allocates except where it says so.
 */
#ifndef DLQFS_JSONTEXT_H
#define DLQFS_JSONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The deepest nesting jansson accepts (JSON_PARSER_MAX_DEPTH, checked
 * where jansson is included): text deeper than this is not text jansson
 * loaded. */
#define JSONTEXT_MAX_DEPTH 2048

/* Tokens: the structural characters themselves ('{', '}', '[', ']', ',',
 * ':'), and these. */
enum {
	JSONTEXT_BAD = -1, /* not a JSON token */
	JSONTEXT_END = 0,  /* nothing but whitespace left */
	JSONTEXT_STRING = '"',
	JSONTEXT_NUMBER = '0',
	JSONTEXT_WORD = 'w', /* true, false, null */
};

/* A text being read: @s (@n bytes, borrowed), read up to @pos. When
 * reading fails, @why says what is wrong (printable ASCII, static) and
 * @why_at where (a byte offset, @n: at the end). */
struct jsontext {
	const char *s;
	size_t n, pos;
	const char *why;
	size_t why_at;
};

/* Moves t->pos past JSON whitespace (space, tab, CR, LF). */
void jsontext_skip_ws(struct jsontext *t);

/* Reads the next token: returns its kind, its first byte in *@ret_start,
 * and leaves t->pos after it (JSONTEXT_BAD: on it, with t->why set). A
 * string token has its escapes checked and no raw control byte; its bytes
 * are not checked as UTF-8 (utf8.h does that). */
int jsontext_next(struct jsontext *t, size_t *ret_start);

/* Reads a member name then ":"; false (t->why set) when the text there
 * is not that. */
bool jsontext_member(struct jsontext *t);

/* For a reader that met token @tok (at @at) where it expected something
 * else: sets t->why to @what ("':' expected"), or to what is wrong with
 * the token itself (JSONTEXT_BAD) or "the text ends early"
 * (JSONTEXT_END). Returns -EPROTO. */
int jsontext_expected(struct jsontext *t, int tok, size_t at, const char *what);

/* Skips the one value at t->pos (leading whitespace included), as
 * strictly as a parser reads it, without recursion and at any depth. Up
 * to JSONTEXT_MAX_DEPTH levels nothing is allocated; beyond, one bit per
 * level on the heap (at most a quarter of the text's size). When the
 * value is an array, its elements are counted in *@ret_elems (when not
 * NULL). Returns 0, -EPROTO (not one JSON value: t->why says why) or
 * -ENOMEM. */
int jsontext_skip(struct jsontext *t, size_t *ret_elems);

/* Copies the tokens of @s (@n bytes) into @w without the whitespace
 * between them, or only measures when @w is NULL. Returns the length, or
 * SIZE_MAX when @s is not a run of JSON tokens (the structure is not
 * checked). */
size_t jsontext_compact(const char *s, size_t n, char *w);

/* Decodes the body of a string token (@p, the @n bytes between its
 * quotes, as jsontext_next() accepted them) as jansson does, into @out
 * (room for @n bytes: the value is never longer), or only measures when
 * @out is NULL; the length in *@ret_len. Returns false for an escape
 * jansson refuses (a lone surrogate), @ret_len untouched. */
bool jsontext_string_decode(const char *p, size_t n, char *out,
			    size_t *ret_len);

/* Whether the string token @p (@n bytes, quotes included) means @want (a
 * short ASCII string, under 16 bytes), however it is escaped. */
bool jsontext_string_is(const char *p, size_t n, const char *want);

/* The number token @p (@n bytes) as an integer in @ret, when it is an
 * integer literal (no fraction, no exponent) that fits in 64 bits; false
 * for anything else. */
bool jsontext_int(const char *p, size_t n, int64_t *ret);

/* The number token @p (@n bytes) as the double jansson makes of it (it
 * calls strtod() too; dlqfs never changes the locale), in @ret. Returns 0
 * or -ENOMEM. */
int jsontext_real(const char *p, size_t n, double *ret);

/* Where byte @at of the text @s lies, for people: its line and column
 * (in bytes), both counted from 1. */
void jsontext_where(const char *s, size_t at, size_t *ret_line,
		    size_t *ret_column);

#endif
