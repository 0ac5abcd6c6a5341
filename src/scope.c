/* scope: the mount's scope options, as list filters and as a check.
 *
 * Owns: the table of scope options (their -o names, API filter names,
 * which are numbers and which take several values), checking the values
 * given at mount, the filters sent with every list request, and whether
 * an entry the API sent lies inside the scope.
 * Leaves to others: reading the entry's fields (message: its views,
 * createdAt, workflowCreatedAt), building URLs (api), what to do with an
 * entry outside (walker), parsing the command line (main).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errtext.h"
#include "scope.h"

enum scope_kind {
	SCOPE_VIEW,	  /* a value of a view of the entry */
	SCOPE_FROM,	  /* createdAt >= value */
	SCOPE_TO,	  /* createdAt <= value */
	SCOPE_WF_CREATED, /* workflowCreatedAt == value */
};

static const struct {
	const char *opt;   /* -o name */
	const char *param; /* API filter */
	enum scope_kind kind;
	enum message_view view; /* SCOPE_VIEW: where its values are */
	bool multi;		/* OR of several values */
} params[SCOPE_NPARAMS] = {
	{"label", "label", SCOPE_VIEW, VIEW_LABEL, true},
	{"workflow_url", "workflowUrl", SCOPE_VIEW, VIEW_URL, true},
	{"workflow_run_id", "workflowRunId", SCOPE_VIEW, VIEW_RUN, false},
	{"workflow_created_at", "workflowCreatedAt", SCOPE_WF_CREATED, 0,
	 false},
	{"from", "fromDate", SCOPE_FROM, 0, false},
	{"to", "toDate", SCOPE_TO, 0, false},
	{"failure_function_state", "failureFunctionState", SCOPE_VIEW,
	 VIEW_STATE, true},
	{"caller_ip", "callerIp", SCOPE_VIEW, VIEW_CALLER_IP, true},
	{"flow_control_key", "flowControlKey", SCOPE_VIEW,
	 VIEW_FLOW_CONTROL_KEY, true},
};

struct scope {
	struct api_filter filters[SCOPE_MAX_FILTERS]; /* values owned */
	uint8_t which[SCOPE_MAX_FILTERS];	      /* index into params */
	size_t n;
	int64_t number[SCOPE_NPARAMS]; /* the value of a numeric option */
	unsigned given;		       /* bit i: params[i] has a value */
};

struct scope *scope_new(void)
{
	return calloc(1, sizeof(struct scope));
}

void scope_free(struct scope *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free((char *)s->filters[i].value);
	free(s);
}

/* Decimal digits with an optional '-', at most 18 of them. */
static bool parse_ms(const char *v, int64_t *ret)
{
	const char *p = *v == '-' ? v + 1 : v;
	size_t n = strlen(p);

	if (n == 0 || n > 18 || strspn(p, "0123456789") != n)
		return false;
	*ret = strtoll(v, NULL, 10);
	return true;
}

int scope_add(struct scope *s, const char *opt, const char *value, char *err,
	      size_t errlen)
{
	int64_t ms = 0;
	char *copy;
	int i;

	for (i = 0; i < SCOPE_NPARAMS; i++)
		if (!strcmp(params[i].opt, opt))
			break;
	if (i == SCOPE_NPARAMS)
		return -ENOENT;
	if (!value[0])
		return errtext(err, errlen, -EINVAL, "option %s= needs a value",
			       opt);
	if (!params[i].multi && (s->given & (1u << i)))
		return errtext(
			err, errlen, -EINVAL,
			"option %s= given twice: it takes one value (the API's %s is not a list)",
			opt, params[i].param);
	if (params[i].kind != SCOPE_VIEW && !parse_ms(value, &ms))
		return errtext(
			err, errlen, -EINVAL,
			"option %s=%s: expected a number (milliseconds since the epoch)",
			opt, value);
	if (strchr(value, ','))
		return errtext(
			err, errlen, -EINVAL,
			"option %s= holds a ',', which the API reads as a separator of several values: give one value per option (repeat %s= for several)",
			opt, opt);
	if (s->n == SCOPE_MAX_FILTERS)
		return errtext(err, errlen, -EINVAL,
			       "too many scope options (at %s=): at most %d",
			       opt, SCOPE_MAX_FILTERS);
	copy = strdup(value);
	if (!copy)
		return errtext(err, errlen, -ENOMEM, "out of memory");
	s->filters[s->n].param = params[i].param;
	s->filters[s->n].value = copy;
	s->which[s->n] = (uint8_t)i;
	s->n++;
	s->number[i] = ms;
	s->given |= 1u << i;
	return 0;
}

const struct api_filter *scope_filters(const struct scope *s, size_t *ret_n)
{
	*ret_n = s->n;
	return s->filters;
}

/* Whether one of @m's values of @view is @v. */
static bool view_has(const struct message *m, enum message_view view,
		     const char *v)
{
	size_t len = strlen(v);

	for (uint32_t j = 0; j < m->view[view].n; j++)
		if (m->view[view].v[j].len == len &&
		    !memcmp(m->view[view].v[j].data, v, len))
			return true;
	return false;
}

/* Whether @m holds for params[@i], given its values in @s. */
static bool holds(const struct scope *s, int i, const struct message *m)
{
	switch (params[i].kind) {
	case SCOPE_FROM:
		return m->has_created && m->created_ms >= s->number[i];
	case SCOPE_TO:
		return m->has_created && m->created_ms <= s->number[i];
	case SCOPE_WF_CREATED:
		return m->has_wf_created && m->wf_created_ms == s->number[i];
	case SCOPE_VIEW:
		break;
	}
	for (size_t k = 0; k < s->n; k++)
		if (s->which[k] == i &&
		    view_has(m, params[i].view, s->filters[k].value))
			return true;
	return false;
}

int scope_miss(const struct scope *s, const struct message *m)
{
	for (int i = 0; i < SCOPE_NPARAMS; i++)
		if ((s->given & (1u << i)) && !holds(s, i, m))
			return i;
	return -1;
}

const char *scope_param_name(int i)
{
	return i >= 0 && i < SCOPE_NPARAMS ? params[i].param : "";
}

const char *scope_option_name(int i)
{
	return i >= 0 && i < SCOPE_NPARAMS ? params[i].opt : "";
}
