/* message_record: one run of the cache, written and read back.
 *
 * Owns the layout of a record and the checks that make any bytes safe to
 * read: every length and offset within the record, the dlqId a usable
 * one, the text one JSON object, each file's kind known and its size what
 * message_file_measure() makes of its value. Leaves to others what a
 * record holds beside (cache.c: the file, its header, its checksum) and
 * what a message means (message.c, message_file.c).
 *
 * A record: struct rec, then a {at, len} pair per view value (at
 * VALUE_INLINE: its bytes follow the text), then the dlqId, the text and
 * the inline values, without NULs, padded with zeros to a multiple of 8.
 * The message read back is laid out as message.c lays out a parsed one:
 * one allocation, the struct, its view arrays, then the strings, each
 * followed by a NUL.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "message_record.h"

#define VALUE_INLINE UINT32_MAX
#define MAX_VALUES (MESSAGE_MAX_LABELS + VIEW_COUNT - 1)

struct rec {
	uint32_t size; /* of the record, before its padding */
	uint32_t problems;
	int64_t created_ms;
	int64_t wf_created_ms;
	int64_t mtime_sec;
	uint64_t key, json_key;
	uint32_t mtime_nsec;
	uint32_t id_len;
	uint32_t text_len;
	uint8_t has_created, has_wf_created;
	uint8_t file_kind[MESSAGE_NFILES];
	uint32_t file_at[MESSAGE_NFILES];
	uint64_t file_len[MESSAGE_NFILES];
	uint32_t nval[VIEW_COUNT];
};

_Static_assert(sizeof(struct rec) % 8 == 0, "records stay 8-aligned");

struct rec_value {
	uint32_t at, len;
};

static size_t pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

static uint32_t nvalues(const struct message *m)
{
	uint32_t n = 0;

	for (int v = 0; v < VIEW_COUNT; v++)
		n += m->view[v].n;
	return n;
}

/* Where value @b lies in @m's text, or VALUE_INLINE. */
static uint32_t value_at(const struct message *m, const struct message_bytes *b)
{
	const char *t = m->text.data;

	if (b->data >= t && b->data + b->len <= t + m->text.len)
		return (uint32_t)(b->data - t);
	return VALUE_INLINE;
}

size_t message_record_size(const struct message *m)
{
	size_t n = sizeof(struct rec) + nvalues(m) * sizeof(struct rec_value);

	if (m->text.len >= UINT32_MAX || m->id.len >= UINT32_MAX)
		return 0;
	n += m->id.len + m->text.len;
	for (int v = 0; v < VIEW_COUNT; v++)
		for (uint32_t i = 0; i < m->view[v].n; i++)
			if (value_at(m, &m->view[v].v[i]) == VALUE_INLINE)
				n += m->view[v].v[i].len;
	return n >= UINT32_MAX ? 0 : pad8(n);
}

void message_record_write(const struct message *m,
			  const struct message_record_run *run, char *buf)
{
	struct rec *r = (struct rec *)buf;
	struct rec_value *val = (struct rec_value *)(r + 1);
	char *w = (char *)(val + nvalues(m));
	size_t k = 0;

	memset(r, 0, sizeof(*r));
	r->problems = m->problems;
	r->created_ms = m->created_ms;
	r->wf_created_ms = m->wf_created_ms;
	r->mtime_sec = run->json_mtime.tv_sec;
	r->mtime_nsec = (uint32_t)run->json_mtime.tv_nsec;
	r->key = run->key;
	r->json_key = run->json_key;
	r->id_len = (uint32_t)m->id.len;
	r->text_len = (uint32_t)m->text.len;
	r->has_created = m->has_created;
	r->has_wf_created = m->has_wf_created;
	for (int f = 0; f < MESSAGE_NFILES; f++) {
		r->file_kind[f] = m->file_kind[f];
		r->file_at[f] = (uint32_t)m->file_at[f];
		r->file_len[f] = m->file_len[f];
	}
	memcpy(w, m->id.data, m->id.len);
	w += m->id.len;
	memcpy(w, m->text.data, m->text.len);
	w += m->text.len;
	for (int v = 0; v < VIEW_COUNT; v++) {
		r->nval[v] = m->view[v].n;
		for (uint32_t i = 0; i < m->view[v].n; i++, k++) {
			const struct message_bytes *b = &m->view[v].v[i];

			val[k].at = value_at(m, b);
			val[k].len = (uint32_t)b->len;
			if (val[k].at == VALUE_INLINE) {
				memcpy(w, b->data, b->len);
				w += b->len;
			}
		}
	}
	r->size = (uint32_t)(w - buf);
	memset(w, 0, pad8(r->size) - r->size);
}

/* Whether each file's kind is known and its value, in the text @s (@n
 * bytes), starts as that kind reads it: one byte each, not the whole
 * text (see message_record_read()). */
static bool files_check(const struct rec *r, const char *s, size_t n)
{
	for (int f = 0; f < MESSAGE_NFILES; f++) {
		uint8_t kind = r->file_kind[f];
		char c;

		if (kind == MESSAGE_FILE_NONE)
			continue;
		if (kind > MESSAGE_FILE_JSON ||
		    (f == MESSAGE_JSON) != (kind == MESSAGE_FILE_JSON) ||
		    r->file_len[f] >= SIZE_MAX)
			return false;
		if (kind == MESSAGE_FILE_JSON)
			continue;
		if (r->file_at[f] >= n)
			return false;
		c = s[r->file_at[f]];
		if (kind == MESSAGE_FILE_HEADER ? c != '{'
		    : kind == MESSAGE_FILE_INT
			    ? !(c == '-' || (c >= '0' && c <= '9'))
			    : c != '"')
			return false;
	}
	return true;
}

/* The bytes of value @v of a record: in @text, or inline after @extra
 * (the values before it in @all say where). */
static const char *value_bytes(const struct rec_value *v, const char *text,
			       const char *extra, const struct rec_value *all)
{
	if (v->at != VALUE_INLINE)
		return text + v->at;
	for (const struct rec_value *o = all; o < v; o++)
		if (o->at == VALUE_INLINE)
			extra += o->len;
	return extra;
}

static bool same_value(const struct rec_value *a, const struct rec_value *b,
		       const char *text, const char *extra,
		       const struct rec_value *all)
{
	return a->len == b->len &&
	       !memcmp(value_bytes(a, text, extra, all),
		       value_bytes(b, text, extra, all), a->len);
}

ssize_t message_record_read(const char *p, size_t n, struct message **ret_msg,
			    struct message_record_run *ret_run)
{
	const struct rec *r = (const struct rec *)p;
	const struct rec_value *val;
	const char *id, *text, *extra;
	struct message *m;
	struct message_bytes *arr;
	size_t total, need, nval = 0, inl = 0, k = 0;
	char *w;

	if (n < sizeof(*r) || r->size < sizeof(*r) || r->size > n ||
	    pad8(r->size) > n)
		return -EINVAL;
	for (int v = 0; v < VIEW_COUNT; v++) {
		if (r->nval[v] > MAX_VALUES ||
		    (v != VIEW_LABEL && r->nval[v] > 1))
			return -EINVAL;
		nval += r->nval[v];
	}
	need = sizeof(*r) + nval * sizeof(*val);
	if (need > r->size || r->id_len == 0 || r->id_len > MESSAGE_MAX_ID ||
	    r->id_len > r->size - need ||
	    r->text_len > r->size - need - r->id_len)
		return -EINVAL;
	val = (const struct rec_value *)(r + 1);
	id = (const char *)(val + nval);
	text = id + r->id_len;
	extra = text + r->text_len;
	for (size_t i = 0; i < nval; i++) {
		if (val[i].at == VALUE_INLINE) {
			if (val[i].len >
			    r->size - need - r->id_len - r->text_len - inl)
				return -EINVAL;
			inl += val[i].len;
		} else if (val[i].at > r->text_len ||
			   val[i].len > r->text_len - val[i].at) {
			return -EINVAL;
		}
		if (val[i].len == 0)
			return -EINVAL; /* views hold no empty value */
	}
	/* a label once, as message.c keeps them */
	for (size_t i = 0; i < r->nval[VIEW_LABEL]; i++)
		for (size_t j = 0; j < i; j++)
			if (same_value(&val[i], &val[j], text, extra, val))
				return -EINVAL;
	if (need + r->id_len + r->text_len + inl != r->size ||
	    memchr(id, '\0', r->id_len) || r->mtime_nsec >= 1000000000u ||
	    r->has_created > 1 || r->has_wf_created > 1)
		return -EINVAL;
	/* an object, as far as its ends tell */
	if (r->text_len < 2 || text[0] != '{' || text[r->text_len - 1] != '}' ||
	    !files_check(r, text, r->text_len))
		return -EINVAL;

	total = sizeof(*m) + nval * sizeof(*arr) + r->id_len + 1 + r->text_len +
		1 + inl + nval;
	m = malloc(total);
	if (!m)
		return -ENOMEM;
	memset(m, 0, sizeof(*m));
	atomic_init(&m->refs, 1);
	arr = (struct message_bytes *)(m + 1);
	w = (char *)(arr + nval);
	memcpy(w, id, r->id_len);
	w[r->id_len] = '\0';
	m->id = (struct message_bytes){w, r->id_len};
	w += r->id_len + 1;
	memcpy(w, text, r->text_len);
	w[r->text_len] = '\0';
	m->text = (struct message_bytes){w, r->text_len};
	w += r->text_len + 1;
	for (int v = 0; v < VIEW_COUNT; v++) {
		m->view[v].n = r->nval[v];
		m->view[v].v = r->nval[v] ? arr + k : NULL;
		for (uint32_t i = 0; i < r->nval[v]; i++, k++) {
			if (val[k].at != VALUE_INLINE) {
				arr[k] = (struct message_bytes){
					m->text.data + val[k].at, val[k].len};
				continue;
			}
			memcpy(w, extra, val[k].len);
			w[val[k].len] = '\0';
			arr[k] = (struct message_bytes){w, val[k].len};
			extra += val[k].len;
			w += val[k].len + 1;
		}
	}
	m->problems = r->problems;
	m->created_ms = r->created_ms;
	m->has_created = r->has_created;
	m->wf_created_ms = r->wf_created_ms;
	m->has_wf_created = r->has_wf_created;
	for (int f = 0; f < MESSAGE_NFILES; f++) {
		m->file_kind[f] = r->file_kind[f];
		m->file_at[f] = r->file_kind[f] ? r->file_at[f] : 0;
		m->file_len[f] = r->file_kind[f] ? (size_t)r->file_len[f] : 0;
	}
	*ret_msg = m;
	ret_run->json_mtime =
		(struct timespec){(time_t)r->mtime_sec, (long)r->mtime_nsec};
	ret_run->key = r->key;
	ret_run->json_key = r->json_key;
	return (ssize_t)pad8(r->size);
}
