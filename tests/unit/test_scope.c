/* Unit tests for scope: the options a mount accepts, the filters it sends,
 * and which entries lie inside it. Entries are parsed by message.c, as the
 * walker gets them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scope.h"
#include "tap.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static struct message *parse(const char *json)
{
	struct message *m = NULL;

	if (message_parse(json, strlen(json), &m) < 0) {
		printf("Bail out! cannot parse %s\n", json);
		exit(1);
	}
	return m;
}

static void test_add(void)
{
	static const struct {
		const char *opt, *value;
		int want;
		const char *says; /* in the error, or NULL */
	} cases[] = {
		{"label", "payments", 0, NULL},
		{"label", "billing", 0, NULL}, /* OR: a second value */
		{"label", "", -EINVAL, "needs a value"},
		{"label", "a,b", -EINVAL, "separator"},
		{"workflow_url", "https://a.example/wf?x=1,2", -EINVAL,
		 "repeat workflow_url="},
		{"from", "1752829295505", 0, NULL},
		{"from", "1752829295506", -EINVAL, "given twice"},
		{"to", "-5", 0, NULL},
		{"to", "6", -EINVAL, "given twice"},
		{"workflow_created_at", "12x", -EINVAL, "expected a number"},
		{"workflow_created_at", "1752829293531", 0, NULL},
		{"workflow_created_at", "1752829293531", -EINVAL,
		 "given twice"},
		{"workflow_run_id", "wfr_a", 0, NULL},
		{"workflow_run_id", "wfr_b", -EINVAL, "takes one value"},
		{"failure_function_state", "CALLBACK_FAIL", 0, NULL},
		{"failure_function_state", "CALLBACK_CANCELED", 0, NULL},
		{"caller_ip", "203.0.113.7", 0, NULL},
		{"flow_control_key", "k", 0, NULL},
		{"refresh", "5", -ENOENT, NULL},
		{"labels", "x", -ENOENT, NULL},
	};
	static const char *const want_params[] = {
		"label",
		"label",
		"fromDate",
		"toDate",
		"workflowCreatedAt",
		"workflowRunId",
		"failureFunctionState",
		"failureFunctionState",
		"callerIp",
		"flowControlKey",
	};
	struct scope *s = scope_new();
	const struct api_filter *f;
	size_t n;

	for (size_t i = 0; i < N(cases); i++) {
		char err[300] = "";
		int r = scope_add(s, cases[i].opt, cases[i].value, err,
				  sizeof(err));

		is_int(r, cases[i].want, "%s=%s: %d", cases[i].opt,
		       cases[i].value, cases[i].want);
		if (cases[i].says)
			ok(strstr(err, cases[i].says) != NULL,
			   "%s=%s: says \"%s\" (%s)", cases[i].opt,
			   cases[i].value, cases[i].says, err);
	}
	f = scope_filters(s, &n);
	is_int(n, N(want_params), "the values taken");
	for (size_t i = 0; i < n && i < N(want_params); i++)
		is_str(f[i].param, want_params[i], "filter %zu: %s", i,
		       want_params[i]);
	is_str(f[0].value, "payments", "values kept as given");
	is_str(f[3].value, "-5", "a negative number kept as given");
	scope_free(s);

	s = scope_new();
	for (int i = 0; i < SCOPE_MAX_FILTERS; i++)
		if (scope_add(s, "label", "x", NULL, 0) < 0)
			break;
	is_int(scope_add(s, "label", "y", NULL, 0), -EINVAL,
	       "more than SCOPE_MAX_FILTERS values: -EINVAL");
	scope_free(s);
	scope_free(NULL);
}

/* The scope of @n option=value pairs. */
static struct scope *scope_of(const char *const *pairs, size_t n)
{
	struct scope *s = scope_new();

	for (size_t i = 0; i < n; i++) {
		char opt[64];
		const char *eq = strchr(pairs[i], '=');

		snprintf(opt, sizeof(opt), "%.*s", (int)(eq - pairs[i]),
			 pairs[i]);
		if (scope_add(s, opt, eq + 1, NULL, 0) < 0) {
			printf("Bail out! scope_add %s\n", pairs[i]);
			exit(1);
		}
	}
	return s;
}

static void test_miss(void)
{
	static const struct {
		const char *scope[3];
		const char *entry;
		const char *missed; /* API filter, or NULL: inside */
	} cases[] = {
		{{NULL}, "{\"dlqId\":\"a\"}", NULL},
		{{"label=payments", "label=billing"},
		 "{\"dlqId\":\"a\",\"labels\":[\"x\",\"billing\"]}",
		 NULL},
		{{"label=payments"},
		 "{\"dlqId\":\"a\",\"label\":\"payments\"}",
		 NULL},
		{{"label=payments"},
		 "{\"dlqId\":\"a\",\"labels\":[\"payments/x\"]}",
		 "label"},
		{{"label=payments"}, "{\"dlqId\":\"a\"}", "label"},
		{{"workflow_url=https://a/wf"},
		 "{\"dlqId\":\"a\",\"workflowUrl\":\"https://a/wf\"}",
		 NULL},
		{{"workflow_url=https://a/wf"},
		 "{\"dlqId\":\"a\",\"workflowUrl\":\"https://a/wf2\"}",
		 "workflowUrl"},
		{{"workflow_run_id=wfr_1"},
		 "{\"dlqId\":\"a\",\"workflowRunId\":\"wfr_1\"}",
		 NULL},
		{{"workflow_run_id=wfr_1"},
		 "{\"dlqId\":\"a\",\"workflowRunId\":\"wfr_2\"}",
		 "workflowRunId"},
		/* the state from either field, as by-state/ reads it */
		{{"failure_function_state=CALLBACK_FAIL"},
		 "{\"dlqId\":\"a\",\"failureFunctionState\":\"CALLBACK_FAIL\"}",
		 NULL},
		{{"failure_function_state=CALLBACK_FAIL"},
		 "{\"dlqId\":\"a\",\"failureCallbackInfo\":"
		 "{\"state\":\"CALLBACK_FAIL\"}}",
		 NULL},
		{{"failure_function_state=CALLBACK_FAIL"},
		 "{\"dlqId\":\"a\",\"failureCallbackInfo\":"
		 "{\"state\":\"CALLBACK_SUCCESS\"}}",
		 "failureFunctionState"},
		{{"caller_ip=203.0.113.7"},
		 "{\"dlqId\":\"a\",\"callerIP\":\"203.0.113.7\"}",
		 NULL},
		{{"caller_ip=203.0.113.7"},
		 "{\"dlqId\":\"a\",\"callerIP\":\"203.0.113.70\"}",
		 "callerIp"},
		{{"flow_control_key=k"},
		 "{\"dlqId\":\"a\",\"flowControlKey\":\"k\"}",
		 NULL},
		{{"flow_control_key=k"}, "{\"dlqId\":\"a\"}", "flowControlKey"},
		{{"from=100", "to=200"},
		 "{\"dlqId\":\"a\",\"createdAt\":100}",
		 NULL},
		{{"from=100", "to=200"},
		 "{\"dlqId\":\"a\",\"createdAt\":200}",
		 NULL},
		{{"from=100", "to=200"},
		 "{\"dlqId\":\"a\",\"createdAt\":99}",
		 "fromDate"},
		{{"from=100", "to=200"},
		 "{\"dlqId\":\"a\",\"createdAt\":201}",
		 "toDate"},
		{{"from=100"}, "{\"dlqId\":\"a\"}", "fromDate"},
		{{"workflow_created_at=7"},
		 "{\"dlqId\":\"a\",\"workflowCreatedAt\":7}",
		 NULL},
		{{"workflow_created_at=7"},
		 "{\"dlqId\":\"a\",\"workflowCreatedAt\":8}",
		 "workflowCreatedAt"},
		/* AND across options: the first one failed is named */
		{{"label=x", "caller_ip=1.2.3.4"},
		 "{\"dlqId\":\"a\",\"labels\":[\"x\"],\"callerIP\":\"1.2.3.5\"}",
		 "callerIp"},
		{{"label=x", "caller_ip=1.2.3.4"},
		 "{\"dlqId\":\"a\",\"labels\":[\"x\"],\"callerIP\":\"1.2.3.4\"}",
		 NULL},
	};

	for (size_t i = 0; i < N(cases); i++) {
		size_t n = 0;
		struct scope *s;
		struct message *m = parse(cases[i].entry);
		int r;

		while (n < 3 && cases[i].scope[n])
			n++;
		s = scope_of(cases[i].scope, n);
		r = scope_miss(s, m);
		if (cases[i].missed)
			is_str(scope_param_name(r), cases[i].missed,
			       "%s with %s: outside, by %s", cases[i].entry,
			       n ? cases[i].scope[0] : "-", cases[i].missed);
		else
			is_int(r, -1, "%s with %s: inside", cases[i].entry,
			       n ? cases[i].scope[0] : "-");
		message_free(m);
		scope_free(s);
	}
	is_str(scope_option_name(0), "label", "option 0 is label=");
	is_str(scope_param_name(-1), "", "no name for -1");
}

int main(void)
{
	test_add();
	test_miss();
	return tap_done();
}
