/* jsonw: the one JSON string writer.
 *
 * Whatever dlqfs writes as JSON (.dlqfs/status, actions.log) holds strings
 * from outside: ids and texts from the API, scope values from the command
 * line. They are written here, so that the output is valid JSON and valid
 * UTF-8 whatever bytes they hold.
 */
#ifndef DLQFS_JSONW_H
#define DLQFS_JSONW_H

#include <stddef.h>
#include <stdint.h>

#define JSONW_NO_LIMIT SIZE_MAX
#define JSONW_MIN_BUDGET 5 /* the quotes and "..." */

/* Writes the @n bytes at @s as a JSON string literal, quotes included,
 * into @buf, or only measures when @buf is NULL; no NUL is added. Returns
 * the length. Bytes that are not UTF-8 become U+FFFD, '"' and '\\' are
 * escaped, control bytes and DEL become \u00XX (lowercase hex); the rest
 * is copied. At most @budget bytes are written: JSONW_NO_LIMIT, or at
 * least JSONW_MIN_BUDGET. A string that does not fit is cut at a
 * character boundary and ends in "..." before its closing quote; room for
 * the "..." is kept until the last character, so one that would end
 * within 3 bytes of the budget is cut too. */
size_t jsonw_str(char *buf, const char *s, size_t n, size_t budget);

#endif
