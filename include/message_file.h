/* message_file: the files of runs/<dlqId>/.
 *
 * A message does not store its files: it keeps its entry's compact text
 * and, for each file, how it renders and its exact size, all decided when
 * it was parsed (message.c). This module renders them from that text, on
 * demand.
 */
#ifndef DLQFS_MESSAGE_FILE_H
#define DLQFS_MESSAGE_FILE_H

#include <stdbool.h>
#include <stddef.h>

struct message;

/* The files of runs/<dlqId>/, in the order they are listed. */
enum message_file {
	MESSAGE_JSON,		 /* message.json */
	MESSAGE_BODY,		 /* body */
	MESSAGE_HEADER,		 /* header */
	MESSAGE_RESPONSE_BODY,	 /* responseBody */
	MESSAGE_RESPONSE_HEADER, /* responseHeader */
	MESSAGE_RESPONSE_STATUS, /* responseStatus */
	MESSAGE_NFILES
};

/* File names, indexed by enum message_file. */
extern const char *const message_file_names[MESSAGE_NFILES];

/* How a file renders from the value of its field in the entry's text. */
enum message_file_kind {
	MESSAGE_FILE_NONE,   /* no file */
	MESSAGE_FILE_STRING, /* a string, decoded */
	MESSAGE_FILE_LINE,   /* a string, decoded, then "\n" unless empty */
	MESSAGE_FILE_INT,    /* an integer literal in decimal, then "\n" */
	MESSAGE_FILE_BASE64, /* a string, decoded, then base64-decoded */
	MESSAGE_FILE_HEADER, /* an object: "Name: value\n" lines, names sorted,
				at most MESSAGE_MAX_HEADER_VALUES */
	MESSAGE_FILE_JSON,   /* the whole text re-indented as jansson's
				JSON_INDENT(2) lays out a tree, then "\n" */
};

/* Whether file @f of @m exists (its field is present; a present but
 * empty field gives an empty file). */
bool message_file_exists(const struct message *m, enum message_file f);

/* The exact size of file @f of @m: what message_file_render() writes
 * (0 when the file does not exist). */
size_t message_file_size(const struct message *m, enum message_file f);

/* Renders file @f of @m into @buf, which has room for
 * message_file_size() bytes; no NUL is added. A linear pass over the
 * message's text (no JSON parser). Returns 0; -ENOENT when the file does
 * not exist; -ENOMEM; -EIO when it did not come out as measured (cannot
 * happen: a bug). */
int message_file_render(const struct message *m, enum message_file f,
			char *buf);

/* Whether file @f has the same content in @a and @b (both absent counts
 * as the same). Exact for message.json; for the other files it compares
 * the text of the value they render, so a value sent with other escapes
 * but the same bytes reads as changed (never the reverse). */
bool message_file_same(const struct message *a, const struct message *b,
		       enum message_file f);

/* Measures the file of @kind whose value starts at byte @at of the
 * compact text @s (@n bytes; for MESSAGE_FILE_JSON @at is unused), giving
 * up beyond @limit bytes. Header values it leaves out (not strings, or
 * beyond MESSAGE_MAX_HEADER_VALUES) are added to *@left_out, whatever it
 * returns. Returns 0 and the exact size message_file_render() will write
 * in *@ret_len; -EFBIG (beyond @limit), -EILSEQ (a base64 file whose value
 * is not base64), -EPROTO (the text there is not what @kind reads: a bug)
 * or -ENOMEM. */
int message_file_measure(const char *s, size_t n, enum message_file_kind kind,
			 size_t at, size_t limit, size_t *ret_len,
			 size_t *left_out);

#endif
