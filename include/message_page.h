/* message_page: a list page of the DLQ API, read into messages.
 *
 * Everything here is untrusted input from the network.
 */
#ifndef DLQFS_MESSAGE_PAGE_H
#define DLQFS_MESSAGE_PAGE_H

#include <stddef.h>

struct message;

/* A parsed list page. */
struct message_page {
	char *cursor;	       /* next cursor; NULL when the walk is over
				  ("", null or absent in the page) */
	struct message **msgs; /* new messages, owned by the page */
	size_t n;
	size_t malformed; /* entries skipped (not an object, no dlqId,
			     refused by jansson) */
	size_t bytes;	  /* size of the page as received */
};

/* More entries than this in one page, or a longer cursor: -EPROTO. */
#define MESSAGE_PAGE_MAX_MESSAGES 1000
#define MESSAGE_PAGE_MAX_CURSOR 4096

/* Parses a page {"cursor": ..., "messages": [...]}. On success returns 0 and
 * fills @ret_page (release it with message_page_release()). Returns -EPROTO
 * when the bytes are not such a page (not JSON text in UTF-8, not an
 * object, "messages" missing or not an array, cursor of the wrong type,
 * too long, holding a NUL or a lone surrogate), with a short reason in
 * @err (at most @errlen bytes, printable ASCII: what is wrong and, for
 * text that is not JSON, where: line, column and the bytes there); -ENOMEM.
 * The page is read by the scanner (jsontext.h), which decides what it is;
 * jansson loads each entry's own bytes for its fields. Malformed entries
 * inside a valid page are counted in ->malformed and skipped; they never
 * fail the page. That includes entries that are JSON text but that jansson
 * refuses (a lone surrogate escape such as "\udc80", a NUL escaped in a
 * member name, a number beyond a double, nesting deeper than jansson's 2048
 * levels): the other entries come out as they would have without them.
 * Nesting is not limited in depth outside the entries. */
int message_page_parse(const char *buf, size_t len,
		       struct message_page *ret_page, char *err, size_t errlen);

/* Frees the cursor and every message still in ->msgs (set an entry to NULL
 * to keep it). Safe on a zeroed page. */
void message_page_release(struct message_page *page);

#endif
