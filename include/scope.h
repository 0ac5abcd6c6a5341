/* scope: the part of the DLQ a mount shows.
 *
 * The scope options (-o label=, -o from=, ...) are sent to the API as list
 * filters, and every entry the API sends back is checked against them
 * again: the docs and Upstash's own clients disagree on the filters' names
 * (failureFunctionState or failureCallbackState, callerIp or callerIP) and
 * whether the API ignores a parameter it does not know is not documented,
 * so a filter is never trusted to have been applied (API.md). An entry
 * outside the scope is left out of the tree, whatever the API did.
 */
#ifndef DLQFS_SCOPE_H
#define DLQFS_SCOPE_H

#include <stdbool.h>
#include <stddef.h>

#include "api.h"
#include "message.h"

#define SCOPE_MAX_FILTERS 256 /* values of all scope options together */
#define SCOPE_NPARAMS 9	      /* scope options (one per API filter) */

struct scope;

/* An empty scope (the whole DLQ), or NULL when out of memory. */
struct scope *scope_new(void);

/* x_free(NULL) is a no-op. */
void scope_free(struct scope *s);

/* Adds the value @value of the scope option @opt ("label", "from", ...:
 * the -o name). Multi-valued options (label, workflow_url,
 * failure_function_state, caller_ip, flow_control_key) are OR across
 * their values; the others (from, to, workflow_run_id,
 * workflow_created_at) take one value. Returns 0; -ENOENT when @opt is
 * not a scope option; -EINVAL, with @err (at most @errlen bytes) saying
 * why in one line, for an empty value, a value that is not a number where
 * one is needed (ms since the epoch), a second value of a single-valued
 * option, a value holding a ',' (the API reads a comma as a separator of
 * several values, so it could not be sent as one), or more than
 * SCOPE_MAX_FILTERS values; -ENOMEM. */
int scope_add(struct scope *s, const char *opt, const char *value, char *err,
	      size_t errlen);

/* The scope as list filters, in the order given (borrowed; valid until
 * the next scope_add() or scope_free()). */
const struct api_filter *scope_filters(const struct scope *s, size_t *ret_n);

/* Whether @m is outside the scope: -1 when inside (every option given
 * holds for it), else the number (0 .. SCOPE_NPARAMS - 1) of the first
 * option it fails, for scope_param_name(). An entry without the field an
 * option reads (no createdAt with from=, no label with label=) is outside. */
int scope_miss(const struct scope *s, const struct message *m);

/* The API filter and the -o option of scope option number @i
 * (static strings). */
const char *scope_param_name(int i);
const char *scope_option_name(int i);

#endif
