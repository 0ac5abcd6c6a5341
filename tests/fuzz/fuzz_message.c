/* fuzz_message: message_parse() on any bytes. Beyond not crashing or
 * leaking, a rendered message must be well formed (a NUL after its id and
 * its text, every file rendering to its size and to the same bytes twice,
 * no empty or duplicate view values, bounded counts), message.json
 * must be the input re-indented (the same tokens, byte for byte, and the
 * same value to jansson), and rendering must be idempotent: parsing
 * message.json again gives the same message.json, files and views.
 * (jansson is used here as the oracle.) */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "message.h"
#include "../unit/msgfile.h"
#include "fuzz.h"

static bool same(const struct message_bytes *a, const struct message_bytes *b)
{
	if (!a->data || !b->data)
		return !a->data && !b->data;
	return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* @s without the whitespace between tokens, in a new buffer. */
static char *squeeze(const char *s, size_t n, size_t *ret_len)
{
	char *out = malloc(n + 1);
	bool in = false;
	size_t o = 0;

	CHECK(out);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!in && (c == ' ' || c == '\t' || c == '\n' || c == '\r'))
			continue;
		out[o++] = c;
		if (in && c == '\\' && i + 1 < n)
			out[o++] = s[++i];
		else if (c == '"')
			in = !in;
	}
	*ret_len = o;
	return out;
}

/* message.json is the text @data re-indented: same tokens, same value. */
static void check_verbatim(const uint8_t *data, size_t size,
			   const struct message_bytes *j)
{
	const size_t flags = JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL;
	size_t na, nb;
	char *a = squeeze((const char *)data, size, &na);
	char *b = squeeze(j->data, j->len, &nb);
	json_t *x, *y;

	CHECK(na == nb && memcmp(a, b, na) == 0);
	free(a);
	free(b);
	x = json_loadb((const char *)data, size, flags, NULL);
	y = json_loadb(j->data, j->len, flags, NULL);
	CHECK(x && y && json_equal(x, y));
	json_decref(x);
	json_decref(y);
}

static void check_message(const struct message *m)
{
	const struct message_bytes *file[MESSAGE_NFILES], *j;

	/* file_of() checks that each renders to its size, the same twice */
	for (int f = 0; f < MESSAGE_NFILES; f++) {
		file[f] = file_of(m, f);
		CHECK(!file[f]->data || file[f]->data[file[f]->len] == '\0');
		CHECK(message_file_same(m, m, f));
	}
	j = file[MESSAGE_JSON];
	CHECK(m->id.data && m->id.len > 0 && m->id.len <= MESSAGE_MAX_ID);
	CHECK(m->id.data[m->id.len] == '\0');
	CHECK(strlen(m->id.data) == m->id.len);
	CHECK(m->text.data && m->text.data[m->text.len] == '\0');
	if (j->data) {
		CHECK(j->len >= 3 && j->data[0] == '{');
		CHECK(j->data[j->len - 2] == '}' &&
		      j->data[j->len - 1] == '\n');
	}
	if (file[MESSAGE_RESPONSE_STATUS]->len)
		CHECK(file[MESSAGE_RESPONSE_STATUS]
			      ->data[file[MESSAGE_RESPONSE_STATUS]->len - 1] ==
		      '\n');
	for (int f = MESSAGE_HEADER; f <= MESSAGE_RESPONSE_HEADER;
	     f += MESSAGE_RESPONSE_HEADER - MESSAGE_HEADER) {
		const struct message_bytes *h = file[f];
		size_t lines = 0;

		if (!h->data)
			continue;
		for (size_t i = 0; i < h->len; i++) {
			CHECK(h->data[i] != '\r');
			lines += h->data[i] == '\n';
		}
		CHECK(h->len == 0 || h->data[h->len - 1] == '\n');
		CHECK(lines <= MESSAGE_MAX_HEADER_VALUES);
	}
	for (int v = 0; v < VIEW_COUNT; v++) {
		CHECK(m->view[v].n <=
		      (v == VIEW_LABEL ? MESSAGE_MAX_LABELS : 1));
		CHECK((m->view[v].n == 0) == (m->view[v].v == NULL));
		for (uint32_t i = 0; i < m->view[v].n; i++) {
			const struct message_bytes *b = &m->view[v].v[i];

			CHECK(b->data && b->len > 0);
			for (uint32_t k = 0; k < i; k++)
				CHECK(!same(&m->view[v].v[k], b));
		}
	}
	CHECK((m->view[VIEW_DATE].n == 1) <= m->has_created);
}

/* The oracle's header file: jansson's keys sorted by their bytes, one
 * line per string value, CR and LF as spaces, at most
 * MESSAGE_MAX_HEADER_VALUES lines. */
static int key_cmp(const void *a, const void *b)
{
	const char *const *x = a, *const *y = b;

	return strcmp(*x, *y); /* jansson refuses a NUL in a key */
}

static void put_line(char **w, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		*(*w)++ = (p[i] == '\r' || p[i] == '\n') ? ' ' : p[i];
}

static void check_header(json_t *h, const struct message_bytes *file)
{
	size_t nk = json_object_size(h), k = 0, lines = 0, cap = 0;
	const char **keys = calloc(nk ? nk : 1, sizeof(*keys));
	const char *key;
	json_t *v;
	char *want, *w;

	CHECK(keys);
	json_object_foreach(h, key, v)
	{
		size_t nv = json_is_array(v) ? json_array_size(v) : 1;

		keys[k++] = key;
		for (size_t j = 0; j < nv; j++) {
			json_t *e = json_is_array(v) ? json_array_get(v, j) : v;

			if (json_is_string(e))
				cap += strlen(key) + 3 + json_string_length(e);
		}
	}
	qsort(keys, k, sizeof(*keys), key_cmp);
	want = w = malloc(cap ? cap : 1);
	CHECK(want);
	for (size_t i = 0; i < k && lines < MESSAGE_MAX_HEADER_VALUES; i++) {
		size_t nv;

		v = json_object_get(h, keys[i]);
		nv = json_is_array(v) ? json_array_size(v) : 1;
		for (size_t j = 0; j < nv && lines < MESSAGE_MAX_HEADER_VALUES;
		     j++) {
			json_t *e = json_is_array(v) ? json_array_get(v, j) : v;

			if (!json_is_string(e))
				continue;
			put_line(&w, keys[i], strlen(keys[i]));
			*w++ = ':';
			*w++ = ' ';
			put_line(&w, json_string_value(e),
				 json_string_length(e));
			*w++ = '\n';
			lines++;
		}
	}
	CHECK((size_t)(w - want) == file->len &&
	      (file->len == 0 || !memcmp(want, file->data, file->len)));
	free(want);
	free(keys);
}

/* The files jansson can tell us (not base64, not message.json): what the
 * message renders from its text is what jansson reads in the entry.
 * Only for text jansson loads without reading integers as reals. */
static void check_oracle(const uint8_t *data, size_t size,
			 const struct message *m)
{
	json_t *root =
		json_loadb((const char *)data, size, JSON_ALLOW_NUL, NULL);
	static const char *const heads[] = {"header", "responseHeader"};
	static const enum message_file hfiles[] = {MESSAGE_HEADER,
						   MESSAGE_RESPONSE_HEADER};
	static const char *const bodies[][2] = {
		{"body", "bodyBase64"}, {"responseBody", "responseBodyBase64"}};
	static const enum message_file bfiles[] = {MESSAGE_BODY,
						   MESSAGE_RESPONSE_BODY};
	const struct message_bytes *f;
	json_t *v, *v64;

	if (!root)
		return;
	for (int i = 0; i < 2; i++) {
		f = file_of(m, hfiles[i]);
		v = json_object_get(root, heads[i]);
		if (f->data)
			check_header(v, f);
		else
			CHECK(!json_is_object(v) || m->problems > 0);
		f = file_of(m, bfiles[i]);
		v = json_object_get(root, bodies[i][0]);
		v64 = json_object_get(root, bodies[i][1]);
		if (json_is_string(v64) && json_string_length(v64) > 0)
			continue; /* base64: the unit tests */
		if (json_is_string(v) && f->data)
			CHECK(f->len == json_string_length(v) &&
			      !memcmp(f->data, json_string_value(v), f->len));
		else if (json_is_string(v64) && f->data)
			CHECK(f->len == 0);
		else if (!json_is_string(v) && !json_is_string(v64))
			CHECK(!f->data);
	}
	f = file_of(m, MESSAGE_RESPONSE_STATUS);
	v = json_object_get(root, "responseStatus");
	if (f->data && json_is_integer(v)) {
		char num[32];
		int n = snprintf(num, sizeof(num), "%lld\n",
				 (long long)json_integer_value(v));

		CHECK(f->len == (size_t)n && !memcmp(f->data, num, f->len));
	} else if (f->data) {
		CHECK(json_is_string(v));
		CHECK(f->len == json_string_length(v) + (f->len > 0));
		CHECK(f->len == 0 ||
		      (!memcmp(f->data, json_string_value(v), f->len - 1) &&
		       f->data[f->len - 1] == '\n'));
	}
	json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct message *m = NULL, *m2 = NULL;
	const struct message_bytes *j;
	int r;

	r = message_parse((const char *)data, size, &m);
	if (r < 0) {
		CHECK(r == -EINVAL || r == -ENOMEM);
		CHECK(m == NULL);
		return 0;
	}
	CHECK(r == 0 && m);
	check_message(m);
	check_oracle(data, size, m);

	j = file_of(m, MESSAGE_JSON);
	if (j->data) {
		check_verbatim(data, size, j);
		r = message_parse(j->data, j->len, &m2);
		CHECK(r == 0);
		check_message(m2);
		/* Re-indenting is idempotent (and fits its budget again). */
		CHECK(file_of(m2, MESSAGE_JSON)->data &&
		      same(file_of(m, MESSAGE_JSON),
			   file_of(m2, MESSAGE_JSON)));
		/* The same tokens: the same compact text, and files that
		 * compare the same when both are there. */
		CHECK(same(&m->text, &m2->text));
		CHECK(message_file_same(m, m2, MESSAGE_JSON));
		for (int f = 0; f < MESSAGE_NFILES; f++)
			CHECK(!message_file_exists(m, f) ||
			      !message_file_exists(m2, f) ||
			      message_file_same(m, m2, f));
		CHECK(same(&m->id, &m2->id));
		CHECK(m->has_created == m2->has_created);
		CHECK(!m->has_created || m->created_ms == m2->created_ms);
		/* Files may only differ by the render budget (message.json
		 * can be shorter than the text it came from). */
		for (int f = 0; f < MESSAGE_NFILES; f++)
			if (file_of(m, f)->data && file_of(m2, f)->data)
				CHECK(same(file_of(m, f), file_of(m2, f)));
		for (int v = 0; v < VIEW_COUNT; v++) {
			CHECK(m->view[v].n == m2->view[v].n);
			for (uint32_t i = 0; i < m->view[v].n; i++)
				CHECK(same(&m->view[v].v[i],
					   &m2->view[v].v[i]));
		}
		message_free(m2);
	}
	message_free(m);
	files_release();
	return 0;
}
