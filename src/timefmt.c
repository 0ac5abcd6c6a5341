/* timefmt: milliseconds since the epoch as ISO 8601 text.
 *
 * Owns: the format and its bounds. Leaves to others: which time to show.
 */
#include <stdio.h>
#include <time.h>

#include "timefmt.h"

/* 9999-12-31T23:59:59.999Z */
#define TIMEFMT_MAX_MS 253402300799999LL

char *timefmt_iso(int64_t ms, char buf[TIMEFMT_ISO_SIZE])
{
	struct tm tm;
	time_t secs;

	if (ms < 0)
		ms = 0;
	if (ms > TIMEFMT_MAX_MS)
		ms = TIMEFMT_MAX_MS;
	secs = (time_t)(ms / 1000);
	if (!gmtime_r(&secs, &tm)) {
		snprintf(buf, TIMEFMT_ISO_SIZE, "1970-01-01T00:00:00.000Z");
		return buf;
	}
	/* the moduli change nothing (the time is clamped above) but let the
	 * compiler see that the text fits */
	snprintf(buf, TIMEFMT_ISO_SIZE, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
		 (unsigned)(tm.tm_year + 1900) % 10000u,
		 (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
		 (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u,
		 (unsigned)tm.tm_sec % 100u, (unsigned)(ms % 1000));
	return buf;
}

int64_t timefmt_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
