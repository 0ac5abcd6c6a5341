/* test_action: the control-file parser (table-driven, garbage included),
 * the input of an open control file (writes cutting lines anywhere,
 * options kept for later ids, close, limits),
 * running actions against a small HTTP server forked on 127.0.0.1 that
 * answers like the DLQ API and records every request (batching into 50s,
 * single endpoints, per-id outcomes, the errno of the whole), log lines,
 * and the action log's bounds.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "action.h"
#include "action_log.h"
#include "net.h"
#include "tap.h"

/* ---- the parser ------------------------------------------------------- */

/* Joins act->ids with ','. */
static void joined(const struct action *act, char *buf, size_t len)
{
	size_t j = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < act->n && j < len; i++)
		j += (size_t)snprintf(buf + j, len - j, "%s%s", i ? "," : "",
				      act->ids[i]);
}

static void test_parse_table(void)
{
	static const struct {
		enum action_verb verb;
		const char *in;
		int r;
		const char *ids;  /* joined, when r == 0 */
		const char *text; /* part of the error, when r < 0 */
	} t[] = {
		{ACTION_DELETE, "1-0\n", 0, "1-0", NULL},
		{ACTION_DELETE, "1-0", 0, "1-0", NULL},
		{ACTION_DELETE, "1-0\r\n2-0\r\n", 0, "1-0,2-0", NULL},
		{ACTION_DELETE, "\n\n  1-0  \n\t\n2-0\n\n", 0, "1-0,2-0", NULL},
		{ACTION_DELETE, "2-0\n1-0\n2-0\n1-0\n", 0, "2-0,1-0", NULL},
		{ACTION_DELETE,
		 "by-label/x/1-0\nruns/2-0/\n/mnt/d/by-url/a/3-0\n", 0,
		 "1-0,2-0,3-0", NULL},
		{ACTION_DELETE, "runs/1-0//\n", 0, "1-0", NULL},
		{ACTION_DELETE, "by-label/a=b/1-0\n", 0, "1-0", NULL},
		{ACTION_DELETE, "id with spaces\n", 0, "id with spaces", NULL},
		{ACTION_RESUME, "retries=3\ndelay=10s\n1-0\n", 0, "1-0", NULL},
		{ACTION_RESTART,
		 "flow_control_key=tenant:acme\n"
		 "flow_control_value=parallelism=3, rate=10, period=1m\n1-0\n",
		 0, "1-0", NULL},
		{ACTION_RESUME, "delay=1h30m\n1-0\n", 0, "1-0", NULL},
		{ACTION_RESUME, "delay=500ms\n1-0\n", 0, "1-0", NULL},
		{ACTION_RESUME, "retries=0\n1-0\n", 0, "1-0", NULL},
		{ACTION_RESTART,
		 "retry_delay=pow(2, retried) * 1000\nlabel=a,b\n"
		 "failure_callback=https://x.example/fail?a=1\n1-0\n",
		 0, "1-0", NULL},
		/* one id is one id: the API reads dlqIds=a,b as two */
		{ACTION_DELETE, "1-0,2-0\n", -EINVAL, NULL, "separator"},
		{ACTION_RESUME, "1-0\nruns/a,b\n", -EINVAL, NULL, "line 2"},
		{ACTION_RESUME, "retry_delay=\xc3\xa9\n1-0\n", -EINVAL, NULL,
		 "retry_delay"},
		{ACTION_RESUME, "label=,a\n1-0\n", -EINVAL, NULL, "label"},
		{ACTION_RESUME, "label=a\x01\n1-0\n", -EINVAL, NULL,
		 "control byte"},
		{ACTION_RESUME, "failure_callback=ftp://x\n1-0\n", -EINVAL,
		 NULL, "failure_callback"},
		{ACTION_RESUME, "failure_callback=https://a b\n1-0\n", -EINVAL,
		 NULL, "failure_callback"},
		{ACTION_RESUME, "label=a\nlabel=b\n1-0\n", -EINVAL, NULL,
		 "given twice"},
		{ACTION_DELETE, "label=a\n1-0\n", -EINVAL, NULL,
		 "resume and restart only"},
		/* garbage */
		{ACTION_DELETE, "", -EINVAL, NULL, "no id given"},
		{ACTION_DELETE, "\n\n  \n\t\r\n", -EINVAL, NULL, "no id given"},
		{ACTION_RESUME, "retries=3\n", -EINVAL, NULL, "no id given"},
		{ACTION_DELETE, "*\n", -EINVAL, NULL, "names no run"},
		{ACTION_DELETE, "by-label/x/*\n", -EINVAL, NULL,
		 "names no run"},
		{ACTION_DELETE, "1-0\n.\n", -EINVAL, NULL, "line 2"},
		{ACTION_DELETE, "..\n", -EINVAL, NULL, "names no run"},
		{ACTION_DELETE, "runs/..\n", -EINVAL, NULL, "names no run"},
		{ACTION_DELETE, "/\n", -EINVAL, NULL, "no id"},
		{ACTION_DELETE, "///\n", -EINVAL, NULL, "no id"},
		{ACTION_DELETE, "1-0\x01\n", -EINVAL, NULL, "control byte"},
		{ACTION_DELETE, "1-0\r2-0\n", -EINVAL, NULL, "control byte"},
		{ACTION_DELETE, "\x7f\n", -EINVAL, NULL, "control byte"},
		{ACTION_RESUME, "1-0\nretries=3\n", -EINVAL, NULL,
		 "option after the ids"},
		{ACTION_RESUME, "colour=red\n1-0\n", -EINVAL, NULL,
		 "unknown option"},
		{ACTION_RESUME, "retries=3\nretries=4\n1-0\n", -EINVAL, NULL,
		 "given twice"},
		{ACTION_RESUME, "retries=x\n1-0\n", -EINVAL, NULL, "retries"},
		{ACTION_RESUME, "retries=-1\n1-0\n", -EINVAL, NULL, "retries"},
		{ACTION_RESUME, "retries=101\n1-0\n", -EINVAL, NULL, "retries"},
		{ACTION_RESUME, "retries=99999999999999999999\n1-0\n", -EINVAL,
		 NULL, "retries"},
		{ACTION_RESUME, "retries=\n1-0\n", -EINVAL, NULL,
		 "needs a value"},
		{ACTION_RESUME, "delay=10\n1-0\n", -EINVAL, NULL, "duration"},
		{ACTION_RESUME, "delay=s\n1-0\n", -EINVAL, NULL, "duration"},
		{ACTION_RESUME, "delay=10 s\n1-0\n", -EINVAL, NULL, "duration"},
		{ACTION_RESUME, "delay=10y\n1-0\n", -EINVAL, NULL, "duration"},
		{ACTION_RESUME, "flow_control_key=a b\n1-0\n", -EINVAL, NULL,
		 "flow_control_key"},
		{ACTION_RESUME, "flow_control_value=\xc3\xa9\n1-0\n", -EINVAL,
		 NULL, "flow_control_value"},
		{ACTION_DELETE, "retries=3\n1-0\n", -EINVAL, NULL,
		 "resume and restart only"},
		{ACTION_CALLBACK, "delay=1s\n1-0\n", -EINVAL, NULL,
		 "resume and restart only"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct action *act = (struct action *)0x1;
		char err[256] = "", ids[512];
		int r = action_parse(t[i].verb, t[i].in, strlen(t[i].in), NULL,
				     NULL, &act, err, sizeof(err));

		is_int(r, t[i].r, "parse %zu: result", i);
		if (r == 0 && t[i].r == 0) {
			joined(act, ids, sizeof(ids));
			is_str(ids, t[i].ids, "parse %zu: ids", i);
			action_free(act);
		} else if (r < 0) {
			ok(act == (struct action *)0x1,
			   "parse %zu: output untouched", i);
			ok(t[i].text && strstr(err, t[i].text),
			   "parse %zu: error \"%s\"", i, err);
			for (const char *p = err; *p; p++)
				if ((unsigned char)*p < 0x20 ||
				    (unsigned char)*p >= 0x7f) {
					ok(0, "parse %zu: printable error", i);
					break;
				}
		} else {
			action_free(act);
		}
	}
}

static void test_parse_options(void)
{
	static const char in[] = "  retries=7 \n"
				 "delay=2m\n"
				 "flow_control_key=k:1\n"
				 "flow_control_value=rate=10, period=1m\n"
				 "retry_delay=1000 * (1 + retried)\n"
				 "label=payments,billing\n"
				 "failure_callback=https://app.example/fail\n"
				 "1-0\n";
	struct action *act = NULL;
	char err[256];

	is_int(action_parse(ACTION_RESTART, in, strlen(in), NULL, NULL, &act,
			    err, sizeof(err)),
	       0, "options: parsed");
	if (!act)
		return;
	is_int(act->opt.retries, 7, "options: retries");
	is_str(act->opt.delay, "2m", "options: delay");
	is_str(act->opt.flow_control_key, "k:1", "options: key");
	is_str(act->opt.flow_control_value, "rate=10, period=1m",
	       "options: value");
	is_str(act->opt.retry_delay, "1000 * (1 + retried)",
	       "options: retry_delay");
	is_str(act->opt.label, "payments,billing", "options: label");
	is_str(act->opt.failure_callback, "https://app.example/fail",
	       "options: failure_callback");
	action_free(act);

	is_int(action_parse(ACTION_RESUME, "1-0\n", 4, NULL, NULL, &act, err,
			    sizeof(err)),
	       0, "no options: parsed");
	ok(act->opt.retries == -1 && !act->opt.delay &&
		   !act->opt.flow_control_key && !act->opt.flow_control_value &&
		   !act->opt.retry_delay && !act->opt.label &&
		   !act->opt.failure_callback,
	   "no options: none set");
	action_free(act);
	action_free(NULL);
	ok(1, "action_free(NULL) is a no-op");
}

/* Names "n:X" are the listed run "id-X"; "unknown" is refused; "oom"
 * fails; any other name is passed on as it is, not listed. */
static int resolver(void *ctx, const char *name, char **ret_id)
{
	int *calls = ctx;
	char *id;

	(*calls)++;
	if (!strcmp(name, "unknown"))
		return -ENOENT;
	if (!strcmp(name, "oom"))
		return -ENOMEM;
	if (strncmp(name, "n:", 2) != 0) {
		id = strdup(name);
	} else if (asprintf(&id, "id-%s", name + 2) < 0) {
		return -ENOMEM;
	}
	if (!id)
		return -ENOMEM;
	*ret_id = id;
	return strncmp(name, "n:", 2) == 0;
}

static void test_parse_resolver(void)
{
	static const char in[] = "by-label/x/n:1\nn:2/\nn:1\nid-2\n";
	struct action *act = NULL;
	char err[256], ids[256];
	int calls = 0, r;

	r = action_parse(ACTION_DELETE, in, strlen(in), resolver, &calls, &act,
			 err, sizeof(err));
	is_int(r, 0, "resolver: parsed");
	is_int(calls, 4, "resolver: called once per line");
	if (r == 0) {
		joined(act, ids, sizeof(ids));
		is_str(ids, "id-1,id-2", "resolver: mapped and deduplicated");
		ok(act->listed[0] && act->listed[1],
		   "resolver: id-2 listed, as it first came (n:2)");
		action_free(act);
	}
	r = action_parse(ACTION_DELETE, "n:1\nraw-7\n", 10, resolver, &calls,
			 &act, err, sizeof(err));
	is_int(r, 0, "resolver: a name passed on");
	if (r == 0) {
		ok(act->listed[0] && !act->listed[1],
		   "resolver: listed as the resolver said");
		action_free(act);
	}
	r = action_parse(ACTION_DELETE, "n:1\nruns/unknown\n", 17, resolver,
			 &calls, &act, err, sizeof(err));
	is_int(r, -ENOENT, "resolver's -ENOENT fails the parse");
	ok(strstr(err, "line 2") && strstr(err, "unknown"),
	   "resolver error text: %s", err);
	r = action_parse(ACTION_DELETE, "oom\n", 4, resolver, &calls, &act, err,
			 sizeof(err));
	is_int(r, -ENOMEM, "resolver's -ENOMEM passes through");
}

static void test_parse_limits(void)
{
	size_t big = ACTION_MAX_INPUT + 1, n;
	char *buf = malloc(big + 1);
	struct action *act = NULL;
	char err[256];
	int r;

	/* a line of exactly the limit, and one byte over */
	memset(buf, 'a', ACTION_MAX_LINE + 1);
	r = action_parse(ACTION_DELETE, buf, ACTION_MAX_LINE, NULL, NULL, &act,
			 err, sizeof(err));
	is_int(r, -EINVAL, "a line of ACTION_MAX_LINE: the id is too long");
	ok(strstr(err, "longer than") != NULL, "id too long: %s", err);
	r = action_parse(ACTION_DELETE, buf, ACTION_MAX_LINE + 1, NULL, NULL,
			 &act, err, sizeof(err));
	is_int(r, -EINVAL, "a line over ACTION_MAX_LINE: -EINVAL");
	memset(buf, 'a', API_MAX_ID);
	r = action_parse(ACTION_DELETE, buf, API_MAX_ID, NULL, NULL, &act, err,
			 sizeof(err));
	is_int(r, 0, "an id of API_MAX_ID bytes: fine");
	if (r == 0)
		action_free(act);

	/* ACTION_MAX_IDS distinct ids, then one more */
	n = 0;
	for (int i = 0; i < ACTION_MAX_IDS; i++)
		n += (size_t)sprintf(buf + n, "%d-0\n", i);
	r = action_parse(ACTION_DELETE, buf, n, NULL, NULL, &act, err,
			 sizeof(err));
	is_int(r, 0, "ACTION_MAX_IDS ids: fine");
	if (r == 0) {
		is_int(act->n, ACTION_MAX_IDS, "all of them");
		action_free(act);
	}
	n += (size_t)sprintf(buf + n, "x-1\n");
	r = action_parse(ACTION_DELETE, buf, n, NULL, NULL, &act, err,
			 sizeof(err));
	is_int(r, -E2BIG, "ACTION_MAX_IDS + 1 ids: -E2BIG");

	/* many duplicates of few ids are fine */
	n = 0;
	while (n + 8 < ACTION_MAX_INPUT)
		n += (size_t)sprintf(buf + n, "%zu-0\n", (n / 6) % 7);
	r = action_parse(ACTION_DELETE, buf, n, NULL, NULL, &act, err,
			 sizeof(err));
	is_int(r, 0, "a megabyte of duplicates: fine");
	if (r == 0) {
		is_int(act->n, 7, "deduplicated to 7");
		action_free(act);
	}

	memset(buf, '\n', big);
	r = action_parse(ACTION_DELETE, buf, big, NULL, NULL, &act, err,
			 sizeof(err));
	is_int(r, -EFBIG, "over ACTION_MAX_INPUT: -EFBIG");
	is_int(action_parse(ACTION_NVERBS, "1-0", 3, NULL, NULL, &act, err,
			    sizeof(err)),
	       -EINVAL, "an unknown verb: -EINVAL");
	free(buf);
}

static void test_verbs(void)
{
	enum action_verb v = ACTION_NVERBS;

	for (int i = 0; i < ACTION_NVERBS; i++) {
		is_int(action_verb_parse(action_verb_names[i], &v), 0,
		       "verb %s", action_verb_names[i]);
		is_int(v, i, "verb %s: value", action_verb_names[i]);
	}
	is_int(action_verb_parse("status", &v), -EINVAL, "not a verb");
	is_int(action_verb_parse(NULL, &v), -EINVAL, "NULL is not a verb");
}

/* ---- control-file input ----------------------------------------------- */

/* A step that closes the file (compared by address). */
static const char input_close[] = "(close)";
#define INPUT_CLOSE input_close

/* One call on an action_input: a write of @write, or a close, what it
 * returns, the text it hands on (r == 1), and whether the caller's parse
 * refused that text (else it calls action_input_acted()). The steps of a
 * case end at the first without @write. */
struct input_step {
	const char *write;
	int r;
	const char *text;
	bool refused;
};

static void test_input_table(void)
{
	static const struct {
		const char *name;
		struct input_step steps[8];
	} t[] = {
		{"one line",
		 {{"1-0\n", 1, "1-0\n", false}, {INPUT_CLOSE, 0, NULL, false}}},
		{"an empty input", {{INPUT_CLOSE, 0, NULL, false}}},
		{"an empty write",
		 {{"", 0, NULL, false}, {INPUT_CLOSE, 0, NULL, false}}},
		{"CRLF lines pass as they are",
		 {{"1-0\r\n2-0\r\n", 1, "1-0\r\n2-0\r\n", false}}},
		{"chunks cut lines anywhere",
		 {{"1-", 0, NULL, false},
		  {"0\n2", 1, "1-0\n", false},
		  {"-0", 0, NULL, false},
		  {"\n", 1, "2-0\n", false},
		  {INPUT_CLOSE, 0, NULL, false}}},
		{"whole lines go, the cut one waits",
		 {{"1-0\n2-0\n3-", 1, "1-0\n2-0\n", false},
		  {"0\n", 1, "3-0\n", false}}},
		{"a last line without newline, at close",
		 {{"1-0", 0, NULL, false},
		  {INPUT_CLOSE, 1, "1-0", false},
		  {INPUT_CLOSE, 0, NULL, false}}},
		{"a cut last line, at close",
		 {{"1-0\n2", 1, "1-0\n", false},
		  {"-0", 0, NULL, false},
		  {INPUT_CLOSE, 1, "2-0", false}}},
		{"option lines, then ids across writes",
		 {{"retries=3\n", 0, NULL, false},
		  {"delay=10s\n", 0, NULL, false},
		  {"1-0\n", 1, "retries=3\ndelay=10s\n1-0\n", false},
		  {"2-0\n3-0\n", 1, "retries=3\ndelay=10s\n2-0\n3-0\n", false},
		  {INPUT_CLOSE, 0, NULL, false}}},
		{"an option line cut across writes",
		 {{"retr", 0, NULL, false},
		  {"ies=3\n1-", 0, NULL, false},
		  {"0\n", 1, "retries=3\n1-0\n", false}}},
		{"blank lines among options are kept with them",
		 {{"\nretries=3\n\n", 0, NULL, false},
		  {"1-0\n", 1, "\nretries=3\n\n1-0\n", false}}},
		{"options and the first ids in one write",
		 /* the options apply to the ids of later writes too, as
		  * when cat writes a long list in pieces */
		 {{"retries=3\n1-0\n", 1, "retries=3\n1-0\n", false},
		  {"2-0\n", 1, "retries=3\n2-0\n", false},
		  {"delay=1s\n3-0\n", -EINVAL, NULL, false}}},
		{"a long list with options on top, cut in pieces",
		 {{"retries=3\ndelay=1s\n1-0\n2-", 1,
		   "retries=3\ndelay=1s\n1-0\n", false},
		  {"0\n3-0\n", 1, "retries=3\ndelay=1s\n2-0\n3-0\n", false},
		  {INPUT_CLOSE, 0, NULL, false}}},
		{"options with no id, at close",
		 {{"retries=3\n", 0, NULL, false},
		  {INPUT_CLOSE, -EINVAL, NULL, false}}},
		{"an option line without newline, at close",
		 /* options with no id, as with its newline */
		 {{"retries=3", 0, NULL, false},
		  {INPUT_CLOSE, -EINVAL, NULL, false}}},
		{"blank lines before any id",
		 {{"\n", -EINVAL, NULL, false},
		  {" \t\r\n\n", -EINVAL, NULL, false},
		  {"1-0\n", 1, "1-0\n", false}}},
		{"a blank line alone, after options, before ids",
		 /* kept with the options, as in one write */
		 {{"retries=3\n", 0, NULL, false},
		  {"\n", 0, NULL, false},
		  {"1-0\n", 1, "retries=3\n\n1-0\n", false}}},
		{"blank lines after ids",
		 {{"1-0\n", 1, "1-0\n", false},
		  {"\n \n", 0, NULL, false},
		  {INPUT_CLOSE, 0, NULL, false}}},
		{"an option after ids, alone",
		 {{"1-0\n", 1, "1-0\n", false},
		  {"retries=3\n", -EINVAL, NULL, false},
		  {"2-0\n", 1, "2-0\n", false}}},
		{"an option after ids, with more ids",
		 {{"1-0\n", 1, "1-0\n", false},
		  {"retries=3\n2-0\n", -EINVAL, NULL, false},
		  {INPUT_CLOSE, 0, NULL, false}}},
		{"an option after ids, at close",
		 {{"1-0\n", 1, "1-0\n", false},
		  {"retries=3", 0, NULL, false},
		  {INPUT_CLOSE, -EINVAL, NULL, false}}},
		{"options stay for the ids after a refused text",
		 {{"retries=3\n", 0, NULL, false},
		  {"*\n", 1, "retries=3\n*\n", true},
		  {"delay=1s\n", 0, NULL, false},
		  {"1-0\n", 1, "retries=3\ndelay=1s\n1-0\n", false},
		  {"retries=4\n", -EINVAL, NULL, false}}},
		{"a refused text at close: options still unused",
		 {{"retries=3\n", 0, NULL, false},
		  {"*", 0, NULL, false},
		  {INPUT_CLOSE, 1, "retries=3\n*", true},
		  {INPUT_CLOSE, -EINVAL, NULL, false}}},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct action_input in = {0};

		for (size_t k = 0; k < 8; k++) {
			const struct input_step *s = &t[i].steps[k];
			char *text = NULL;
			size_t len = 0;
			int r;

			if (!s->write)
				break;
			r = s->write == input_close
				    ? action_input_close(&in, &text, &len)
				    : action_input_write(&in, s->write,
							 strlen(s->write),
							 &text, &len);
			is_int(r, s->r, "input: %s: step %zu", t[i].name, k);
			if (r == 1) {
				is_mem(text, len, s->text, tap_strlen(s->text),
				       "input: %s: step %zu: text", t[i].name,
				       k);
				if (!s->refused)
					action_input_acted(&in);
				free(text);
			}
		}
		action_input_release(&in);
		ok(!in.pending.data && !in.prefix.data && !in.pending.len &&
			   !in.prefix.len,
		   "input: %s: released", t[i].name);
	}
}

/* What a chunked feed of an action_input handed on. */
struct fed {
	char ids[256];	    /* every id parsed, joined with ',' */
	size_t texts;	    /* texts handed on */
	size_t errors;	    /* calls that failed, texts the parser refused */
	bool first_options; /* the first text had retries=3 and delay=10s */
};

/* One call's outcome @r (and its text) into @f. */
static void fed_take(struct fed *f, struct action_input *in, int r, char *text,
		     size_t len)
{
	struct action *act = NULL;
	char one[256];

	if (r < 0)
		f->errors++;
	if (r != 1)
		return;
	if (action_parse(ACTION_RESUME, text, len, NULL, NULL, &act, NULL, 0)) {
		f->errors++;
	} else {
		if (!f->texts)
			f->first_options = act->opt.retries == 3 &&
					   act->opt.delay &&
					   !strcmp(act->opt.delay, "10s");
		joined(act, one, sizeof(one));
		if (strlen(f->ids) + strlen(one) + 2 < sizeof(f->ids)) {
			if (f->ids[0])
				strcat(f->ids, ",");
			strcat(f->ids, one);
		}
		action_input_acted(in);
		action_free(act);
	}
	f->texts++;
	free(text);
}

/* Every way of cutting a text into writes of equal size hands on texts
 * the parser accepts, that name every id once, in order; the first of
 * them carries every option line (whatever came before it). */
static void test_input_chunks(void)
{
	static const struct {
		const char *text;
		const char *ids;
		bool options;
	} t[] = {
		{"1-0\n2-0\nruns/3-0/\nby-label/x/4-0", "1-0,2-0,3-0,4-0",
		 false},
		{"retries=3\ndelay=10s\n1-0\n2-0\r\n  3-0\n\n", "1-0,2-0,3-0",
		 true},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t len = strlen(t[i].text);

		for (size_t chunk = 1; chunk <= len; chunk++) {
			struct action_input in = {0};
			struct fed f = {0};
			char *text = NULL;
			size_t tlen = 0;
			int r;

			for (size_t off = 0; off < len; off += chunk) {
				size_t n =
					len - off < chunk ? len - off : chunk;

				r = action_input_write(&in, t[i].text + off, n,
						       &text, &tlen);
				fed_take(&f, &in, r, text, tlen);
			}
			r = action_input_close(&in, &text, &tlen);
			fed_take(&f, &in, r, text, tlen);
			is_int(f.errors, 0,
			       "input cut every %zu bytes, text %zu: no error",
			       chunk, i);
			is_str(f.ids, t[i].ids,
			       "input cut every %zu bytes, text %zu: the ids",
			       chunk, i);
			ok(f.first_options == t[i].options,
			   "input cut every %zu bytes, text %zu: options",
			   chunk, i);
			action_input_release(&in);
		}
	}
}

static void test_input_limits(void)
{
	size_t big = ACTION_MAX_INPUT, half = ACTION_MAX_INPUT / 2;
	struct action_input in = {0};
	char *buf = malloc(big + 1), *text = NULL;
	size_t len;

	/* a line without its newline waits up to ACTION_MAX_LINE bytes; one
	 * more refuses it, and it is dropped */
	memset(buf, 'a', ACTION_MAX_LINE);
	is_int(action_input_write(&in, buf, ACTION_MAX_LINE - 1, &text, &len),
	       0, "input: a line of ACTION_MAX_LINE - 1 bytes waits");
	is_int(action_input_write(&in, buf, 1, &text, &len), 0,
	       "input: a line of ACTION_MAX_LINE bytes waits");
	is_int(action_input_write(&in, buf, 1, &text, &len), -EINVAL,
	       "input: a line past ACTION_MAX_LINE: -EINVAL");
	is_int(action_input_write(&in, "1-0\n", 4, &text, &len), 1,
	       "input: after a long line, the next one");
	is_mem(text, len, "1-0\n", 4, "input: the long line was dropped");
	free(text);
	action_input_release(&in);

	/* a line of ACTION_MAX_LINE bytes ended by its newline is whole:
	 * what it holds is the parser's to judge */
	memset(buf, 'a', ACTION_MAX_LINE);
	buf[ACTION_MAX_LINE] = '\n';
	is_int(action_input_write(&in, buf, ACTION_MAX_LINE, &text, &len), 0,
	       "input: ACTION_MAX_LINE bytes wait");
	is_int(action_input_write(&in, "\n", 1, &text, &len), 1,
	       "input: then their newline");
	is_mem(text, len, buf, ACTION_MAX_LINE + 1,
	       "input: the line of ACTION_MAX_LINE bytes, whole");
	free(text);
	action_input_release(&in);

	/* ACTION_MAX_INPUT bytes of whole lines in one write: handed on */
	for (size_t i = 0; i < big; i += 64) {
		memset(buf + i, 'b', 63);
		buf[i + 63] = '\n';
	}
	is_int(action_input_write(&in, buf, big, &text, &len), 1,
	       "input: ACTION_MAX_INPUT bytes in one write");
	is_int(len, big, "input: all of them");
	free(text);
	/* pending bytes and a write past ACTION_MAX_INPUT together: -EFBIG,
	 * and the pending bytes are dropped */
	is_int(action_input_write(&in, "x", 1, &text, &len), 0,
	       "input: a byte pending");
	is_int(action_input_write(&in, buf, big, &text, &len), -EFBIG,
	       "input: a write past ACTION_MAX_INPUT: -EFBIG");
	is_int(action_input_write(&in, "1-0\n", 4, &text, &len), 1,
	       "input: the next line after -EFBIG");
	is_mem(text, len, "1-0\n", 4, "input: what was pending is gone");
	free(text);
	action_input_release(&in);

	/* option lines kept, and lines that would pass ACTION_MAX_INPUT with
	 * them: -EFBIG; those lines are dropped, the options stay */
	is_int(action_input_write(&in, "retries=3\n", 10, &text, &len), 0,
	       "input: an option line");
	is_int(action_input_write(&in, buf, big, &text, &len), -EFBIG,
	       "input: options and ACTION_MAX_INPUT bytes of ids: -EFBIG");
	is_int(action_input_write(&in, "1-0\n", 4, &text, &len), 1,
	       "input: an id after -EFBIG");
	is_mem(text, len, "retries=3\n1-0\n", 14,
	       "input: with the options kept before");
	free(text);
	action_input_release(&in);

	/* option lines alone, up to ACTION_MAX_INPUT bytes and past it */
	for (size_t i = 0; i < half; i += 64) {
		memcpy(buf + i, "label=", 6);
		memset(buf + i + 6, 'c', 57);
		buf[i + 63] = '\n';
	}
	is_int(action_input_write(&in, buf, half, &text, &len), 0,
	       "input: half of ACTION_MAX_INPUT in option lines");
	is_int(action_input_write(&in, buf, half, &text, &len), 0,
	       "input: ACTION_MAX_INPUT bytes of option lines");
	is_int(action_input_write(&in, "label=d\n", 8, &text, &len), -EFBIG,
	       "input: option lines past ACTION_MAX_INPUT: -EFBIG");
	action_input_release(&in);
	free(buf);
}

/* ---- running, against a fake DLQ -------------------------------------- */

#define MAX_RECORDS 512
#define RECORD_BYTES 2048

struct shared {
	int requests;
	int unscoped; /* bulk requests without dlqIds */
	char rec[MAX_RECORDS][RECORD_BYTES];
};

struct server {
	pid_t pid;
	struct shared *sh;
	char base[64];
};

static int respond(int fd, int status, const char *body)
{
	char head[256];

	snprintf(head, sizeof(head),
		 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
		 status, strlen(body));
	send_all(fd, head, strlen(head));
	send_all(fd, body, strlen(body));
	return 0;
}

/* Ids of the request: the path's last segment, or the dlqIds (raw,
 * unescaped enough for the test ids: no escapes in them). */
static size_t request_ids(const char *target, char ids[64][64], bool *bulk)
{
	const char *q = strchr(target, '?');
	size_t n = 0;

	*bulk = q != NULL;
	if (!q) {
		const char *s = strrchr(target, '/') + 1;

		snprintf(ids[0], 64, "%s", s);
		return 1;
	}
	for (const char *p = strstr(q, "dlqIds="); p && n < 64;
	     p = strstr(p + 1, "dlqIds=")) {
		size_t k = strcspn(p + 7, "&");

		snprintf(ids[n++], 64, "%.*s", (int)k, p + 7);
	}
	return n;
}

/* Answers like the API. Ids starting "gone" are unknown (404; a bulk
 * delete skips them), "deny" gets 401, "nocb" a 400 on callback, "fail"
 * a 500, "cut" no answer (the connection closed once the request is
 * read), "quota" the daily quota's 429. */
static int answer(int fd, const char *req, struct shared *sh)
{
	char method[16], target[RECORD_BYTES], ids[64][64], body[8192];
	bool bulk, gone = false, deny = false, nocb = false;
	bool fail = false, cut = false, quota = false;
	size_t n, kept = 0, j;

	if (sscanf(req, "%15s %2047s", method, target) != 2)
		return 0;
	if (sh->requests < MAX_RECORDS)
		snprintf(sh->rec[sh->requests], RECORD_BYTES, "%s", req);
	sh->requests++;
	n = request_ids(target, ids, &bulk);
	if (bulk && n == 0) {
		sh->unscoped++;
		return respond(fd, 500, "{\"error\":\"unscoped\"}");
	}
	for (size_t i = 0; i < n; i++) {
		gone |= !strncmp(ids[i], "gone", 4);
		deny |= !strncmp(ids[i], "deny", 4);
		nocb |= !strncmp(ids[i], "nocb", 4);
		fail |= !strncmp(ids[i], "fail", 4);
		cut |= !strncmp(ids[i], "cut", 3);
		quota |= !strncmp(ids[i], "quota", 5);
		kept += strncmp(ids[i], "gone", 4) != 0;
	}
	if (deny)
		return respond(fd, 401, "{\"error\":\"invalid token\"}");
	if (cut)
		return 0;
	if (fail)
		return respond(fd, 500, "{\"error\":\"internal error\"}");
	if (quota) {
		static const char q[] =
			"HTTP/1.1 429 X\r\nContent-Type: application/json\r\n"
			"RateLimit-Limit: 1000\r\nRateLimit-Remaining: 0\r\n"
			"RateLimit-Reset: 4102444800\r\n"
			"Content-Length: 32\r\nConnection: close\r\n\r\n"
			"{\"error\":\"daily limit exceeded\"}";

		send_all(fd, q, strlen(q));
		return 0;
	}
	if (!strcmp(method, "DELETE")) {
		if (!bulk)
			return respond(fd, gone ? 404 : 200,
				       gone ? "{\"error\":\"not found\"}" : "");
		snprintf(body, sizeof(body), "{\"deleted\":%zu}", kept);
		return respond(fd, 200, body);
	}
	if (gone)
		return respond(fd, 404,
			       "{\"error\":\"dlq message not found\"}");
	if (strstr(target, "/callback/") && nocb)
		return respond(fd, 400, "{\"error\":\"not in CALLBACK_FAIL\"}");
	if (!bulk) {
		snprintf(
			body, sizeof(body),
			"{\"workflowRunId\":\"wfr_%s\",\"workflowCreatedAt\":1}",
			ids[0]);
		return respond(fd, 200, body);
	}
	j = (size_t)snprintf(body, sizeof(body), "{\"workflowRuns\":[");
	for (size_t i = 0; i < n; i++)
		j += (size_t)snprintf(body + j, sizeof(body) - j,
				      "%s{\"workflowRunId\":\"wfr_%s\"}",
				      i ? "," : "", ids[i]);
	snprintf(body + j, sizeof(body) - j, "],\"cursor\":\"\"}");
	return respond(fd, 200, body);
}

static void serve(int lfd, struct shared *sh)
{
	for (;;) {
		char req[RECORD_BYTES * 2];
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0)
			_exit(1);
		if (recv_head(fd, req, sizeof(req)))
			answer(fd, req, sh);
		close(fd);
	}
}

static void server_start(struct server *s)
{
	int port = 0;
	int lfd = listen_any(&port);

	s->sh = mmap(NULL, sizeof(*s->sh), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (lfd < 0 || s->sh == MAP_FAILED) {
		printf("Bail out! cannot start the test server\n");
		exit(1);
	}
	memset(s->sh, 0, sizeof(*s->sh));
	snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%d", port);
	fflush(stdout);
	s->pid = fork();
	if (s->pid < 0) {
		printf("Bail out! fork failed\n");
		exit(1);
	}
	if (s->pid == 0) {
		serve(lfd, s->sh);
		_exit(0);
	}
	close(lfd);
}

static void server_stop(struct server *s)
{
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
}

static struct api *client(const struct server *s)
{
	struct api_config c = {.base_url = s->base, .token = "tok"};

	http_config_defaults(&c.http);
	c.http.max_tries = 2;
	c.http.backoff_ms = 1;
	c.http.max_backoff_ms = 5;
	c.http.total_timeout_ms = 5000;
	return api_new(&c);
}

/* Runs @verb on the ids of @text, named through @resolve (may be NULL);
 * returns action_run()'s result. */
static int run_resolved(struct server *s, enum action_verb verb,
			const char *text, action_resolve_fn resolve,
			struct action_log *log, struct action **ret_act)
{
	struct api *a = client(s);
	char err[256];
	int calls = 0;
	int r = action_parse(verb, text, strlen(text), resolve, &calls, ret_act,
			     err, sizeof(err));

	if (r < 0) {
		printf("# parse failed: %s\n", err);
		api_free(a);
		return r;
	}
	s->sh->requests = 0;
	r = action_run(*ret_act, a, log);
	api_free(a);
	return r;
}

static int run_text(struct server *s, enum action_verb verb, const char *text,
		    struct action_log *log, struct action **ret_act)
{
	return run_resolved(s, verb, text, NULL, log, ret_act);
}

static int count_of(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* "N-0\n" for i in [from, to), plus @extra. */
static char *ids_text(int from, int to, const char *extra)
{
	size_t cap = (size_t)(to - from) * 16 + strlen(extra) + 1, n = 0;
	char *t = malloc(cap);

	for (int i = from; i < to; i++)
		n += (size_t)snprintf(t + n, cap - n, "%d-0\n", i);
	snprintf(t + n, cap - n, "%s", extra);
	return t;
}

static void test_run_batches(struct server *s)
{
	struct action_log *log = action_log_new(0);
	struct action *act = NULL;
	char *text = ids_text(0, 120, "");
	char *with_options = malloc(strlen(text) + 32);
	char buf[256];
	int r;

	/* options come first */
	sprintf(with_options, "retries=3\ndelay=10s\n%s", text);
	free(text);
	text = with_options;
	r = run_text(s, ACTION_RESUME, text, log, &act);
	is_int(r, 0, "resume 120 ids: 0");
	is_int(s->sh->requests, 3, "resume 120 ids: three requests");
	is_int(count_of(s->sh->rec[0], "dlqIds="), 50, "first: 50 ids");
	is_int(count_of(s->sh->rec[1], "dlqIds="), 50, "second: 50 ids");
	is_int(count_of(s->sh->rec[2], "dlqIds="), 20, "third: 20 ids");
	ok(!strncmp(s->sh->rec[0], "POST /v2/workflows/dlq/resume?dlqIds=0-0&",
		    41),
	   "bulk resume path, in order");
	ok(strstr(s->sh->rec[2], "\r\nUpstash-Retries: 3\r\n") &&
		   strstr(s->sh->rec[2], "\r\nUpstash-Delay: 10s\r\n"),
	   "options on every batch");
	if (act && act->n == 120) {
		bool all = true;

		for (size_t i = 0; i < 120; i++) {
			snprintf(buf, sizeof(buf), "wfr_%zu-0", i);
			all &= act->out[i].err == 0 && act->out[i].run_id &&
			       !strcmp(act->out[i].run_id, buf) &&
			       act->out[i].http_status == 200;
		}
		ok(all, "each id has its own new run");
	}
	is_int(action_run(act, NULL, log), -EALREADY, "runs only once");
	action_free(act);
	free(text);
	{
		size_t n = action_log_size(log), lines = 0;
		char *all = malloc(n + 1);

		is_int(action_log_read(log, 0, all, n + 10), n, "log read all");
		all[n] = '\0';
		for (size_t i = 0; i < n; i++)
			lines += all[i] == '\n';
		is_int(lines, 120, "one log line per id");
		ok(strstr(all, "\"verb\":\"resume\",\"dlqId\":\"0-0\","
			       "\"outcome\":\"ok\",\"status\":200,"
			       "\"workflowRunId\":\"wfr_0-0\"}\n") != NULL,
		   "log line of the first id");
		free(all);
	}

	/* 51 ids: a bulk of 50, then the single endpoint */
	text = ids_text(0, 51, "");
	r = run_text(s, ACTION_DELETE, text, NULL, &act);
	is_int(r, 0, "delete 51 ids: 0");
	is_int(s->sh->requests, 2, "delete 51 ids: two requests");
	ok(!strncmp(s->sh->rec[0], "DELETE /v2/workflows/dlq?dlqIds=0-0&", 36),
	   "first: bulk delete");
	ok(!strncmp(s->sh->rec[1], "DELETE /v2/workflows/dlq/50-0 HTTP", 34),
	   "second: single delete");
	action_free(act);
	free(text);

	/* one id: the single endpoint */
	r = run_text(s, ACTION_RESTART, "by-url/x/7-0\n", NULL, &act);
	is_int(r, 0, "restart one id: 0");
	ok(!strncmp(s->sh->rec[0], "POST /v2/workflows/dlq/restart/7-0 HTTP",
		    39),
	   "restart one id: single endpoint");
	is_str(act->out[0].run_id, "wfr_7-0", "restart one id: the run");
	action_free(act);

	/* callback: one request each, one refused */
	r = run_text(s, ACTION_CALLBACK, "1-0\nnocb-1\n2-0\n", log, &act);
	is_int(r, -EINVAL, "callback with one refused: -EINVAL");
	is_int(s->sh->requests, 3, "callback: three single requests");
	is_int(act->out[0].err, 0, "callback 1: ok");
	is_int(act->out[1].err, -EINVAL, "callback 2: -EINVAL");
	is_int(act->out[1].http_status, 400, "callback 2: status 400");
	ok(act->out[1].text && strstr(act->out[1].text, "CALLBACK_FAIL"),
	   "callback 2: the API's words");
	is_int(act->out[2].err, 0, "callback 3: ok, after the refusal");
	action_free(act);
	action_log_free(log);
}

static void test_run_failures(struct server *s)
{
	struct action *act = NULL;
	char *text;
	int r;

	/* a bulk delete that deleted fewer */
	r = run_text(s, ACTION_DELETE, "1-0\ngone-1\n2-0\n", NULL, &act);
	is_int(r, -ENOENT, "bulk delete short of one: -ENOENT");
	ok(act->out[0].unknown && act->out[1].unknown && act->out[2].unknown,
	   "which ones were gone is unknown");
	action_free(act);

	/* single delete of an unknown id */
	r = run_text(s, ACTION_DELETE, "gone-1\n", NULL, &act);
	is_int(r, -ENOENT, "delete of an unknown id: -ENOENT");
	is_int(act->out[0].http_status, 404, "delete unknown: status 404");
	ok(!act->out[0].unknown, "delete unknown: known to be gone");
	action_free(act);

	/* one batch fails, the others still happen */
	text = ids_text(0, 60, "gone-9\n");
	r = run_text(s, ACTION_RESUME, text, NULL, &act);
	is_int(r, -ENOENT, "resume with a gone id in batch 2: -ENOENT");
	/* batch 2 (10 ids and the gone one) is answered 404: whether the
	 * API acted on the 10 is not known, so none is sent again */
	is_int(s->sh->requests, 2, "both batches, nothing sent again");
	is_int(act->out[0].err, 0, "batch 1 done");
	ok(!act->out[0].unknown, "batch 1: known");
	is_int(act->out[55].err, -ENOENT, "batch 2: a known id -ENOENT");
	ok(act->out[55].unknown, "batch 2: a known id's outcome unknown");
	ok(act->out[55].text && strstr(act->out[55].text, "not sent again"),
	   "batch 2: says why (%s)", act->out[55].text);
	is_int(act->out[60].err, -ENOENT, "batch 2: the gone id fails");
	ok(act->out[60].unknown, "batch 2: the gone id's outcome unknown too");
	is_int(act->out[60].http_status, 404, "the gone id: 404");
	action_free(act);
	free(text);

	/* 401: nothing more is sent */
	r = run_text(s, ACTION_RESTART, "deny-1\n1-0\n2-0\n", NULL, &act);
	is_int(r, -EACCES, "token refused: -EACCES");
	is_int(s->sh->requests, 1, "token refused: one request");
	action_free(act);
	r = run_text(s, ACTION_CALLBACK, "deny-1\n1-0\n2-0\n", NULL, &act);
	is_int(r, -EACCES, "callback, token refused: -EACCES");
	is_int(s->sh->requests, 1, "callback, token refused: stops");
	ok(act->out[2].err == -EACCES && act->out[2].text &&
		   strstr(act->out[2].text, "not sent"),
	   "the rest: not sent");
	action_free(act);

	/* an error other than ENOENT wins */
	r = run_text(s, ACTION_CALLBACK, "gone-1\nnocb-1\n", NULL, &act);
	is_int(r, -EINVAL, "-EINVAL ranks above -ENOENT");
	action_free(act);

	is_int(s->sh->unscoped, 0, "no unscoped bulk request, ever");
}

/* No id is ever acted on twice, and what may have happened says so. */
static void test_run_never_twice(struct server *s)
{
	struct action_log *log = action_log_new(0);
	struct action *act = NULL;
	char buf[8192];
	size_t n;
	int r;

	/* ids the tree does not list go one at a time, first: a 404 for
	 * one of them makes no other's outcome unknown */
	r = run_resolved(s, ACTION_RESUME, "n:1\ngone-1\nn:2\nn:3\n", resolver,
			 NULL, &act);
	is_int(r, -ENOENT, "an unlisted gone id: -ENOENT");
	is_int(s->sh->requests, 2, "unlisted singly, then one bulk request");
	ok(strstr(s->sh->rec[0], "/resume/gone-1 ") != NULL,
	   "the unlisted id first, on the single endpoint");
	is_int(count_of(s->sh->rec[1], "dlqIds="), 3,
	       "the listed ones together");
	ok(!act->out[1].unknown && act->out[1].http_status == 404,
	   "the unlisted id: known not found");
	ok(act->out[0].err == 0 && act->out[2].err == 0 &&
		   act->out[3].err == 0 && !act->out[0].unknown,
	   "the listed ones: done");
	action_free(act);

	/* a POST that got no answer, or a 500: maybe done; never resent */
	r = run_text(s, ACTION_RESUME, "cut-1\n", log, &act);
	is_int(r, -ECONNRESET, "resume, no answer: -ECONNRESET");
	is_int(s->sh->requests, 1, "resume, no answer: sent once");
	ok(act->out[0].unknown, "resume, no answer: unknown");
	action_free(act);
	r = run_text(s, ACTION_RESTART, "fail-1\n1-0\n", log, &act);
	is_int(r, -EIO, "restart, 500: -EIO");
	is_int(s->sh->requests, 1, "restart, 500: the bulk request once");
	ok(act->out[0].unknown && act->out[1].unknown,
	   "restart, 500: both unknown");
	action_free(act);
	r = run_text(s, ACTION_DELETE, "fail-1\n", log, &act);
	is_int(r, -EIO, "delete, 500 twice: -EIO");
	is_int(s->sh->requests, 2, "delete, 500: retried (idempotent)");
	ok(act->out[0].unknown, "delete, 500: unknown");
	action_free(act);
	r = run_text(s, ACTION_CALLBACK, "nocb-1\n", log, &act);
	ok(!act->out[0].unknown, "callback refused (400): known not done");
	action_free(act);
	n = action_log_read(log, 0, buf, sizeof(buf) - 1);
	buf[n] = '\0';
	is_int(count_of(buf, "\"outcome\":\"unknown\""), 4,
	       "actions.log: unknown, not ok or error, for those four");

	/* the daily quota: EDQUOT, and nothing more is sent */
	r = run_text(s, ACTION_DELETE, "quota-1\n", NULL, &act);
	is_int(r, -EDQUOT, "delete, daily quota: -EDQUOT");
	is_int(s->sh->requests, 1, "daily quota: not retried");
	ok(act->out[0].text && strstr(act->out[0].text, "daily request quota"),
	   "daily quota: says so (%s)", act->out[0].text);
	action_free(act);
	r = run_text(s, ACTION_CALLBACK, "quota-1\n1-0\n2-0\n", log, &act);
	is_int(r, -EDQUOT, "callbacks, daily quota: -EDQUOT");
	is_int(s->sh->requests, 1, "callbacks, daily quota: the rest not sent");
	ok(act->out[2].err == -EDQUOT && act->out[2].text &&
		   strstr(act->out[2].text, "not sent"),
	   "callbacks, daily quota: the rest not sent, said");
	action_free(act);
	n = action_log_read(log, 0, buf, sizeof(buf) - 1);
	buf[n] = '\0';
	is_int(count_of(buf, "\"error\":\"EDQUOT\""), 3,
	       "actions.log: EDQUOT for each id");

	/* the option lines go as headers */
	r = run_text(s, ACTION_RESUME,
		     "retry_delay=pow(2, retried) * 1000\nlabel=a,b\n"
		     "failure_callback=https://x.example/f\n1-0\n",
		     NULL, &act);
	is_int(r, 0, "resume with the new options");
	ok(strstr(s->sh->rec[0],
		  "Upstash-Retry-Delay: pow(2, retried) * 1000\r\n") &&
		   strstr(s->sh->rec[0], "Upstash-Label: a,b\r\n") &&
		   strstr(s->sh->rec[0],
			  "Upstash-Failure-Callback: https://x.example/f\r\n"),
	   "retry_delay, label, failure_callback sent as headers");
	action_free(act);
	action_log_free(log);
	is_int(s->sh->unscoped, 0, "no unscoped bulk request, ever");
}

/* ---- log lines and the log ---------------------------------------------- */

static void test_log_line(void)
{
	static const char odd[] = "a\"b\\c\x01\xff\xc3\xa9\xed\xa0\x80z";
	struct action_log_entry e = {
		.time_ms = 1795132800123LL,
		.verb = "delete",
		.id = odd,
		.id_len = sizeof(odd) - 1,
		.outcome = "error",
		.http_status = 404,
		.error = "ENOENT",
		.text = "HTTP 404: \"gone\"",
	};
	char line[ACTION_LOG_LINE_MAX], *big;
	size_t n = action_log_line(&e, line);

	is_str(line,
	       "{\"time\":\"2026-11-20T00:00:00.123Z\",\"verb\":\"delete\","
	       "\"dlqId\":\"a\\\"b\\\\c\\u0001\xef\xbf\xbd\xc3\xa9"
	       "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz\","
	       "\"outcome\":\"error\",\"status\":404,\"error\":\"ENOENT\","
	       "\"text\":\"HTTP 404: \\\"gone\\\"\"}\n",
	       "a log line: escapes, U+FFFD for invalid UTF-8");
	is_int(n, strlen(line), "log line length");

	e.http_status = 0;
	e.error = NULL;
	e.text = NULL;
	e.outcome = "ok";
	e.run_id = "wfr_1";
	e.id = "1-0";
	e.id_len = 3;
	action_log_line(&e, line);
	is_str(line,
	       "{\"time\":\"2026-11-20T00:00:00.123Z\",\"verb\":\"delete\","
	       "\"dlqId\":\"1-0\",\"outcome\":\"ok\",\"status\":null,"
	       "\"workflowRunId\":\"wfr_1\"}\n",
	       "a log line without a response");

	big = malloc(100000);
	memset(big, '\x01', 100000);
	e.id = big;
	e.id_len = 100000;
	n = action_log_line(&e, line);
	ok(n < ACTION_LOG_LINE_MAX && line[n - 1] == '\n' &&
		   strstr(line, "...\",\"outcome\":\"ok\""),
	   "a huge id is cut, the line stays whole (%zu bytes)", n);
	free(big);
}

static void test_log_bounds(void)
{
	struct action_log *log = action_log_new(2048);
	char line[100], buf[4096];
	uint64_t size = 0;
	int r = 0, appended = 0;

	memset(line, 'x', sizeof(line));
	line[sizeof(line) - 1] = '\n';
	is_int(action_log_append(log, line, 0), -EINVAL, "empty line refused");
	is_int(action_log_append(log, "x", 1), -EINVAL,
	       "a line without newline refused");
	is_int(action_log_size(log), 0, "empty log");
	is_int(action_log_read(log, 0, buf, sizeof(buf)), 0, "empty read");
	while ((r = action_log_append(log, line, sizeof(line))) == 0)
		appended++;
	is_int(r, -ENOSPC, "a full log refuses with -ENOSPC");
	is_int(appended, (2048 - ACTION_LOG_RESERVE) / 100,
	       "lines up to the bound minus the reserve");
	size = action_log_size(log);
	ok(size <= 2048, "the log stays within its bound (%llu)",
	   (unsigned long long)size);
	is_int(action_log_dropped(log), 1, "one dropped");
	is_int(action_log_append(log, line, sizeof(line)), -ENOSPC,
	       "still full");
	is_int(action_log_dropped(log), 2, "two dropped");
	is_int(action_log_size(log), size, "no growth once full");
	is_int(action_log_read(log, size, buf, sizeof(buf)), 0,
	       "read at the end: 0");
	is_int(action_log_read(log, size + 100, buf, sizeof(buf)), 0,
	       "read beyond the end: 0");
	is_int(action_log_read(log, 0, buf, sizeof(buf)), size, "read it all");
	buf[size] = '\0';
	ok(strstr(buf, "\"log\":\"full\"") && buf[size - 1] == '\n',
	   "ends with the full line");
	is_int(count_of(buf, "\"log\":\"full\""), 1, "one full line only");
	is_int(action_log_read(log, 150, buf, 10), 10, "a read in the middle");
	ok(!memcmp(buf, "xxxxxxxxxx", 10), "bytes at the offset");
	action_log_free(log);
	action_log_free(NULL);
	ok(1, "action_log_free(NULL) is a no-op");
}

int main(void)
{
	struct server s;

	setvbuf(stdout, NULL, _IOLBF, 0);
	unsetenv("http_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	if (http_global_init() < 0) {
		printf("Bail out! curl_global_init failed\n");
		return 1;
	}
	test_verbs();
	test_parse_table();
	test_parse_options();
	test_parse_resolver();
	test_parse_limits();
	test_input_table();
	test_input_chunks();
	test_input_limits();
	test_log_line();
	test_log_bounds();
	server_start(&s);
	test_run_batches(&s);
	test_run_failures(&s);
	test_run_never_twice(&s);
	server_stop(&s);
	munmap(s.sh, sizeof(*s.sh));
	http_global_cleanup();
	return tap_done();
}
