/* parse: the cost of parsing one list page, as a ratio against jansson.
 *
 * Every walk parses every page, so this is the CPU the walker spends per
 * page. The baseline, measured in the same run on the same bytes, is
 * json_loadb() of the page with the flags dlqfs loads with, then
 * json_decref(): the least any parser that gives jansson trees costs.
 * The measured side is message_page_parse() then message_page_release().
 *
 * Two measures:
 * - CPU time (CLOCK_PROCESS_CPUTIME_ID), the two sides interleaved in
 *   rounds, the best round of each kept (noise only ever adds time);
 * - with --callgrind, instructions counted by valgrind's callgrind in two
 *   runs of this program (one per side), each collecting only inside the
 *   loop of its side: repeatable on a busy machine.
 *
 * usage: bench-parse [--reps N] [--rounds R] [--callgrind] PAGE...
 * (contrib/bench/page.py writes a page; contrib/bench/README.md.)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "message_page.h"

struct page {
	const char *path;
	char *buf;
	size_t len;
	size_t n, malformed; /* what message_page_parse() made of it */
};

static int read_page(const char *path, struct page *ret)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0, k;

	if (!f)
		return -errno;
	for (;;) {
		if (len == cap) {
			char *p = realloc(buf, cap ? cap * 2 : 65536);

			if (!p) {
				free(buf);
				fclose(f);
				return -ENOMEM;
			}
			buf = p;
			cap = cap ? cap * 2 : 65536;
		}
		k = fread(buf + len, 1, cap - len, f);
		if (k == 0)
			break;
		len += k;
	}
	fclose(f);
	ret->path = path;
	ret->buf = buf;
	ret->len = len;
	return 0;
}

/* The two sides. Not inlined: callgrind collects inside them by name. */
__attribute__((noinline)) static int bench_baseline(const struct page *p,
						    long reps)
{
	int bad = 0;

	for (long i = 0; i < reps; i++) {
		json_t *j = json_loadb(p->buf, p->len, JSON_ALLOW_NUL, NULL);

		bad |= !j;
		json_decref(j);
	}
	return bad;
}

__attribute__((noinline)) static int bench_parse(const struct page *p,
						 long reps)
{
	int bad = 0;

	for (long i = 0; i < reps; i++) {
		struct message_page pg;

		bad |= message_page_parse(p->buf, p->len, &pg, NULL, 0) < 0;
		message_page_release(&pg);
	}
	return bad;
}

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Best CPU seconds per page of each side over @rounds rounds of @reps. */
static void wall(const struct page *p, long reps, int rounds, double *ret_base,
		 double *ret_parse)
{
	double best_base = 0, best_parse = 0;

	for (int r = 0; r < rounds; r++) {
		double t0 = cpu_now(), t1, t2;

		bench_baseline(p, reps);
		t1 = cpu_now();
		bench_parse(p, reps);
		t2 = cpu_now();
		if (r == 0 || t1 - t0 < best_base)
			best_base = t1 - t0;
		if (r == 0 || t2 - t1 < best_parse)
			best_parse = t2 - t1;
	}
	*ret_base = best_base / (double)reps;
	*ret_parse = best_parse / (double)reps;
}

/* Runs this program under callgrind for one side (@side "baseline" or
 * "parse") of @path, collecting only inside bench_@side(). Returns the
 * instructions counted, or -1. */
static long long callgrind(const char *self, const char *side, const char *path,
			   long reps)
{
	char toggle[64], repstr[32], line[512];
	long long total = -1;
	int fds[2], status;
	pid_t pid;
	FILE *f;

	snprintf(toggle, sizeof(toggle), "--toggle-collect=bench_%s", side);
	snprintf(repstr, sizeof(repstr), "%ld", reps);
	if (pipe(fds) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(fds[1], 2);
		close(fds[0]);
		close(fds[1]);
		execlp("valgrind", "valgrind", "--tool=callgrind",
		       "--callgrind-out-file=/dev/null", "--collect-atstart=no",
		       toggle, self, "--only", side, "--reps", repstr, path,
		       (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	f = fdopen(fds[0], "r");
	while (f && fgets(line, sizeof(line), f)) {
		const char *c = strstr(line, "Collected : ");

		if (c)
			total = strtoll(c + strlen("Collected : "), NULL, 10);
	}
	if (f)
		fclose(f);
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		return -1;
	return total;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench-parse [--reps N] [--rounds R] "
			"[--callgrind] PAGE...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	long reps = 200;
	int rounds = 7, use_callgrind = 0, first = 1;
	const char *only = NULL;

	while (first < argc && argv[first][0] == '-') {
		if (!strcmp(argv[first], "--reps") && first + 1 < argc)
			reps = atol(argv[++first]);
		else if (!strcmp(argv[first], "--rounds") && first + 1 < argc)
			rounds = atoi(argv[++first]);
		else if (!strcmp(argv[first], "--only") && first + 1 < argc)
			only = argv[++first];
		else if (!strcmp(argv[first], "--callgrind"))
			use_callgrind = 1;
		else
			usage();
		first++;
	}
	if (first == argc || reps < 1 || rounds < 1)
		usage();

	for (int a = first; a < argc; a++) {
		struct message_page pg;
		struct page p = {0};
		double base, parse;
		char err[256] = "";
		int r = read_page(argv[a], &p);

		if (r < 0) {
			fprintf(stderr, "bench-parse: %s: %s\n", argv[a],
				strerror(-r));
			return 1;
		}
		if (only) { /* one side, under callgrind (see callgrind()) */
			r = !strcmp(only, "baseline") ? bench_baseline(&p, reps)
						      : bench_parse(&p, reps);
			free(p.buf);
			if (r)
				return 1;
			continue;
		}
		r = message_page_parse(p.buf, p.len, &pg, err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "bench-parse: %s: not a page: %s\n",
				argv[a], err);
			return 1;
		}
		p.n = pg.n;
		p.malformed = pg.malformed;
		message_page_release(&pg);
		if (bench_baseline(&p, 1)) {
			fprintf(stderr, "bench-parse: %s: jansson refuses it\n",
				argv[a]);
			return 1;
		}

		printf("%s: %zu bytes, %zu entries (%zu malformed)\n", p.path,
		       p.len, p.n + p.malformed, p.malformed);
		wall(&p, reps, rounds, &base, &parse);
		printf("  cpu time:     parse/json_loadb = %.2f  "
		       "(%.1f us vs %.1f us per page; best of %d rounds of "
		       "%ld)\n",
		       parse / base, parse * 1e6, base * 1e6, rounds, reps);
		if (use_callgrind) {
			long cg_reps = reps < 20 ? reps : 20;
			long long ib =
				callgrind(argv[0], "baseline", p.path, cg_reps);
			long long ip =
				callgrind(argv[0], "parse", p.path, cg_reps);

			if (ib <= 0 || ip <= 0) {
				fprintf(stderr, "bench-parse: callgrind failed "
						"(is valgrind installed?)\n");
				return 1;
			}
			printf("  instructions: parse/json_loadb = %.2f  "
			       "(%lld vs %lld per page; callgrind, %ld "
			       "reps)\n",
			       (double)ip / (double)ib, ip / cg_reps,
			       ib / cg_reps, cg_reps);
		}
		free(p.buf);
	}
	return 0;
}
