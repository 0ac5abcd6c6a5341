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

/* Blocks of at least this many bytes are mapped on their own. Fixing it
 * turns glibc's dynamic raise (up to 32 MiB) off. Not glibc's initial 128
 * KiB: a list page's body (about 170 KB) would then be mapped, faulted in
 * and unmapped for every page, which cost 2.3 s of system time over 10
 * full walks of 20,000 runs (1.3 s with the default, 1.9 s with 1 MiB);
 * with a 1 MiB threshold and the trim, RSS stays as flat. */
#define MEMORY_MMAP_THRESHOLD (1024 * 1024)

/* Sets the allocator up (once, before any thread starts). Returns 0, or
 * -1 when the allocator refused (the daemon runs on, with more memory). */
int memory_init(void);

/* Gives the pages that free() kept back to the kernel. Takes each arena's
 * lock in turn: call it outside every lock of the daemon, and not on a
 * hot path. */
void memory_release(void);

#endif
