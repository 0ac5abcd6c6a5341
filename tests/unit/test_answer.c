/* test_answer: the API's answers besides pages: error bodies {"error":
 * ...} and the answers to actions (a run, the runs of a bulk action, how
 * many a bulk delete deleted). JSON in the error table is written with '
 * for " (see J()) to stay readable. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "jtext.h"
#include "tap.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_error_text(void)
{
	static const struct {
		const char *json;
		size_t retlen;
		int want;
		const char *text;
	} cases[] = {
		{"{'error':'invalid token'}", 64, 0, "invalid token"},
		{"{'error':'a\\nb\\u0000c\\td\\u007f'}", 64, 0, "a b c d "},
		{"{'error':''}", 64, 0, ""},
		{"{'error':'invalid token'}", 4, 0, "inv"},
		{"{'error':'invalid token'}", 1, 0, ""},
		{"{'error':'a\\u00e9b'}", 3, 0, "a"},
		{"{'error':'a\\u00e9b'}", 4, 0, "a\xc3\xa9"},
		{"{'error':'\\u20ac'}", 3, 0, ""},
		{"{'error':'x','other':1}", 64, 0, "x"},
		{"{'error':5}", 64, -EINVAL, NULL},
		{"{'error':null}", 64, -EINVAL, NULL},
		{"{'message':'x'}", 64, -EINVAL, NULL},
		{"['error']", 64, -EINVAL, NULL},
		{"<html>502</html>", 64, -EINVAL, NULL},
		{"", 64, -EINVAL, NULL},
		{"{'error':'x'}", 0, -EINVAL, NULL},
	};

	for (size_t i = 0; i < N(cases); i++) {
		const char *json = J(cases[i].json);
		char out[64];
		int r;

		memset(out, 'Z', sizeof(out));
		r = answer_error_text(json, strlen(json), out, cases[i].retlen);
		is_int(r, cases[i].want, "error %s/%zu: %d", cases[i].json,
		       cases[i].retlen, cases[i].want);
		if (cases[i].text)
			is_str(r == 0 ? out : NULL, cases[i].text,
			       "error %s/%zu: text", cases[i].json,
			       cases[i].retlen);
		else
			ok(out[0] == 'Z', "error %s: output untouched",
			   cases[i].json);
	}
}

static void test_answers(void)
{
	static const struct {
		const char *body;
		int r;
		const char *run_id;
		long long created;
	} one[] = {
		{"{\"workflowRunId\":\"wfr_1\",\"workflowCreatedAt\":5}", 0,
		 "wfr_1", 5},
		{"{}", 0, "", -1},
		{"{\"workflowRunId\":7,\"workflowCreatedAt\":\"x\"}", 0, "",
		 -1},
		{"{\"workflowRunId\":\"\"}", 0, "", -1},
		{"{\"workflowRunId\":\"a\\nb\"}", 0, "", -1},
		{"{\"workflowRunId\":\"a\\u0000b\"}", 0, "", -1},
		{"{\"workflowCreatedAt\":-3}", 0, "", -1},
		{"[]", -EPROTO, NULL, 0},
		{"null", -EPROTO, NULL, 0},
		{"", -EPROTO, NULL, 0},
		{"<html>", -EPROTO, NULL, 0},
	};
	static const struct {
		const char *body;
		int r;
		size_t n;
	} many[] = {
		{"{\"workflowRuns\":[{\"workflowRunId\":\"a\"},7,null,{}],"
		 "\"cursor\":\"c\"}",
		 0, 4},
		{"{\"workflowRuns\":[]}", 0, 0},
		{"{\"workflowRuns\":{}}", -EPROTO, 0},
		{"{\"cursor\":\"\"}", -EPROTO, 0},
		{"[1]", -EPROTO, 0},
	};
	static const struct {
		const char *body;
		int r;
		uint64_t n;
	} del[] = {
		{"{\"deleted\":3}", 0, 3},
		{"{\"deleted\":0}", 0, 0},
		{"{\"deleted\":-1}", -EPROTO, 0},
		{"{\"deleted\":1.5}", -EPROTO, 0},
		{"{\"deleted\":\"3\"}", -EPROTO, 0},
		{"{}", -EPROTO, 0},
		{"", -EPROTO, 0},
	};
	char longid[600], *big;
	struct answer_runs runs = {0};
	struct answer_run run;
	uint64_t deleted;
	size_t n;

	for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
		memset(&run, 'z', sizeof(run));
		is_int(answer_run_parse(one[i].body, strlen(one[i].body), &run),
		       one[i].r, "run answer %zu: result", i);
		if (one[i].r == 0) {
			is_str(run.run_id, one[i].run_id, "run answer %zu: id",
			       i);
			is_int(run.created_at, one[i].created,
			       "run answer %zu: created", i);
		} else {
			ok(run.run_id[0] == 'z', "run answer %zu: untouched",
			   i);
		}
	}
	snprintf(longid, sizeof(longid), "{\"workflowRunId\":\"%0*d\"}",
		 ANSWER_MAX_RUN_ID + 1, 0);
	is_int(answer_run_parse(longid, strlen(longid), &run), 0,
	       "an over-long run id: read");
	is_str(run.run_id, "", "an over-long run id: absent");
	for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++) {
		int r = answer_runs_parse(many[i].body, strlen(many[i].body),
					  &runs);

		is_int(r, many[i].r, "runs answer %zu: result", i);
		if (r == 0) {
			is_int(runs.n, many[i].n, "runs answer %zu: count", i);
			answer_runs_release(&runs);
		}
	}
	/* more than ANSWER_MAX_RUNS */
	big = malloc(32 + 3 * (ANSWER_MAX_RUNS + 1));
	n = (size_t)sprintf(big, "{\"workflowRuns\":[");
	for (int i = 0; i <= ANSWER_MAX_RUNS; i++)
		n += (size_t)sprintf(big + n, "%s{}", i ? "," : "");
	sprintf(big + n, "]}");
	is_int(answer_runs_parse(big, strlen(big), &runs), -EPROTO,
	       "more than ANSWER_MAX_RUNS runs: -EPROTO");
	free(big);
	answer_runs_release(NULL);
	for (size_t i = 0; i < sizeof(del) / sizeof(del[0]); i++) {
		deleted = 99;
		is_int(answer_deleted_parse(del[i].body, strlen(del[i].body),
					    &deleted),
		       del[i].r, "deleted answer %zu: result", i);
		is_int(deleted, del[i].r == 0 ? del[i].n : 99,
		       "deleted answer %zu: value", i);
	}
}

int main(void)
{
	test_error_text();
	test_answers();
	return tap_done();
}
