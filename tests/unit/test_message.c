/* test_message: rendering of WorkflowDLQMessage entries into files and view
 * values, and list pages (and, where the allocator stand-in is, running out
 * of memory in answer_error_text()). JSON in the tables is written with '
 * for " (see J()) to stay readable. */
#include <dlfcn.h> /* RTLD_NEXT: _GNU_SOURCE comes from meson.build */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h> /* only to stand in front of json_loadb() */

#include "answer.h"
#include "jtext.h"
#include "message.h"
#include "snapshot.h"
#include "message_page.h"
#include "msgfile.h"
#include "tap.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define ABSENT ((size_t)-1)

static struct message *parse(const char *json)
{
	struct message *m = NULL;
	int r = message_parse(json, strlen(json), &m);

	if (r != 0) {
		printf("# message_parse: %d for %s\n", r, json);
		return NULL;
	}
	return m;
}

/* The values of a view joined with '|' ("" for none). */
static const char *view_str(const struct message *m, enum message_view v)
{
	static char buf[4096];
	size_t n = 0;

	buf[0] = '\0';
	for (uint32_t i = 0; i < m->view[v].n; i++) {
		const struct message_bytes *b = &m->view[v].v[i];

		if (n + b->len + 2 > sizeof(buf))
			break;
		if (i)
			buf[n++] = '|';
		memcpy(buf + n, b->data, b->len);
		n += b->len;
		buf[n] = '\0';
	}
	return buf;
}

/* The id and the text of @m have a NUL after them, and every byte string
 * lies after the struct: one allocation, laid out in order (view values
 * may point into the text); every file renders to its size (the same
 * bytes twice: file_of() checks). */
static int well_formed(const struct message *m)
{
	const char *base = (const char *)(m + 1);

	if (!m->id.data || m->id.len == 0 || m->id.data < base ||
	    m->id.data[m->id.len] != '\0')
		return 0;
	if (!m->text.data || m->text.data < base ||
	    m->text.data[m->text.len] != '\0')
		return 0;
	for (int f = 0; f < MESSAGE_NFILES; f++) {
		const struct message_bytes *b = file_of(m, f);

		if (b->data && b->data[b->len] != '\0')
			return 0;
	}
	for (int v = 0; v < VIEW_COUNT; v++) {
		if (m->view[v].n && (const char *)m->view[v].v < base)
			return 0;
		for (uint32_t i = 0; i < m->view[v].n; i++) {
			const struct message_bytes *b = &m->view[v].v[i];

			if (b->len == 0 || b->data < base)
				return 0;
			for (uint32_t k = 0; k < i; k++)
				if (m->view[v].v[k].len == b->len &&
				    !memcmp(m->view[v].v[k].data, b->data,
					    b->len))
					return 0; /* a duplicate */
		}
	}
	return 1;
}

static void test_names(void)
{
	static const char *files[] = {"message.json",	"body",
				      "header",		"responseBody",
				      "responseHeader", "responseStatus"};
	static const char *views[] = {"by-label",
				      "by-url",
				      "by-run",
				      "by-state",
				      "by-status",
				      "by-date",
				      "by-flow-control-key",
				      "by-caller-ip"};

	for (int f = 0; f < MESSAGE_NFILES; f++)
		is_str(message_file_names[f], files[f], "file name %d", f);
	for (int v = 0; v < VIEW_COUNT; v++)
		is_str(snapshot_view_names[v], views[v], "view name %d", v);
}

/* message.json: every field, received order, 2-space indent, final "\n";
 * tokens (string escapes, numbers) exactly as received. */
static void test_json(void)
{
	static const char want[] = "{\n"
				   "  \"dlqId\": \"1752829295505-0\",\n"
				   "  \"zeta\": 1,\n"
				   "  \"createdAt\": 1752829295505,\n"
				   "  \"future\": {\n"
				   "    \"list\": [\n"
				   "      1,\n"
				   "      2.5,\n"
				   "      true,\n"
				   "      null,\n"
				   "      {}\n"
				   "    ],\n"
				   "    \"empty\": []\n"
				   "  },\n"
				   "  \"body\": \"a\\u0000b\\n\\\"q\\\"\",\n"
				   "  \"utf8\": \"caf\\u00e9 \\/ \xc3\xa9\",\n"
				   "  \"alpha\": \"last\"\n"
				   "}\n";
	const char *in = J(
		"{'dlqId':'1752829295505-0','zeta':1,"
		"'createdAt':1752829295505,"
		"'future':{'list':[1,2.5,true,null,{}],'empty':[]},"
		"'body':'a\\u0000b\\n\\'q\\'','utf8':'caf\\u00e9 \\/ \xc3\xa9',"
		"'alpha':'last'}");
	struct message *m = parse(in);

	ok(m != NULL, "json: parsed");
	if (!m)
		return;
	is_mem(file_of(m, MESSAGE_JSON)->data, file_of(m, MESSAGE_JSON)->len,
	       want, sizeof(want) - 1,
	       "json: exact pretty text, unknown fields kept");
	is_mem(m->id.data, m->id.len, "1752829295505-0", 15, "json: dlqId");
	ok(m->has_created && m->created_ms == 1752829295505LL,
	   "json: createdAt");
	is_int(m->problems, 0, "json: no problems");
	ok(well_formed(m), "json: one allocation, NUL after every string");
	message_free(m);

	/* A repeated key: message.json shows every occurrence, as sent; the
	 * files and views take the last value, as jansson does. */
	m = parse(J("{'dlqId':'x','a':1,'b':2,'a':3,'body':'1','body':'2',"
		    "'dlqId':'y'}"));
	if (m) {
		is_str(file_of(m, MESSAGE_JSON)->data,
		       "{\n  \"dlqId\": \"x\",\n  \"a\": 1,\n  \"b\": 2,\n"
		       "  \"a\": 3,\n  \"body\": \"1\",\n  \"body\": \"2\",\n"
		       "  \"dlqId\": \"y\"\n}\n",
		       "json: duplicate keys all shown");
		is_mem(file_of(m, MESSAGE_BODY)->data,
		       file_of(m, MESSAGE_BODY)->len, "2", 1,
		       "json: duplicate key: the file has the last");
		is_mem(m->id.data, m->id.len, "y", 1,
		       "json: duplicate key: the last dlqId");
	}
	message_free(m);
}

static const struct {
	const char *json; /* with ' for " */
	enum message_file file;
	const char *want; /* NULL: file absent */
	size_t len;
	unsigned problems;
} file_cases[] = {
	/* body */
	{"{'body':'hello'}", MESSAGE_BODY, "hello", 5, 0},
	{"{'body':'a\\u0000b'}", MESSAGE_BODY, "a\0b", 3, 0},
	{"{'body':''}", MESSAGE_BODY, "", 0, 0},
	{"{}", MESSAGE_BODY, NULL, 0, 0},
	{"{'body':null}", MESSAGE_BODY, NULL, 0, 0},
	{"{'body':42}", MESSAGE_BODY, NULL, 0, 1},
	{"{'body':{'a':1}}", MESSAGE_BODY, NULL, 0, 1},
	{"{'bodyBase64':'AAEC/w=='}", MESSAGE_BODY, "\0\1\2\xff", 4, 0},
	{"{'bodyBase64':'AAEC/w'}", MESSAGE_BODY, "\0\1\2\xff", 4, 0},
	{"{'bodyBase64':'AAEC_w'}", MESSAGE_BODY, "\0\1\2\xff", 4, 0},
	{"{'bodyBase64':'+-/_'}", MESSAGE_BODY, "\xfb\xef\xff", 3, 0},
	{"{'bodyBase64':'AAEC\\r\\n/w==\\r\\n'}", MESSAGE_BODY, "\0\1\2\xff", 4,
	 0},
	{"{'bodyBase64':'aGVsbG8='}", MESSAGE_BODY, "hello", 5, 0},
	{"{'bodyBase64':'aGVsbG8'}", MESSAGE_BODY, "hello", 5, 0},
	{"{'bodyBase64':'aGVsbA=='}", MESSAGE_BODY, "hell", 4, 0},
	{"{'bodyBase64':'aGVsbA'}", MESSAGE_BODY, "hell", 4, 0},
	{"{'bodyBase64':'aGVsbA='}", MESSAGE_BODY, NULL, 0, 1},
	{"{'bodyBase64':'aGVsbG8=='}", MESSAGE_BODY, NULL, 0, 1},
	{"{'bodyBase64':'aGVsb'}", MESSAGE_BODY, NULL, 0, 1},
	{"{'bodyBase64':'aG=Vs'}", MESSAGE_BODY, NULL, 0, 1},
	{"{'bodyBase64':'aGV*bG8='}", MESSAGE_BODY, NULL, 0, 1},
	{"{'bodyBase64':'aGV sbG8='}", MESSAGE_BODY, NULL, 0, 1},
	{"{'bodyBase64':'aGVs\\u0000bG8='}", MESSAGE_BODY, NULL, 0, 1},
	{"{'bodyBase64':'===='}", MESSAGE_BODY, NULL, 0, 1},
	{"{'bodyBase64':'\\r\\n'}", MESSAGE_BODY, "", 0, 0},
	{"{'bodyBase64':''}", MESSAGE_BODY, "", 0, 0},
	{"{'bodyBase64':'','body':'text'}", MESSAGE_BODY, "text", 4, 0},
	{"{'body':'','bodyBase64':'/w=='}", MESSAGE_BODY, "\xff", 1, 0},
	{"{'body':'x','bodyBase64':'eQ=='}", MESSAGE_BODY, "y", 1, 0},
	{"{'body':'x','bodyBase64':'e!'}", MESSAGE_BODY, NULL, 0, 1},
	{"{'body':42,'bodyBase64':''}", MESSAGE_BODY, "", 0, 1},
	{"{'body':'x','bodyBase64':42}", MESSAGE_BODY, "x", 1, 1},
	{"{'body':'x','bodyBase64':null}", MESSAGE_BODY, "x", 1, 0},
	/* responseBody: the same rules */
	{"{'responseBody':'oops'}", MESSAGE_RESPONSE_BODY, "oops", 4, 0},
	{"{'responseBodyBase64':'b29wcw=='}", MESSAGE_RESPONSE_BODY, "oops", 4,
	 0},
	{"{'responseBodyBase64':'','responseBody':''}", MESSAGE_RESPONSE_BODY,
	 "", 0, 0},
	{"{'responseBodyBase64':'%%%'}", MESSAGE_RESPONSE_BODY, NULL, 0, 1},
	{"{'responseBody':[]}", MESSAGE_RESPONSE_BODY, NULL, 0, 1},
	{"{'body':'req'}", MESSAGE_RESPONSE_BODY, NULL, 0, 0},
	/* header */
	{"{'header':{'B':['2'],'A':['1','x'],'a':['3']}}", MESSAGE_HEADER,
	 "A: 1\nA: x\nB: 2\na: 3\n", 20, 0},
	{"{'header':{'Content-Type':'text/plain'}}", MESSAGE_HEADER,
	 "Content-Type: text/plain\n", 25, 0},
	{"{'header':{'A':['1',2,null,'3',{}]}}", MESSAGE_HEADER, "A: 1\nA: 3\n",
	 10, 3},
	{"{'header':{'A':7,'B':null,'C':['c']}}", MESSAGE_HEADER, "C: c\n", 5,
	 2},
	{"{'header':{'X':['a\\r\\nb'],'Y\\nZ':['v\\rw']}}", MESSAGE_HEADER,
	 "X: a  b\nY Z: v w\n", 17, 0},
	{"{'header':{'X':['a\\u0000b']}}", MESSAGE_HEADER, "X: a\0b\n", 7, 0},
	{"{'header':{'Empty':[],'V':['']}}", MESSAGE_HEADER, "V: \n", 4, 0},
	{"{'header':{'ab':['1'],'a':['2'],'':['3']}}", MESSAGE_HEADER,
	 ": 3\na: 2\nab: 1\n", 15, 0},
	{"{'header':{'\\u00e9':['1'],'z':['2']}}", MESSAGE_HEADER,
	 "z: 2\n\xc3\xa9: 1\n", 11, 0},
	{"{'header':{}}", MESSAGE_HEADER, "", 0, 0},
	{"{}", MESSAGE_HEADER, NULL, 0, 0},
	{"{'header':null}", MESSAGE_HEADER, NULL, 0, 0},
	{"{'header':[['A','1']]}", MESSAGE_HEADER, NULL, 0, 1},
	{"{'header':'A: 1'}", MESSAGE_HEADER, NULL, 0, 1},
	/* responseHeader: the same rules */
	{"{'responseHeader':{'Server':['x'],'Date':['d']}}",
	 MESSAGE_RESPONSE_HEADER, "Date: d\nServer: x\n", 18, 0},
	{"{'responseHeader':{}}", MESSAGE_RESPONSE_HEADER, "", 0, 0},
	{"{'responseHeader':5}", MESSAGE_RESPONSE_HEADER, NULL, 0, 1},
	{"{'header':{'A':['1']}}", MESSAGE_RESPONSE_HEADER, NULL, 0, 0},
	/* responseStatus */
	{"{'responseStatus':500}", MESSAGE_RESPONSE_STATUS, "500\n", 4, 0},
	{"{'responseStatus':-1}", MESSAGE_RESPONSE_STATUS, "-1\n", 3, 0},
	{"{'responseStatus':0}", MESSAGE_RESPONSE_STATUS, "0\n", 2, 0},
	{"{'responseStatus':'502'}", MESSAGE_RESPONSE_STATUS, "502\n", 4, 0},
	{"{'responseStatus':''}", MESSAGE_RESPONSE_STATUS, "", 0, 0},
	{"{'responseStatus':null}", MESSAGE_RESPONSE_STATUS, NULL, 0, 0},
	{"{}", MESSAGE_RESPONSE_STATUS, NULL, 0, 0},
	{"{'responseStatus':500.5}", MESSAGE_RESPONSE_STATUS, NULL, 0, 1},
	{"{'responseStatus':true}", MESSAGE_RESPONSE_STATUS, NULL, 0, 1},
	{"{'responseStatus':[500]}", MESSAGE_RESPONSE_STATUS, NULL, 0, 1},
};

/* Adds "dlqId" to a case's object. */
static const char *with_id(const char *obj)
{
	static char buf[8192];

	snprintf(buf, sizeof(buf), "{\"dlqId\":\"id\"%s%s",
		 obj[1] == '}' ? "" : ",", J(obj) + 1);
	return buf;
}

static void test_files(void)
{
	for (size_t i = 0; i < N(file_cases); i++) {
		const char *name = message_file_names[file_cases[i].file];
		struct message *m = parse(with_id(file_cases[i].json));
		const struct message_bytes *f;

		if (!ok(m != NULL, "%s %s: parsed", name, file_cases[i].json))
			continue;
		f = file_of(m, file_cases[i].file);
		if (file_cases[i].want)
			is_mem(f->data, f->len, file_cases[i].want,
			       file_cases[i].len, "%s %s: content", name,
			       file_cases[i].json);
		else
			ok(f->data == NULL && f->len == 0, "%s %s: absent",
			   name, file_cases[i].json);
		is_int(m->problems, file_cases[i].problems, "%s %s: problems",
		       name, file_cases[i].json);
		ok(file_of(m, MESSAGE_JSON)->data != NULL && well_formed(m),
		   "%s %s: message.json, layout", name, file_cases[i].json);
		message_free(m);
	}
}

/* The on-demand renderer: every file of every file case renders to
 * exactly its size, into a buffer of exactly that size, the same bytes
 * twice (file_of() checks that too); an absent file is -ENOENT. */
static void test_render(void)
{
	size_t files = 0, bad = 0;

	for (size_t i = 0; i < N(file_cases); i++) {
		struct message *m = parse(with_id(file_cases[i].json));

		if (!m)
			continue;
		for (int f = 0; f < MESSAGE_NFILES; f++) {
			size_t n = message_file_size(m, f);
			char *a = malloc(n ? n : 1), *b = malloc(n ? n : 1);

			if (!message_file_exists(m, f)) {
				bad += n != 0 ||
				       message_file_render(m, f, a) != -ENOENT;
			} else {
				files++;
				bad += message_file_render(m, f, a) != 0 ||
				       message_file_render(m, f, b) != 0 ||
				       (n && memcmp(a, b, n));
				bad += !message_file_same(m, m, f);
			}
			free(a);
			free(b);
		}
		message_free(m);
	}
	ok(files > N(file_cases), "%zu files rendered", files);
	is_int(bad, 0, "each to its size, twice the same; absent: -ENOENT");
}

/* message_file_same(): exact for message.json, conservative for the
 * others (the same bytes sent with other escapes read as changed). */
static void test_file_same(void)
{
	struct message *a = parse(J("{'dlqId':'x','body':'AB','header':"
				    "{'K':'v'},'responseStatus':500}"));
	struct message *b = parse(J("{ 'dlqId' : 'x', 'body' : 'AB', "
				    "'header' : { 'K' : 'v' }, "
				    "'responseStatus' : 500 }"));
	struct message *c = parse(J("{'dlqId':'x','body':'A\\u0042',"
				    "'header':{'K':'v','L':'w'},"
				    "'responseStatus':'500'}"));

	if (!ok(a && b && c, "parsed"))
		goto out;
	is_mem(a->text.data, a->text.len, b->text.data, b->text.len,
	       "the text is kept without its whitespace");
	for (int f = 0; f < MESSAGE_NFILES; f++)
		ok(message_file_same(a, b, f), "same tokens: %s the same",
		   message_file_names[f]);
	is_mem(file_of(a, MESSAGE_BODY)->data, file_of(a, MESSAGE_BODY)->len,
	       file_of(c, MESSAGE_BODY)->data, file_of(c, MESSAGE_BODY)->len,
	       "\\u0042 is B: the same body");
	ok(!message_file_same(a, c, MESSAGE_BODY),
	   "but sent otherwise: read as changed");
	ok(!message_file_same(a, c, MESSAGE_JSON), "message.json changed");
	ok(!message_file_same(a, c, MESSAGE_HEADER), "header changed");
	is_mem(file_of(c, MESSAGE_RESPONSE_STATUS)->data,
	       file_of(c, MESSAGE_RESPONSE_STATUS)->len, "500\n", 4,
	       "responseStatus as a string");
	ok(!message_file_same(a, c, MESSAGE_RESPONSE_STATUS),
	   "an integer and a string: read as changed");
	ok(message_file_same(a, c, MESSAGE_RESPONSE_BODY),
	   "absent in both: the same");
out:
	message_free(a);
	message_free(b);
	message_free(c);
}

static void test_header_limit(void)
{
	size_t cap = 16 * 1100 + 64, n = 0;
	char *json = malloc(cap);
	struct message *m;
	size_t lines = 0;

	if (!json)
		abort();
	n += (size_t)snprintf(json + n, cap - n,
			      "{\"dlqId\":\"x\",\"header\":{\"H\":[");
	for (int i = 0; i < 1100; i++)
		n += (size_t)snprintf(json + n, cap - n, "%s\"%d\"",
				      i ? "," : "", i);
	n += (size_t)snprintf(json + n, cap - n, "]}}");
	m = parse(json);
	if (ok(m != NULL, "1100 header values: parsed")) {
		for (size_t i = 0; i < file_of(m, MESSAGE_HEADER)->len; i++)
			lines += file_of(m, MESSAGE_HEADER)->data[i] == '\n';
		is_int(lines, MESSAGE_MAX_HEADER_VALUES,
		       "1100 header values: %d lines",
		       MESSAGE_MAX_HEADER_VALUES);
		ok(file_of(m, MESSAGE_HEADER)->len > 8 &&
			   !memcmp(file_of(m, MESSAGE_HEADER)->data +
					   file_of(m, MESSAGE_HEADER)->len - 8,
				   "H: 1023\n", 8),
		   "1100 header values: the first ones kept");
		is_int(m->problems, 1, "1100 header values: one problem");
	}
	message_free(m);
	free(json);
}

static const struct {
	const char *json; /* with ' for ", dlqId added */
	enum message_view view;
	const char *want; /* values joined with '|' */
	unsigned problems;
} view_cases[] = {
	{"{'labels':['a','b','a','','c']}", VIEW_LABEL, "a|b|c", 0},
	{"{'labels':['a'],'label':'z'}", VIEW_LABEL, "a", 0},
	{"{'labels':[],'label':'z'}", VIEW_LABEL, "", 0},
	{"{'label':'z'}", VIEW_LABEL, "z", 0},
	{"{'labels':null,'label':'z'}", VIEW_LABEL, "z", 0},
	{"{'label':''}", VIEW_LABEL, "", 0},
	{"{'label':5}", VIEW_LABEL, "", 1},
	{"{'labels':'solo','label':'z'}", VIEW_LABEL, "solo", 1},
	{"{'labels':'','label':'z'}", VIEW_LABEL, "", 1},
	{"{'labels':5,'label':'z'}", VIEW_LABEL, "", 1},
	{"{'labels':{'a':'b'}}", VIEW_LABEL, "", 1},
	{"{'labels':[1,'a',null,['b']]}", VIEW_LABEL, "a", 3},
	{"{'labels':['team/payments','x y']}", VIEW_LABEL, "team/payments|x y",
	 0},
	{"{'workflowUrl':'https://a.example/wf'}", VIEW_URL,
	 "https://a.example/wf", 0},
	{"{'workflowUrl':''}", VIEW_URL, "", 0},
	{"{'workflowUrl':null}", VIEW_URL, "", 0},
	{"{'workflowUrl':['u']}", VIEW_URL, "", 1},
	{"{'workflowRunId':'wfr_5XAx4IJergqkGK1v23VzR'}", VIEW_RUN,
	 "wfr_5XAx4IJergqkGK1v23VzR", 0},
	{"{'workflowRunId':1}", VIEW_RUN, "", 1},
	{"{'failureFunctionState':'CALLBACK_FAIL'}", VIEW_STATE,
	 "CALLBACK_FAIL", 0},
	{"{'failureFunctionState':false}", VIEW_STATE, "", 1},
	/* the state only inside failureCallbackInfo (the SDK's types, the
	 * docs' example), or in both places: the top level decides */
	{"{'failureCallbackInfo':{'state':'CALLBACK_FAIL'}}", VIEW_STATE,
	 "CALLBACK_FAIL", 0},
	{"{'failureCallbackInfo':{'state':'CALL\\u0042ACK_FAIL'}}", VIEW_STATE,
	 "CALLBACK_FAIL", 0},
	{"{'failureFunctionState':'CALLBACK_SUCCESS',"
	 "'failureCallbackInfo':{'state':'CALLBACK_FAIL'}}",
	 VIEW_STATE, "CALLBACK_SUCCESS", 0},
	{"{'failureCallbackInfo':{'state':'CALLBACK_FAIL'},"
	 "'failureFunctionState':'CALLBACK_SUCCESS'}",
	 VIEW_STATE, "CALLBACK_SUCCESS", 0},
	{"{'failureFunctionState':null,"
	 "'failureCallbackInfo':{'state':'CALLBACK_FAIL'}}",
	 VIEW_STATE, "CALLBACK_FAIL", 0},
	{"{'failureFunctionState':7,"
	 "'failureCallbackInfo':{'state':'CALLBACK_FAIL'}}",
	 VIEW_STATE, "CALLBACK_FAIL", 1},
	{"{'failureCallbackInfo':{'responseStatus':200}}", VIEW_STATE, "", 0},
	{"{'failureCallbackInfo':null}", VIEW_STATE, "", 0},
	{"{'failureCallbackInfo':'CALLBACK_FAIL'}", VIEW_STATE, "", 1},
	{"{'failureCallbackInfo':{'state':['CALLBACK_FAIL']}}", VIEW_STATE, "",
	 1},
	{"{'responseStatus':500}", VIEW_STATUS, "500", 0},
	{"{'responseStatus':'502'}", VIEW_STATUS, "502", 0},
	{"{'responseStatus':''}", VIEW_STATUS, "", 0},
	{"{'responseStatus':{}}", VIEW_STATUS, "", 1},
	{"{'createdAt':1752829295505}", VIEW_DATE, "2025-07-18", 0},
	{"{'createdAt':0}", VIEW_DATE, "1970-01-01", 0},
	{"{'createdAt':-1}", VIEW_DATE, "1969-12-31", 0},
	{"{'createdAt':86399999}", VIEW_DATE, "1970-01-01", 0},
	{"{'createdAt':86400000}", VIEW_DATE, "1970-01-02", 0},
	{"{'createdAt':253402300799999}", VIEW_DATE, "9999-12-31", 0},
	{"{'createdAt':1752829295505.9}", VIEW_DATE, "2025-07-18", 1},
	{"{'createdAt':'1752829295505'}", VIEW_DATE, "", 1},
	{"{'createdAt':null}", VIEW_DATE, "", 0},
	{"{'createdAt':1e300}", VIEW_DATE, "", 1},
	{"{'flowControlKey':'fck'}", VIEW_FLOW_CONTROL_KEY, "fck", 0},
	{"{'flowControlKey':7}", VIEW_FLOW_CONTROL_KEY, "", 1},
	{"{'callerIP':'1.2.3.4'}", VIEW_CALLER_IP, "1.2.3.4", 0},
	{"{'callerIp':'1.2.3.4'}", VIEW_CALLER_IP, "", 0},
	{"{'callerIP':true}", VIEW_CALLER_IP, "", 1},
};

static void test_views(void)
{
	for (size_t i = 0; i < N(view_cases); i++) {
		const char *name = snapshot_view_names[view_cases[i].view];
		struct message *m = parse(with_id(view_cases[i].json));

		if (!ok(m != NULL, "%s %s: parsed", name, view_cases[i].json))
			continue;
		is_str(view_str(m, view_cases[i].view), view_cases[i].want,
		       "%s %s: values", name, view_cases[i].json);
		is_int(m->problems, view_cases[i].problems, "%s %s: problems",
		       name, view_cases[i].json);
		for (int v = 0; v < VIEW_COUNT; v++)
			if (v != (int)view_cases[i].view &&
			    !(v == VIEW_DATE && m->has_created) &&
			    !(v == VIEW_STATUS &&
			      file_of(m, MESSAGE_RESPONSE_STATUS)->len))
				ok(m->view[v].n == 0 && m->view[v].v == NULL,
				   "%s %s: nothing in %s", name,
				   view_cases[i].json, snapshot_view_names[v]);
		ok(well_formed(m), "%s %s: layout", name, view_cases[i].json);
		message_free(m);
	}
}

static void test_view_misc(void)
{
	struct message *m;
	char json[4096];
	size_t n = 0;

	/* A NUL byte inside a value is kept (names.c escapes it). */
	m = parse(with_id("{'label':'a\\u0000b'}"));
	if (ok(m && m->view[VIEW_LABEL].n == 1, "label with NUL: one value"))
		is_mem(m->view[VIEW_LABEL].v[0].data,
		       m->view[VIEW_LABEL].v[0].len, "a\0b", 3,
		       "label with NUL: bytes kept");
	message_free(m);

	/* At most MESSAGE_MAX_LABELS distinct labels. */
	n += (size_t)snprintf(json + n, sizeof(json) - n,
			      "{\"dlqId\":\"x\",\"labels\":[");
	for (int i = 0; i < 70; i++)
		n += (size_t)snprintf(json + n, sizeof(json) - n, "%s\"l%d\"",
				      i ? "," : "", i % 2 ? i - 1 : i);
	for (int i = 0; i < 70; i++)
		n += (size_t)snprintf(json + n, sizeof(json) - n, ",\"m%d\"",
				      i);
	snprintf(json + n, sizeof(json) - n, "]}");
	m = parse(json);
	if (ok(m != NULL, "140 labels: parsed")) {
		is_int(m->view[VIEW_LABEL].n, MESSAGE_MAX_LABELS,
		       "140 labels, 105 distinct: %d kept", MESSAGE_MAX_LABELS);
		is_mem(m->view[VIEW_LABEL].v[34].data,
		       m->view[VIEW_LABEL].v[34].len, "l68", 3,
		       "140 labels: in order, duplicates dropped");
		is_mem(m->view[VIEW_LABEL].v[35].data,
		       m->view[VIEW_LABEL].v[35].len, "m0", 2,
		       "140 labels: then the next distinct ones");
		is_int(m->problems, 1, "140 labels: one problem");
		ok(well_formed(m), "140 labels: layout");
	}
	message_free(m);

	/* Everything at once. */
	m = parse(J("{'dlqId':'d','labels':['x','y'],'workflowUrl':'u',"
		    "'workflowRunId':'r','failureFunctionState':'s',"
		    "'responseStatus':404,'createdAt':1000,"
		    "'flowControlKey':'k','callerIP':'ip'}"));
	if (ok(m != NULL, "all views: parsed")) {
		static const char *want[VIEW_COUNT] = {
			"x|y", "u", "r", "s", "404", "1970-01-01", "k", "ip"};

		for (int v = 0; v < VIEW_COUNT; v++)
			is_str(view_str(m, v), want[v], "all views: %s",
			       snapshot_view_names[v]);
		ok(well_formed(m), "all views: layout");
	}
	message_free(m);
}

static void test_created(void)
{
	struct message *m;

	m = parse(with_id("{'createdAt':1752829295505}"));
	ok(m && m->has_created && m->created_ms == 1752829295505LL,
	   "createdAt integer");
	message_free(m);
	m = parse(with_id("{'createdAt':-5.7}"));
	ok(m && m->has_created && m->created_ms == -5 && m->problems == 1,
	   "createdAt real: truncated, a problem");
	message_free(m);
	m = parse(with_id("{'createdAt':'5'}"));
	ok(m && !m->has_created && m->problems == 1,
	   "createdAt string: none, a problem");
	message_free(m);
	m = parse(with_id("{'createdAt':null}"));
	ok(m && !m->has_created && m->problems == 0, "createdAt null: none");
	message_free(m);
	m = parse(with_id("{}"));
	ok(m && !m->has_created && m->problems == 0, "createdAt absent: none");
	message_free(m);
	/* workflowCreatedAt: read for the scope, never a problem */
	m = parse(with_id("{'workflowCreatedAt':1752829293531}"));
	ok(m && m->has_wf_created && m->wf_created_ms == 1752829293531LL &&
		   !m->has_created,
	   "workflowCreatedAt integer");
	message_free(m);
	m = parse(with_id("{'workflowCreatedAt':'1752829293531'}"));
	ok(m && !m->has_wf_created && m->problems == 0,
	   "workflowCreatedAt string: none, no problem");
	message_free(m);
	m = parse(with_id("{'workflowCreatedAt':12.9}"));
	ok(m && m->has_wf_created && m->wf_created_ms == 12 && m->problems == 0,
	   "workflowCreatedAt real: truncated, no problem");
	message_free(m);
	m = parse(with_id("{'createdAt':9223372036854775807}"));
	ok(m && m->has_created && m->created_ms == INT64_MAX &&
		   m->view[VIEW_DATE].n <= 1,
	   "createdAt INT64_MAX: kept, no crash");
	message_free(m);
	m = parse(with_id("{'createdAt':-9223372036854775808}"));
	ok(m && m->has_created && m->created_ms == INT64_MIN,
	   "createdAt INT64_MIN: kept");
	message_free(m);
	m = parse(with_id("{'createdAt':9.3e18}"));
	ok(m && !m->has_created && m->problems == 1,
	   "createdAt real out of range: none, a problem");
	message_free(m);
}

static void test_ids(void)
{
	static const struct {
		const char *json;
		int want;
	} cases[] = {
		{"{'dlqId':'1752829295505-0'}", 0},
		{"{'dlqId':'a/b'}", 0},
		{"{}", -EINVAL},
		{"{'dlqId':''}", -EINVAL},
		{"{'dlqId':null}", -EINVAL},
		{"{'dlqId':12}", -EINVAL},
		{"{'dlqId':['x']}", -EINVAL},
		{"{'dlqId':'a\\u0000b'}", -EINVAL},
		{"['dlqId','x']", -EINVAL},
		{"'x'", -EINVAL},
		{"", -EINVAL},
		{"{'dlqId':'x'", -EINVAL},
		{"{'dlqId':'x'} {}", -EINVAL},
		{"{'dlqId':'\xff'}", -EINVAL},
		{"<html>502 Bad Gateway</html>", -EINVAL},
	};
	struct message *m, *sentinel = (struct message *)&m;
	char big[1200];

	for (size_t i = 0; i < N(cases); i++) {
		const char *json = J(cases[i].json);
		int r;

		m = sentinel;
		r = message_parse(json, strlen(json), &m);
		is_int(r, cases[i].want, "dlqId %s: %d", cases[i].json,
		       cases[i].want);
		if (r == 0)
			message_free(m);
		else
			ok(m == sentinel, "dlqId %s: output untouched",
			   cases[i].json);
	}

	for (int len = MESSAGE_MAX_ID; len <= MESSAGE_MAX_ID + 1; len++) {
		int r;

		snprintf(big, sizeof(big), "{\"dlqId\":\"%0*d\"}", len, 7);
		m = NULL;
		r = message_parse(big, strlen(big), &m);
		is_int(r, len <= MESSAGE_MAX_ID ? 0 : -EINVAL,
		       "dlqId of %d bytes", len);
		if (r == 0)
			is_int(m->id.len, len, "dlqId of %d bytes: kept", len);
		message_free(m);
	}

	/* The text need not be NUL-terminated. */
	{
		char raw[] = "{\"dlqId\":\"ab\"}XXXX";

		m = NULL;
		is_int(message_parse(raw, 14, &m), 0, "unterminated text");
		if (m)
			is_mem(m->id.data, m->id.len, "ab", 2,
			       "unterminated text: id");
		message_free(m);
	}
	message_free(NULL);
	ok(1, "message_free(NULL) is a no-op");
}

/* Integers beyond 64 bits: shown as sent, counted (the tree holds them as
 * reals), the rest intact. */
static void test_huge_int(void)
{
	struct message *m =
		parse(J("{'dlqId':'x','n':123456789012345678901234567890,"
			"'createdAt':1752829295505,'r':0.5,'w':2.0,"
			"'l':[99999999999999999999,1],'responseStatus':500}"));
	const char *want = "{\n"
			   "  \"dlqId\": \"x\",\n"
			   "  \"n\": 123456789012345678901234567890,\n"
			   "  \"createdAt\": 1752829295505,\n"
			   "  \"r\": 0.5,\n"
			   "  \"w\": 2.0,\n"
			   "  \"l\": [\n"
			   "    99999999999999999999,\n"
			   "    1\n"
			   "  ],\n"
			   "  \"responseStatus\": 500\n"
			   "}\n";

	if (!ok(m != NULL, "huge integers: parsed"))
		return;
	is_str(file_of(m, MESSAGE_JSON)->data, want,
	       "huge integers: message.json");
	ok(m->has_created && m->created_ms == 1752829295505LL,
	   "huge integers: createdAt still an integer");
	is_str(view_str(m, VIEW_STATUS), "500",
	       "huge integers: responseStatus still an integer");
	is_int(m->problems, 2, "huge integers: two problems");
	message_free(m);
}

/* message.json is the entry's text re-indented: numbers and string escapes
 * read exactly as sent, whatever the spacing was. */
static void test_verbatim(void)
{
	static const struct {
		const char *json; /* with ' for " */
		const char *want; /* message.json */
	} cases[] = {
		{"{'dlqId':'n','a':0.1,'b':1e300,'c':-0,'d':1E+2,'e':-0.0,"
		 "'f':1.5e-7,'g':9007199254740993}",
		 "{\n  \"dlqId\": \"n\",\n  \"a\": 0.1,\n  \"b\": 1e300,\n"
		 "  \"c\": -0,\n  \"d\": 1E+2,\n  \"e\": -0.0,\n"
		 "  \"f\": 1.5e-7,\n  \"g\": 9007199254740993\n}\n"},
		{"{'dlqId':'h','e':12345678901234567890123,"
		 "'m':-9223372036854775809,'x':9223372036854775807}",
		 "{\n  \"dlqId\": \"h\",\n  \"e\": 12345678901234567890123,\n"
		 "  \"m\": -9223372036854775809,\n"
		 "  \"x\": 9223372036854775807\n}\n"},
		{"{'dlqId':'s','a':'caf\\u00e9','b':'\\/x\\/','c':'\\u00E9\\t',"
		 "'d':'\\ud83d\\ude42','\\u006b':'\\\\\\''}",
		 "{\n  \"dlqId\": \"s\",\n  \"a\": \"caf\\u00e9\",\n"
		 "  \"b\": \"\\/x\\/\",\n  \"c\": \"\\u00E9\\t\",\n"
		 "  \"d\": \"\\ud83d\\ude42\",\n  \"\\u006b\": \"\\\\\\\"\"\n}\n"},
		{" \r\n{ 'dlqId' :\t'e' , 'o' : { } ,'a':[\n] , 'n' : [ [ ] , "
		 "{ 'k' : [ { } , [ [ ] ] ] } ] }\n\t ",
		 "{\n  \"dlqId\": \"e\",\n  \"o\": {},\n  \"a\": [],\n"
		 "  \"n\": [\n    [],\n    {\n      \"k\": [\n        {},\n"
		 "        [\n          []\n        ]\n      ]\n    }\n  ]\n}\n"},
	};

	for (size_t i = 0; i < N(cases); i++) {
		struct message *m = parse(J(cases[i].json)), *m2;
		const struct message_bytes *j;

		if (!ok(m != NULL, "verbatim %zu: parsed", i))
			continue;
		j = file_of(m, MESSAGE_JSON);
		is_str(j->data, cases[i].want, "verbatim %zu: message.json", i);
		ok(well_formed(m), "verbatim %zu: layout", i);
		m2 = NULL;
		if (j->data && message_parse(j->data, j->len, &m2) == 0)
			is_mem(file_of(m2, MESSAGE_JSON)->data,
			       file_of(m2, MESSAGE_JSON)->len, j->data, j->len,
			       "verbatim %zu: re-indenting is idempotent", i);
		else
			ok(0, "verbatim %zu: message.json parses again", i);
		message_free(m2);
		message_free(m);
	}

	/* The fields still read what the escapes mean. */
	{
		struct message *m =
			parse(J("{'dlqId':'\\u0078','body':'caf\\u00e9\\/',"
				"'workflowUrl':'https:\\/\\/a.example\\/wf',"
				"'createdAt':9007199254740993,"
				"'big':12345678901234567890123}"));

		if (ok(m != NULL, "escapes: parsed")) {
			is_mem(m->id.data, m->id.len, "x", 1, "escapes: dlqId");
			is_str(file_of(m, MESSAGE_BODY)->data, "caf\xc3\xa9/",
			       "escapes: body decoded");
			is_str(view_str(m, VIEW_URL), "https://a.example/wf",
			       "escapes: workflowUrl decoded");
			ok(m->has_created &&
				   m->created_ms == 9007199254740993LL,
			   "escapes: createdAt exact next to a huge integer");
			is_int(m->problems, 1, "escapes: one problem (huge)");
		}
		message_free(m);
	}
}

/* One entry's integer beyond 64 bits changes nothing in the others. */
static void test_page_verbatim(void)
{
	const char *json =
		J("{'cursor':'c','messages':[{'dlqId':'1',"
		  "'exactInt':9007199254740993,'maxInt':9223372036854775807,"
		  "'minInt':-9223372036854775808,'createdAt':9007199254740993,"
		  "'responseStatus':500,'r':0.1},"
		  "{'dlqId':'2','huge':123456789012345678901234567890,"
		  "'createdAt':1000},"
		  "{'dlqId':'3','x':2.0,'createdAt':5,'createdAt':7,"
		  "'responseStatus':1,'responseStatus':2.5,"
		  "'o':{'a':1},'o':{'a':'s'},'callerIP':'ip'}]}");
	const char *want1 = "{\n  \"dlqId\": \"1\",\n"
			    "  \"exactInt\": 9007199254740993,\n"
			    "  \"maxInt\": 9223372036854775807,\n"
			    "  \"minInt\": -9223372036854775808,\n"
			    "  \"createdAt\": 9007199254740993,\n"
			    "  \"responseStatus\": 500,\n"
			    "  \"r\": 0.1\n}\n";
	const char *want2 = "{\n  \"dlqId\": \"2\",\n"
			    "  \"huge\": 123456789012345678901234567890,\n"
			    "  \"createdAt\": 1000\n}\n";
	struct message_page pg;
	char err[128];
	int r;

	r = message_page_parse(json, strlen(json), &pg, err, sizeof(err));
	if (!ok(r == 0 && pg.n == 3, "big neighbour: parsed (%s)",
		r ? err : "ok"))
		return;
	is_str(file_of(pg.msgs[0], MESSAGE_JSON)->data, want1,
	       "big neighbour: other entry's message.json exact");
	ok(pg.msgs[0]->has_created &&
		   pg.msgs[0]->created_ms == 9007199254740993LL,
	   "big neighbour: other entry's createdAt exact");
	is_str(view_str(pg.msgs[0], VIEW_STATUS), "500",
	       "big neighbour: other entry's status an integer");
	is_int(pg.msgs[0]->problems, 0, "big neighbour: no problem there");
	is_str(file_of(pg.msgs[1], MESSAGE_JSON)->data, want2,
	       "big neighbour: the huge integer as sent");
	is_int(pg.msgs[1]->problems, 1, "big neighbour: its problem");
	/* Repeated keys: the last value of each, as without the huge one. */
	ok(pg.msgs[2]->has_created && pg.msgs[2]->created_ms == 7,
	   "big neighbour: repeated createdAt, the last");
	ok(file_of(pg.msgs[2], MESSAGE_RESPONSE_STATUS)->data == NULL,
	   "big neighbour: repeated responseStatus, the last (a real)");
	is_int(pg.msgs[2]->problems, 1,
	       "big neighbour: repeated keys, as jansson alone");
	ok(strstr(file_of(pg.msgs[2], MESSAGE_JSON)->data,
		  "  \"x\": 2.0,\n  \"createdAt\": 5,\n  \"createdAt\": 7,\n") !=
		   NULL,
	   "big neighbour: repeated keys all shown");
	message_page_release(&pg);

	/* The same third entry alone (no huge integer anywhere). */
	{
		struct message *m = parse(
			J("{'dlqId':'3','x':2.0,'createdAt':5,'createdAt':7,"
			  "'responseStatus':1,'responseStatus':2.5,"
			  "'o':{'a':1},'o':{'a':'s'},'callerIP':'ip'}"));

		ok(m && m->has_created && m->created_ms == 7 &&
			   m->problems == 1 &&
			   !file_of(m, MESSAGE_RESPONSE_STATUS)->data,
		   "repeated keys alone: the same");
		message_free(m);
	}
	/* A key written three times, int then real then int. */
	json = J("{'messages':[{'dlqId':'4','h':1e30,'createdAt':1,"
		 "'createdAt':2.5,'createdAt':9007199254740993},"
		 "{'dlqId':'5','h':1e30,'createdAt':1,"
		 "'createdAt':99999999999999999999,'createdAt':2.5}]}");
	r = message_page_parse(json, strlen(json), &pg, err, sizeof(err));
	if (ok(r == 0 && pg.n == 2, "three times: parsed")) {
		ok(pg.msgs[0]->has_created &&
			   pg.msgs[0]->created_ms == 9007199254740993LL &&
			   pg.msgs[0]->problems == 0,
		   "three times: the last, an integer");
		ok(pg.msgs[1]->has_created && pg.msgs[1]->created_ms == 2 &&
			   pg.msgs[1]->problems == 2,
		   "three times: the last, a real");
		message_page_release(&pg);
	}

	/* "messages" found as jansson finds it: escaped, repeated, spaced. */
	json = J(" {\r\n\t'\\u006dessages' : [ {'dlqId':'first'} ] ,"
		 "'cursor':'c', 'messages' :\n[\n{ 'dlqId' : 'a', 'v': [ ] }"
		 " ,\n{'dlqId':'b'},7 ] } ");
	r = message_page_parse(json, strlen(json), &pg, err, sizeof(err));
	if (ok(r == 0 && pg.n == 2 && pg.malformed == 1,
	       "messages key: the last one")) {
		is_str(file_of(pg.msgs[0], MESSAGE_JSON)->data,
		       "{\n  \"dlqId\": \"a\",\n  \"v\": []\n}\n",
		       "messages key: first entry");
		is_str(file_of(pg.msgs[1], MESSAGE_JSON)->data,
		       "{\n  \"dlqId\": \"b\"\n}\n",
		       "messages key: second entry");
		message_page_release(&pg);
	}
	json = J("{'\\u006dessages':[{'dlqId':'e'}]}");
	r = message_page_parse(json, strlen(json), &pg, err, sizeof(err));
	if (ok(r == 0 && pg.n == 1, "messages key escaped")) {
		is_str(pg.msgs[0]->id.data, "e", "messages key escaped: entry");
		message_page_release(&pg);
	}
	json = J("{'messages\\u0000':[{'dlqId':'e'}]}");
	r = message_page_parse(json, strlen(json), &pg, err, sizeof(err));
	is_int(r, -EPROTO, "messages key with a NUL: not it");
}

/* Output is bounded by input (MESSAGE_RENDER_FACTOR): hostile amplifiers
 * lose their file, nothing else. */
static void test_budget(void)
{
	size_t depth = 2000, n = 0, cap = 2 * depth + 300000;
	char *json = malloc(cap);
	struct message *m;

	if (!json)
		abort();
	n += (size_t)snprintf(json, cap, "{\"dlqId\":\"x\",\"deep\":");
	memset(json + n, '[', depth);
	n += depth;
	for (int i = 0; i < 60000; i++) {
		memcpy(json + n, i ? ",1" : "1", i ? 2 : 1);
		n += i ? 2 : 1;
	}
	memset(json + n, ']', depth);
	n += depth;
	n += (size_t)snprintf(json + n, cap - n, ",\"body\":\"b\"}");
	m = NULL;
	is_int(message_parse(json, n, &m), 0, "deep nesting: parsed");
	if (m) {
		ok(file_of(m, MESSAGE_JSON)->data == NULL,
		   "deep nesting: message.json (~240 MB) absent");
		is_mem(file_of(m, MESSAGE_BODY)->data,
		       file_of(m, MESSAGE_BODY)->len, "b", 1,
		       "deep nesting: body kept");
		is_int(m->problems, 1, "deep nesting: one problem");
	}
	message_free(m);

	/* One long header name repeated for 1000 values. */
	n = (size_t)snprintf(json, cap, "{\"dlqId\":\"x\",\"header\":{\"");
	memset(json + n, 'H', 100000);
	n += 100000;
	n += (size_t)snprintf(json + n, cap - n, "\":[");
	for (int i = 0; i < 1000; i++)
		n += (size_t)snprintf(json + n, cap - n, "%s\"\"",
				      i ? "," : "");
	n += (size_t)snprintf(json + n, cap - n, "]}}");
	m = NULL;
	is_int(message_parse(json, n, &m), 0, "header amplifier: parsed");
	if (m) {
		ok(file_of(m, MESSAGE_HEADER)->data == NULL,
		   "header amplifier: header (~100 MB) absent");
		ok(file_of(m, MESSAGE_JSON)->data != NULL,
		   "header amplifier: message.json kept");
		is_int(m->problems, 1, "header amplifier: one problem");
	}
	message_free(m);
	free(json);
}

static void test_page(void)
{
	static const struct {
		const char *json;
		int want;
		const char *cursor; /* NULL: end of walk */
		size_t n, malformed;
	} cases[] = {
		{"{'cursor':'abc','messages':[{'dlqId':'1'}]}", 0, "abc", 1, 0},
		{"{'cursor':'','messages':[{'dlqId':'1'}]}", 0, NULL, 1, 0},
		{"{'cursor':null,'messages':[]}", 0, NULL, 0, 0},
		{"{'messages':[]}", 0, NULL, 0, 0},
		{"{'messages':null}", 0, NULL, 0, 0},
		{"{'messages':[],'cursor':'c','extra':{}}", 0, "c", 0, 0},
		{"{'cursor':'a b/c+d=','messages':[]}", 0, "a b/c+d=", 0, 0},
		{"{'messages':[1,null,'x',[],{},{'dlqId':''},{'dlqId':5},"
		 "{'dlqId':'ok'},{'dlqId':'a\\u0000'},{'dlqId':'ok2'}]}",
		 0, NULL, 2, 8},
		{"{'cursor':5,'messages':[]}", -EPROTO, NULL, 0, 0},
		{"{'cursor':['a'],'messages':[]}", -EPROTO, NULL, 0, 0},
		{"{'cursor':'a\\u0000b','messages':[]}", -EPROTO, NULL, 0, 0},
		{"{'cursor':'abc'}", -EPROTO, NULL, 0, 0},
		{"{}", -EPROTO, NULL, 0, 0},
		{"{'messages':{}}", -EPROTO, NULL, 0, 0},
		{"{'messages':'[]'}", -EPROTO, NULL, 0, 0},
		{"[]", -EPROTO, NULL, 0, 0},
		{"", -EPROTO, NULL, 0, 0},
		{"{'messages':[]", -EPROTO, NULL, 0, 0},
		{"<html><body>504 Gateway Time-out</body></html>", -EPROTO,
		 NULL, 0, 0},
		{"{'messages':['\xc3\x28']}", -EPROTO, NULL, 0, 0},
	};

	for (size_t i = 0; i < N(cases); i++) {
		const char *json = J(cases[i].json);
		struct message_page pg;
		char err[128] = "";
		int r;

		memset(&pg, 0xa5, sizeof(pg));
		r = message_page_parse(json, strlen(json), &pg, err,
				       sizeof(err));
		is_int(r, cases[i].want, "page %s: %d", cases[i].json,
		       cases[i].want);
		if (r < 0) {
			ok(err[0] != '\0', "page %s: reason \"%s\"",
			   cases[i].json, err);
			ok(((unsigned char *)&pg)[0] == 0xa5 &&
				   ((unsigned char *)&pg)[sizeof(pg) - 1] ==
					   0xa5,
			   "page %s: output untouched", cases[i].json);
			continue;
		}
		if (cases[i].cursor)
			is_str(pg.cursor, cases[i].cursor, "page %s: cursor",
			       cases[i].json);
		else
			ok(pg.cursor == NULL, "page %s: end of walk",
			   cases[i].json);
		is_int(pg.n, cases[i].n, "page %s: messages", cases[i].json);
		is_int(pg.malformed, cases[i].malformed, "page %s: malformed",
		       cases[i].json);
		is_int(pg.bytes, strlen(json), "page %s: bytes", cases[i].json);
		message_page_release(&pg);
		ok(pg.cursor == NULL && pg.msgs == NULL && pg.n == 0,
		   "page %s: released", cases[i].json);
	}
}

static void test_page_more(void)
{
	size_t cap = 40 * 1002 + MESSAGE_PAGE_MAX_CURSOR + 100, n;
	char *json = malloc(cap), err[128];
	struct message_page pg;
	struct message *kept;
	int r;

	if (!json)
		abort();

	/* Cursor length limit. */
	for (int len = MESSAGE_PAGE_MAX_CURSOR;
	     len <= MESSAGE_PAGE_MAX_CURSOR + 1; len++) {
		n = (size_t)snprintf(json, cap, "{\"cursor\":\"");
		memset(json + n, 'c', (size_t)len);
		n += (size_t)len;
		n += (size_t)snprintf(json + n, cap - n, "\",\"messages\":[]}");
		memset(&pg, 0, sizeof(pg));
		r = message_page_parse(json, n, &pg, err, sizeof(err));
		is_int(r, len <= MESSAGE_PAGE_MAX_CURSOR ? 0 : -EPROTO,
		       "cursor of %d bytes", len);
		if (r == 0)
			is_int(strlen(pg.cursor), len,
			       "cursor of %d bytes: kept", len);
		message_page_release(&pg);
	}

	/* Message count limit. */
	for (int count = MESSAGE_PAGE_MAX_MESSAGES;
	     count <= MESSAGE_PAGE_MAX_MESSAGES + 1; count++) {
		n = (size_t)snprintf(json, cap, "{\"messages\":[");
		for (int i = 0; i < count; i++)
			n += (size_t)snprintf(json + n, cap - n,
					      "%s{\"dlqId\":\"%d\"}",
					      i ? "," : "", i);
		n += (size_t)snprintf(json + n, cap - n, "]}");
		memset(&pg, 0, sizeof(pg));
		r = message_page_parse(json, n, &pg, err, sizeof(err));
		is_int(r, count <= MESSAGE_PAGE_MAX_MESSAGES ? 0 : -EPROTO,
		       "page of %d messages", count);
		if (r == 0) {
			is_int(pg.n, count, "page of %d messages: all", count);
			is_mem(pg.msgs[count - 1]->id.data,
			       pg.msgs[count - 1]->id.len, "999", 3,
			       "page of %d messages: in order", count);
		}
		message_page_release(&pg);
	}

	/* An entry set to NULL is kept by its new owner. */
	n = (size_t)snprintf(json, cap, "%s",
			     J("{'messages':[{'dlqId':'a'},{'dlqId':'b'}]}"));
	r = message_page_parse(json, n, &pg, NULL, 0);
	is_int(r, 0, "page without err buffer");
	kept = r == 0 ? pg.msgs[1] : NULL;
	if (r == 0)
		pg.msgs[1] = NULL;
	message_page_release(&pg);
	ok(kept && kept->id.len == 1 && kept->id.data[0] == 'b',
	   "entry taken out of the page survives its release");
	message_free(kept);

	memset(&pg, 0, sizeof(pg));
	message_page_release(&pg);
	message_page_release(NULL);
	ok(1, "release of a zeroed page");

	/* Rendered messages in a page carry everything. */
	n = (size_t)snprintf(
		json, cap, "%s",
		J("{'cursor':'next','messages':[{'dlqId':'1','label':'l',"
		  "'bodyBase64':'aGk=','header':{'A':['1']},"
		  "'responseStatus':500,'createdAt':0}]}"));
	r = message_page_parse(json, n, &pg, err, sizeof(err));
	if (ok(r == 0 && pg.n == 1, "full page: parsed")) {
		const struct message *m = pg.msgs[0];

		is_mem(file_of(m, MESSAGE_BODY)->data,
		       file_of(m, MESSAGE_BODY)->len, "hi", 2,
		       "full page: body");
		is_mem(file_of(m, MESSAGE_HEADER)->data,
		       file_of(m, MESSAGE_HEADER)->len, "A: 1\n", 5,
		       "full page: header");
		is_str(view_str(m, VIEW_LABEL), "l", "full page: label");
		is_str(view_str(m, VIEW_DATE), "1970-01-01", "full page: date");
		ok(well_formed(m), "full page: layout");
		message_page_release(&pg);
	}

	/* A number beyond a double is valid JSON text jansson refuses: its
	 * entry is lost (see test_page_refused()), not the page. */
	n = (size_t)snprintf(json, cap, "%s",
			     J("{'cursor':'c','messages':[{'dlqId':'1',"
			       "'maxRetries':1e999999999999},{'dlqId':'2'}]}"));
	r = message_page_parse(json, n, &pg, err, sizeof(err));
	if (ok(r == 0 && pg.n == 1 && pg.malformed == 1,
	       "real overflow: its entry only")) {
		is_str(pg.msgs[0]->id.data, "2", "real overflow: the other");
		message_page_release(&pg);
	}
	/* A huge integer in one entry costs that entry a problem only. */
	n = (size_t)snprintf(json, cap, "%s",
			     J("{'cursor':'c','messages':[{'dlqId':'1',"
			       "'maxRetries':99999999999999999999},"
			       "{'dlqId':'2','createdAt':5}]}"));
	r = message_page_parse(json, n, &pg, err, sizeof(err));
	if (ok(r == 0 && pg.n == 2, "huge integer in a page: parsed")) {
		is_int(pg.msgs[0]->problems, 1, "huge integer: its entry");
		is_int(pg.msgs[1]->problems, 0, "huge integer: not the next");
		ok(pg.msgs[1]->has_created && pg.msgs[1]->created_ms == 5,
		   "huge integer: other integers intact");
		is_str(pg.cursor, "c", "huge integer: cursor");
		message_page_release(&pg);
	}

	/* The reason is one printable ASCII line. */
	n = (size_t)snprintf(json, cap, "{\"messages\":[\x01\xff]}");
	r = message_page_parse(json, n, &pg, err, sizeof(err));
	ok(r == -EPROTO &&
		   strspn(err, " !\"#$%&'()*+,-./0123456789:;<=>?@"
			       "ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"
			       "abcdefghijklmnopqrstuvwxyz{|}~") == strlen(err),
	   "reason is printable: \"%s\"", err);
	r = message_page_parse(json, n, &pg, err, 8);
	ok(r == -EPROTO && strlen(err) == 7, "reason truncated to its buffer");
	free(json);
}

/* Whether two messages came out alike, byte for byte. */
static int same_message(const struct message *a, const struct message *b)
{
	if (a->id.len != b->id.len ||
	    memcmp(a->id.data, b->id.data, a->id.len) ||
	    a->created_ms != b->created_ms ||
	    a->has_created != b->has_created || a->problems != b->problems)
		return 0;
	for (int f = 0; f < MESSAGE_NFILES; f++) {
		const struct message_bytes *x = file_of(a, f);
		const struct message_bytes *y = file_of(b, f);

		if (!x->data != !y->data || x->len != y->len ||
		    (x->len && memcmp(x->data, y->data, x->len)))
			return 0;
	}
	for (int v = 0; v < VIEW_COUNT; v++) {
		if (a->view[v].n != b->view[v].n)
			return 0;
		for (uint32_t i = 0; i < a->view[v].n; i++)
			if (a->view[v].v[i].len != b->view[v].v[i].len ||
			    memcmp(a->view[v].v[i].data, b->view[v].v[i].data,
				   a->view[v].v[i].len))
				return 0;
	}
	return 1;
}

/* Appends @s to @b (@cap bytes, *@n used) with every ' turned into ". */
static void put_j(char *b, size_t cap, size_t *n, const char *s)
{
	size_t len = strlen(s);

	if (len >= cap - *n)
		abort();
	for (size_t i = 0; i <= len; i++)
		b[*n + i] = s[i] == '\'' ? '"' : s[i];
	*n += len;
}

/* {'dlqId':'odd','x':[[...]]}, @deep arrays deep, at the end of @b. */
static void put_deep(char *b, size_t cap, size_t *n, unsigned deep)
{
	put_j(b, cap, n, "{'dlqId':'odd','x':");
	if (2 * (size_t)deep >= cap - *n)
		abort();
	memset(b + *n, '[', deep);
	memset(b + *n + deep, ']', deep);
	*n += 2 * (size_t)deep;
	put_j(b, cap, n, "}");
}

/* Entries jansson loads, around the odd one: integers beyond 64 bits and
 * repeated keys (numbers are restored per entry), a non-object, escapes. */
static const char *const normal_entries[] = {
	"{'dlqId':'1','createdAt':1752829295505,'labels':['a','b'],"
	"'n':99999999999999999999,'r':0.1,'e':-0.0}",
	"{'dlqId':'2','bodyBase64':'aGk=','header':{'A':['1'],'B':'2'},"
	"'responseStatus':500,'createdAt':9007199254740993}",
	"7",
	"{'dlqId':'3','createdAt':5,'createdAt':7,'x':2.0,'o':{'a':1},"
	"'o':{'a':'s'},'responseStatus':1,'responseStatus':2.5}",
	"{'dlqId':'4','body':'\\ud83d\\ude42 caf\\u00e9','label':'l'}",
};

/* One entry is valid JSON text that jansson refuses (a whole page holding
 * it would be refused too): that entry is lost (or shown when jansson
 * loads it on its own), the others come out exactly as from the same page
 * without it. */
static const struct {
	const char *what;
	const char *odd; /* with ' for "; NULL: put_deep(deep) */
	unsigned deep;
	int shown; /* jansson loads it on its own */
} refused_cases[] = {
	{"lone low surrogate in a label",
	 "{'dlqId':'odd','labels':['bad\\udc80label','good']}", 0, 0},
	{"lone surrogate in the body", "{'dlqId':'odd','body':'bad \\udc80'}",
	 0, 0},
	{"lone high surrogate in an unknown field",
	 "{'dlqId':'odd','x-unknown':{'k':'\\ud800'}}", 0, 0},
	{"high surrogate, then no low one",
	 "{'dlqId':'odd','body':'\\ud800\\u0041'}", 0, 0},
	{"two high surrogates", "{'dlqId':'odd','body':'\\uD800\\uDBFF'}", 0,
	 0},
	{"lone surrogate in a member name", "{'dlqId':'odd','\\udfff':1}", 0,
	 0},
	{"lone surrogate in dlqId", "{'dlqId':'odd\\udc80'}", 0, 0},
	{"NUL in a nested member name",
	 "{'dlqId':'odd','x-unknown':{'a\\u0000b':1}}", 0, 0},
	{"NUL as a member name", "{'dlqId':'odd','\\u0000':1}", 0, 0},
	{"number beyond a double", "{'dlqId':'odd','n':-1e400}", 0, 0},
	{"lone surrogate in a non-object", "['\\udc80']", 0, 0},
	{"3000 deep", NULL, 3000, 0},
	{"100000 deep", NULL, 100000, 0},
	{"2047 deep: too deep in the page, not alone", NULL, 2047, 1},
};

static void test_page_refused(void)
{
	size_t cap = 2 * 100000 + 4096, n, rn;
	char *json = malloc(cap), *ref = malloc(cap), err[128];
	const size_t nnormal = N(normal_entries);

	if (!json || !ref)
		abort();
	for (size_t c = 0; c < N(refused_cases); c++) {
		/* The odd entry first, in the middle, last. */
		for (size_t at = 0; at <= nnormal; at += nnormal / 2 + 1) {
			struct message_page pg, rp;
			size_t k = 0, odd_seen = 0;
			int r;

			n = rn = 0;
			put_j(json, cap, &n, "{'cursor':'next','messages':[");
			put_j(ref, cap, &rn, "{'cursor':'next','messages':[");
			for (size_t i = 0; i <= nnormal; i++) {
				if (i == at) {
					if (i > 0)
						put_j(json, cap, &n, ",");
					if (refused_cases[c].odd)
						put_j(json, cap, &n,
						      refused_cases[c].odd);
					else
						put_deep(json, cap, &n,
							 refused_cases[c].deep);
				}
				if (i == nnormal)
					break;
				if (i > 0 || at == 0)
					put_j(json, cap, &n, ",");
				if (i > 0)
					put_j(ref, cap, &rn, ",");
				put_j(json, cap, &n, normal_entries[i]);
				put_j(ref, cap, &rn, normal_entries[i]);
			}
			put_j(json, cap, &n, "]}");
			put_j(ref, cap, &rn, "]}");

			r = message_page_parse(ref, rn, &rp, err, sizeof(err));
			if (!ok(r == 0, "refused %s @%zu: reference page (%s)",
				refused_cases[c].what, at, r ? err : "ok"))
				continue;
			memset(&pg, 0xa5, sizeof(pg));
			r = message_page_parse(json, n, &pg, err, sizeof(err));
			if (!ok(r == 0, "refused %s @%zu: page kept (%s)",
				refused_cases[c].what, at, r ? err : "ok")) {
				message_page_release(&rp);
				continue;
			}
			is_str(pg.cursor, "next", "refused %s @%zu: cursor",
			       refused_cases[c].what, at);
			is_int(pg.n, rp.n + (size_t)refused_cases[c].shown,
			       "refused %s @%zu: every other entry",
			       refused_cases[c].what, at);
			is_int(pg.malformed,
			       rp.malformed + (size_t)!refused_cases[c].shown,
			       "refused %s @%zu: malformed",
			       refused_cases[c].what, at);
			is_int(pg.bytes, n, "refused %s @%zu: bytes",
			       refused_cases[c].what, at);
			for (size_t i = 0; i < pg.n; i++) {
				const struct message *m = pg.msgs[i];

				if (m->id.len == 3 &&
				    !memcmp(m->id.data, "odd", 3)) {
					odd_seen++;
					continue;
				}
				if (k >= rp.n || !same_message(m, rp.msgs[k]) ||
				    !well_formed(m))
					break;
				k++;
			}
			ok(k == rp.n &&
				   odd_seen == (size_t)refused_cases[c].shown,
			   "refused %s @%zu: the others as without it, in order",
			   refused_cases[c].what, at);
			message_page_release(&pg);
			message_page_release(&rp);
		}
	}
	free(json);
	free(ref);
}

/* Pages jansson would refuse whole, and pages that are not JSON: the
 * scanner decides. */
static void test_page_scanned(void)
{
	static const struct {
		const char *json;   /* with ' for " */
		const char *cursor; /* NULL: end of walk */
		size_t n, malformed;
	} good[] = {
		{"{'x':'\\udc80','cursor':'c','messages':[{'dlqId':'1'}]}", "c",
		 1, 0},
		{"{'messages':null,'x':'\\udc80'}", NULL, 0, 0},
		{"{'cursor':null,'messages':[],'x':{'\\u0000':1}}", NULL, 0, 0},
		{"{'cursor':'','messages':[{'dlqId':'\\udc80'}]}", NULL, 0, 1},
		{"{'cursor':'caf\\u00e9\\/\\ud83d\\ude42\\n',"
		 "'messages':[{'x':'\\udc80'}]}",
		 "caf\xc3\xa9/\xf0\x9f\x99\x82\n", 0, 1},
		{"{'cursor':'a','cursor':'b','messages':[{'dlqId':'x'}],"
		 "'\\u006dessages':[{'dlqId':'y'},{'z':'\\udc80'}]}",
		 "b", 1, 1},
		{"{'messages':[{'dlqId':'y'},{'z':'\\udc80'}],'messages':[]}",
		 NULL, 0, 0},
		{"{'messages':[1,null,'x',[],{},{'dlqId':''},{'dlqId':5},"
		 "{'dlqId':'ok'},{'dlqId':'a\\u0000'},{'dlqId':'\\udc80'}]}",
		 NULL, 1, 9},
		{" \t{ 'messages' :\t[ { 'dlqId' : 'a' , 'v' : [ ] } ,"
		 " { 'b' : '\\udc80' } ] } \t",
		 NULL, 1, 1},
		{"{'messages':[{'dlqId':'a','n':1e400},{'dlqId':'b'}]}", NULL,
		 1, 1},
	};
	static const struct {
		const char *json; /* with ' for " */
		const char *what;
	} bad[] = {
		{"{'messages':[{'dlqId':'a','x':'\\udc80'},]}",
		 "trailing comma"},
		{"{'messages':[{'dlqId':'a','x':'\\udc80'}", "truncated"},
		{"{'messages':[{'dlqId':'a','x':'\\udc80'}]} x",
		 "trailing garbage"},
		{"{'messages':[{'x':'\\udc80'}]}{}", "two values"},
		{"[{'dlqId':'a','x':'\\udc80'}]", "an array"},
		{"'\\udc80'", "a string"},
		{"", "nothing"},
		{"{'messages':{'a':'\\udc80'}}", "messages an object"},
		{"{'messages':'\\udc80'}", "messages a string"},
		{"{'messages':true,'x':'\\udc80'}", "messages true"},
		{"{'x':'\\udc80'}", "no messages"},
		{"{'messages\\u0000':[],'x':'\\udc80'}",
		 "messages key with NUL"},
		{"{'messages\\udc80':[]}", "messages key with a surrogate"},
		{"{'cursor':'\\udc80','messages':[]}", "cursor lone surrogate"},
		{"{'cursor':'a\\u0000','messages':[{'x':'\\udc80'}]}",
		 "cursor NUL"},
		{"{'cursor':5,'messages':[{'x':'\\udc80'}]}", "cursor number"},
		{"{'cursor':['c'],'messages':[{'x':'\\udc80'}]}",
		 "cursor array"},
		{"{'cursor':false,'messages':[{'x':'\\udc80'}]}",
		 "cursor false"},
		{"{'messages':[{'dlqId':'\xc3\x28'},{'x':'\\udc80'}]}",
		 "invalid UTF-8"},
		{"{'messages':[{'dlqId':'\xc0\xaf'},{'x':'\\udc80'}]}",
		 "overlong UTF-8"},
		{"{'messages':[{'dlqId':'\xed\xa0\x80'}]}", "UTF-8 surrogate"},
		{"{'messages':[{'dlqId':'\xf4\x90\x80\x80'}]}",
		 "UTF-8 beyond U+10FFFF"},
		{"{'messages':[{'dlqId':'\xe2\x82'}]}", "UTF-8 cut short"},
		{"{'messages':[{'x':'\\udc80','y':'\\x'}]}", "bad escape"},
		{"{'messages':[{'x':'\\udc80','y':'\\u12'}]}", "short \\u"},
		{"{'messages':[{'x':'\\udc80','y':'a\tb'}]}", "raw tab"},
		{"{'messages':[{'x':'\\udc80','y':01}]}", "leading zero"},
		{"{'messages':[{'x':'\\udc80','y':1.}]}", "bad number"},
		{"{'messages':[{'x':'\\udc80','y':tru}]}", "bad word"},
		{"{'messages':[{'x':'\\udc80' 'y':1}]}", "missing comma"},
		{"{'messages':[{'x':'\\udc80','y'}]}", "missing colon"},
		{"{'messages':[{'x':'\\udc80',1:2}]}", "number as a key"},
		{"{'messages':[{'x':'\\udc80']]}", "mismatched brackets"},
		{"{'messages':[{'x':'\\udc80'}],}", "trailing comma in page"},
		{"{,'messages':[{'x':'\\udc80'}]}", "leading comma in page"},
	};
	size_t cap = 2 * 100000 + 1001 * 32, n;
	char *json = malloc(cap), err[128];
	struct message_page pg;
	int r;

	if (!json)
		abort();
	for (size_t i = 0; i < N(good); i++) {
		const char *j = J(good[i].json);

		r = message_page_parse(j, strlen(j), &pg, err, sizeof(err));
		if (!ok(r == 0, "scanned %s: a page (%s)", good[i].json,
			r ? err : "ok"))
			continue;
		if (good[i].cursor)
			is_str(pg.cursor, good[i].cursor, "scanned %s: cursor",
			       good[i].json);
		else
			ok(pg.cursor == NULL, "scanned %s: end of walk",
			   good[i].json);
		is_int(pg.n, good[i].n, "scanned %s: messages", good[i].json);
		is_int(pg.malformed, good[i].malformed, "scanned %s: malformed",
		       good[i].json);
		for (size_t k = 0; k < pg.n; k++)
			ok(well_formed(pg.msgs[k]), "scanned %s: layout",
			   good[i].json);
		message_page_release(&pg);
	}
	for (size_t i = 0; i < N(bad); i++) {
		const char *j = J(bad[i].json);

		memset(&pg, 0xa5, sizeof(pg));
		err[0] = '\0';
		r = message_page_parse(j, strlen(j), &pg, err, sizeof(err));
		is_int(r, -EPROTO, "not a page (%s): %s", bad[i].what, err);
		ok(err[0] && ((unsigned char *)&pg)[0] == 0xa5 &&
			   ((unsigned char *)&pg)[sizeof(pg) - 1] == 0xa5,
		   "not a page (%s): reason, output untouched", bad[i].what);
	}

	/* Deep nesting outside the entries costs nothing; mismatched, it is
	 * not JSON however deep. */
	n = 0;
	put_j(json, cap, &n, "{'x':");
	memset(json + n, '[', 100000);
	memset(json + n + 100000, ']', 100000);
	n += 200000;
	put_j(json, cap, &n, ",'messages':[{'dlqId':'a'}]}");
	r = message_page_parse(json, n, &pg, err, sizeof(err));
	if (ok(r == 0 && pg.n == 1, "100000 deep outside the entries: a page"))
		message_page_release(&pg);
	json[5 + 100000] = '}';
	r = message_page_parse(json, n, &pg, err, sizeof(err));
	is_int(r, -EPROTO, "100000 deep, mismatched: not a page");
	n = 0;
	put_j(json, cap, &n, "{'messages':[{'x':");
	memset(json + n, '[', 3000);
	n += 3000;
	memset(json + n, ']', 2999);
	n += 2999;
	put_j(json, cap, &n, "}]}");
	r = message_page_parse(json, n, &pg, err, sizeof(err));
	is_int(r, -EPROTO, "3000 deep, one bracket short: not a page");

	/* The limits hold here too. */
	for (int count = MESSAGE_PAGE_MAX_MESSAGES;
	     count <= MESSAGE_PAGE_MAX_MESSAGES + 1; count++) {
		n = 0;
		put_j(json, cap, &n, "{'messages':[{'x':'\\udc80'}");
		for (int i = 1; i < count; i++)
			n += (size_t)snprintf(json + n, cap - n,
					      ",{\"dlqId\":\"%d\"}", i);
		put_j(json, cap, &n, "]}");
		r = message_page_parse(json, n, &pg, err, sizeof(err));
		is_int(r, count <= MESSAGE_PAGE_MAX_MESSAGES ? 0 : -EPROTO,
		       "scanned page of %d entries", count);
		if (r == 0)
			ok(pg.n == (size_t)count - 1 && pg.malformed == 1,
			   "scanned page of %d entries: all but one", count);
		message_page_release(&pg);
	}
	for (int len = MESSAGE_PAGE_MAX_CURSOR - 1;
	     len <= MESSAGE_PAGE_MAX_CURSOR + 1; len++) {
		n = 0;
		put_j(json, cap, &n, "{'cursor':'");
		memset(json + n, 'c', (size_t)len);
		n += (size_t)len;
		put_j(json, cap, &n, "\\u00e9','messages':[{'x':'\\udc80'}]}");
		memset(&pg, 0, sizeof(pg));
		r = message_page_parse(json, n, &pg, err, sizeof(err));
		is_int(r, len + 2 <= MESSAGE_PAGE_MAX_CURSOR ? 0 : -EPROTO,
		       "scanned cursor of %d bytes", len + 2);
		if (r == 0)
			is_int(strlen(pg.cursor), len + 2,
			       "scanned cursor of %d bytes: kept", len + 2);
		message_page_release(&pg);
	}
	free(json);
}

/* Why a page is not one: what is wrong and where, in printable ASCII. */
static void test_page_reasons(void)
{
	static const struct {
		const char *json;
		const char *err;
	} cases[] = {
		{"this is not json {",
		 "not JSON: invalid literal at line 1, column 1, near 'this is "
		 "not '"},
		{"", "not JSON: no value at all at line 1, column 1"},
		{" \n ", "not JSON: no value at all at line 2, column 2"},
		{"{\"messages\":[\n  {\"dlqId\":\"a\"},\n  {\"dlqId\":\"b\"",
		 "not JSON: the text ends early at line 3, column 15"},
		{"{\"messages\":[],\n\"x\":\"caf\xe9\"}",
		 "not JSON: invalid UTF-8 at line 2, column 9, near '?\"}'"},
		{"{\"messages\":[1 2]}",
		 "not JSON: ',' or ']' expected at line 1, column 16, near '2]}'"},
		{"{\"messages\":[]} []",
		 "not JSON: nothing expected after the object at line 1, column "
		 "17, near '[]'"},
		{"[{\"dlqId\":\"a\"}]", "not a JSON object"},
		{"\"messages\"", "not a JSON object"},
		{"[1,]",
		 "not JSON: a value expected at line 1, column 4, near ']'"},
	};

	for (size_t i = 0; i < N(cases); i++) {
		struct message_page pg;
		char err[128] = "";
		int r = message_page_parse(cases[i].json, strlen(cases[i].json),
					   &pg, err, sizeof(err));

		is_int(r, -EPROTO, "reason %zu: not a page", i);
		is_str(err, cases[i].err, "reason %zu", i);
	}
}

/* ---- allocation failures ------------------------------------------------
 * Without AddressSanitizer (which owns malloc), the test replaces malloc
 * and fails the nth allocation, for every n until an operation succeeds:
 * each must return -ENOMEM (or succeed) and leave nothing allocated.
 *
 * jansson 2.14's lexer ignores a failure to grow its token buffer
 * (lex_save() drops the byte, then lex_scan_string() runs past the end of
 * the buffer): failures inside json_loadb() can corrupt the heap whatever
 * the caller does. So of the allocations inside each json_loadb() (the
 * test puts itself in front of jansson's, see below), only the first one
 * (which jansson checks) is failed: the others are left alone and not
 * counted. */
#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) ||     \
	__has_feature(thread_sanitizer)
#define HAVE_ASAN 1
#endif
#endif

#ifndef HAVE_ASAN
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static int fail_at; /* fail the fail_at-th allocation; 0: never */
static int nallocs; /* allocations since counting began, but see above */
static long live;   /* allocations not yet freed */
static int counting;
static int loads;	/* json_loadb() calls since counting began */
static int in_load;	/* inside json_loadb() */
static int load_allocs; /* allocations inside this json_loadb() */

static int fail_now(void)
{
	if (!counting)
		return 0;
	if (in_load && load_allocs++ > 0)
		return 0;
	nallocs++;
	return fail_at && nallocs == fail_at;
}

void *malloc(size_t n)
{
	void *p = fail_now() ? NULL : __libc_malloc(n);

	if (p && counting)
		live++;
	return p;
}

void *calloc(size_t a, size_t b)
{
	void *p = fail_now() ? NULL : __libc_calloc(a, b);

	if (p && counting)
		live++;
	return p;
}

void *realloc(void *old, size_t n)
{
	void *p;

	if (fail_now())
		return NULL;
	p = __libc_realloc(old, n);
	if (p && !old && counting)
		live++;
	return p;
}

void free(void *p)
{
	if (p && counting)
		live--;
	__libc_free(p);
}

/* message.c's calls to json_loadb() come here (the executable's symbol
 * comes first), then go on to jansson's. */
json_t *json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e)
{
	static json_t *(*next)(const char *, size_t, size_t, json_error_t *);
	json_t *j;

	if (!next) {
		int was = counting;
		void *p;

		counting = 0; /* dlsym() may allocate */
		p = dlsym(RTLD_NEXT, "json_loadb");
		counting = was;
		if (!p)
			abort();
		memcpy(&next, &p, sizeof(next));
	}
	if (counting)
		loads++;
	in_load = 1;
	load_allocs = 0;
	j = next(buf, len, flags, e);
	in_load = 0;
	return j;
}

static int op_parse(const char *json)
{
	struct message *m = NULL;
	int r = message_parse(json, strlen(json), &m);

	message_free(m);
	return r;
}

static int op_page(const char *json)
{
	struct message_page pg;
	char err[64];
	int r;

	memset(&pg, 0, sizeof(pg));
	r = message_page_parse(json, strlen(json), &pg, err, sizeof(err));
	message_page_release(&pg);
	return r;
}

static int op_error(const char *json)
{
	char out[64];

	return answer_error_text(json, strlen(json), out, sizeof(out));
}

static int count_allocs(int (*op)(const char *), const char *json)
{
	fail_at = 0;
	nallocs = 0;
	loads = 0;
	live = 0;
	counting = 1;
	op(json);
	counting = 0;
	return nallocs;
}

/* @op on @json: @want_loads json_loadb() calls; then every allocation
 * fails in turn. */
static void alloc_fail(const char *what, int (*op)(const char *),
		       const char *json, int want_loads)
{
	int total = count_allocs(op, json);
	int bad = 0, leaks = 0, n;

	is_int(loads, want_loads, "%s: %d loads", what, want_loads);
	ok(total > want_loads, "%s: %d allocations", what, total);
	for (n = 1; n < 100000; n++) {
		int r;

		fail_at = n;
		nallocs = 0;
		live = 0;
		counting = 1;
		r = op(json);
		counting = 0;
		if (live != 0)
			leaks++;
		if (r == 0)
			break;
		if (r != -ENOMEM)
			bad++;
	}
	fail_at = 0;
	is_int(n, total + 1, "%s: each of %d allocations fails in turn", what,
	       total);
	is_int(bad, 0, "%s: every failure is -ENOMEM", what);
	is_int(leaks, 0, "%s: nothing leaked", what);
}

static void test_alloc_failures(void)
{
	const char *msg = J(
		"{'dlqId':'x','labels':['a','b'],'header':{'B':['1'],'A':['2']},"
		"'responseHeader':{'C':'3'},'bodyBase64':'aGk=',"
		"'responseBody':'r','responseStatus':500,'createdAt':1000,"
		"'n':99999999999999999999,'o':{'p':[1,2,{'q':null}]},"
		"'\\u0071kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
		"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
		"kkkkkkkkkkkkkkkkk':[1.5,0.00000000000000000000000000000000000000000"
		"000000000000000000000000000000000000000000001]}");
	const char *plain = J("{'cursor':'c','messages':[{'dlqId':'a'},"
			      "{'dlqId':'b','createdAt':1}]}");
	size_t cap = 2 * 5000 + 4096, n = 0;
	char *page = malloc(cap);

	if (!page)
		abort();
	/* jansson loads each entry's own bytes, once, twice with a huge
	 * integer (then all as reals); an entry that is not an object is
	 * not loaded. The page itself is read by the scanner alone. */
	count_allocs(op_page, plain);
	is_int(loads, 2, "a page of two entries: one load each");
	snprintf(page, cap, "{\"cursor\":\"c\",\"messages\":[%s,1,%s]}", msg,
		 msg);
	alloc_fail("message_parse", op_parse, msg, 2);
	alloc_fail("message_page_parse", op_page, page, 2 + 2);

	/* Entries jansson refuses (a lone surrogate, 5000 deep) are loaded
	 * once each: msg twice, the odd ones once, 1 not at all. The deep
	 * entry makes the scanner allocate. */
	put_j(page, cap, &n, "{'cursor':'c','messages':[");
	put_j(page, cap, &n, msg);
	put_j(page, cap, &n, ",{'dlqId':'odd','x':'\\udc80'},1,");
	put_deep(page, cap, &n, 5000);
	put_j(page, cap, &n, ",");
	put_j(page, cap, &n, msg);
	put_j(page, cap, &n, "]}");
	alloc_fail("message_page_parse, entry by entry", op_page, page,
		   2 + 1 + 0 + 1 + 2);
	free(page);

	fail_at = 1;
	nallocs = 0;
	live = 0;
	counting = 1;
	is_int(op_error(J("{'error':'boom'}")), -ENOMEM,
	       "answer_error_text: jansson's first allocation fails");
	counting = 0;
	is_int(live, 0, "answer_error_text: nothing leaked");
	fail_at = 0;
}
#else
static void test_alloc_failures(void)
{
	ok(1, "# SKIP allocation failures: malloc belongs to the sanitizer");
}
#endif

int main(void)
{
	test_names();
	test_json();
	test_files();
	test_render();
	test_file_same();
	test_header_limit();
	test_views();
	test_view_misc();
	test_created();
	test_ids();
	test_huge_int();
	test_verbatim();
	test_page_verbatim();
	test_budget();
	test_page();
	test_page_more();
	test_page_refused();
	test_page_scanned();
	test_page_reasons();
	test_alloc_failures();
	files_release();
	return tap_done();
}
