/* message_record: one run of the cache, written and read back.
 *
 * Owns the layout of an index record and the checks that make any bytes
 * safe to read back: every length and offset within bounds, the dlqId a
 * usable one, view values non-empty and once, each file's kind known.
 * Leaves to others what the cache holds beside (cache.c: the file, its
 * sections, header and checksums, the NULs after the texts) and what a
 * message means (message.c, message_file.c).
 *
 * An index record: struct rec, then the length of each view value
 * (uint32_t), then the dlqId and each value, each followed by a NUL,
 * padded with zeros to a multiple of 8. View values are all kept here,
 * not pointed at in the text: building the views then never reads a
 * text. A message read back is laid out as message.c lays out a parsed
 * one (the struct, then its view arrays, then its strings, each followed
 * by a NUL), or, with a store, the struct and its view arrays alone, its
 * strings in the store.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "message_record.h"

#define MAX_VALUES (MESSAGE_MAX_LABELS + VIEW_COUNT - 1)

struct rec {
	uint32_t size; /* of the record, before its padding */
	uint32_t problems;
	int64_t created_ms;
	int64_t wf_created_ms;
	int64_t mtime_sec;
	uint64_t key, json_key;
	uint64_t text_at;
	uint32_t text_len;
	uint32_t mtime_nsec;
	uint32_t id_len;
	uint8_t has_created, has_wf_created;
	uint8_t nval[VIEW_COUNT];
	uint8_t file_kind[MESSAGE_NFILES];
	uint32_t file_at[MESSAGE_NFILES];
	uint32_t file_len[MESSAGE_NFILES];
};

_Static_assert(sizeof(struct rec) % 8 == 0, "records stay 8-aligned");
_Static_assert(MAX_VALUES <= UINT8_MAX, "value counts fit a byte");

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

size_t message_record_size(const struct message *m)
{
	size_t n = sizeof(struct rec) + nvalues(m) * sizeof(uint32_t);

	if (m->text.len >= UINT32_MAX || m->id.len >= UINT32_MAX)
		return 0;
	for (int f = 0; f < MESSAGE_NFILES; f++)
		if (m->file_len[f] >= UINT32_MAX)
			return 0;
	n += m->id.len + 1;
	for (int v = 0; v < VIEW_COUNT; v++)
		for (uint32_t i = 0; i < m->view[v].n; i++)
			n += m->view[v].v[i].len + 1;
	return n >= UINT32_MAX ? 0 : pad8(n);
}

static char *put(char *w, const struct message_bytes *b)
{
	memcpy(w, b->data, b->len);
	w[b->len] = '\0';
	return w + b->len + 1;
}

void message_record_write(const struct message *m,
			  const struct message_record_run *run,
			  uint64_t text_at, char *buf)
{
	struct rec *r = (struct rec *)buf;
	uint32_t *len = (uint32_t *)(r + 1);
	char *w = (char *)(len + nvalues(m));
	size_t k = 0;

	memset(r, 0, sizeof(*r));
	r->problems = m->problems;
	r->created_ms = m->created_ms;
	r->wf_created_ms = m->wf_created_ms;
	r->mtime_sec = run->json_mtime.tv_sec;
	r->mtime_nsec = (uint32_t)run->json_mtime.tv_nsec;
	r->key = run->key;
	r->json_key = run->json_key;
	r->text_at = text_at;
	r->text_len = (uint32_t)m->text.len;
	r->id_len = (uint32_t)m->id.len;
	r->has_created = m->has_created;
	r->has_wf_created = m->has_wf_created;
	for (int f = 0; f < MESSAGE_NFILES; f++) {
		r->file_kind[f] = m->file_kind[f];
		r->file_at[f] = (uint32_t)m->file_at[f];
		r->file_len[f] = (uint32_t)m->file_len[f];
	}
	w = put(w, &m->id);
	for (int v = 0; v < VIEW_COUNT; v++) {
		r->nval[v] = (uint8_t)m->view[v].n;
		for (uint32_t i = 0; i < m->view[v].n; i++, k++) {
			len[k] = (uint32_t)m->view[v].v[i].len;
			w = put(w, &m->view[v].v[i]);
		}
	}
	r->size = (uint32_t)(w - buf);
	memset(w, 0, pad8(r->size) - r->size);
}

/* Whether each file's kind is known, and its value within the text. */
static bool files_check(const struct rec *r)
{
	for (int f = 0; f < MESSAGE_NFILES; f++) {
		uint8_t kind = r->file_kind[f];

		if (kind == MESSAGE_FILE_NONE)
			continue;
		if (kind > MESSAGE_FILE_JSON ||
		    (f == MESSAGE_JSON) != (kind == MESSAGE_FILE_JSON))
			return false;
		if (kind != MESSAGE_FILE_JSON && r->file_at[f] >= r->text_len)
			return false;
	}
	return true;
}

ssize_t message_record_read(const char *p, size_t n, uint64_t text_at,
			    const char *texts, size_t ntexts,
			    struct message_store *store,
			    struct message **ret_msg,
			    struct message_record_run *ret_run)
{
	const struct rec *r = (const struct rec *)p;
	const uint32_t *len;
	const char *str[1 + MAX_VALUES];
	struct message_bytes *arr;
	struct message *m;
	size_t nval = 0, need, at, total, k = 0;
	char *w;

	if (n < sizeof(*r) || r->size < sizeof(*r) || pad8(r->size) > n)
		return -EINVAL;
	for (int v = 0; v < VIEW_COUNT; v++) {
		if (r->nval[v] > (v == VIEW_LABEL ? MESSAGE_MAX_LABELS : 1))
			return -EINVAL;
		nval += r->nval[v];
	}
	need = sizeof(*r) + nval * sizeof(uint32_t);
	if (need > r->size || r->id_len == 0 || r->id_len > MESSAGE_MAX_ID ||
	    r->text_at != text_at || r->text_len < 2 || ntexts < 1 ||
	    r->text_len > ntexts - 1 || text_at > ntexts - 1 - r->text_len ||
	    !files_check(r) || r->mtime_nsec >= 1000000000u ||
	    r->has_created > 1 || r->has_wf_created > 1)
		return -EINVAL;
	len = (const uint32_t *)(r + 1);
	/* the dlqId, then each value: within the record, each followed by a
	 * NUL, none empty; the dlqId without a NUL inside */
	at = need;
	for (size_t i = 0; i <= nval; i++) {
		size_t l = i == 0 ? r->id_len : len[i - 1];

		if ((i > 0 && l == 0) || l >= r->size - at || p[at + l] != '\0')
			return -EINVAL;
		str[i] = p + at;
		at += l + 1;
	}
	if (at != r->size || memchr(str[0], '\0', r->id_len))
		return -EINVAL;
	/* a label once, as message.c keeps them */
	for (size_t i = 0; i < r->nval[VIEW_LABEL]; i++)
		for (size_t j = 0; j < i; j++)
			if (len[i] == len[j] &&
			    !memcmp(str[1 + i], str[1 + j], len[i]))
				return -EINVAL;

	total = sizeof(*m) + nval * sizeof(*arr);
	if (!store)
		total += at - need + r->text_len + 1;
	m = malloc(total);
	if (!m)
		return -ENOMEM;
	memset(m, 0, sizeof(*m));
	atomic_init(&m->refs, 1);
	arr = (struct message_bytes *)(m + 1);
	w = (char *)(arr + nval);
	if (store) {
		/* the strings stay where they are */
		m->id = (struct message_bytes){str[0], r->id_len};
		m->text = (struct message_bytes){texts + text_at, r->text_len};
		for (size_t i = 0; i < nval; i++)
			arr[i] = (struct message_bytes){str[1 + i], len[i]};
		atomic_fetch_add_explicit(&store->refs, 1,
					  memory_order_relaxed);
		m->store = store;
	} else {
		if (texts[text_at + r->text_len] != '\0') {
			free(m);
			return -EINVAL;
		}
		memcpy(w, p + need, at - need);
		m->id = (struct message_bytes){w, r->id_len};
		for (size_t i = 0; i < nval; i++)
			arr[i] = (struct message_bytes){
				w + (str[1 + i] - str[0]), len[i]};
		w += at - need;
		memcpy(w, texts + text_at, r->text_len + 1);
		m->text = (struct message_bytes){w, r->text_len};
	}
	for (int v = 0; v < VIEW_COUNT; v++) {
		m->view[v].n = r->nval[v];
		m->view[v].v = r->nval[v] ? arr + k : NULL;
		k += r->nval[v];
	}
	m->problems = r->problems;
	m->created_ms = r->created_ms;
	m->has_created = r->has_created;
	m->wf_created_ms = r->wf_created_ms;
	m->has_wf_created = r->has_wf_created;
	for (int f = 0; f < MESSAGE_NFILES; f++) {
		m->file_kind[f] = r->file_kind[f];
		m->file_at[f] = r->file_kind[f] ? r->file_at[f] : 0;
		m->file_len[f] = r->file_kind[f] ? r->file_len[f] : 0;
	}
	*ret_msg = m;
	ret_run->json_mtime =
		(struct timespec){(time_t)r->mtime_sec, (long)r->mtime_nsec};
	ret_run->key = r->key;
	ret_run->json_key = r->json_key;
	return (ssize_t)pad8(r->size);
}
