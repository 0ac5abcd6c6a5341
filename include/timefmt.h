/* timefmt: the one way dlqfs writes a time for people and for JSON.
 *
 * ISO 8601 in UTC with milliseconds, "2026-11-27T20:43:41.123Z": in
 * .dlqfs/status, actions.log and error texts alike.
 */
#ifndef DLQFS_TIMEFMT_H
#define DLQFS_TIMEFMT_H

#include <stdint.h>

#define TIMEFMT_ISO_SIZE 32 /* room for the text and its NUL */

/* Writes @ms (milliseconds since the epoch) into @buf and returns @buf.
 * A time before 1970 is written as 1970-01-01T00:00:00.000Z, one after
 * the year 9999 as 9999-12-31T23:59:59.999Z: the text always has the
 * same shape. */
char *timefmt_iso(int64_t ms, char buf[TIMEFMT_ISO_SIZE]);

/* The wall clock, in milliseconds since the epoch. */
int64_t timefmt_now_ms(void);

#endif
