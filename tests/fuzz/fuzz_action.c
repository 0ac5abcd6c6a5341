/* fuzz_action: the control-file parser on any bytes, for every verb, and
 * the log line of whatever ids come out. Beyond not crashing: a parse
 * either fails with a printable reason, or gives 1..ACTION_MAX_IDS
 * distinct ids, none empty, ".", "..", "*", none holding '/', a control
 * byte, or more than API_MAX_ID bytes; options only for resume/restart.
 * Every log line is one line of printable text or UTF-8, ending in "}\n".
 * The same bytes also go to the readers of action answers. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action.h"
#include "action_log.h"
#include "answer.h"
#include "fuzz.h"

/* Names holding "zz" are unknown (for delete, which uses this resolver):
 * the parse must fail. */
static int resolve(void *ctx, const char *name, char **ret_id)
{
	(void)ctx;
	if (strstr(name, "zz"))
		return -ENOENT;
	*ret_id = strdup(name);
	return *ret_id ? 0 : -ENOMEM;
}

static void check_line(const char *line, size_t n)
{
	CHECK(n > 2 && n < ACTION_LOG_LINE_MAX && strlen(line) == n);
	CHECK(line[0] == '{' && line[n - 2] == '}' && line[n - 1] == '\n');
	for (size_t i = 0; i + 1 < n; i++)
		CHECK((unsigned char)line[i] >= 0x20 &&
		      (unsigned char)line[i] != 0x7f);
}

static void check_action(const struct action *act, enum action_verb verb)
{
	CHECK(act->n >= 1 && act->n <= ACTION_MAX_IDS);
	CHECK(act->verb == verb);
	if (verb != ACTION_RESUME && verb != ACTION_RESTART)
		CHECK(act->opt.retries == -1 && !act->opt.delay &&
		      !act->opt.flow_control_key &&
		      !act->opt.flow_control_value);
	CHECK(act->opt.retries >= -1 && act->opt.retries <= ACTION_MAX_RETRIES);
	for (size_t i = 0; i < act->n; i++) {
		const char *id = act->ids[i];
		size_t n = strlen(id);
		struct action_log_entry e = {.verb = "resume",
					     .id = id,
					     .id_len = n,
					     .outcome = "ok",
					     .text = id};
		char line[ACTION_LOG_LINE_MAX];

		CHECK(n >= 1 && n <= API_MAX_ID);
		CHECK(strcmp(id, ".") && strcmp(id, "..") && strcmp(id, "*"));
		CHECK(!strchr(id, '/'));
		CHECK(verb != ACTION_DELETE || !strstr(id, "zz"));
		for (size_t k = 0; k < n; k++)
			CHECK((unsigned char)id[k] >= 0x20 &&
			      (unsigned char)id[k] != 0x7f);
		if (i < 4)
			for (size_t j = i + 1; j < act->n; j++)
				CHECK(strcmp(id, act->ids[j]) != 0);
		if (i < 4)
			check_line(line, action_log_line(&e, line));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct action_log_entry e = {.verb = "delete", .outcome = "error"};
	char line[ACTION_LOG_LINE_MAX];
	struct answer_runs runs = {0};
	struct answer_run run;
	uint64_t deleted;

	for (int v = 0; v < ACTION_NVERBS; v++) {
		struct action *act = NULL;
		char err[256] = "";
		int r = action_parse((enum action_verb)v, buf, size,
				     v == ACTION_DELETE ? resolve : NULL, NULL,
				     &act, err, sizeof(err));

		if (r < 0) {
			CHECK(act == NULL);
			CHECK(err[0]);
			for (const char *p = err; *p; p++)
				CHECK((unsigned char)*p >= 0x20 &&
				      (unsigned char)*p < 0x7f);
			continue;
		}
		check_action(act, (enum action_verb)v);
		action_free(act);
	}

	/* the bytes as an id, a text, and an answer */
	e.id = buf;
	e.id_len = size;
	check_line(line, action_log_line(&e, line));
	if (answer_runs_parse(buf, size, &runs) == 0) {
		CHECK(runs.n <= ANSWER_MAX_RUNS);
		for (size_t i = 0; i < runs.n; i++)
			CHECK(strlen(runs.v[i].run_id) <= ANSWER_MAX_RUN_ID);
		answer_runs_release(&runs);
	}
	if (answer_run_parse(buf, size, &run) == 0)
		CHECK(strlen(run.run_id) <= ANSWER_MAX_RUN_ID);
	answer_deleted_parse(buf, size, &deleted);
	return 0;
}
