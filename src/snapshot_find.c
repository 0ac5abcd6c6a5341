/* snapshot_find: lookups by name in a snapshot's sorted arrays (runs,
 * a view's values) and of a run in a value's run list; the key table's
 * lookup stays with the table, in snapshot.c.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "snapshot.h"

/* Binary search of @name among @n elements of @stride bytes from @base,
 * sorted by the string a pointer at @name_at in each points to. */
static int64_t find_name(const void *base, size_t n, size_t stride,
			 size_t name_at, const char *name)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *const *at =
			(const char *const *)((const char *)base +
					      mid * stride + name_at);
		int c = strcmp(name, *at);

		if (c == 0)
			return (int64_t)mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -ENOENT;
}

int64_t snapshot_find_run(const struct snapshot *s, const char *name)
{
	return find_name(s->runs, s->nruns, sizeof(*s->runs),
			 offsetof(struct snapshot_run, name), name);
}

int64_t snapshot_find_value(const struct snapshot *s, int view,
			    const char *name)
{
	const struct snapshot_view *v = &s->view[view];

	return find_name(v->values, v->nvalues, sizeof(*v->values),
			 offsetof(struct snapshot_value, name), name);
}

int64_t snapshot_value_find_run(const struct snapshot *s,
				const struct snapshot_value *value,
				uint32_t run)
{
	size_t lo = 0, hi = value->nruns;

	(void)s;
	/* run lists are sorted by run index, which is name order */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (value->runs[mid] == run)
			return (int64_t)mid;
		if (value->runs[mid] > run)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -ENOENT;
}
