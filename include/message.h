/* message: one WorkflowDLQMessage.
 *
 * Turns the JSON text of one entry into a message: what renders the files
 * of DESIGN.md section 1 (their sizes exact, their bytes rendered on
 * demand by message_file.h) and the raw values of the eight views. Pages
 * of them are message_page.h's. Everything here is untrusted input from
 * the network: every field may be missing, null, or of the wrong type.
 */
#ifndef DLQFS_MESSAGE_H
#define DLQFS_MESSAGE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "message_file.h"

/* The eight views, in the order they are listed at the top of the tree. */
enum message_view {
	VIEW_LABEL,	       /* by-label: labels, else label */
	VIEW_URL,	       /* by-url: workflowUrl */
	VIEW_RUN,	       /* by-run: workflowRunId */
	VIEW_STATE,	       /* by-state: failureFunctionState */
	VIEW_STATUS,	       /* by-status: responseStatus, decimal */
	VIEW_DATE,	       /* by-date: createdAt as YYYY-MM-DD, UTC */
	VIEW_FLOW_CONTROL_KEY, /* by-flow-control-key: flowControlKey */
	VIEW_CALLER_IP,	       /* by-caller-ip: callerIP */
	VIEW_COUNT
};

/* A byte string inside a message's storage, not NUL-terminated in general
 * (a view value may point into the message's text). */
struct message_bytes {
	const char *data;
	size_t len;
};

/* Where the strings of a message read back from the cache live: the
 * cache file's mapping, shared by its messages. The last reference
 * calls @release. */
struct message_store {
	atomic_uint refs;
	void (*release)(struct message_store *s);
};

/* One parsed message. All its strings live in one allocation owned by the
 * message (or, for one read back from the cache, in its store); it is never
 * modified after message_*parse*() returns it. The files are not stored: the
 * message keeps the entry's own text and, for each file, how to render it from
 * that text and its exact size (message_file_*() below), all decided when it
 * was parsed. message.json is the entry's own text re-indented (JSON_INDENT(2)
 * layout): numbers, string escapes and repeated keys as received; the
 * other files and the views read a repeated key's last value. */
struct message {
	atomic_uint refs;	     /* message_ref(), message_free() */
	struct message_store *store; /* NULL, or where its strings are (one
					reference per message) */
	uint32_t problems;	 /* fields that were malformed and not shown,
				    and integers beyond 64 bits (shown as
				    sent in message.json, but read as reals
				    by the fields) */
	struct message_bytes id; /* dlqId, never empty, NUL after it */
	int64_t created_ms;	 /* createdAt, ms since the epoch */
	bool has_created;	 /* createdAt present and a number (a real
				    is truncated, and counted in problems) */
	bool has_wf_created;	 /* workflowCreatedAt likewise */
	int64_t wf_created_ms;	 /* workflowCreatedAt, ms (the scope's
				    workflow_created_at is checked on it) */

	/* How each file renders (enum message_file_kind; 0: no file):
	 * decided by message.c, read by message_file.c. */
	uint8_t file_kind[MESSAGE_NFILES];
	size_t file_at[MESSAGE_NFILES];	 /* its value in ->text */
	size_t file_len[MESSAGE_NFILES]; /* its exact rendered size */

	/* The entry's JSON text as received, without the whitespace between
	 * its tokens (NUL after it): equal texts render equal files, and two
	 * texts are equal exactly when their message.json are. */
	struct message_bytes text;

	/* The values of each view, raw (not escaped), without empty values and
	 * without duplicates. Only VIEW_LABEL can hold more than one. */
	struct {
		struct message_bytes *v;
		uint32_t n;
	} view[VIEW_COUNT];
};

/* Limits on what the remote side controls. */
#define MESSAGE_MAX_ID 1024	       /* longer dlqId: the entry is unusable */
#define MESSAGE_MAX_LABELS 64	       /* labels kept per message */
#define MESSAGE_MAX_HEADER_VALUES 1024 /* header lines kept per header file */
/* What messages render to is bounded by what was received: at most
 * MESSAGE_RENDER_FACTOR times the bytes of the page (or of the text given
 * to message_parse()), plus MESSAGE_RENDER_SLACK per message. A file that
 * would go beyond (only hostile input does: deep nesting pretty-printed,
 * one header name repeated for many values) is absent, counted in
 * problems. */
#define MESSAGE_RENDER_FACTOR 4
#define MESSAGE_RENDER_SLACK 65536

/* Parses one message from the JSON text @json (@len bytes) and renders it.
 * Returns 0 and a new message in @ret_msg; -EINVAL when the text is not a
 * JSON object jansson loads (a lone surrogate escape, a number beyond a
 * double, ... are not) or has no usable dlqId (a string, non-empty, no NUL
 * byte, at most MESSAGE_MAX_ID bytes); -ENOMEM. */
int message_parse(const char *json, size_t len, struct message **ret_msg);

/* The render budget of a text of @len bytes (a page, or the text given to
 * message_parse()), before each message's MESSAGE_RENDER_SLACK. */
size_t message_budget(size_t len);

/* message_parse() for one entry of a page, whose messages share the render
 * budget of the page: this one's files take at most MESSAGE_RENDER_SLACK
 * more than *@budget bytes, and what they take is deducted from it.
 * Returns as message_parse(). */
int message_parse_entry(const char *json, size_t len, size_t *budget,
			struct message **ret_msg);

/* Messages are immutable once parsed and may be shared (a snapshot built
 * from another shares its unchanged messages). message_ref() returns @m
 * with one more reference; message_free() drops one and frees the message
 * on the last. x_free(NULL) is a no-op. */
struct message *message_ref(struct message *m);
void message_free(struct message *m);

#endif
