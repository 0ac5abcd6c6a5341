/* Unit tests for tree: inode numbers, lookup, listings, stat, links, diff. */
#include <errno.h>

#include "action.h"
#include "msgfile.h"
#include "msgs.h"
#include "tap.h"
#include "tree.h"

static struct snapshot *build(const struct snapshot *prev, struct message **m,
			      size_t n)
{
	struct snapshot_builder *b = snapshot_builder_new();
	struct snapshot *s = NULL;

	for (size_t i = 0; i < n; i++)
		snapshot_builder_add(b, m[i]);
	snapshot_builder_finish(b, prev, (struct timespec){777, 0},
				prev ? prev->generation + 1 : 1, &s);
	return s;
}

static const struct tree_ctx ctx = {
	.uid = 1000,
	.gid = 100,
	.mounted = {42, 0},
	.status_size = 17,
};

static struct tree_node node(enum tree_kind k)
{
	struct tree_node n = {0};

	n.kind = k;
	return n;
}

static void test_fixed(void)
{
	struct snapshot *s = snapshot_new_empty();
	struct tree_node n, root = node(TREE_ROOT);
	const char *names[12];
	struct stat st;

	is_int(tree_resolve(s, 1, &n), 0, "root resolves");
	is_int(n.kind, TREE_ROOT, "ino 1 is the root");
	is_int(tree_resolve(s, TREE_INO_STATUS, &n), 0, "status resolves");
	is_int(n.kind, TREE_STATUS, "status kind");
	is_int(tree_resolve(s, TREE_INO_FIXED_END, &n), -ENOENT,
	       "past the fixed inodes");
	is_int(tree_dir_size(s, &root), 10, "root has 10 entries");
	for (size_t i = 0; i < 10; i++)
		tree_dir_entry(s, &root, i, &names[i], &n);
	is_str(names[0], "runs", "runs first");
	is_str(names[1], "by-label", "then by-label");
	is_str(names[8], "by-caller-ip", "by-caller-ip");
	is_str(names[9], ".dlqfs", ".dlqfs last");
	for (size_t i = 0; i < 10; i++) {
		struct tree_node a, b;

		tree_dir_entry(s, &root, i, &names[i], &a);
		ok(tree_lookup(s, &root, names[i], &b) == 0 &&
			   tree_ino(s, &a) == tree_ino(s, &b),
		   "lookup agrees with listing: %s", names[i]);
	}
	is_int(tree_lookup(s, &root, "nope", &n), -ENOENT, "unknown name");
	n = node(TREE_STATUS);
	is_int(tree_lookup(s, &n, "x", &n), -ENOTDIR, "file is not a dir");
	n = node(TREE_ROOT);
	tree_stat(&ctx, s, &n, &st);
	ok(S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0555,
	   "root is a 0555 dir");
	ok(st.st_uid == 1000 && st.st_gid == 100, "owned by the mounter");
	is_int(st.st_mtim.tv_sec, 42, "empty root: mount time");
	ok(st.st_blocks > 0, "directories have blocks");
	is_int(st.st_size, 10, "root: st_size counts its 10 entries");
	n = node(TREE_CTL);
	tree_stat(&ctx, s, &n, &st);
	is_int(st.st_size, 7, ".dlqfs/: st_size counts its 7 entries");
	n = node(TREE_RUNS);
	tree_stat(&ctx, s, &n, &st);
	is_int(st.st_size, 0, "runs/ of an empty snapshot: size 0");
	is_int(st.st_blocks, 8, "but still one 4 KiB block");
	n = node(TREE_STATUS);
	tree_stat(&ctx, s, &n, &st);
	ok(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0444 &&
		   st.st_size == 17,
	   "status: 0444 and the given size");
	n = node(TREE_CTL);
	is_int(tree_dir_size(s, &n), 7, ".dlqfs/ has 7 entries");
	{
		static const char *const want[] = {
			"status", "refresh", "actions.log", "delete",
			"resume", "restart", "callback"};
		struct tree_node ctl = node(TREE_CTL), a, b;

		for (size_t i = 0; i < 7; i++) {
			const char *name;

			tree_dir_entry(s, &ctl, i, &name, &a);
			is_str(name, want[i], ".dlqfs/ entry %zu", i);
			ok(tree_lookup(s, &ctl, name, &b) == 0 &&
				   tree_ino(s, &a) == tree_ino(s, &b) &&
				   tree_resolve(s, tree_ino(s, &a), &b) == 0 &&
				   b.kind == a.kind && b.index == a.index,
			   "lookup and resolve agree: %s", name);
			ok(tree_ino(s, &a) < TREE_INO_FIXED_END,
			   "%s has a fixed inode", name);
		}
		tree_lookup(s, &ctl, "resume", &a);
		ok(a.kind == TREE_ACTION && a.index == ACTION_RESUME,
		   "resume is the resume action");
		tree_stat(&ctx, s, &a, &st);
		ok(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0644,
		   "an action file is 0644, like refresh");
		tree_lookup(s, &ctl, "actions.log", &a);
		tree_stat(&(struct tree_ctx){.actlog_size = 99}, s, &a, &st);
		ok(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0444 &&
			   st.st_size == 99,
		   "actions.log: 0444 and the log's size");
	}
	n = node(TREE_RUNS);
	ok(tree_needs_runs(&n), "runs/ needs the first walk");
	n = node(TREE_CTL);
	ok(!tree_needs_runs(&n), ".dlqfs/ does not");
	snapshot_unref(s);
}

static void test_runs(void)
{
	struct message *m[] = {
		msg_json(
			"{\"dlqId\": \"1700000000123-0\", \"createdAt\": "
			"1700000000123, \"labels\": [\"payments\", \"a/b\"], "
			"\"responseStatus\": 503, \"body\": \"hello\", "
			"\"header\": {\"B\": [\"2\"], \"A\": [\"1\", \"x\"]}}"),
		msg_json("{\"dlqId\": \"1700000000999-1\", \"createdAt\": "
			 "1700000000999, \"labels\": [\"payments\"]}"),
	};
	struct snapshot *s = build(NULL, m, 2);
	struct tree_node runs = node(TREE_RUNS), run, f, lab, val, link, n;
	struct stat st;
	char buf[TREE_LINK_MAX];
	const char *name;
	const struct message_bytes *b;

	is_int(tree_dir_size(s, &runs), 2, "two runs listed");
	is_int(tree_lookup(s, &runs, "1700000000123-0", &run), 0, "lookup run");
	is_int(run.kind, TREE_RUN, "run kind");
	is_int(tree_dir_size(s, &run), 4,
	       "files: message.json, body, header, responseStatus");
	tree_dir_entry(s, &run, 0, &name, &f);
	is_str(name, "message.json", "message.json first");
	tree_dir_entry(s, &run, 3, &name, &f);
	is_str(name, "responseStatus", "responseStatus last");
	is_int(tree_lookup(s, &run, "responseBody", &f), -ENOENT,
	       "absent field, absent file");
	is_int(tree_lookup(s, &run, "body", &f), 0, "body exists");
	ok(tree_ino(s, &f) == (tree_ino(s, &run) | 2), "body ino is key|2");
	is_int(tree_resolve(s, tree_ino(s, &f), &n), 0, "body ino resolves");
	ok(n.kind == TREE_FILE && n.file == MESSAGE_BODY &&
		   n.index == run.index,
	   "to the same file");
	is_int(tree_resolve(s, tree_ino(s, &run) | 4, &n), -ENOENT,
	       "ino of an absent file does not resolve");
	b = file_of(tree_file(s, &f), f.file);
	is_mem(b->data, b->len, "hello", 5, "body content");
	tree_stat(&ctx, s, &f, &st);
	is_int(st.st_size, 5, "st_size is the content length");
	is_int(st.st_blocks, 1, "st_blocks");
	is_int(st.st_mtim.tv_sec, 1700000000, "mtime from createdAt");
	is_int(st.st_mtim.tv_nsec, 123000000, "with its milliseconds");
	is_int(st.st_ctim.tv_sec, 1700000000, "ctime = mtime");
	ok((st.st_mode & 07777) == 0444, "files are 0444");
	tree_lookup(s, &run, "header", &f);
	b = file_of(tree_file(s, &f), f.file);
	is_mem(b->data, b->len, "A: 1\nA: x\nB: 2\n", 15, "header file");
	tree_stat(&ctx, s, &run, &st);
	is_int(st.st_mtim.tv_sec, 1700000000, "run dir mtime = createdAt");

	lab = node(TREE_VIEW);
	lab.view = VIEW_LABEL;
	is_int(tree_lookup(s, &lab, "a%2Fb", &val), 0, "escaped label dir");
	is_int(tree_lookup(s, &lab, "payments", &val), 0, "label dir");
	is_int(tree_dir_size(s, &val), 2, "two links in payments");
	tree_stat(&ctx, s, &val, &st);
	is_int(st.st_mtim.tv_sec, 1700000000, "value dir: newest createdAt");
	is_int(tree_lookup(s, &val, "1700000000999-1", &link), 0,
	       "link lookup");
	is_int(link.kind, TREE_LINK, "link kind");
	is_int(tree_lookup(s, &val, "nope", &link), -ENOENT, "unknown link");
	tree_lookup(s, &val, "1700000000123-0", &link);
	tree_readlink(s, &link, buf);
	is_str(buf, "../../runs/1700000000123-0", "link target");
	tree_stat(&ctx, s, &link, &st);
	ok(S_ISLNK(st.st_mode), "a symlink");
	is_int(st.st_size, strlen(buf), "link size is the target length");
	/* 2 labels + status + date = 4 view entries */
	is_int(st.st_nlink, 4, "one inode for all of a run's view entries");
	ok(tree_ino(s, &link) == (tree_ino(s, &run) | 7), "link ino key|7");
	is_int(tree_resolve(s, tree_ino(s, &val), &n), 0, "value resolves");
	ok(n.kind == TREE_VALUE && n.index == val.index, "to itself");

	/* directories: st_size counts entries, st_blocks stays one block */
	tree_stat(&ctx, s, &runs, &st);
	is_int(st.st_size, 2, "runs/: st_size = 2 runs");
	is_int(st.st_blocks, 8, "runs/: one 4 KiB block");
	tree_stat(&ctx, s, &val, &st);
	is_int(st.st_size, 2, "by-label/payments/: st_size = 2 runs");
	is_int(st.st_blocks, 8, "by-label/payments/: one 4 KiB block");
	tree_lookup(s, &lab, "a%2Fb", &n);
	tree_stat(&ctx, s, &n, &st);
	is_int(st.st_size, 1, "by-label/a%%2Fb/: st_size = 1 run");
	tree_stat(&ctx, s, &lab, &st);
	is_int(st.st_size, 2, "by-label/: st_size = 2 labels");
	tree_stat(&ctx, s, &run, &st);
	is_int(st.st_size, 4, "a run directory: st_size = its 4 files");
	snapshot_unref(s);
}

struct rec {
	char lines[64][300];
	int n;
};

static void rec_entry(void *c, uint64_t parent, const char *name)
{
	struct rec *r = c;

	if (r->n < 64)
		snprintf(r->lines[r->n++], 300, "E %llu %s",
			 (unsigned long long)(parent < TREE_INO_FIXED_END
						      ? parent
						      : 99),
			 name);
}

static void rec_inode(void *c, uint64_t ino)
{
	struct rec *r = c;

	if (r->n < 64)
		snprintf(r->lines[r->n++], 300, "I %llu",
			 (unsigned long long)(ino < TREE_INO_FIXED_END ? ino
								       : 99));
}

static int has(const struct rec *r, const char *line)
{
	for (int i = 0; i < r->n; i++)
		if (!strcmp(r->lines[i], line))
			return 1;
	return 0;
}

static void test_diff(void)
{
	struct message *a[] = {
		msg_make("1-0", 1000, "CALLBACK_INPROGRESS", "[\"x\"]"),
		msg_make("2-0", 2000, NULL, "[\"x\"]"),
	};
	struct message *b[] = {
		msg_make("1-0", 1000, "CALLBACK_SUCCESS", "[\"x\"]"),
		msg_make("3-0", 1500, NULL, "[\"x\", \"y\"]"),
	};
	struct message *c[] = {
		msg_make("1-0", 1000, "CALLBACK_SUCCESS", "[\"x\"]"),
		msg_make("3-0", 1500, NULL, "[\"x\", \"y\"]"),
	};
	struct snapshot *s1 = build(NULL, a, 2), *s2 = build(s1, b, 2),
			*s3 = build(s2, c, 2);
	struct tree_diff_ops ops = {rec_entry, rec_inode};
	struct rec r = {0};
	size_t calls = tree_diff(s1, s2, &ops, &r);
	char line[64];

	is_int(calls, r.n, "calls counted");
	ok(has(&r, "E 2 2-0"), "removed run invalidated in runs/");
	ok(has(&r, "E 2 3-0"), "added run invalidated in runs/");
	ok(has(&r, "I 2"), "runs/ listing invalidated");
	snprintf(line, sizeof(line), "E %d y", TREE_INO_VIEW0 + VIEW_LABEL);
	ok(has(&r, line), "new label directory");
	snprintf(line, sizeof(line), "E %d CALLBACK_INPROGRESS",
		 TREE_INO_VIEW0 + VIEW_STATE);
	ok(has(&r, line), "emptied state directory");
	ok(has(&r, "E 99 2-0") && has(&r, "E 99 3-0"),
	   "links removed/added inside value directories");
	ok(has(&r, "I 99"), "changed message.json / value dirs invalidated");
	ok(has(&r, "I 1"), "root (newest time changed)");
	ok(has(&r, "E 99 message.json"),
	   "a changed message.json moves its name to a new inode");
	{
		struct tree_node j1 = {TREE_FILE, 0, 0, MESSAGE_JSON};
		struct tree_node j2 = {TREE_FILE, 0, 0, MESSAGE_JSON};
		struct tree_node j3 = {TREE_FILE, 0, 0, MESSAGE_JSON};
		struct tree_node n;

		/* 1-0 is run 0 everywhere; its state changed from s1 to s2 */
		ok(tree_ino(s1, &j1) != tree_ino(s2, &j2),
		   "message.json: a new inode for a new content");
		ok(tree_ino(s2, &j2) == tree_ino(s3, &j3),
		   "and the same inode while it stays the same");
		is_int(tree_resolve(s2, tree_ino(s1, &j1), &n), -ENOENT,
		       "the old message.json inode is gone from the new tree");
		is_int(tree_resolve(s1, tree_ino(s1, &j1), &n), 0,
		       "but resolves in the snapshot an open file pins");
		is_int(tree_resolve(s2, s2->runs[0].key | 1, &n), -ENOENT,
		       "key|1 is no file");
	}
	{
		/* listing tags, which readdir cookies carry */
		struct tree_node root = node(TREE_ROOT), ctl = node(TREE_CTL);
		struct tree_node runs = node(TREE_RUNS), view = node(TREE_VIEW);
		struct tree_node run = node(TREE_RUN);
		struct snapshot *e = snapshot_new_empty();

		ok(tree_dir_tag(s1, &root) == tree_dir_tag(e, &root) &&
			   tree_dir_tag(s1, &ctl) == tree_dir_tag(e, &ctl),
		   "fixed listings: the same tag in any snapshot");
		ok(tree_dir_tag(s1, &root) != tree_dir_tag(s1, &ctl),
		   "but not the same as each other");
		ok(tree_dir_tag(s1, &runs) != tree_dir_tag(s2, &runs),
		   "runs/ changed: another tag");
		ok(tree_dir_tag(s2, &runs) == tree_dir_tag(s3, &runs),
		   "runs/ unchanged: the same tag");
		view.view = VIEW_LABEL;
		ok(tree_dir_tag(s1, &view) != tree_dir_tag(s2, &view),
		   "a label added: by-label/ has another tag");
		ok(tree_dir_tag(s1, &run) != tree_dir_tag(s2, &run),
		   "1-0's message.json changed: its directory's tag too");
		ok(tree_dir_tag(s2, &run) == tree_dir_tag(s3, &run),
		   "and stays while it does not");
		snapshot_unref(e);
	}
	memset(&r, 0, sizeof(r));
	is_int(tree_diff(s2, s3, &ops, &r), 0, "no change, no call");
	snapshot_unref(s1);
	snapshot_unref(s2);
	snapshot_unref(s3);
}

struct inos {
	uint64_t ino[64];
	int n;
};

static void inos_entry(void *c, uint64_t parent, const char *name)
{
	(void)c, (void)parent, (void)name;
}

static void inos_inode(void *c, uint64_t ino)
{
	struct inos *r = c;

	if (r->n < 64)
		r->ino[r->n++] = ino;
}

static int has_ino(const struct inos *r, uint64_t ino)
{
	for (int i = 0; i < r->n; i++)
		if (r->ino[i] == ino)
			return 1;
	return 0;
}

/* A directory whose entry count (its st_size) changes is invalidated, so
 * the kernel asks for its attributes again. */
static void test_dir_size_diff(void)
{
	struct message *a[] = {
		msg_make("1-0", 1000, NULL, "[\"x\"]"),
		msg_make("2-0", 2000, NULL, "[\"x\", \"y\"]"),
	};
	struct message *b[] = {
		msg_make("1-0", 1000, NULL, "[\"x\"]"),
		msg_make("2-0", 2000, NULL, "[\"x\", \"y\"]"),
		msg_make("0-0", 500, NULL, "[\"x\"]"),
	};
	struct message *c[] = {
		msg_make("1-0", 1000, NULL, "[\"x\"]"),
		msg_make("0-0", 500, NULL, "[\"x\"]"),
	};
	struct snapshot *s1 = build(NULL, a, 2), *s2 = build(s1, b, 3),
			*s3 = build(s2, c, 2);
	struct tree_diff_ops ops = {inos_entry, inos_inode};
	struct tree_node lab = node(TREE_VIEW), x1, x2, x3, y1, y2;
	struct stat st1, st2, st3;
	struct inos r = {0};

	lab.view = VIEW_LABEL;
	tree_lookup(s1, &lab, "x", &x1);
	tree_lookup(s2, &lab, "x", &x2);
	tree_lookup(s3, &lab, "x", &x3);
	tree_lookup(s1, &lab, "y", &y1);
	tree_lookup(s2, &lab, "y", &y2);
	tree_stat(&ctx, s1, &x1, &st1);
	tree_stat(&ctx, s2, &x2, &st2);
	tree_stat(&ctx, s3, &x3, &st3);
	ok(st1.st_size == 2 && st2.st_size == 3 && st3.st_size == 2,
	   "by-label/x/ counts 2, 3, then 2 runs");
	ok(st1.st_ino == st2.st_ino && st2.st_ino == st3.st_ino,
	   "with one inode number");
	/* 0-0 is older than the newest run: no time changes, only counts */
	is_int(st1.st_mtim.tv_sec, st2.st_mtim.tv_sec, "same mtime");
	tree_diff(s1, s2, &ops, &r);
	ok(has_ino(&r, tree_ino(s2, &x2)), "a run added: x/ invalidated");
	ok(has_ino(&r, TREE_INO_RUNS), "and runs/ (2 -> 3)");
	ok(!has_ino(&r, tree_ino(s2, &y2)) &&
		   tree_ino(s1, &y1) == tree_ino(s2, &y2),
	   "y/ kept its count: left alone");
	ok(!has_ino(&r, TREE_INO_VIEW0 + VIEW_LABEL),
	   "by-label/ kept its 2 values: left alone");
	memset(&r, 0, sizeof(r));
	tree_diff(s2, s3, &ops, &r);
	ok(has_ino(&r, tree_ino(s3, &x3)), "a run removed: x/ invalidated");
	ok(has_ino(&r, TREE_INO_RUNS), "and runs/ (3 -> 2)");
	ok(has_ino(&r, TREE_INO_VIEW0 + VIEW_LABEL),
	   "y/ gone: by-label/ (2 -> 1 values) invalidated");
	snapshot_unref(s1);
	snapshot_unref(s2);
	snapshot_unref(s3);
}

static void test_is_dir(void)
{
	static const struct {
		enum tree_kind kind;
		int dir;
	} t[] = {
		{TREE_ROOT, 1},	  {TREE_RUNS, 1},   {TREE_VIEW, 1},
		{TREE_CTL, 1},	  {TREE_STATUS, 0}, {TREE_REFRESH, 0},
		{TREE_ACTION, 0}, {TREE_ACTLOG, 0}, {TREE_RUN, 1},
		{TREE_FILE, 0},	  {TREE_VALUE, 1},  {TREE_LINK, 0},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct tree_node n = {.kind = t[i].kind};

		is_int(tree_is_dir(&n), t[i].dir, "tree_is_dir, kind %d",
		       (int)t[i].kind);
	}
}

int main(void)
{
	test_is_dir();
	test_fixed();
	test_runs();
	test_diff();
	test_dir_size_diff();
	files_release();
	return tap_done();
}
