/* fuzz_page: message_page_parse() and answer_error_text() on any bytes.
 * Beyond not crashing or leaking: a page respects its limits, its messages
 * are its entries in order (message.json of each loads, and re-indents to
 * itself; its tokens are in the page, in order; when jansson loads the
 * page, as the oracle, each is equal to its entry), a failure leaves the
 * output untouched with a printable reason, and error texts are printable
 * and fit their buffer. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "answer.h"
#include "message.h"
#include "message_page.h"
#include "../unit/msgfile.h"
#include "fuzz.h"

/* @s (@n bytes) without the whitespace between tokens, in a new buffer;
 * its length in *@ret_n. */
static char *squeeze(const char *s, size_t n, size_t *ret_n)
{
	char *o = malloc(n ? n : 1);
	bool in_string = false, escaped = false;
	size_t k = 0;

	CHECK(o);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (escaped)
			escaped = false;
		else if (in_string && c == '\\')
			escaped = true;
		else if (c == '"')
			in_string = !in_string;
		else if (!in_string &&
			 (c == ' ' || c == '\t' || c == '\n' || c == '\r'))
			continue;
		o[k++] = c;
	}
	*ret_n = k;
	return o;
}

/* Each message.json loads and re-indents to itself, and its tokens are
 * in the page, after those of the message before. When jansson loads the
 * page whole (the oracle), each message is also the next entry equal to
 * its message.json (malformed entries are skipped). */
static void check_entries(const struct message_page *pg, const uint8_t *data,
			  size_t size)
{
	const size_t flags = JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL;
	json_t *root = json_loadb((const char *)data, size, flags, NULL);
	json_t *msgs = json_object_get(root, "messages");
	size_t e = 0, sn, at = 0;
	char *sq = squeeze((const char *)data, size, &sn);

	CHECK(!root || pg->n == 0 || json_is_array(msgs));
	for (size_t i = 0; i < pg->n; i++) {
		const struct message_bytes *j =
			file_of(pg->msgs[i], MESSAGE_JSON);
		struct message *m2 = NULL;
		size_t mn;
		char *mq, *found;
		json_t *v;

		if (!j->data)
			continue; /* over its render budget */
		v = json_loadb(j->data, j->len, flags, NULL);
		CHECK(v);
		if (root) {
			while (e < json_array_size(msgs) &&
			       !json_equal(json_array_get(msgs, e), v))
				e++;
			CHECK(e < json_array_size(msgs));
			e++;
		}
		json_decref(v);
		mq = squeeze(j->data, j->len, &mn);
		found = memmem(sq + at, sn - at, mq, mn);
		CHECK(found);
		at = (size_t)(found - sq) + mn;
		free(mq);
		CHECK(message_parse(j->data, j->len, &m2) == 0);
		CHECK(file_of(m2, MESSAGE_JSON)->data &&
		      file_of(m2, MESSAGE_JSON)->len == j->len &&
		      memcmp(file_of(m2, MESSAGE_JSON)->data, j->data,
			     j->len) == 0);
		message_free(m2);
	}
	free(sq);
	json_decref(root);
}

static void check_page(const struct message_page *pg, size_t size)
{
	CHECK(pg->bytes == size);
	CHECK(pg->n + pg->malformed <= MESSAGE_PAGE_MAX_MESSAGES);
	CHECK(pg->n == 0 || pg->msgs);
	if (pg->cursor) {
		size_t n = strlen(pg->cursor);

		CHECK(n > 0 && n <= MESSAGE_PAGE_MAX_CURSOR);
	}
	for (size_t i = 0; i < pg->n; i++) {
		const struct message *m = pg->msgs[i];

		CHECK(m && m->id.len > 0 && m->id.data[m->id.len] == '\0');
		CHECK(strlen(m->id.data) == m->id.len);
		for (int f = 0; f < MESSAGE_NFILES; f++) {
			/* renders to its size, the same twice */
			const struct message_bytes *b = file_of(m, f);

			CHECK(!b->data || b->data[b->len] == '\0');
		}
		for (int v = 0; v < VIEW_COUNT; v++)
			for (uint32_t k = 0; k < m->view[v].n; k++)
				CHECK(m->view[v].v[k].len > 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t retlens[] = {1, 2, 7, 100};
	struct message_page pg;
	char err[96], text[100];
	int r;

	memset(&pg, 0x5a, sizeof(pg));
	memset(err, 0, sizeof(err));
	r = message_page_parse((const char *)data, size, &pg, err, sizeof(err));
	if (r == 0) {
		check_page(&pg, size);
		check_entries(&pg, data, size);
		message_page_release(&pg);
		files_release();
		CHECK(pg.cursor == NULL && pg.msgs == NULL && pg.n == 0);
	} else {
		CHECK(r == -EPROTO || r == -ENOMEM);
		CHECK(((unsigned char *)&pg)[0] == 0x5a);
		CHECK(err[0] != '\0' && strlen(err) < sizeof(err));
		for (const char *p = err; *p; p++)
			CHECK(*p >= 0x20 && *p < 0x7f);
	}

	for (size_t i = 0; i < sizeof(retlens) / sizeof(retlens[0]); i++) {
		memset(text, 'Z', sizeof(text));
		r = answer_error_text((const char *)data, size, text,
				      retlens[i]);
		if (r < 0) {
			CHECK(r == -EINVAL || r == -ENOMEM);
			CHECK(text[0] == 'Z');
			continue;
		}
		CHECK(strlen(text) < retlens[i]);
		for (const char *p = text; *p; p++)
			CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
	}
	return 0;
}
