/* answer: what the API answers besides list pages.
 *
 * Owns: reading an error body {"error": "..."} into a printable text, and
 * the answers to actions (the run a resume, restart or callback created,
 * the runs of a bulk one, how many a bulk delete deleted); the limits on
 * all of it. Leaves to others: loading the JSON (jsonload.c), what an
 * answer means for the action (api.c, action.c).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "jsonload.h"

int answer_error_text(const char *buf, size_t len, char *ret, size_t retlen)
{
	json_t *root, *v;
	const char *s;
	bool lossy;
	size_t n;
	int r;

	if (!ret || retlen == 0)
		return -EINVAL;
	r = jsonload(buf, len, &root, &lossy);
	if (r < 0)
		return r == -ENOMEM ? -ENOMEM : -EINVAL;
	v = json_object_get(root, "error"); /* NULL when root is not one */
	if (!json_is_string(v)) {
		json_decref(root);
		return -EINVAL;
	}
	s = json_string_value(v);
	n = json_string_length(v);
	if (n > retlen - 1) {
		n = retlen - 1;
		/* jansson checked the UTF-8: back off to a sequence start. */
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		ret[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	ret[n] = '\0';
	json_decref(root);
	return 0;
}

/* A usable workflowRunId: a string, non-empty, bounded, printable. */
static void run_from(json_t *obj, struct answer_run *run)
{
	json_t *id = json_object_get(obj, "workflowRunId");
	json_t *at = json_object_get(obj, "workflowCreatedAt");

	run->run_id[0] = '\0';
	run->created_at = -1;
	if (json_is_string(id)) {
		const char *s = json_string_value(id);
		size_t n = json_string_length(id);
		bool usable = n > 0 && n <= ANSWER_MAX_RUN_ID;

		for (size_t i = 0; usable && i < n; i++)
			if ((unsigned char)s[i] < 0x20 ||
			    (unsigned char)s[i] == 0x7f)
				usable = false;
		if (usable) {
			memcpy(run->run_id, s, n);
			run->run_id[n] = '\0';
		}
	}
	if (json_is_integer(at) && json_integer_value(at) >= 0)
		run->created_at = (int64_t)json_integer_value(at);
}

/* Loads @buf as a JSON object: 0, -EPROTO or -ENOMEM. */
static int load_object(const char *buf, size_t len, json_t **ret_root)
{
	json_t *root;
	bool lossy;
	int r = jsonload(buf, len, &root, &lossy);

	if (r < 0)
		return r;
	if (!json_is_object(root)) {
		json_decref(root);
		return -EPROTO;
	}
	*ret_root = root;
	return 0;
}

int answer_run_parse(const char *buf, size_t len, struct answer_run *ret_run)
{
	json_t *root;
	int r = load_object(buf, len, &root);

	if (r < 0)
		return r;
	run_from(root, ret_run);
	json_decref(root);
	return 0;
}

int answer_runs_parse(const char *buf, size_t len, struct answer_runs *ret_runs)
{
	json_t *root, *arr;
	struct answer_run *v;
	size_t n;
	int r = load_object(buf, len, &root);

	if (r < 0)
		return r;
	arr = json_object_get(root, "workflowRuns");
	n = json_array_size(arr);
	if (!json_is_array(arr) || n > ANSWER_MAX_RUNS) {
		json_decref(root);
		return -EPROTO;
	}
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		json_decref(root);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		run_from(json_array_get(arr, i), &v[i]); /* NULL: absent */
	json_decref(root);
	ret_runs->v = v;
	ret_runs->n = n;
	return 0;
}

void answer_runs_release(struct answer_runs *runs)
{
	if (!runs)
		return;
	free(runs->v);
	runs->v = NULL;
	runs->n = 0;
}

int answer_deleted_parse(const char *buf, size_t len, uint64_t *ret_deleted)
{
	json_t *root, *d;
	int r = load_object(buf, len, &root);

	if (r < 0)
		return r;
	d = json_object_get(root, "deleted");
	if (!json_is_integer(d) || json_integer_value(d) < 0) {
		json_decref(root);
		return -EPROTO;
	}
	*ret_deleted = (uint64_t)json_integer_value(d);
	json_decref(root);
	return 0;
}
