/* api: the DLQ endpoints over http.
 *
 * Builds request URLs (scope filters, percent-encoded cursor), maps HTTP
 * statuses to errno in one table, and hands page bodies to the message
 * module. Nothing above this layer sees HTTP.
 */
#ifndef DLQFS_API_H
#define DLQFS_API_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "message.h"

#define API_DEFAULT_URL "https://qstash.upstash.io"
#define API_LIST_PATH "/v2/workflows/dlq"
#define API_PAGE_COUNT 100 /* the API's maximum page size */

/* One list filter, sent as "param=value"; a parameter given several times
 * is OR within the parameter, and AND across parameters. */
struct api_filter {
	const char *param; /* API spelling: "label", "workflowUrl", ... */
	const char *value;
};

struct api_config {
	const char *base_url; /* without trailing slash, e.g. API_DEFAULT_URL */
	const char *token;
	const struct api_filter *filters;
	size_t nfilters;
	struct http_config http;
};

/* What went wrong, for .dlqfs/status and start-up messages. */
struct api_error {
	long http_status; /* 0 when no response arrived */
	char text[512];	  /* one line, in words; never the token */
};

struct api;

/* Returns a new client (copying everything in @cfg), or NULL (out of
 * memory). One client per thread. */
struct api *api_new(const struct api_config *cfg);
void api_free(struct api *a);

/* Fetches one list page: the first when @cursor is NULL, else the page
 * after @cursor. Returns 0 and fills @ret_page (release with
 * message_page_release()); on failure a negative errno and @err filled:
 * -EACCES (401/403: token refused), -EINVAL (400: request refused),
 * -ENOENT (404), -EAGAIN (429 still after retries), -EIO (5xx, other
 * statuses), -EPROTO (a body that is not a list page), or a transport
 * error from http_get(). */
int api_list(struct api *a, const char *cursor, struct message_page *ret_page,
	     struct api_error *err);

/* Like api_list(), for entries with createdAt in [@from, @to] (ms,
 * inclusive; -1: unbounded on that side), within the scope: a range is
 * intersected with the scope's own fromDate/toDate. An empty intersection
 * returns an empty last page without a request. */
int api_list_range(struct api *a, int64_t from, int64_t to, const char *cursor,
		   struct message_page *ret_page, struct api_error *err);

/* The list URL for @cursor (new string, or NULL when out of memory).
 * Exposed for tests. */
char *api_list_url(const struct api *a, const char *cursor);
char *api_list_range_url(const struct api *a, int64_t from, int64_t to,
			 const char *cursor);

/* Percent-encodes @len bytes of @s for a query string (RFC 3986
 * unreserved characters stay). Returns a new string or NULL. */
char *api_query_escape(const char *s, size_t len);

#endif
