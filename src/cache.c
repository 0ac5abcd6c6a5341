/* cache: the served snapshot in a file, written after every good walk and
 * read at mount.
 *
 * Owns: where the file is (the directory, its mode, the keyed name), its
 * format (a header, the index records, the texts) and checksums, the
 * atomic replacement, setting aside a file it cannot read, the mapping
 * the messages read back point into, and what status says of it. Leaves
 * to others: what a record holds (message_record.c), the snapshot built
 * from the records (snapshot.c), when to save (walker.c) and what to do
 * with a loaded snapshot (main.c, fs).
 *
 * The file: struct header (CACHE_HEADER bytes); the index, one record per
 * run (multiples of 8 bytes), in the snapshot's order; zeros up to the
 * next CACHE_ALIGN boundary; the texts, each followed by a NUL, in the
 * same order. Loading maps the file and reads the index only: the
 * messages point into the mapping, so their texts (nearly all of the
 * bytes) are paged in by the kernel when a file is read, and are not on
 * the heap. The texts' checksum is computed with pread(), which does not
 * map them. The checksums (cache_sum) catch corruption, not an attacker,
 * who would need write access to a 0700 directory of the user's.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "cache.h"
#include "message_record.h"
#include "names.h"
#include "sha256.h"

#define CACHE_MAGIC "dlqfs\x1a\xca\x01"
#define CACHE_ENDIAN 0x01020304u
#define CACHE_HEADER 256
#define CACHE_ALIGN 4096 /* the texts start on a page of their own */
#define CACHE_SUFFIX ".cache"
#define IO_CHUNK (1u << 20)

struct header {
	char magic[8];
	uint32_t version;
	uint32_t endian; /* CACHE_ENDIAN in the writer's byte order */
	unsigned char identity[SHA256_LEN];
	int64_t taken_ms;
	int64_t last_full_ms;
	uint64_t payload_bytes;
	uint64_t nruns;
	uint64_t index_len; /* from CACHE_HEADER */
	uint64_t texts_at;  /* a multiple of CACHE_ALIGN */
	uint64_t texts_len; /* to the end of the file */
	uint64_t index_sum;
	uint64_t texts_sum;
	uint64_t header_sum; /* of the bytes before it */
	char reserved[CACHE_HEADER - 128];
};

_Static_assert(sizeof(struct header) == CACHE_HEADER, "header layout");
_Static_assert(offsetof(struct header, header_sum) == 120, "header layout");

struct cache {
	char *dir;
	char *path; /* dir/<identity in hex>.cache */
	unsigned char identity[SHA256_LEN];
	struct status *st;    /* borrowed, may be NULL */
	uint64_t digest;      /* of the runs last written or loaded */
	int64_t last_full_ms; /* of the cache last written or loaded */
	bool has_digest;
	int warned; /* the errno last said on stderr, 0: none since a save */
};

/* A checksum, 8 bytes at a time, fed in pieces of any length: catches
 * torn and flipped bytes at memory speed. */
struct sum {
	uint64_t h, n;
	unsigned char tail[8];
	unsigned ntail;
};

static uint64_t sum_word(uint64_t h, const unsigned char *p)
{
	uint64_t w;

	memcpy(&w, p, 8);
	h ^= w * 0x9e3779b97f4a7c15ULL;
	return (h << 31 | h >> 33) * 0xc2b2ae3d27d4eb4fULL;
}

static void sum_add(struct sum *s, const void *data, size_t n)
{
	const unsigned char *p = data;

	s->n += n;
	if (s->ntail) {
		size_t take = 8 - s->ntail < n ? 8 - s->ntail : n;

		memcpy(s->tail + s->ntail, p, take);
		s->ntail += (unsigned)take;
		p += take, n -= take;
		if (s->ntail < 8)
			return; /* @n ran out before the word was whole */
		s->h = sum_word(s->h, s->tail);
		s->ntail = 0;
	}
	for (; n >= 8; p += 8, n -= 8)
		s->h = sum_word(s->h, p);
	memcpy(s->tail, p, n);
	s->ntail = (unsigned)n;
}

static uint64_t sum_end(struct sum *s)
{
	uint64_t h = s->h;

	if (s->ntail) {
		memset(s->tail + s->ntail, 0, 8 - s->ntail);
		h = sum_word(h, s->tail);
	}
	h ^= s->n;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	return h ^ (h >> 32);
}

static uint64_t cache_sum(const void *p, size_t n)
{
	struct sum s = {0};

	sum_add(&s, p, n);
	return sum_end(&s);
}

static uint64_t align_up(uint64_t n)
{
	return (n + CACHE_ALIGN - 1) & ~(uint64_t)(CACHE_ALIGN - 1);
}

/* The identity of the runs of @s: their names in order and the content
 * of each (message.json's key changes with it). */
static uint64_t runs_digest(const struct snapshot *s)
{
	uint64_t h = s->tag;

	for (uint32_t i = 0; i < s->nruns; i++)
		h = names_hash64_more(h, &s->runs[i].json_key, 8);
	return h;
}

char *cache_default_dir(void)
{
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	char *dir = NULL;

	if (xdg && xdg[0] == '/') {
		if (asprintf(&dir, "%s/dlqfs", xdg) < 0)
			return NULL;
		return dir;
	}
	if (!home || home[0] != '/') {
		struct passwd *pw = getpwuid(getuid());

		home = pw ? pw->pw_dir : NULL;
	}
	if (!home || home[0] != '/')
		return NULL;
	if (asprintf(&dir, "%s/.cache/dlqfs", home) < 0)
		return NULL;
	return dir;
}

/* mkdir -p @dir, the last level 0700 (the others as the umask says, as
 * ~/.cache would be). Returns 0 or -errno. */
static int make_dirs(const char *dir)
{
	char *p = strdup(dir);
	int r = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = strchr(p + 1, '/'); s && !r; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			r = -errno;
		*s = '/';
	}
	if (!r && mkdir(p, 0700) < 0 && errno != EEXIST)
		r = -errno;
	free(p);
	return r;
}

static void status_set(struct cache *c, const char *state, uint64_t bytes,
		       int64_t taken_ms, const char *error)
{
	struct status *st = c->st;

	if (!st)
		return;
	pthread_mutex_lock(&st->lock);
	if (state)
		st->cache_state = state;
	if (taken_ms >= 0) {
		st->cache_bytes = bytes;
		st->cache_taken_ms = taken_ms;
	}
	st->cache_has_error = error != NULL;
	if (error)
		snprintf(st->cache_error, sizeof(st->cache_error), "%s", error);
	status_touch(st);
	pthread_mutex_unlock(&st->lock);
}

int cache_open(const char *dir, const char *url, const char *scope,
	       const char *token, struct status *st, struct cache **ret,
	       char **ret_why)
{
	struct cache *c = calloc(1, sizeof(*c));
	char hex[2 * SHA256_LEN + 1];
	struct buf msg = BUF_INIT;
	struct stat sb;
	int r;

	if (!c)
		return -ENOMEM;
	c->st = st;
	c->last_full_ms = -1;
	c->dir = strdup(dir);
	if (!c->dir || buf_addf(&msg, "dlqfs cache %d\n%s\n%s", CACHE_VERSION,
				url, scope) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	sha256_hmac(token, strlen(token), msg.data, msg.len, c->identity);
	buf_release(&msg);
	for (int i = 0; i < SHA256_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", c->identity[i]);
	if (asprintf(&c->path, "%s/%s%s", dir, hex, CACHE_SUFFIX) < 0) {
		c->path = NULL;
		r = -ENOMEM;
		goto fail;
	}
	r = make_dirs(dir);
	if (r == 0 && stat(dir, &sb) < 0)
		r = -errno;
	if (r < 0) {
		if (asprintf(ret_why,
			     "cannot create the cache directory %s: %s", dir,
			     strerror(-r)) < 0)
			*ret_why = NULL;
		goto fail;
	}
	if (!S_ISDIR(sb.st_mode) || sb.st_uid != geteuid() ||
	    (sb.st_mode & 077)) {
		if (asprintf(ret_why,
			     "the cache directory %s is not a directory of "
			     "yours that only you can open (chmod 700 it): "
			     "no cache kept",
			     dir) < 0)
			*ret_why = NULL;
		r = -EPERM;
		goto fail;
	}
	if (st) {
		pthread_mutex_lock(&st->lock);
		free(st->cache_path);
		st->cache_path = strdup(c->path);
		st->cache_state = "none";
		status_touch(st);
		pthread_mutex_unlock(&st->lock);
	}
	*ret = c;
	return 0;
fail:
	buf_release(&msg);
	cache_free(c);
	return r;
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	free(c->dir);
	free(c->path);
	free(c);
}

const char *cache_path(const struct cache *c)
{
	return c->path;
}

/* --- reading ----------------------------------------------------------- */

/* The header of @p (@n bytes) checked against itself, this version and
 * the file's size. Returns it, or NULL with the reason in *@ret_why. */
static const struct header *header_check(const char *p, size_t n,
					 const unsigned char *identity,
					 bool check_sum, const char **ret_why)
{
	const struct header *h = (const struct header *)p;

	*ret_why = "truncated";
	if (n < CACHE_HEADER)
		return NULL;
	*ret_why = "not a dlqfs cache";
	if (memcmp(h->magic, CACHE_MAGIC, sizeof(h->magic)))
		return NULL;
	*ret_why = "another version or byte order";
	if (h->version != CACHE_VERSION || h->endian != CACHE_ENDIAN)
		return NULL;
	*ret_why = "checksum mismatch";
	if (check_sum &&
	    cache_sum(h, offsetof(struct header, header_sum)) != h->header_sum)
		return NULL;
	*ret_why = "another identity";
	if (identity && memcmp(identity, h->identity, SHA256_LEN))
		return NULL;
	*ret_why = "truncated";
	if (h->texts_at % CACHE_ALIGN || h->texts_at < CACHE_HEADER ||
	    h->texts_at > n || h->texts_len != n - h->texts_at ||
	    h->index_len > h->texts_at - CACHE_HEADER ||
	    h->nruns > h->index_len / 8)
		return NULL;
	return h;
}

int cache_decode(const char *p, size_t n, const unsigned char *identity,
		 unsigned flags, struct message_store *store,
		 struct snapshot **ret, struct cache_meta *ret_meta,
		 const char **ret_why)
{
	const struct header *h = header_check(
		p, n, identity, flags & CACHE_CHECK_INDEX, ret_why);
	struct snapshot_builder *b;
	const char *index, *texts;
	uint64_t text_at = 0;
	struct timespec built;
	size_t at = 0;
	int r;

	if (!h)
		return -EINVAL;
	index = p + CACHE_HEADER;
	texts = p + h->texts_at;
	*ret_why = "checksum mismatch";
	if ((flags & CACHE_CHECK_INDEX) &&
	    cache_sum(index, h->index_len) != h->index_sum)
		return -EINVAL;
	if ((flags & CACHE_CHECK_TEXTS) &&
	    cache_sum(texts, h->texts_len) != h->texts_sum)
		return -EINVAL;
	*ret_why = "a run that does not read back";
	b = snapshot_builder_new();
	if (!b)
		return -ENOMEM;
	for (uint64_t i = 0; i < h->nruns; i++) {
		struct message *m;
		struct message_record_run run;
		ssize_t used = message_record_read(
			index + at, h->index_len - at, text_at, texts,
			h->texts_len, store, &m, &run);

		if (used < 0) {
			snapshot_builder_free(b);
			return (int)used;
		}
		at += (size_t)used;
		text_at += m->text.len + 1;
		r = snapshot_builder_add_seen(
			b, m,
			&(struct snapshot_seen){run.json_mtime, run.key,
						run.json_key});
		if (r <= 0) { /* a dlqId twice is no cache dlqfs wrote */
			snapshot_builder_free(b);
			return r < 0 ? r : -EINVAL;
		}
	}
	if (at != h->index_len || text_at != h->texts_len) {
		snapshot_builder_free(b);
		return -EINVAL;
	}
	snapshot_builder_account(b, h->payload_bytes);
	built = h->taken_ms < 0
			? (struct timespec){0, 0}
			: (struct timespec){(time_t)(h->taken_ms / 1000),
					    (long)(h->taken_ms % 1000) *
						    1000000L};
	r = snapshot_builder_finish(b, NULL, built, 0, ret);
	if (r < 0)
		return r;
	ret_meta->taken_ms = h->taken_ms;
	ret_meta->last_full_ms = h->last_full_ms;
	ret_meta->payload_bytes = h->payload_bytes;
	return 0;
}

/* The file's mapping, which the messages read back point into. */
struct cache_map {
	struct message_store store;
	void *addr;
	size_t len;
};

static void map_release(struct message_store *st)
{
	struct cache_map *map = (struct cache_map *)st;

	munmap(map->addr, map->len);
	free(map);
}

/* Pages of the mapping that were read (the index, while loading; the
 * texts, while writing the next cache) count in the daemon's resident
 * memory until the kernel needs them: drop them from this process at once
 * (they stay in the page cache, and come back from the file when read).
 * Only for a read-only shared mapping of a file, as the cache's is. */
struct dropper {
	uintptr_t lo, hi; /* a range of whole pages, not yet dropped */
};

static void drop_flush(struct dropper *d)
{
	if (d->hi > d->lo)
		madvise((void *)d->lo, d->hi - d->lo, MADV_DONTNEED);
	d->lo = d->hi = 0;
}

static void drop_add(struct dropper *d, const void *p, size_t n)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t lo = (uintptr_t)p & ~(page - 1);
	uintptr_t hi = ((uintptr_t)p + n + page - 1) & ~(page - 1);

	if (d->hi > d->lo && lo <= d->hi && hi >= d->lo) {
		d->lo = lo < d->lo ? lo : d->lo;
		d->hi = hi > d->hi ? hi : d->hi;
		return;
	}
	drop_flush(d);
	d->lo = lo;
	d->hi = hi;
}

/* Drops the pages of @s's messages that live in a cache's mapping. */
static void drop_mapped(const struct snapshot *s)
{
	struct dropper d = {0, 0};

	for (uint32_t i = 0; i < s->nruns; i++)
		if (s->runs[i].msg->store)
			drop_add(&d, s->runs[i].msg->text.data,
				 s->runs[i].msg->text.len + 1);
	drop_flush(&d);
	for (uint32_t i = 0; i < s->nruns; i++)
		if (s->runs[i].msg->store)
			drop_add(&d, s->runs[i].msg->id.data,
				 s->runs[i].msg->id.len + 1);
	drop_flush(&d);
}

static int pos_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Reads the texts of @fd (the file @h heads) with pread(), not through
 * the mapping (which would page them all in): their checksum, and a NUL
 * exactly after each text of @s (@base: where the texts are mapped) and
 * nowhere else. Returns 0, -EINVAL with *@ret_why, -errno, -ENOMEM. */
static int texts_check(int fd, const struct header *h, const struct snapshot *s,
		       const char *base, const char **ret_why)
{
	uint64_t *ends = malloc((s->nruns ? s->nruns : 1) * sizeof(*ends));
	char *buf = malloc(IO_CHUNK);
	struct sum sum = {0};
	uint64_t off = 0;
	size_t k = 0;
	int r = 0;

	if (!ends || !buf) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < s->nruns; i++) {
		const struct message *m = s->runs[i].msg;

		ends[i] = (uint64_t)(m->text.data - base) + m->text.len;
	}
	qsort(ends, s->nruns, sizeof(*ends), pos_cmp);
	*ret_why = "the texts do not read back";
	while (off < h->texts_len && !r) {
		size_t want = h->texts_len - off < IO_CHUNK
				      ? (size_t)(h->texts_len - off)
				      : IO_CHUNK;
		ssize_t got = pread(fd, buf, want, (off_t)(h->texts_at + off));
		const char *q = buf, *end;

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			r = got < 0 ? -errno : -EINVAL;
			break;
		}
		sum_add(&sum, buf, (size_t)got);
		end = buf + got;
		while ((q = memchr(q, '\0', (size_t)(end - q)))) {
			if (k == s->nruns ||
			    ends[k] != off + (uint64_t)(q - buf)) {
				r = -EINVAL;
				break;
			}
			k++, q++;
		}
		off += (uint64_t)got;
	}
	if (!r && k != s->nruns)
		r = -EINVAL;
	if (!r && sum_end(&sum) != h->texts_sum) {
		*ret_why = "checksum mismatch";
		r = -EINVAL;
	}
out:
	free(ends);
	free(buf);
	return r;
}

/* Moves a cache that cannot be read out of the way, saying so once. */
static void set_aside(struct cache *c, const char *why)
{
	char *bad = NULL;

	if (asprintf(&bad, "%s.bad", c->path) >= 0 && rename(c->path, bad) == 0)
		fprintf(stderr,
			"dlqfs: the cache %s is unusable (%s): set aside as "
			"%s; walking the DLQ from the start\n",
			c->path, why, bad);
	else
		fprintf(stderr,
			"dlqfs: the cache %s is unusable (%s); walking the "
			"DLQ from the start\n",
			c->path, why);
	free(bad);
}

static int load(struct cache *c, struct snapshot **ret,
		struct cache_meta *ret_meta)
{
	const char *why = "unreadable";
	struct cache_map *map;
	struct snapshot *s = NULL;
	struct stat sb;
	int fd, r;

	fd = open(c->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return -ENOENT;
		set_aside(c, strerror(errno));
		return -EINVAL;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size <= 0 ||
	    (uint64_t)sb.st_size > SIZE_MAX) {
		close(fd);
		set_aside(c, "not a regular file, or empty");
		return -EINVAL;
	}
	map = calloc(1, sizeof(*map));
	if (!map) {
		close(fd);
		return -ENOMEM;
	}
	map->len = (size_t)sb.st_size;
	map->addr = mmap(NULL, map->len, PROT_READ, MAP_SHARED, fd, 0);
	if (map->addr == MAP_FAILED) {
		r = -errno;
		free(map);
		close(fd);
		set_aside(c, strerror(-r));
		return -EINVAL;
	}
	/* the index is read in order, the texts only when a file is */
	madvise(map->addr, map->len, MADV_RANDOM);
	atomic_init(&map->store.refs, 1);
	map->store.release = map_release;
	r = cache_decode(map->addr, map->len, c->identity, CACHE_CHECK_INDEX,
			 &map->store, &s, ret_meta, &why);
	if (r == 0)
		r = texts_check(
			fd, (const struct header *)map->addr, s,
			(const char *)map->addr +
				((const struct header *)map->addr)->texts_at,
			&why);
	close(fd);
	if (r == 0) /* built: the views and names are copies */
		madvise(map->addr, map->len, MADV_DONTNEED);
	/* the messages hold the mapping now, or nothing does */
	if (atomic_fetch_sub(&map->store.refs, 1) == 1)
		map_release(&map->store);
	if (r < 0)
		snapshot_unref(s);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		set_aside(c, why);
		return -EINVAL;
	}
	c->digest = runs_digest(s);
	c->has_digest = true;
	c->last_full_ms = ret_meta->last_full_ms;
	status_set(c, "loaded", (uint64_t)sb.st_blocks * 512,
		   ret_meta->taken_ms, NULL);
	*ret = s;
	return 0;
}

int cache_load(struct cache *c, struct snapshot **ret,
	       struct cache_meta *ret_meta)
{
	return load(c, ret, ret_meta);
}

/* --- writing ----------------------------------------------------------- */

/* Removes the temporary files of writers that died (kill -9 mid-write):
 * <path>.tmp.<pid> whose process is gone. */
static void sweep_temps(struct cache *c)
{
	const char *base = strrchr(c->path, '/') + 1;
	size_t blen = strlen(base);
	DIR *d = opendir(c->dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char *end;
		long pid;

		if (strncmp(e->d_name, base, blen) ||
		    strncmp(e->d_name + blen, ".tmp.", 5))
			continue;
		pid = strtol(e->d_name + blen + 5, &end, 10);
		if (*end || pid <= 0 || pid > INT_MAX ||
		    (pid != getpid() &&
		     (kill((pid_t)pid, 0) == 0 || errno != ESRCH)))
			continue;
		unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
}

struct writer {
	int fd;
	struct buf b;
	struct sum sum;
	uint64_t len; /* bytes written of the current section */
};

static int writer_flush(struct writer *w)
{
	size_t off = 0;

	while (off < w->b.len) {
		ssize_t k = write(w->fd, w->b.data + off, w->b.len - off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -EIO;
		off += (size_t)k;
	}
	w->b.len = 0;
	return 0;
}

/* Appends @n bytes of @p to the section (counted in its checksum). */
static int writer_add(struct writer *w, const void *p, size_t n)
{
	int r;

	if (w->b.len && w->b.len + n > IO_CHUNK) {
		r = writer_flush(w);
		if (r < 0)
			return r;
	}
	r = buf_add(&w->b, p, n);
	if (r == 0) {
		sum_add(&w->sum, p, n);
		w->len += n;
	}
	return r;
}

/* The index: one record per run, each pointing at its text. */
static int write_index(struct writer *w, const struct snapshot *s)
{
	uint64_t text_at = 0;

	for (uint32_t i = 0; i < s->nruns; i++) {
		const struct snapshot_run *run = &s->runs[i];
		size_t size = message_record_size(run->msg);
		int r;

		if (!size)
			return -EFBIG;
		if (w->b.len && w->b.len + size > IO_CHUNK) {
			r = writer_flush(w);
			if (r < 0)
				return r;
		}
		r = buf_reserve(&w->b, size, 0);
		if (r < 0)
			return r;
		message_record_write(
			run->msg,
			&(struct message_record_run){run->json_mtime, run->key,
						     run->json_key},
			text_at, w->b.data + w->b.len);
		sum_add(&w->sum, w->b.data + w->b.len, size);
		w->b.len += size;
		w->len += size;
		text_at += run->msg->text.len + 1;
	}
	return writer_flush(w);
}

static int write_texts(struct writer *w, const struct snapshot *s)
{
	for (uint32_t i = 0; i < s->nruns; i++) {
		const struct message *m = s->runs[i].msg;
		int r = writer_add(w, m->text.data, m->text.len);

		if (r == 0)
			r = writer_add(w, "", 1);
		if (r < 0)
			return r;
	}
	return writer_flush(w);
}

int cache_save(struct cache *c, const struct snapshot *s,
	       const struct cache_meta *meta)
{
	uint64_t digest = runs_digest(s);
	struct writer w = {.fd = -1};
	struct header h;
	char *tmp = NULL;
	struct stat sb;
	int r, dfd;

	if (c->has_digest && digest == c->digest &&
	    meta->last_full_ms <= c->last_full_ms)
		return 0;
	sweep_temps(c);
	if (asprintf(&tmp, "%s.tmp.%d", c->path, (int)getpid()) < 0)
		return -ENOMEM;
	w.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		    0600);
	if (w.fd < 0) {
		r = -errno;
		goto fail;
	}
	memset(&h, 0, sizeof(h));
	r = buf_add(&w.b, &h, sizeof(h)); /* the real one goes last */
	if (r == 0)
		r = writer_flush(&w);
	if (r == 0)
		r = write_index(&w, s);
	if (r < 0)
		goto fail;
	h.index_len = w.len;
	h.index_sum = sum_end(&w.sum);
	h.texts_at = align_up(CACHE_HEADER + h.index_len);
	if (lseek(w.fd, (off_t)h.texts_at, SEEK_SET) < 0) {
		r = -errno;
		goto fail;
	}
	w.sum = (struct sum){0};
	w.len = 0;
	r = write_texts(&w, s);
	if (r < 0)
		goto fail;
	h.texts_len = w.len;
	h.texts_sum = sum_end(&w.sum);

	memcpy(h.magic, CACHE_MAGIC, sizeof(h.magic));
	h.version = CACHE_VERSION;
	h.endian = CACHE_ENDIAN;
	memcpy(h.identity, c->identity, SHA256_LEN);
	h.taken_ms = meta->taken_ms;
	h.last_full_ms = meta->last_full_ms;
	h.payload_bytes = s->bytes;
	h.nruns = s->nruns;
	h.header_sum = cache_sum(&h, offsetof(struct header, header_sum));
	if (pwrite(w.fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
		r = errno ? -errno : -EIO;
		goto fail;
	}
	if (fsync(w.fd) < 0 || fstat(w.fd, &sb) < 0) {
		r = -errno;
		goto fail;
	}
	if (close(w.fd) < 0) {
		w.fd = -1;
		r = -errno;
		goto fail;
	}
	w.fd = -1;
	if (rename(tmp, c->path) < 0) {
		r = -errno;
		goto fail;
	}
	/* the rename itself reaches the disk */
	dfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(tmp);
	buf_release(&w.b);
	drop_mapped(s);
	c->digest = digest;
	c->has_digest = true;
	c->last_full_ms = meta->last_full_ms;
	if (c->warned)
		fprintf(stderr, "dlqfs: the cache %s is written again\n",
			c->path);
	c->warned = 0;
	status_set(c, "saved", (uint64_t)sb.st_blocks * 512, meta->taken_ms,
		   NULL);
	return 1;

fail:
	if (w.fd >= 0)
		close(w.fd);
	unlink(tmp);
	free(tmp);
	buf_release(&w.b);
	drop_mapped(s);
	{
		char text[STATUS_TEXT_MAX];

		snprintf(text, sizeof(text),
			 "cannot write the cache %s: %s (the previous one "
			 "stays; dlqfs keeps serving)",
			 c->path, strerror(-r));
		if (c->warned != -r)
			fprintf(stderr, "dlqfs: %s\n", text);
		c->warned = -r;
		status_set(c, "error", 0, -1, text);
	}
	return r;
}
