/* cache: the served snapshot in a file, written after every good walk and
 * read at mount.
 *
 * Owns: where the file is (the directory, its mode, the keyed name), its
 * format (a header, then one record per run) and checksum, the atomic
 * replacement, setting aside a file it cannot read, and what status says
 * of it. Leaves to others: what a record holds (message_record.c), the
 * snapshot built from the records (snapshot.c), when to save (walker.c)
 * and what to do with a loaded snapshot (main.c, fs).
 *
 * The file: struct header (CACHE_HEADER bytes), then the records, each a
 * multiple of 8 bytes, sorted by run name. The header's checksum covers
 * the header before it; body_sum covers the records. Both are
 * cache_sum(): corruption is what they catch, not an attacker, who
 * would need write access to a 0700 directory of the user's.
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
#define CACHE_HEADER 128
#define CACHE_SUFFIX ".cache"
#define WRITE_CHUNK (1u << 20)

struct header {
	char magic[8];
	uint32_t version;
	uint32_t endian; /* CACHE_ENDIAN in the writer's byte order */
	unsigned char identity[SHA256_LEN];
	int64_t taken_ms;
	int64_t last_full_ms;
	uint64_t payload_bytes;
	uint64_t nruns;
	uint64_t body_len;
	uint64_t body_sum;
	uint64_t header_sum; /* of the bytes before it */
	char reserved[CACHE_HEADER - 104];
};

_Static_assert(sizeof(struct header) == CACHE_HEADER, "header layout");
_Static_assert(offsetof(struct header, header_sum) == 96, "header layout");

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

/* A checksum of @n bytes (a multiple of 8), 8 at a time: catches torn
 * and flipped bytes at memory speed. sum_words() can be chained over
 * pieces of whole words; sum_finish() ends it. */
static uint64_t sum_words(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i + 8 <= n; i += 8) {
		uint64_t w;

		memcpy(&w, b + i, 8);
		h ^= w * 0x9e3779b97f4a7c15ULL;
		h = (h << 31 | h >> 33) * 0xc2b2ae3d27d4eb4fULL;
	}
	return h;
}

static uint64_t sum_finish(uint64_t h, size_t n)
{
	h ^= n;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	return h ^ (h >> 32);
}

static uint64_t cache_sum(const void *p, size_t n)
{
	return sum_finish(sum_words(0, p, n), n);
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

int cache_decode(const char *p, size_t n, const unsigned char *identity,
		 bool check_sum, struct snapshot **ret,
		 struct cache_meta *ret_meta, const char **ret_why)
{
	const struct header *h = (const struct header *)p;
	struct snapshot_builder *b;
	struct timespec now;
	size_t at = CACHE_HEADER;
	int r;

	*ret_why = "truncated";
	if (n < CACHE_HEADER)
		return -EINVAL;
	*ret_why = "not a dlqfs cache";
	if (memcmp(h->magic, CACHE_MAGIC, sizeof(h->magic)))
		return -EINVAL;
	*ret_why = "another version or byte order";
	if (h->version != CACHE_VERSION || h->endian != CACHE_ENDIAN)
		return -EINVAL;
	*ret_why = "checksum mismatch";
	if (check_sum &&
	    cache_sum(h, offsetof(struct header, header_sum)) != h->header_sum)
		return -EINVAL;
	*ret_why = "another identity";
	if (identity && memcmp(identity, h->identity, SHA256_LEN))
		return -EINVAL;
	*ret_why = "truncated";
	if (h->body_len != n - CACHE_HEADER)
		return -EINVAL;
	*ret_why = "checksum mismatch";
	if (check_sum &&
	    cache_sum(p + CACHE_HEADER, n - CACHE_HEADER) != h->body_sum)
		return -EINVAL;
	*ret_why = "a run that does not read back";
	if (h->nruns > (n - CACHE_HEADER) / 8)
		return -EINVAL;
	b = snapshot_builder_new();
	if (!b)
		return -ENOMEM;
	for (uint64_t i = 0; i < h->nruns; i++) {
		struct message *m;
		struct message_record_run run;
		ssize_t used = message_record_read(p + at, n - at, &m, &run);

		if (used < 0) {
			snapshot_builder_free(b);
			return (int)used;
		}
		at += (size_t)used;
		r = snapshot_builder_add_seen(
			b, m,
			&(struct snapshot_seen){run.json_mtime, run.key,
						run.json_key});
		if (r <= 0) { /* a dlqId twice is no cache dlqfs wrote */
			snapshot_builder_free(b);
			return r < 0 ? r : -EINVAL;
		}
	}
	if (at != n) {
		snapshot_builder_free(b);
		return -EINVAL;
	}
	snapshot_builder_account(b, h->payload_bytes);
	now.tv_sec = (time_t)(h->taken_ms / 1000);
	now.tv_nsec = (long)(h->taken_ms % 1000) * 1000000L;
	if (h->taken_ms < 0)
		now = (struct timespec){0, 0};
	r = snapshot_builder_finish(b, NULL, now, 0, ret);
	if (r < 0)
		return r;
	ret_meta->taken_ms = h->taken_ms;
	ret_meta->last_full_ms = h->last_full_ms;
	ret_meta->payload_bytes = h->payload_bytes;
	return 0;
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

int cache_load(struct cache *c, struct snapshot **ret,
	       struct cache_meta *ret_meta)
{
	const char *why = NULL;
	struct stat sb;
	void *map;
	int fd, r;

	fd = open(c->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return -ENOENT;
		r = -errno;
		set_aside(c, strerror(-r));
		return -EINVAL;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size <= 0 ||
	    (uint64_t)sb.st_size > SIZE_MAX) {
		close(fd);
		set_aside(c, "not a regular file, or empty");
		return -EINVAL;
	}
	/* read in one go: page by page, faults cost more than the checks */
	map = mmap(NULL, (size_t)sb.st_size, PROT_READ,
		   MAP_PRIVATE | MAP_POPULATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		set_aside(c, strerror(errno));
		return -EINVAL;
	}
	r = cache_decode(map, (size_t)sb.st_size, c->identity, true, ret,
			 ret_meta, &why);
	munmap(map, (size_t)sb.st_size);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		set_aside(c, why);
		return -EINVAL;
	}
	c->digest = runs_digest(*ret);
	c->has_digest = true;
	c->last_full_ms = ret_meta->last_full_ms;
	status_set(c, "loaded", (uint64_t)sb.st_blocks * 512,
		   ret_meta->taken_ms, NULL);
	return 0;
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
	uint64_t sum, len;
};

static int writer_flush(struct writer *w)
{
	size_t off = 0;

	w->sum = sum_words(w->sum, w->b.data, w->b.len);
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
	w->len += w->b.len;
	w->b.len = 0;
	return 0;
}

static int write_runs(struct writer *w, const struct snapshot *s)
{
	for (uint32_t i = 0; i < s->nruns; i++) {
		const struct snapshot_run *run = &s->runs[i];
		size_t size = message_record_size(run->msg);
		int r;

		if (!size)
			return -EFBIG;
		if (w->b.len + size > WRITE_CHUNK && w->b.len) {
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
			w->b.data + w->b.len);
		w->b.len += size;
	}
	return 0;
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
	w.sum = 0;
	w.len = 0;
	if (r == 0)
		r = write_runs(&w, s);
	if (r == 0 && w.b.len)
		r = writer_flush(&w);
	if (r < 0)
		goto fail;

	memcpy(h.magic, CACHE_MAGIC, sizeof(h.magic));
	h.version = CACHE_VERSION;
	h.endian = CACHE_ENDIAN;
	memcpy(h.identity, c->identity, SHA256_LEN);
	h.taken_ms = meta->taken_ms;
	h.last_full_ms = meta->last_full_ms;
	h.payload_bytes = s->bytes;
	h.nruns = s->nruns;
	h.body_len = w.len;
	h.body_sum = sum_finish(w.sum, w.len);
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
