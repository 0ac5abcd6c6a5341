/* memory: see memory.h. */
#include "memory.h"

#include <malloc.h>

int memory_init(void)
{
	/* mallopt() returns 1 on success */
	if (mallopt(M_MMAP_THRESHOLD, MEMORY_MMAP_THRESHOLD) != 1)
		return -1;
	return 0;
}

void memory_release(void)
{
	malloc_trim(0);
}
