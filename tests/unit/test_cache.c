/* Unit tests for the cache: SHA-256 and HMAC against their published
 * vectors, a message's record and back, a snapshot saved and loaded (the
 * same runs, names, inodes and message.json times), the file's modes, the
 * identity of URL, scope and token, and caches that cannot be read (a
 * flipped byte, cut short, another version, another identity): each set
 * aside, never served. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "message_record.h"
#include "msgfile.h"
#include "msgs.h"
#include "sha256.h"
#include "snapshot.h"
#include "tap.h"

static void hex(const unsigned char *d, char *out)
{
	for (int i = 0; i < SHA256_LEN; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_sha256(void)
{
	static const struct {
		const char *in;
		size_t reps; /* the input repeated */
		const char *want;
	} cases[] = {
		{"", 1,
		 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", 1,
		 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
		 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
		{"a", 1000000,
		 "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
	};
	unsigned char d[SHA256_LEN];
	char got[2 * SHA256_LEN + 1];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sha256 c;

		sha256_init(&c);
		for (size_t k = 0; k < cases[i].reps; k++)
			sha256_add(&c, cases[i].in, strlen(cases[i].in));
		sha256_done(&c, d);
		hex(d, got);
		ok(!strcmp(got, cases[i].want), "sha256 vector %zu: %s", i,
		   got);
	}
	/* RFC 4231, test cases 1, 2 and 6 (a key longer than a block) */
	{
		unsigned char key[131];

		memset(key, 0x0b, 20);
		sha256_hmac(key, 20, "Hi There", 8, d);
		hex(d, got);
		ok(!strcmp(got, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833d"
				"a726e9376c2e32cff7"),
		   "hmac: RFC 4231 case 1");
		sha256_hmac("Jefe", 4, "what do ya want for nothing?", 28, d);
		hex(d, got);
		ok(!strcmp(got, "5bdcc146bf60754e6a042426089575c75a003f089d2739"
				"839dec58b964ec3843"),
		   "hmac: RFC 4231 case 2");
		memset(key, 0xaa, sizeof(key));
		sha256_hmac(key, sizeof(key),
			    "Test Using Larger Than Block-Size Key - Hash Key "
			    "First",
			    54, d);
		hex(d, got);
		ok(!strcmp(got, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5"
				"140546040f0ee37f54"),
		   "hmac: RFC 4231 case 6");
	}
}

static const char *const samples[] = {
	("{\"dlqId\":\"a-1\",\"createdAt\":1752829295505,\"labels\":[\"x\","
	 "\"y/z\",\"w\\u0041\"],\"header\":{\"B\":[\"2\"],\"A\":[\"1\",\"3\"]},"
	 "\"bodyBase64\":\"aGVsbG8=\",\"responseStatus\":502,"
	 "\"responseBody\":\"bad \\\"gateway\\\"\",\"workflowUrl\":"
	 "\"https://a.example/wf\",\"failureCallbackInfo\":{\"state\":"
	 "\"CALLBACK_FAIL\"},\"callerIP\":\"10.0.0.1\",\"workflowCreatedAt\":"
	 "1752829290000}"),
	"{\"dlqId\":\"b\"}",
	("{\"dlqId\":\"c\",\"createdAt\":\"not a number\",\"label\":\"solo\","
	 "\"body\":42,\"responseStatus\":\"teapot\",\"unknown\":[1,2,{}]}"),
};

static bool same_bytes(const struct message_bytes *a,
		       const struct message_bytes *b)
{
	return a->len == b->len && !memcmp(a->data, b->data, a->len);
}

static int released;

static void count_release(struct message_store *st)
{
	(void)st;
	released++;
}

static void test_record(void)
{
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		struct message *m = msg_json(samples[i]), *back = NULL;
		struct message_record_run t = {{1700000000, 123456789},
					       0x123450ULL << 32,
					       0xabcde0ULL << 32},
					  bt = {{0, 0}, 0, 0};
		size_t size = message_record_size(m);
		size_t ntexts = 3 + m->text.len + 1;
		char *buf = malloc(size + 8), *texts = malloc(ntexts);
		struct message_store store = {.release = count_release};
		ssize_t got;
		bool views = true;

		/* another text before this one's */
		memcpy(texts, "ab", 3);
		memcpy(texts + 3, m->text.data, m->text.len + 1);
		ok(size > 0 && size % 8 == 0, "record %zu: size %zu", i, size);
		message_record_write(m, &t, 3, buf);
		got = message_record_read(buf, size, 3, texts, ntexts, NULL,
					  &back, &bt);
		is_int(got, size, "record %zu reads back whole", i);
		if (got < 0) {
			free(buf);
			free(texts);
			message_free(m);
			continue;
		}
		ok(same_bytes(&m->id, &back->id) &&
			   same_bytes(&m->text, &back->text),
		   "record %zu: id and text", i);
		ok(back->id.data[back->id.len] == '\0' &&
			   back->text.data[back->text.len] == '\0',
		   "record %zu: NULs after id and text", i);
		ok(bt.json_mtime.tv_sec == t.json_mtime.tv_sec &&
			   bt.json_mtime.tv_nsec == t.json_mtime.tv_nsec,
		   "record %zu: message.json time", i);
		ok(bt.key == t.key && bt.json_key == t.json_key,
		   "record %zu: the run's keys", i);
		ok(m->created_ms == back->created_ms &&
			   m->has_created == back->has_created &&
			   m->problems == back->problems &&
			   m->wf_created_ms == back->wf_created_ms,
		   "record %zu: dates and problems", i);
		for (int f = 0; f < MESSAGE_NFILES; f++) {
			const struct message_bytes *a = file_of(m, f);
			const struct message_bytes *b = file_of(back, f);

			ok((!a->data && !b->data) ||
				   (a->data && b->data && same_bytes(a, b)),
			   "record %zu: file %s", i, message_file_names[f]);
		}
		for (int v = 0; v < VIEW_COUNT; v++) {
			views &= m->view[v].n == back->view[v].n;
			for (uint32_t k = 0; views && k < m->view[v].n; k++)
				views &=
					same_bytes(&m->view[v].v[k],
						   &back->view[v].v[k]) &&
					back->view[v].v[k].data[back->view[v]
									.v[k]
									.len] ==
						'\0';
		}
		ok(views, "record %zu: view values, each with its NUL", i);
		/* any cut is refused, and so is a text elsewhere */
		for (size_t cut = 0; cut < size; cut += 8) {
			struct message *x = NULL;
			struct message_record_run xt;

			if (message_record_read(buf, cut, 3, texts, ntexts,
						NULL, &x, &xt) != -EINVAL) {
				ok(0, "record %zu cut at %zu refused", i, cut);
				message_free(x);
				break;
			}
		}
		{
			struct message *x = NULL;
			struct message_record_run xt;

			is_int(message_record_read(buf, size, 2, texts, ntexts,
						   NULL, &x, &xt),
			       -EINVAL, "record %zu: its text elsewhere", i);
			is_int(message_record_read(buf, size, 3, texts,
						   ntexts - 1, NULL, &x, &xt),
			       -EINVAL, "record %zu: its text cut short", i);
			texts[ntexts - 1] = 'x';
			is_int(message_record_read(buf, size, 3, texts, ntexts,
						   NULL, &x, &xt),
			       -EINVAL, "record %zu: no NUL after its text", i);
			texts[ntexts - 1] = '\0';
		}
		/* with a store, the strings stay where they are */
		{
			struct message *x = NULL;
			struct message_record_run xt;

			atomic_init(&store.refs, 1);
			released = 0;
			got = message_record_read(buf, size, 3, texts, ntexts,
						  &store, &x, &xt);
			is_int(got, size, "record %zu: read in place", i);
			ok(x && x->text.data == texts + 3 && x->id.data > buf &&
				   x->id.data < buf + size,
			   "record %zu: in place, not copied", i);
			ok(x && same_bytes(file_of(x, MESSAGE_JSON),
					   file_of(m, MESSAGE_JSON)),
			   "record %zu: message.json from the store", i);
			is_int(atomic_load(&store.refs), 2,
			       "record %zu: the message holds the store", i);
			message_free(x);
			is_int(released, 0, "record %zu: not released yet", i);
			if (atomic_fetch_sub(&store.refs, 1) == 1)
				store.release(&store);
			is_int(released, 1, "record %zu: released on the last",
			       i);
		}
		/* a record whose sizes lie (only a forged checksum lets one
		 * through) renders within its bounds, and says so */
		if (i == 0) {
			char *out = malloc(5);

			back->file_len[MESSAGE_JSON] = 5;
			is_int(message_file_render(back, MESSAGE_JSON, out),
			       -EIO, "a wrong size renders as -EIO, in bounds");
			free(out);
		}
		message_free(back);
		message_free(m);
		free(buf);
		free(texts);
		files_release();
	}
	files_release();
}

static struct snapshot *sample_snapshot(void)
{
	struct snapshot_builder *b = snapshot_builder_new();
	struct snapshot *s = NULL;
	char id[32];

	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
		snapshot_builder_add(b, msg_json(samples[i]));
	for (int i = 0; i < 300; i++) {
		snprintf(id, sizeof(id), "17000000%05d-0", i);
		snapshot_builder_add(b,
				     msg_make(id, 1700000000000LL + i * 1000,
					      i % 3 ? "CALLBACK_FAIL" : NULL,
					      i % 2 ? "[\"p\",\"q\"]" : NULL));
	}
	snapshot_builder_account(b, 123456);
	if (snapshot_builder_finish(b, NULL, (struct timespec){1800000000, 0},
				    1, &s) < 0)
		return NULL;
	return s;
}

static bool same_snapshot(const struct snapshot *a, const struct snapshot *b)
{
	if (a->nruns != b->nruns || a->tag != b->tag ||
	    a->newest_ms != b->newest_ms || a->file_bytes != b->file_bytes)
		return false;
	for (uint32_t i = 0; i < a->nruns; i++) {
		const struct snapshot_run *x = &a->runs[i], *y = &b->runs[i];

		if (strcmp(x->name, y->name) || x->key != y->key ||
		    x->json_key != y->json_key ||
		    x->json_mtime.tv_sec != y->json_mtime.tv_sec ||
		    x->json_mtime.tv_nsec != y->json_mtime.tv_nsec ||
		    !same_bytes(&x->msg->text, &y->msg->text))
			return false;
	}
	for (int v = 0; v < VIEW_COUNT; v++)
		if (a->view[v].tag != b->view[v].tag ||
		    a->view[v].nvalues != b->view[v].nvalues)
			return false;
	return true;
}

static char dir[128] = "/tmp/dlqfs-test-cache-XXXXXX";

static struct cache *open_as(const char *url, const char *scope,
			     const char *token)
{
	struct cache *c = NULL;
	char *why = NULL;
	int r = cache_open(dir, url, scope, token, NULL, &c, &why);

	if (r < 0) {
		printf("Bail out! cache_open: %s\n", why ? why : "?");
		exit(1);
	}
	return c;
}

static void write_file(const char *path, const char *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, p, n) != (ssize_t)n) {
		printf("Bail out! cannot write %s\n", path);
		exit(1);
	}
	close(fd);
}

static char *read_file(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *p;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	p = malloc((size_t)n + 1);
	if (fread(p, 1, (size_t)n, f) != (size_t)n) {
		free(p);
		p = NULL;
	}
	fclose(f);
	*ret_len = (size_t)n;
	return p;
}

static void test_save_load(void)
{
	struct snapshot *s = sample_snapshot(), *back = NULL;
	struct cache_meta meta = {1800000000123LL, 1799999999000LL, 0}, bm;
	struct cache *c = open_as("https://q.example", "{}", "secret-token");
	struct stat sb;
	char *bad;
	char *p;
	size_t n;

	ok(s != NULL, "sample snapshot");
	ok(stat(dir, &sb) == 0 && (sb.st_mode & 0777) == 0700,
	   "the directory is 0700");
	is_int(cache_load(c, &back, &bm), -ENOENT, "no cache yet");
	is_int(cache_save(c, s, &meta), 1, "saved");
	ok(stat(cache_path(c), &sb) == 0 && (sb.st_mode & 0777) == 0600,
	   "the file is 0600");
	is_int(cache_save(c, s, &meta), 0, "the same runs: not written again");
	meta.last_full_ms++;
	is_int(cache_save(c, s, &meta), 1, "a newer full walk: written");
	p = read_file(cache_path(c), &n);
	ok(p && !memmem(p, n, "secret-token", 12) &&
		   !strstr(cache_path(c), "secret"),
	   "the token is in neither the file nor its name");
	free(p);
	cache_free(c);

	c = open_as("https://q.example", "{}", "secret-token");
	is_int(cache_load(c, &back, &bm), 0, "loaded");
	ok(back && same_snapshot(s, back),
	   "the same runs, names, inodes, message.json times and views");
	ok(bm.taken_ms == meta.taken_ms && bm.last_full_ms == meta.last_full_ms,
	   "the meta read back");
	ok(back && back->bytes == s->bytes, "payload bytes read back");
	is_int(cache_save(c, back, &meta), 0,
	       "what was loaded is not written again");
	snapshot_unref(back);
	back = NULL;
	cache_free(c);

	/* another token, URL or scope: another file, never this one */
	c = open_as("https://q.example", "{}", "other-token");
	is_int(cache_load(c, &back, &bm), -ENOENT, "another token: no cache");
	cache_free(c);
	c = open_as("https://q.example", "{\"label\": [\"x\"]}",
		    "secret-token");
	is_int(cache_load(c, &back, &bm), -ENOENT, "another scope: no cache");
	cache_free(c);
	c = open_as("https://eu.q.example", "{}", "secret-token");
	is_int(cache_load(c, &back, &bm), -ENOENT, "another URL: no cache");
	cache_free(c);

	/* a file that is there under another identity's name */
	{
		struct cache *mine =
			open_as("https://q.example", "{}", "secret-token");
		struct cache *theirs =
			open_as("https://q.example", "{}", "other-token");

		p = read_file(cache_path(mine), &n);
		write_file(cache_path(theirs), p, n);
		free(p);
		is_int(cache_load(theirs, &back, &bm), -EINVAL,
		       "a copy under another identity's name is refused");
		cache_free(mine);
		cache_free(theirs);
	}

	/* corrupt, cut short, another version: set aside, never served */
	c = open_as("https://q.example", "{}", "secret-token");
	p = read_file(cache_path(c), &n);
	if (asprintf(&bad, "%s.bad", cache_path(c)) < 0)
		exit(1);
	for (int k = 0; k < 4; k++) {
		char *q = malloc(n);
		size_t len = n;
		static const char *const what[] = {
			"a flipped byte in a run", "cut short",
			"a flipped header byte", "another version"};

		memcpy(q, p, n);
		if (k == 0)
			q[n / 2] ^= 0x20;
		else if (k == 1)
			len = n - 1000;
		else if (k == 2)
			q[60] ^= 1;
		else
			q[8] = 99; /* the version field */
		write_file(cache_path(c), q, len);
		unlink(bad);
		is_int(cache_load(c, &back, &bm), -EINVAL, "%s: refused",
		       what[k]);
		ok(access(cache_path(c), F_OK) < 0 && access(bad, F_OK) == 0,
		   "%s: set aside as .bad", what[k]);
		free(q);
	}
	is_int(cache_load(c, &back, &bm), -ENOENT,
	       "after it was set aside, no cache");
	/* a save after that writes a good one again */
	is_int(cache_save(c, s, &meta), 1, "written again");
	is_int(cache_load(c, &back, &bm), 0, "and loaded");
	snapshot_unref(back);
	free(bad);
	free(p);
	cache_free(c);
	snapshot_unref(s);
	files_release();
}

/* A writer killed mid-write leaves <name>.tmp.<pid>: the next save
 * removes it (its process is gone), and the cache itself stays whole. */
static void test_dead_temp(void)
{
	struct snapshot *s = sample_snapshot(), *back = NULL;
	struct cache_meta meta = {1800000000123LL, 1799999999000LL, 0}, bm;
	struct cache *c = open_as("https://t.example", "{}", "tok");
	char *tmp;
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0);
	if (asprintf(&tmp, "%s.tmp.%d", cache_path(c), (int)pid) < 0)
		exit(1);
	write_file(tmp, "half a cache", 12);
	is_int(cache_save(c, s, &meta), 1, "saved");
	ok(access(tmp, F_OK) < 0, "a dead writer's temporary file is removed");
	is_int(cache_load(c, &back, &bm), 0, "and the cache loads");
	snapshot_unref(back);
	snapshot_unref(s);
	free(tmp);
	cache_free(c);
}

static void test_bad_dir(void)
{
	char sub[64], *why = NULL;
	struct cache *c = NULL;

	snprintf(sub, sizeof(sub), "%s/open", dir);
	mkdir(sub, 0755);
	chmod(sub, 0755);
	is_int(cache_open(sub, "u", "{}", "t", NULL, &c, &why), -EPERM,
	       "a directory others can open is refused");
	ok(why && strstr(why, "chmod 700"), "and says what to do: %s",
	   why ? why : "");
	free(why);
	rmdir(sub);
}

int main(void)
{
	char cmd[128];

	if (!mkdtemp(dir)) {
		printf("Bail out! mkdtemp\n");
		return 1;
	}
	strcat(dir, "/sub/dlqfs"); /* created, parents too */
	test_sha256();
	test_record();
	test_save_load();
	test_dead_temp();
	test_bad_dir();
	dir[strlen(dir) - strlen("/sub/dlqfs")] = '\0';
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", dir);
	return tap_done();
}
