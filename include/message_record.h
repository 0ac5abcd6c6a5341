/* message_record: a message as bytes on disk, and back.
 *
 * The cache (cache.h) keeps the served snapshot as one record per run, in
 * two parts: an index record (its dlqId, its view values, how each file
 * renders and its size, its dates, its run's message.json time and inode
 * keys) and its compact text, followed by a NUL, in a section of texts
 * of its own. Reading the index record back parses no JSON: it checks the
 * record instead, and never reads the text, so a message read back can
 * point into the cache file's mapping without the texts being paged in
 * until a file is read. Records are in the host's byte order (the cache's
 * header says which); index records are multiples of 8 bytes.
 */
#ifndef DLQFS_MESSAGE_RECORD_H
#define DLQFS_MESSAGE_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "message.h"

/* What a record keeps of the run beside its message: when its
 * message.json was first seen so, and its inode keys (snapshot.h). */
struct message_record_run {
	struct timespec json_mtime;
	uint64_t key, json_key;
};

/* The bytes the index record of @m takes (a multiple of 8), or 0 when @m
 * cannot be written as one (a text or a file of 4 GiB or more). Its text
 * takes m->text.len + 1 bytes in the section of texts. */
size_t message_record_size(const struct message *m);

/* Writes the index record of @m, of the run @run, whose text lies at
 * @text_at in the section of texts, into @buf (message_record_size()
 * bytes, 8-aligned). */
void message_record_write(const struct message *m,
			  const struct message_record_run *run,
			  uint64_t text_at, char *buf);

/* Reads the index record at @p (@n bytes there, 8-aligned), whose text
 * must lie at @text_at in the section of texts @texts (@ntexts bytes).
 * With @store NULL the message is one allocation of its own, its text
 * copied (the NUL after it checked); else its strings point into @p and
 * @texts, which @store keeps (one reference taken), and the text is not
 * read at all: the NUL after it is the caller's to check. Returns the
 * record's size, a new message in @ret_msg and its run in @ret_run;
 * -EINVAL when the bytes are not a record (too short; a size, an offset
 * or a length out of bounds; a dlqId that is not one; a value empty, twice
 * or without its NUL; a file of an unknown kind); -ENOMEM. What is not
 * checked is what reading the text would tell: that each file renders to
 * the size the record says (the cache's checksum stands for it). A
 * message that lies there still renders within its bounds:
 * message_file_render() says -EIO. */
ssize_t message_record_read(const char *p, size_t n, uint64_t text_at,
			    const char *texts, size_t ntexts,
			    struct message_store *store,
			    struct message **ret_msg,
			    struct message_record_run *ret_run);

#endif
