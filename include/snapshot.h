/* snapshot: an immutable, refcounted set of runs plus the eight view
 * indexes.
 *
 * A walk feeds messages into a snapshot_builder; snapshot_builder_finish()
 * sorts, escapes names, builds the views and the key table, and returns a
 * snapshot that is never modified again. Readers take a reference and may
 * keep it as long as they like (an open file, a directory listing); the
 * last snapshot_unref() frees it. The tree module turns a snapshot into
 * directories and files; this module knows nothing of inodes' meaning
 * beyond the stable 64-bit key it gives each run and each view value.
 */
#ifndef DLQFS_SNAPSHOT_H
#define DLQFS_SNAPSHOT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "message.h"
#include "names.h"

/* Keys have their low SNAPSHOT_KEY_SHIFT bits zero, so that the tree can
 * number a run's files key|1 .. key|7; and they are at least
 * SNAPSHOT_KEY_MIN, leaving room below for fixed inode numbers. */
#define SNAPSHOT_KEY_SHIFT 4
#define SNAPSHOT_KEY_MIN (1ULL << 32)

/* The views' directory names, indexed by enum message_view ("by-label",
 * ...): the tree's vocabulary, and part of each view's key. */
extern const char *const snapshot_view_names[VIEW_COUNT];

struct snapshot_run {
	struct message *msg; /* owned */
	char *name;	     /* escaped dlqId, owned by the snapshot */
	uint64_t key;	     /* stable for this dlqId */
	uint64_t json_key;   /* of message.json: changes with its content */
	struct timespec json_mtime; /* when message.json was first seen so */
	uint32_t nlinks;	    /* entries in all views pointing here */
};

struct snapshot_value {
	char *name;	/* escaped value */
	uint64_t key;	/* stable for (view, value) */
	uint32_t *runs; /* indexes into snapshot.runs, sorted by name */
	uint32_t nruns;
	int64_t newest_ms; /* largest createdAt among its runs, or -1 */
	uint64_t tag;	   /* identity of the run list (see snapshot.tag) */
};

struct snapshot_view {
	struct snapshot_value *values; /* sorted by name */
	uint32_t nvalues;
	uint64_t tag;	 /* identity of the value list (see snapshot.tag) */
	uint32_t *store; /* private: every value's run list */
};

struct snapshot {
	atomic_uint refs;
	struct snapshot_run *runs; /* sorted by name (strcmp) */
	uint32_t nruns;
	struct snapshot_view view[VIEW_COUNT];
	int64_t newest_ms;   /* largest createdAt, or -1 */
	uint64_t bytes;	     /* payload bytes (pages as received) */
	uint64_t file_bytes; /* sum of every run file's size */
	uint64_t generation; /* 1 for the first published snapshot */
	/* Identity of the run list: a hash of its keys in order, so equal
	 * tags mean (but for a 2^-64 chance) the same names with the same
	 * inodes in the same order, in whichever snapshot. Readdir cookies
	 * carry it: a listing goes on in any snapshot that lists the same. */
	uint64_t tag;
	struct timespec built; /* when finished */

	/* What it costs in memory (see snapshot_kept_bytes()): */
	uint64_t serial;       /* unique among this process's snapshots */
	uint64_t index_bytes;  /* its own blocks: runs, names, views, keys */
	uint64_t msg_bytes;    /* the blocks of its messages */
	uint64_t shared_from;  /* serial of the snapshot it was built from */
	uint64_t shared_bytes; /* blocks of the messages it shares with it */

	/* key -> run index or value, open addressing; private to snapshot.c */
	struct snapshot_slot *slots;
	size_t nslots; /* power of two */
	char *names;   /* storage of every escaped name */
};

/* What a key stands for. */
#define SNAPSHOT_REF_JSON (-2) /* snapshot_ref.view of a message.json key */

struct snapshot_ref {
	int view;	/* -1 for a run, SNAPSHOT_REF_JSON for its message.json,
			   else the view of a value */
	uint32_t index; /* run index, or value index within the view */
};

struct snapshot_builder;

/* A builder for a new snapshot, or NULL when out of memory. */
struct snapshot_builder *snapshot_builder_new(void);
void snapshot_builder_free(struct snapshot_builder *b);

/* Adds @msg, stealing it. A second message with a dlqId already added is
 * freed and not added. Returns 1 when added, 0 for a duplicate, -ENOMEM
 * (the message is freed then too). */
int snapshot_builder_add(struct snapshot_builder *b, struct message *msg);

/* What a run was before this snapshot, when no @prev says it (a run read
 * back from the cache). */
struct snapshot_seen {
	struct timespec json_mtime; /* when its message.json was first seen
				       so; tv_nsec -1: not known */
	uint64_t key, json_key;	    /* its keys (0: not known) */
};

/* snapshot_builder_add() for a message whose run was @seen so: it keeps
 * that message.json time and those keys (each while no other run of the
 * snapshot has taken it), unless snapshot_builder_finish() is given a
 * @prev that has the run. The keys are not checked against the name and
 * content they stand for: they come from a snapshot dlqfs built. A
 * -ENOMEM after the message was added leaves it added, nothing known. */
int snapshot_builder_add_seen(struct snapshot_builder *b, struct message *msg,
			      const struct snapshot_seen *seen);

/* The merge of an incremental walk: adds (sharing, see message_ref())
 * every run of @prev that the walk of the window [@since_ms, now] did not
 * cover: runs with createdAt < @since_ms, and runs without a createdAt.
 * Call it after the window's messages are added, so that an entry the
 * window brought replaces its older copy (dedupe by dlqId keeps the first);
 * a run of @prev inside the window that the walk did not bring is gone
 * from the server, and is left out. Payload bytes of the runs kept are
 * estimated from @prev's (its bytes times the share of runs kept).
 * Returns the number of runs kept, or -ENOMEM. */
int snapshot_builder_keep(struct snapshot_builder *b,
			  const struct snapshot *prev, int64_t since_ms);

/* Counts payload bytes (for status and the memory target). */
void snapshot_builder_account(struct snapshot_builder *b, uint64_t bytes);

/* Number of runs added so far. */
size_t snapshot_builder_count(const struct snapshot_builder *b);

/* Builds the snapshot and frees the builder (also on failure). @prev, when
 * not NULL, is the snapshot this one replaces: a run whose message.json is
 * unchanged keeps its json_mtime, a changed one takes @now. Returns 0 and a
 * new snapshot with one reference in @ret, or -ENOMEM. */
int snapshot_builder_finish(struct snapshot_builder *b,
			    const struct snapshot *prev, struct timespec now,
			    uint64_t generation, struct snapshot **ret);

/* Decides whether snapshot_without() drops the run of @m. */
typedef bool (*snapshot_drop_fn)(void *ctx, const struct message *m);

/* A snapshot like @s without the runs @drop picks, sharing @s's messages
 * (names, keys, json_mtime and generation as in @s; payload bytes @s's
 * times the share of runs kept, as snapshot_builder_keep() counts them).
 * Returns the number of runs dropped and, in @ret, a new snapshot, or a new
 * reference to @s when none was; -ENOMEM. */
int snapshot_without(struct snapshot *s, snapshot_drop_fn drop, void *ctx,
		     struct snapshot **ret);

/* An empty snapshot (no runs), generation 0. NULL when out of memory. */
struct snapshot *snapshot_new_empty(void);

/* The bytes that the @n snapshots of @kept (served before @served, oldest
 * first) hold that @served does not: each one's indexes, and each message
 * that none after it shares. Messages are shared only with the snapshot a
 * build starts from, so a message one snapshot holds and the next one
 * does not is held by no later one. O(@n). A snapshot built from another
 * than the one served before it (an action's, between two walks) counts
 * its messages as if none were shared: never less than the truth. */
uint64_t snapshot_kept_bytes(const struct snapshot *const *kept, size_t n,
			     const struct snapshot *served);

struct snapshot *snapshot_ref(struct snapshot *s);
/* Drops a reference; frees on the last. NULL is a no-op. */
void snapshot_unref(struct snapshot *s);

/* What @key (low bits ignored) stands for. Returns 0 and @ret, or -ENOENT. */
int snapshot_find_key(const struct snapshot *s, uint64_t key,
		      struct snapshot_ref *ret);

/* Index of the run named @name (escaped), or -ENOENT. */
int64_t snapshot_find_run(const struct snapshot *s, const char *name);

/* Index of @view's value named @name, or -ENOENT. */
int64_t snapshot_find_value(const struct snapshot *s, int view,
			    const char *name);

/* Position of run @run in @value's run list, or -ENOENT. */
int64_t snapshot_value_find_run(const struct snapshot *s,
				const struct snapshot_value *value,
				uint32_t run);

#endif
