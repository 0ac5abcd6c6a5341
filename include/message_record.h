/* message_record: a message as bytes on disk, and back.
 *
 * The cache (cache.h) keeps the served snapshot as one record per run:
 * what the message was made of when it was parsed (its compact text, its
 * dlqId, its view values, how each file renders and its size, its dates)
 * and when its message.json was first seen so. Reading a record back
 * does not parse JSON with jansson: it checks the record instead, so that
 * any bytes at all give either a message as safe to render as a parsed
 * one, or -EINVAL. Records are in the host's byte order (the cache's
 * header says which) and their sizes are multiples of 8.
 */
#ifndef DLQFS_MESSAGE_RECORD_H
#define DLQFS_MESSAGE_RECORD_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "message.h"

/* What a record keeps of the run beside its message: when its
 * message.json was first seen so, and its inode keys (snapshot.h). */
struct message_record_run {
	struct timespec json_mtime;
	uint64_t key, json_key;
};

/* The bytes the record of @m takes (a multiple of 8), or 0 when @m cannot
 * be written as one (a text of 4 GiB or more). */
size_t message_record_size(const struct message *m);

/* Writes the record of @m, of the run @run, into @buf
 * (message_record_size() bytes, 8-aligned). */
void message_record_write(const struct message *m,
			  const struct message_record_run *run, char *buf);

/* Reads the record at @p (@n bytes there, 8-aligned). Returns its size,
 * a new message in @ret_msg and its run in @ret_run; -EINVAL when the
 * bytes are not a record (too short; a size, an offset or a length out of
 * bounds; a dlqId that is not one; a text that does not look like an
 * object; a file whose kind is unknown or whose value does not start as
 * that kind's); -ENOMEM. What is not checked is what reading the whole
 * text again would: that each file renders to the size the record says
 * (the cache's checksum stands for it). A message that lies there still
 * renders within its bounds: message_file_render() says -EIO. */
ssize_t message_record_read(const char *p, size_t n, struct message **ret_msg,
			    struct message_record_run *ret_run);

#endif
