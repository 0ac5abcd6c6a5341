/* memory: how the daemon's heap gives memory back.
 *
 * A mount lives for days and every walk builds a new snapshot while the
 * one it replaces is still served: large buffers (a page of the API, a
 * snapshot's indexes) come and go beside the messages that live on. With
 * glibc's defaults, that memory stays with the process once freed:
 *  - the mmap threshold rises to the largest block freed (up to 32 MiB),
 *    so after the first walk, page buffers and index arrays come from the
 *    heaps, where the small blocks that outlive them pin their pages;
 *  - each walker thread allocates from an arena of its own, and free()
 *    gives an arena's pages back only from its top.
 * memory_init() fixes the mmap threshold, so that a block that large is
 * mapped and unmapped on its own; memory_release() hands the free pages
 * of every arena back (malloc_trim), called when a snapshot is freed.
 * The figures are in README.md, "Memory"; contrib/bench's soak phase
 * measures them.
 */
#ifndef DLQFS_MEMORY_H
#define DLQFS_MEMORY_H

/* Blocks of at least this many bytes are mapped on their own. glibc's own
 * initial threshold; fixing it turns the dynamic raise off. */
#define MEMORY_MMAP_THRESHOLD (128 * 1024)

/* Sets the allocator up (once, before any thread starts). Returns 0, or
 * -1 when the allocator refused (the daemon runs on, with more memory). */
int memory_init(void);

/* Gives the pages that free() kept back to the kernel. Takes each arena's
 * lock in turn: call it outside every lock of the daemon, and not on a
 * hot path. */
void memory_release(void);

#endif
