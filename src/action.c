/* action: what a user writes to a control file.
 *
 * Owns: reading it (option lines, ids, paths ending in ids; the limits on
 * all of it), joining the pieces that writes to one open control file
 * deliver into whole lines (and keeping its option lines for the ids
 * written after them), deduplicating ids.
 * Leaves to others: what a name means (the resolver, from the FUSE layer),
 * carrying the action out (action_run), permissions and the snapshot after
 * an action (fs).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action.h"
#include "buf.h"
#include "errtext.h"

/* ---- parsing ---------------------------------------------------------- */

#define ACTION_QUOTE_MAX 40 /* bytes of a line quoted in an error */

/* @s (@n bytes) as printable ASCII for an error text, cut to
 * ACTION_QUOTE_MAX bytes. */
static void quote(char *dst, size_t dstlen, const char *s, size_t n)
{
	size_t j = 0;

	for (size_t i = 0; i < n && j + 4 < dstlen; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i == ACTION_QUOTE_MAX) {
			memcpy(dst + j, "...", 3);
			j += 3;
			break;
		}
		dst[j++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	dst[j] = '\0';
}

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool option_line(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
		i++;
	return i > 0 && i < n && s[i] == '=';
}

/* Drops what the parser ignores around a line: a CR before its LF, and
 * blanks on both sides. */
static void trim(const char **s, size_t *n)
{
	if (*n > 0 && (*s)[*n - 1] == '\r')
		(*n)--;
	while (*n > 0 && blank(**s))
		(*s)++, (*n)--;
	while (*n > 0 && blank((*s)[*n - 1]))
		(*n)--;
}

/* What one line (without its LF) is to action_parse(): blank (ignored),
 * an option line ("key=value"), or anything else (an id, or garbage it
 * refuses). */
enum action_line {
	ACTION_LINE_BLANK,
	ACTION_LINE_OPTION,
	ACTION_LINE_ID,
};

static enum action_line line_kind(const char *line, size_t len)
{
	trim(&line, &len);
	if (len == 0)
		return ACTION_LINE_BLANK;
	return option_line(line, len) ? ACTION_LINE_OPTION : ACTION_LINE_ID;
}

/* Digits and a unit, one or more times: 10s, 1h30m, 500ms. */
static bool delay_ok(const char *v)
{
	static const char *const units[] = {"ms", "s", "m", "h", "d"};
	const char *p = v;

	if (!*p)
		return false;
	while (*p) {
		size_t digits = 0, k = 0;

		while (p[digits] >= '0' && p[digits] <= '9')
			digits++;
		if (digits == 0 || digits > 9)
			return false;
		p += digits;
		for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
			size_t len = strlen(units[u]);

			if (strncmp(p, units[u], len) == 0) {
				k = len;
				break;
			}
		}
		if (!k)
			return false;
		p += k;
	}
	return true;
}

static bool printable(const char *v, bool blanks)
{
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;

		if (c < 0x20 || c >= 0x7f || (!blanks && c == ' '))
			return false;
	}
	return true;
}

/* The option lines of resume and restart, each sent as one header. */
enum option_key {
	OPT_RETRIES,
	OPT_DELAY,
	OPT_RETRY_DELAY,
	OPT_FLOW_CONTROL_KEY,
	OPT_FLOW_CONTROL_VALUE,
	OPT_LABEL,
	OPT_FAILURE_CALLBACK,
	OPT_COUNT
};

static const char *const option_keys[OPT_COUNT] = {
	[OPT_RETRIES] = "retries",
	[OPT_DELAY] = "delay",
	[OPT_RETRY_DELAY] = "retry_delay",
	[OPT_FLOW_CONTROL_KEY] = "flow_control_key",
	[OPT_FLOW_CONTROL_VALUE] = "flow_control_value",
	[OPT_LABEL] = "label",
	[OPT_FAILURE_CALLBACK] = "failure_callback",
};

/* Checks the value of option @k; NULL when good, else why not. */
static const char *option_refused(enum option_key k, const char *v, size_t n)
{
	switch (k) {
	case OPT_RETRIES: {
		long r = 0;

		for (size_t i = 0; i < n; i++) {
			if (v[i] < '0' || v[i] > '9' || r > 1000)
				return "retries takes a number from 0 to 100";
			r = r * 10 + (v[i] - '0');
		}
		return r > ACTION_MAX_RETRIES
			       ? "retries takes a number from 0 to 100"
			       : NULL;
	}
	case OPT_DELAY:
		return delay_ok(v) ? NULL
				   : "delay takes a duration such as 10s, 5m, "
				     "1h30m or 500ms";
	case OPT_RETRY_DELAY:
		return printable(v, true) ? NULL
					  : "retry_delay takes an expression "
					    "in printable ASCII, such as "
					    "pow(2, retried) * 1000";
	case OPT_FLOW_CONTROL_KEY:
		return printable(v, false) ? NULL
					   : "flow_control_key takes printable "
					     "ASCII without blanks";
	case OPT_FLOW_CONTROL_VALUE:
		return printable(v, true)
			       ? NULL
			       : "flow_control_value takes printable "
				 "ASCII";
	case OPT_LABEL:
		return printable(v, true) && v[0] != ',' && v[n - 1] != ','
			       ? NULL
			       : "label takes labels in printable ASCII, "
				 "separated by commas";
	case OPT_FAILURE_CALLBACK:
		return printable(v, false) && (!strncmp(v, "https://", 8) ||
					       !strncmp(v, "http://", 7))
			       ? NULL
			       : "failure_callback takes an http:// or "
				 "https:// URL, without blanks";
	default:
		return "unknown option";
	}
}

/* Applies the option line "key=value" (@s, @n bytes, NUL-free). */
static int parse_option(struct action *act, unsigned *seen, const char *s,
			size_t n, size_t lineno, char *err, size_t errlen)
{
	const char *eq = memchr(s, '=', n), *why;
	size_t klen = (size_t)(eq - s), vlen = n - klen - 1;
	char q[ACTION_QUOTE_MAX + 8];
	char value[ACTION_MAX_OPTION + 1];
	char *buf = NULL;
	int k;

	quote(q, sizeof(q), s, klen);
	for (k = 0; k < OPT_COUNT; k++)
		if (strlen(option_keys[k]) == klen &&
		    !strncmp(s, option_keys[k], klen))
			break;
	if (k == OPT_COUNT)
		return errtext(
			err, errlen, -EINVAL,
			"line %zu: unknown option \"%s\" (options: retries, delay, retry_delay, flow_control_key, flow_control_value, label, failure_callback)",
			lineno, q);
	if (act->verb != ACTION_RESUME && act->verb != ACTION_RESTART)
		return errtext(
			err, errlen, -EINVAL,
			"line %zu: options apply to resume and restart only, not %s",
			lineno, action_verb_names[act->verb]);
	if (*seen & (1u << k))
		return errtext(err, errlen, -EINVAL,
			       "line %zu: option %s given twice", lineno, q);
	*seen |= 1u << k;
	if (vlen == 0 || vlen > ACTION_MAX_OPTION)
		return errtext(
			err, errlen, -EINVAL,
			"line %zu: option %s needs a value of 1 to %d bytes",
			lineno, q, ACTION_MAX_OPTION);
	memcpy(value, eq + 1, vlen);
	value[vlen] = '\0';
	why = option_refused((enum option_key)k, value, vlen);
	if (why)
		return errtext(err, errlen, -EINVAL, "line %zu: %s", lineno,
			       why);
	switch ((enum option_key)k) {
	case OPT_RETRIES:
		act->opt.retries = atoi(value);
		return 0;
	case OPT_DELAY:
		buf = act->delay;
		act->opt.delay = buf;
		break;
	case OPT_RETRY_DELAY:
		buf = act->retry_delay;
		act->opt.retry_delay = buf;
		break;
	case OPT_FLOW_CONTROL_KEY:
		buf = act->flow_control_key;
		act->opt.flow_control_key = buf;
		break;
	case OPT_FLOW_CONTROL_VALUE:
		buf = act->flow_control_value;
		act->opt.flow_control_value = buf;
		break;
	case OPT_LABEL:
		buf = act->label;
		act->opt.label = buf;
		break;
	default:
		buf = act->failure_callback;
		act->opt.failure_callback = buf;
		break;
	}
	memcpy(buf, value, vlen + 1);
	return 0;
}

/* The id named by the line @s (@n bytes): its last path component. */
static int parse_name(const char *s, size_t n, size_t lineno,
		      const char **ret_name, size_t *ret_len, char *err,
		      size_t errlen)
{
	char q[ACTION_QUOTE_MAX + 8];
	const char *slash;

	quote(q, sizeof(q), s, n);
	while (n > 0 && s[n - 1] == '/')
		n--;
	slash = n ? memrchr(s, '/', n) : NULL;
	if (slash) {
		n -= (size_t)(slash + 1 - s);
		s = slash + 1;
	}
	if (n == 0)
		return errtext(err, errlen, -EINVAL,
			       "line %zu: no id in \"%s\"", lineno, q);
	if ((n == 1 && (s[0] == '.' || s[0] == '*')) ||
	    (n == 2 && s[0] == '.' && s[1] == '.'))
		return errtext(
			err, errlen, -EINVAL,
			"line %zu: \"%s\" names no run (an unexpanded glob or a directory?)",
			lineno, q);
	if (n > API_MAX_ID)
		return errtext(err, errlen, -EINVAL,
			       "line %zu: the id is longer than %d bytes",
			       lineno, API_MAX_ID);
	*ret_name = s;
	*ret_len = n;
	return 0;
}

/* Orders indices of act->ids by id, then position: duplicates become
 * neighbours, the first of each run the first seen. */
static int cmp_ids(const void *a, const void *b, void *ctx)
{
	const struct action *act = ctx;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int c = strcmp(act->ids[i], act->ids[j]);

	if (c)
		return c;
	return i < j ? -1 : i > j;
}

/* Drops repeated ids, keeping the first of each. */
static int dedupe(struct action *act)
{
	size_t *idx, keep = 0;
	bool *dup;

	if (act->n < 2)
		return 0;
	idx = malloc(act->n * sizeof(*idx));
	dup = calloc(act->n, sizeof(*dup));
	if (!idx || !dup) {
		free(idx);
		free(dup);
		return -ENOMEM;
	}
	for (size_t i = 0; i < act->n; i++)
		idx[i] = i;
	qsort_r(idx, act->n, sizeof(*idx), cmp_ids, act);
	for (size_t i = 1; i < act->n; i++)
		if (!strcmp(act->ids[idx[i]], act->ids[idx[i - 1]]))
			dup[idx[i]] = true;
	for (size_t i = 0; i < act->n; i++) {
		if (dup[i]) {
			free(act->ids[i]);
		} else {
			act->listed[keep] = act->listed[i];
			act->ids[keep++] = act->ids[i];
		}
	}
	act->n = keep;
	free(idx);
	free(dup);
	return 0;
}

/* Adds the id of @name to @act, growing its array. */
static int add_id(struct action *act, size_t *cap, const char *name, size_t len,
		  action_resolve_fn resolve, void *ctx, size_t lineno,
		  char *err, size_t errlen)
{
	char q[ACTION_QUOTE_MAX + 8];
	char *copy, *id = NULL;
	int r;

	bool listed = true;

	if (act->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		char **p = realloc(act->ids, ncap * sizeof(*p));
		bool *l;

		if (!p)
			return errtext(err, errlen, -ENOMEM, "out of memory");
		act->ids = p;
		l = realloc(act->listed, ncap * sizeof(*l));
		if (!l)
			return errtext(err, errlen, -ENOMEM, "out of memory");
		act->listed = l;
		*cap = ncap;
	}
	copy = strndup(name, len);
	if (!copy)
		return errtext(err, errlen, -ENOMEM, "out of memory");
	if (!resolve) {
		id = copy;
	} else {
		r = resolve(ctx, copy, &id);
		if (r < 0 || !id || !id[0] || strlen(id) > API_MAX_ID) {
			quote(q, sizeof(q), name, len);
			free(copy);
			if (r >= 0)
				free(id);
			if (r == -ENOMEM)
				return errtext(err, errlen, r, "out of memory");
			return errtext(err, errlen, r < 0 ? r : -EINVAL,
				       "line %zu: \"%s\" is not a run (%s)",
				       lineno, q,
				       r < 0 ? strerror(-r) : "no usable id");
		}
		free(copy);
		listed = r > 0;
	}
	if (strchr(id, ',')) {
		quote(q, sizeof(q), name, len);
		free(id);
		return errtext(
			err, errlen, -EINVAL,
			"line %zu: \"%s\" holds a ',', which the API reads as a separator of several ids",
			lineno, q);
	}
	act->listed[act->n] = listed;
	act->ids[act->n++] = id;
	return 0;
}

/* Removes duplicate ids and checks the limit on what is left. */
static int dedupe_within_limit(struct action *act, char *err, size_t errlen)
{
	int r = dedupe(act);

	if (r < 0)
		return errtext(err, errlen, r, "out of memory");
	if (act->n > ACTION_MAX_IDS)
		return errtext(err, errlen, -E2BIG, "more than %d ids at once",
			       ACTION_MAX_IDS);
	return 0;
}

/* Takes line @lineno (@n bytes at @s, without its LF) into @act. */
static int parse_line(struct action *act, unsigned *seen, size_t *cap,
		      const char *s, size_t n, size_t lineno,
		      action_resolve_fn resolve, void *ctx, char *err,
		      size_t errlen)
{
	const char *name = NULL;
	size_t nlen = 0;
	int r;

	if (n > ACTION_MAX_LINE)
		return errtext(err, errlen, -EINVAL,
			       "line %zu is longer than %d bytes", lineno,
			       ACTION_MAX_LINE);
	trim(&s, &n);
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			return errtext(err, errlen, -EINVAL,
				       "line %zu holds a control byte (0x%02x)",
				       lineno, c);
	}
	if (option_line(s, n)) {
		if (act->n)
			return errtext(err, errlen, -EINVAL,
				       "line %zu: an option after the ids "
				       "(options come first)",
				       lineno);
		return parse_option(act, seen, s, n, lineno, err, errlen);
	}
	r = parse_name(s, n, lineno, &name, &nlen, err, errlen);
	if (r < 0)
		return r;
	r = add_id(act, cap, name, nlen, resolve, ctx, lineno, err, errlen);
	if (r < 0)
		return r;
	/* duplicates are removed when the array reaches twice the limit:
	 * memory stays bounded, and the sorting amortized */
	if (act->n >= 2 * ACTION_MAX_IDS)
		return dedupe_within_limit(act, err, errlen);
	return 0;
}

int action_parse(enum action_verb verb, const char *buf, size_t len,
		 action_resolve_fn resolve, void *ctx,
		 struct action **ret_action, char *err, size_t errlen)
{
	struct action *act;
	size_t pos = 0, lineno = 0, cap = 0;
	unsigned seen = 0;
	int r = 0;

	if (err && errlen)
		err[0] = '\0';
	if ((unsigned)verb >= ACTION_NVERBS)
		return errtext(err, errlen, -EINVAL, "unknown action");
	if (len > ACTION_MAX_INPUT)
		return errtext(err, errlen, -EFBIG,
			       "more than %d bytes written at once",
			       ACTION_MAX_INPUT);
	act = calloc(1, sizeof(*act));
	if (!act)
		return errtext(err, errlen, -ENOMEM, "out of memory");
	act->verb = verb;
	act->opt.retries = -1;

	while (r == 0 && pos < len) {
		const char *s = buf + pos, *nl = memchr(s, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - s) : len - pos;

		pos += n + (nl ? 1 : 0);
		r = parse_line(act, &seen, &cap, s, n, ++lineno, resolve, ctx,
			       err, errlen);
	}
	if (r == 0 && act->n == 0)
		r = errtext(err, errlen, -EINVAL,
			    "no id given: write one dlqId (or a path ending in "
			    "one) per line");
	if (r == 0)
		r = dedupe_within_limit(act, err, errlen);
	if (r == 0) {
		act->out = calloc(act->n, sizeof(*act->out));
		if (!act->out)
			r = errtext(err, errlen, -ENOMEM, "out of memory");
	}
	if (r < 0) {
		action_free(act);
		return r;
	}
	*ret_action = act;
	return 0;
}

void action_free(struct action *act)
{
	if (!act)
		return;
	for (size_t i = 0; i < act->n; i++) {
		free(act->ids[i]);
		if (act->out) {
			free(act->out[i].run_id);
			free(act->out[i].text);
		}
	}
	free(act->ids);
	free(act->listed);
	free(act->out);
	free(act);
}

/* ---- control-file input ------------------------------------------------ */

/* The kinds of line in @len bytes of whole lines, as a bit set. */
static unsigned line_kinds(const char *text, size_t len)
{
	unsigned kinds = 0;

	while (len) {
		const char *nl = memchr(text, '\n', len);
		size_t l = nl ? (size_t)(nl - text) : len;

		kinds |= 1u << line_kind(text, l);
		l += nl != NULL;
		text += l;
		len -= l;
	}
	return kinds;
}

/* Where the first line with an id starts in @len bytes of lines. */
static size_t first_id(const char *text, size_t len)
{
	size_t at = 0;

	while (at < len) {
		const char *nl = memchr(text + at, '\n', len - at);
		size_t l = nl ? (size_t)(nl - (text + at)) : len - at;

		if (line_kind(text + at, l) == ACTION_LINE_ID)
			break;
		at += l + (nl != NULL);
	}
	return at;
}

/* Keeps @len bytes of option (and blank) lines for the ids to come. */
static int keep(struct action_input *in, const char *text, size_t len)
{
	if (in->prefix.len + len > ACTION_MAX_INPUT)
		return -EFBIG;
	return buf_add(&in->prefix, text, len);
}

/* Takes @len bytes of lines, all ended but perhaps the last (at close):
 * option lines before the first id are kept, lines with ids come back
 * behind them. Returns as action_input_write(). */
static int input_take(struct action_input *in, const char *text, size_t len,
		      char **ret_text, size_t *ret_len)
{
	unsigned kinds = line_kinds(text, len);
	size_t head;
	char *all;
	int r;

	if (!(kinds & (1u << ACTION_LINE_ID))) {
		if (in->ids_started)
			return kinds & (1u << ACTION_LINE_OPTION) ? -EINVAL : 0;
		if (!(kinds & (1u << ACTION_LINE_OPTION)) && !in->prefix.len)
			return -EINVAL; /* blank, and nothing before: no id */
		return keep(in, text, len);
	}
	if (in->ids_started && (kinds & (1u << ACTION_LINE_OPTION)))
		return -EINVAL; /* an option after ids */
	if (!in->ids_started) {
		/* the options that come before the first ids stay for the
		 * ids of later writes too */
		head = first_id(text, len);
		r = keep(in, text, head);
		if (r < 0)
			return r;
		text += head;
		len -= head;
	}
	if (in->prefix.len + len > ACTION_MAX_INPUT)
		return -EFBIG;
	all = malloc(in->prefix.len + len + 1);
	if (!all)
		return -ENOMEM;
	if (in->prefix.len)
		memcpy(all, in->prefix.data, in->prefix.len);
	memcpy(all + in->prefix.len, text, len);
	*ret_text = all;
	*ret_len = in->prefix.len + len;
	return 1;
}

int action_input_write(struct action_input *in, const char *buf, size_t len,
		       char **ret_text, size_t *ret_len)
{
	struct buf *p = &in->pending;
	const char *nl;
	size_t whole;
	int r;

	if (p->len + len > ACTION_MAX_INPUT) {
		p->len = 0;
		return -EFBIG;
	}
	r = buf_add(p, buf, len);
	if (r < 0)
		return r;
	nl = p->len ? memrchr(p->data, '\n', p->len) : NULL;
	if (!nl) {
		if (p->len <= ACTION_MAX_LINE)
			return 0;
		p->len = 0;
		return -EINVAL; /* a line too long: refused whole */
	}
	whole = (size_t)(nl - p->data) + 1;
	r = input_take(in, p->data, whole, ret_text, ret_len);
	memmove(p->data, p->data + whole, p->len - whole);
	p->len -= whole;
	return r;
}

int action_input_close(struct action_input *in, char **ret_text,
		       size_t *ret_len)
{
	struct buf last = in->pending;
	int r = 0;

	in->pending = (struct buf)BUF_INIT;
	if (last.len)
		r = input_take(in, last.data, last.len, ret_text, ret_len);
	buf_release(&last);
	if (r == 0 && in->prefix.len && !in->ids_started)
		return -EINVAL; /* options, and no id to apply them to */
	return r;
}

void action_input_acted(struct action_input *in)
{
	in->ids_started = true;
}

void action_input_release(struct action_input *in)
{
	buf_release(&in->pending);
	buf_release(&in->prefix);
	*in = (struct action_input){0};
}
