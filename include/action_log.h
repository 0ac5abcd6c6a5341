/* action_log: .dlqfs/actions.log.
 *
 * One JSON line per id an action touched, in the order they were settled,
 * kept in memory for as long as the mount lives (and bounded). action.c
 * writes the lines; fs.c serves the bytes.
 */
#ifndef DLQFS_ACTION_LOG_H
#define DLQFS_ACTION_LOG_H

#include <stddef.h>
#include <stdint.h>

/* One line of .dlqfs/actions.log. Strings may hold any bytes (ids come
 * from users and from the API): the line is valid JSON and UTF-8 whatever
 * they hold (invalid UTF-8 becomes U+FFFD, control bytes \u00XX). */
struct action_log_entry {
	int64_t time_ms;  /* wall clock, ms since the epoch */
	const char *verb; /* "delete", "resume", ... */
	const char *id;	  /* dlqId (@id_len bytes) */
	size_t id_len;
	const char *outcome; /* "ok", "error", "unknown" */
	long http_status;    /* 0: no response (written as null) */
	const char *run_id;  /* new workflowRunId, or NULL/"": omitted */
	const char *error;   /* errno name ("ENOENT"), or NULL: omitted */
	const char *text;    /* what went wrong in words, or NULL */
};

/* Longest line action_log_line() writes (ids and texts are cut to fit,
 * at a character boundary). */
#define ACTION_LOG_LINE_MAX 8192

/* Renders @e as one JSON object and a newline:
 * {"time":"2026-11-20T00:00:00.000Z","verb":"resume","dlqId":"...",
 *  "outcome":"ok","status":200,"workflowRunId":"wfr_..."}
 * Returns the length (without the NUL), at most ACTION_LOG_LINE_MAX - 1,
 * written into @buf (ACTION_LOG_LINE_MAX bytes). */
size_t action_log_line(const struct action_log_entry *e,
		       char buf[ACTION_LOG_LINE_MAX]);

/* The action log: the bytes of .dlqfs/actions.log, append-only and in
 * memory; every call takes its mutex, so any thread may use it.
 * It holds at most @max_bytes (ACTION_LOG_MAX_BYTES by default). Beyond
 * that it stops growing: it ends with one line
 * {"time":...,"log":"full","text":"..."} saying so, and every later line
 * is dropped and counted (action_log_dropped()). A reader that follows
 * the end (tail -f) just sees no more lines. Nothing is ever rewritten,
 * so offsets stay valid. */
#define ACTION_LOG_MAX_BYTES (4u << 20)
#define ACTION_LOG_RESERVE 512 /* room kept for the "full" line */

/* Returns a new log, or NULL (out of memory). @max_bytes 0: the default;
 * at least ACTION_LOG_RESERVE * 2. */
struct action_log *action_log_new(size_t max_bytes);
void action_log_free(struct action_log *log);

/* Appends @len bytes (whole lines, each ending in '\n'). Returns 0;
 * -ENOSPC when the log is full, -ENOMEM: then the line is dropped and
 * counted; -EINVAL when @line is empty or does not end in '\n'. */
int action_log_append(struct action_log *log, const char *line, size_t len);

/* Copies up to @len bytes from offset @off into @buf. Returns the number
 * copied: 0 at or beyond the end. */
size_t action_log_read(struct action_log *log, uint64_t off, char *buf,
		       size_t len);

/* Bytes in the log (the file size). */
uint64_t action_log_size(struct action_log *log);

/* Lines dropped because the log was full (or memory ran out). */
uint64_t action_log_dropped(struct action_log *log);

#endif
