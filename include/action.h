/* action: what users ask of the DLQ through .dlqfs/ control files, and
 * the log of what was done (issue 5).
 *
 * Three parts, none of them FUSE's:
 * - the parser of what a user writes to .dlqfs/{delete,resume,restart,
 *   callback}: option lines, then ids or paths ending in one, and the
 *   input of one open control file, whose writes cut lines anywhere;
 * - the runner: one id goes to the single endpoint, several go in bulk
 *   requests of at most API_BULK_MAX ids (callback has no bulk form: one
 *   request each), with an outcome per id;
 * - what each outcome writes to .dlqfs/actions.log (action_log.h holds
 *   the log and the form of its lines).
 * The FUSE layer owns names, permissions (-o allow_delete/allow_resume),
 * and the snapshot after an action.
 */
#ifndef DLQFS_ACTION_H
#define DLQFS_ACTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "action_verb.h"
#include "buf.h"
#include "api.h"

/* Limits on what one write may ask. */
#define ACTION_MAX_INPUT (1 << 20) /* bytes parsed at once: -EFBIG */
#define ACTION_MAX_LINE 4096	   /* bytes of one line: -EINVAL */
#define ACTION_MAX_IDS 10000	   /* ids once deduplicated: -E2BIG */
#define ACTION_MAX_OPTION 256	   /* bytes of one option value */
#define ACTION_MAX_RETRIES 100	   /* retries=N, 0..this */

/* Maps a name the user wrote (the last path component, never empty, ".",
 * "..", "*", holding no '/' or control byte) to the raw dlqId: the FUSE
 * layer owns escaped names. Returns 1 and a new string in @ret_id for a
 * run it lists, 0 and a new string for a name it passes on as it is (a
 * run it does not list: the API will say whether it knows it), or a
 * negative errno that fails the whole parse (nothing is sent), e.g.
 * -ENOENT for a name it refuses. Ids it passes on are sent one request
 * each (see action_run()). */
typedef int (*action_resolve_fn)(void *ctx, const char *name, char **ret_id);

/* What happened to one id. */
struct action_outcome {
	int err;	  /* 0, or a negative errno */
	bool unknown;	  /* whether it was carried out is not known: a bulk
			     delete deleted fewer than it was given, a bulk
			     resume was answered 404, a request failed after
			     it may have been carried out */
	long http_status; /* 0 when no response came (or nothing was sent) */
	char *run_id;	  /* new workflowRunId (resume, restart, callback),
			     or NULL */
	char *text;	  /* what went wrong in words, or NULL */
};

/* One parsed request. */
struct action {
	enum action_verb verb;
	/* Options (resume, restart only); the strings point into the
	 * buffers below. */
	struct api_action_options opt;
	char delay[ACTION_MAX_OPTION + 1];
	char retry_delay[ACTION_MAX_OPTION + 1];
	char flow_control_key[ACTION_MAX_OPTION + 1];
	char flow_control_value[ACTION_MAX_OPTION + 1];
	char label[ACTION_MAX_OPTION + 1];
	char failure_callback[ACTION_MAX_OPTION + 1];
	char **ids;   /* new, raw dlqIds, deduplicated, in first-seen order */
	bool *listed; /* per id: the resolver listed it (or there is none) */
	size_t n;     /* 1 .. ACTION_MAX_IDS */
	struct action_outcome *out; /* n outcomes, filled by action_run() */
	bool ran;		    /* action_run() was called */
};

/* Parses @len bytes written to the control file of @verb.
 *
 * The text is lines (LF, an optional CR before it; the last may lack the
 * LF). Blank lines (spaces and tabs only) are ignored; other lines lose
 * their leading and trailing blanks. First come any option lines
 * "key=value" (key: lowercase letters and '_'), each key at most once,
 * only for resume and restart:
 *   retries=N             0..ACTION_MAX_RETRIES     (Upstash-Retries)
 *   delay=D               digits and a unit, repeated: 10s, 1h30m, 500ms
 *   retry_delay=E         printable ASCII           (Retry-Delay)
 *   flow_control_key=K    printable ASCII, no blank (Flow-Control-Key)
 *   flow_control_value=V  printable ASCII           (Flow-Control-Value)
 *   label=L[,L...]        printable ASCII           (Label)
 *   failure_callback=U    http(s):// URL, no blank  (Failure-Callback)
 * Then one id per line: a dlqId, or a path whose last component is one
 * (trailing slashes are dropped), so "ls -d by-label/x/[*] > resume" works.
 * Each name goes through @resolve (NULL: the name is the id).
 *
 * Refused, with nothing to send: no id at all (blank input), an option
 * after an id, an unknown key, a repeated key, a bad value, options for
 * delete or callback, a name that is empty, ".", "..", or "*" (an
 * unexpanded glob), a line holding a control byte (NUL included) or
 * longer than ACTION_MAX_LINE, an id longer than API_MAX_ID or holding a
 * ',' (the API reads one as a separator of several ids). All give
 * -EINVAL; more than ACTION_MAX_IDS distinct ids -E2BIG; more than
 * ACTION_MAX_INPUT bytes -EFBIG; a resolver's error as it is; -ENOMEM.
 * Then @err (at most @errlen bytes, may be NULL) says which line and why,
 * in printable ASCII.
 *
 * Returns 0 and a new action in @ret_action (free with action_free()),
 * its outcomes not yet filled. */
int action_parse(enum action_verb verb, const char *buf, size_t len,
		 action_resolve_fn resolve, void *ctx,
		 struct action **ret_action, char *err, size_t errlen);

/* ---- control-file input ------------------------------------------------
 *
 * What has been written so far to one open control file, turned into the
 * texts to give action_parse(). Writes cut lines anywhere: whole lines
 * are acted on as soon as they are written, and a last line without its
 * newline waits for the next write, or is taken as it is at close(2).
 * Option lines written before the first id are kept, and apply to every
 * id written after them on the same open file, also when the first ids
 * come in the same write; an option line after an id is refused. Blank
 * lines among the options are kept with them.
 *
 * Not locked: the caller makes the calls for one open file one at a
 * time (the kernel sends a file's writes one at a time). All zeros is an
 * empty input; action_input_release() frees what it holds. */
struct action_input {
	struct buf pending; /* the last line, not yet ended by a newline */
	struct buf prefix;  /* the option lines that came before the first id */
	bool ids_started;   /* a text with ids was acted on */
};

/* Takes @len bytes written to the control file (a stream: each write
 * appends). Returns
 *   1 when whole lines with an id were completed: @ret_text (new, not
 *     NUL-terminated) holds @ret_len bytes, the option lines kept, then
 *     those lines, for action_parse(); call action_input_acted() once
 *     it accepted them;
 *   0 when there is nothing to act on yet: a line not ended, option
 *     lines kept for the ids to come, blank lines after ids;
 *   -EFBIG when more than ACTION_MAX_INPUT bytes would be pending, or
 *     kept with the lines (then they are dropped);
 *   -EINVAL when a line grows beyond ACTION_MAX_LINE bytes without its
 *     newline (dropped), when whole lines hold only blanks before any id
 *     or option, or an option line after ids;
 *   -ENOMEM.
 * Whole lines, once taken in, leave @in whatever it returns: a caller
 * that hands the text on is done with @in. */
int action_input_write(struct action_input *in, const char *buf, size_t len,
		       char **ret_text, size_t *ret_len);

/* At close(2): a last line without its newline is taken as if it had
 * one, with action_input_write()'s returns; then -EINVAL when option
 * lines were kept and no id came to apply them to. */
int action_input_close(struct action_input *in, char **ret_text,
		       size_t *ret_len);

/* The text returned last was accepted: ids have started, and option
 * lines are refused from now on. */
void action_input_acted(struct action_input *in);

/* Frees what @in holds; it is empty again. */
void action_input_release(struct action_input *in);

/* x_free(NULL) is a no-op. */
void action_free(struct action *act);

struct action_log; /* action_log.h */

/* Carries out @act through @a (one client, used by this thread only),
 * filling act->out[i] for every id and appending one line per id to
 * @log (may be NULL). No id is ever sent twice. One id goes to the
 * single endpoint; so does each id the resolver did not list, first;
 * the listed ones go in bulk requests of at most API_BULK_MAX ids, in
 * order (a bulk request whose URL would be too long is split in halves;
 * a batch of one uses the single endpoint); callback sends one request
 * per id. A bulk resume or restart answered 404 ("Some DLQ messages were
 * not found": whether it acted on the others is not documented) is not
 * sent again: every id of it is -ENOENT with an unknown outcome, as is an
 * id whose request failed after it may have been carried out
 * (api_error.unknown).
 * A failure does not stop the other requests, except -ECANCELED
 * (shutdown), -EACCES (token refused) and -EDQUOT (daily quota
 * exhausted): the ids not yet sent then fail with that errno, and nothing
 * more is sent.
 * Returns 0 when every id succeeded; else the first error in id order
 * other than -ENOENT, or -ENOENT when that is the only one (a 404, or a
 * bulk delete that deleted fewer than given). Runs at most once per
 * action: -EALREADY the second time. */
int action_run(struct action *act, struct api *a, struct action_log *log);

#endif
