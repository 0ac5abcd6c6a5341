/* main: options, start-up checks, mount, signals.
 *
 * Owns: the command line and -o options, the order of the start-up
 * checks, the pre-mount check that the API answers (so a bad token or
 * URL fails here with one line, before daemonizing), the one mount
 * context, the wiring of walker -> fs, and the order of the shutdown.
 * Leaves to others: where the URL and the token come from (credentials),
 * everything that happens once mounted.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "api.h"
#include "cache.h"
#include "credentials.h"
#include "fs.h"
#include "help.h"
#include "memory.h"
#include "scope.h"
#include "status.h"
#include "timefmt.h"
#include "walker.h"

#ifndef DLQFS_VERSION
#define DLQFS_VERSION "dev"
#endif

#define REFRESH_DEFAULT 60.0 /* seconds */
#define REFRESH_MIN 0.01     /* seconds */
#define RETRIES_MAX 20
#define FILE_TIMEOUT 86400.0 /* run files never change for an inode */
#define NEG_TIMEOUT 1.0

struct options {
	char *token_file;
	char *url;
	char *refresh;	       /* seconds, decimals allowed */
	char *reconcile;       /* seconds between full walks */
	char *late_window;     /* seconds of overlap of incremental walks */
	char *timeout;	       /* seconds per request attempt */
	char *connect_timeout; /* seconds */
	char *stall_timeout;   /* seconds without a byte */
	char *max_response;    /* bytes, K/M/G suffixes */
	unsigned retries;      /* attempts after the first */
	int retries_set;
	unsigned max_pages;
	unsigned walkers;
	char *max_rps;
	int allow_insecure_http;
	int allow_delete, allow_resume;
	int dir_handles;
	char *cache_dir; /* where the cache goes (default: cache_default_dir())
			  */
	int no_cache;	 /* keep nothing on disk */
	int show_help;
	int show_version;
	char *nonopt[2]; /* [source] mountpoint, as mount.fuse3 passes them */
	struct scope *scope; /* the scope options, checked as they come */
	char *error;	     /* the first bad option, said once */
};

/* The mount: one per process, passed to everything that needs it. */
struct mount {
	struct options opts;
	struct fuse_cmdline_opts cmd; /* libfuse's: -f, -s, the mount point */
	const char *mountpoint;	      /* as given, checked before mounting */
	char *url;		      /* the API base URL */
	struct http_quota quota; /* the token's daily quota, for every client */
	char *token;
	struct api_config api;	       /* the walk's clients */
	struct api_config actions_api; /* the actor's client */
	struct walker_config walker_cfg;
	struct walker_source source;
	struct status status;
	bool status_ready; /* status_init() succeeded */
	struct fs *fs;
	struct walker *walker;
	struct cache *cache;	 /* NULL: -o no_cache, or none possible */
	struct snapshot *cached; /* loaded at mount, until published */
	struct cache_meta cached_meta;
	char *offline; /* why the API could not be listed at
			  mount, when the cache is served anyway */
	atomic_int cancel;
	struct fuse_session *se;
	pthread_t main_thread, stopper;
	char *knock_path;     /* a file on the mount, opened to wake the loop */
	atomic_int loop_done; /* the main thread left the FUSE loop */
	/* the stopper has stopped the walker and the notifier: nothing but
	 * the main thread touches the session any more (protected by lock) */
	bool quiet;
	pthread_mutex_t lock;
	pthread_cond_t quiet_cond;
};

enum {
	KEY_FILTER,
	KEY_TOKEN,
	KEY_HELP,
	KEY_VERSION,
};

#define OPT(t, p)                                                              \
	{                                                                      \
		t, offsetof(struct options, p), 1                              \
	}
static const struct fuse_opt opt_spec[] = {
	OPT("token_file=%s", token_file),
	OPT("url=%s", url),
	OPT("refresh=%s", refresh),
	OPT("reconcile=%s", reconcile),
	OPT("late_window=%s", late_window),
	OPT("timeout=%s", timeout),
	OPT("connect_timeout=%s", connect_timeout),
	OPT("stall_timeout=%s", stall_timeout),
	OPT("max_response=%s", max_response),
	OPT("retries=%u", retries),
	OPT("retries=", retries_set),
	OPT("max_pages=%u", max_pages),
	OPT("walkers=%u", walkers),
	OPT("max_rps=%s", max_rps),
	OPT("allow_insecure_http", allow_insecure_http),
	OPT("allow_delete", allow_delete),
	OPT("allow_resume", allow_resume),
	OPT("dir_handles", dir_handles),
	OPT("cache_dir=%s", cache_dir),
	OPT("no_cache", no_cache),
	FUSE_OPT_KEY("label=", KEY_FILTER),
	FUSE_OPT_KEY("workflow_url=", KEY_FILTER),
	FUSE_OPT_KEY("workflow_run_id=", KEY_FILTER),
	FUSE_OPT_KEY("workflow_created_at=", KEY_FILTER),
	FUSE_OPT_KEY("from=", KEY_FILTER),
	FUSE_OPT_KEY("to=", KEY_FILTER),
	FUSE_OPT_KEY("failure_function_state=", KEY_FILTER),
	FUSE_OPT_KEY("caller_ip=", KEY_FILTER),
	FUSE_OPT_KEY("flow_control_key=", KEY_FILTER),
	FUSE_OPT_KEY("token=", KEY_TOKEN),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_END,
};

__attribute__((format(printf, 2, 3))) static void
set_error(struct options *o, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (o->error)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	o->error = strdup(buf);
}

/* A scope option "name=value": into the scope, or the first error. */
static int add_filter(struct options *o, const char *arg)
{
	const char *eq = strchr(arg, '=');
	char opt[32], err[300];
	size_t klen = (size_t)(eq - arg);
	int r;

	if (klen >= sizeof(opt))
		return 1;
	memcpy(opt, arg, klen);
	opt[klen] = '\0';
	r = o->scope ? scope_add(o->scope, opt, eq + 1, err, sizeof(err))
		     : -ENOMEM;
	if (r == -ENOENT)
		return 1; /* not ours: libfuse's */
	if (r == -ENOMEM)
		set_error(o, "out of memory");
	else if (r < 0)
		set_error(o, "%s", err);
	return 0;
}

static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct options *o = data;

	(void)outargs;
	switch (key) {
	case KEY_FILTER:
		return add_filter(o, arg);
	case KEY_TOKEN:
		set_error(o,
			  "-o token= is refused: command lines are visible to "
			  "every user; use QSTASH_TOKEN or -o token_file=PATH");
		return 0;
	case KEY_HELP:
		o->show_help = 1;
		return 0;
	case KEY_VERSION:
		o->show_version = 1;
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (!o->nonopt[0]) {
			o->nonopt[0] = strdup(arg);
			return 0;
		}
		if (!o->nonopt[1]) {
			o->nonopt[1] = strdup(arg);
			return 0;
		}
		set_error(o, "unexpected argument: %s", arg);
		return 0;
	default:
		return 1;
	}
}

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt,
								...)
{
	va_list ap;

	fprintf(stderr, "dlqfs: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Dies saying @why (a credentials_*() error; NULL: out of memory). */
__attribute__((noreturn)) static void die_why(const char *why)
{
	die("%s", why ? why : "out of memory");
}

static void check_mountpoint(const char *mp)
{
	struct stat st;

	if (!mp)
		die("no mount point given (see --help)");
	if (stat(mp, &st) < 0)
		die("mount point %s does not exist", mp);
	if (!S_ISDIR(st.st_mode))
		die("mount point %s is not a directory", mp);
}

static int source_list(void *conn, int64_t from, int64_t to, const char *cursor,
		       struct message_page *ret, struct api_error *err)
{
	return api_list_range(conn, from, to, cursor, ret, err);
}

/* Each walk worker has its own client (curl handles are never shared). */
static void *source_open(void *cfg)
{
	return api_new(cfg);
}

static void source_close(void *conn)
{
	api_free(conn);
}

/* One page, before mounting: a wrong or revoked token fails here, and
 * so does a wrong URL or an API that does not answer, unless a cache can
 * be served (then a new string saying why in @ret_offline). */
static void check_api(const struct api_config *cfg, const char *url,
		      bool has_cache, char **ret_offline)
{
	struct api_config c = *cfg;
	struct message_page page = {0};
	struct api_error err;
	struct api *a;
	int r;

	if (c.http.max_tries > 3)
		c.http.max_tries = 3; /* a bounded wait before giving up */
	a = api_new(&c);
	if (!a)
		die("out of memory");
	r = api_list(a, NULL, &page, &err);
	api_free(a);
	message_page_release(&page);
	if (r == -EACCES)
		die("the API refused the token: %s", err.text);
	if (r < 0 && has_cache) {
		if (asprintf(ret_offline, "cannot list the DLQ at %s: %s", url,
			     err.text) < 0)
			die("out of memory");
		return;
	}
	if (r < 0) {
		fprintf(stderr, "dlqfs: cannot list the DLQ at %s: %s\n", url,
			err.text);
		exit(1);
	}
}

/* Opens the cache of this URL, scope and token and loads what it holds
 * into m->cached (nothing when there is none, or it was set aside: the
 * cache said so). With -o no_cache, or a directory that cannot be used
 * (said on stderr), the mount keeps no cache. */
static void open_cache(struct mount *m)
{
	char *dir, *why = NULL;
	int r;

	if (m->opts.no_cache)
		return;
	dir = m->opts.cache_dir ? strdup(m->opts.cache_dir)
				: cache_default_dir();
	if (!dir) {
		fprintf(stderr, "dlqfs: no cache kept: %s\n",
			m->opts.cache_dir ? "out of memory"
					  : "no home directory to keep it in "
					    "(-o cache_dir=DIR)");
		return;
	}
	r = cache_open(dir, m->url, m->status.scope, m->token, &m->status,
		       &m->cache, &why);
	free(dir);
	if (r < 0) {
		fprintf(stderr, "dlqfs: %s\n", why ? why : strerror(-r));
		free(why);
		return;
	}
	r = cache_load(m->cache, &m->cached, &m->cached_meta);
	if (r == -ENOMEM)
		die("out of memory loading the cache");
}

/* Serves the cache loaded at mount, before the first walk: status says
 * it is the cache ("cached"), or, when the API could not be listed,
 * that it is stale and why. */
static void serve_cached(struct mount *m)
{
	struct status *st = &m->status;
	struct snapshot *s = m->cached;
	struct timespec now;

	m->cached = NULL;
	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&st->lock);
	st->runs = s->nruns;
	st->payload_bytes = s->bytes;
	st->generation = 1;
	st->state = m->offline ? STATUS_STALE : STATUS_CACHED;
	if (m->offline) {
		st->stale_since = now;
		st->has_error = true;
		snprintf(st->last_error, sizeof(st->last_error),
			 "%s; serving the cache", m->offline);
	}
	status_touch(st);
	pthread_mutex_unlock(&st->lock);
	fs_publish(m->fs, s, 0);
	walker_resume(m->walker, m->cached_meta.last_full_ms);
}

static void on_wake(int sig)
{
	(void)sig; /* only interrupts the loop's wait */
}

/* How long the stopper knocks by opening a file before it falls back to
 * a signal (the mount could be hidden under another one). */
#define KNOCK_SIGNAL_AFTER_MS 2000
#define KNOCK_INTERVAL_MS 20

/* The signals the daemon acts on. Every thread blocks them, from before
 * the mount to the exit, and the stopper takes them with sigwait(): no
 * handler ever runs in the middle of other code (no async-signal-safety
 * to get wrong, no signal landing inside malloc), and it does not matter
 * which thread kill(2) would have picked. */
static void stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
}

/* Takes SIGHUP (refresh) until SIGTERM or SIGINT arrives, from a user or
 * from the main thread once the loop has ended by an unmount. Then stops
 * the walker and the notifier while the FUSE loop still answers requests,
 * and ends the loop. In the other order, the notifier could wait forever
 * in the kernel: an invalidation needs the directory's lock, which a
 * lookup holds until a loop thread, gone by then, answers it. */
static void *stopper_main(void *arg)
{
	struct mount *m = arg;
	unsigned waited = 0;
	sigset_t set;
	int sig = 0;

	stop_signals(&set);
	while (sig != SIGTERM && sig != SIGINT) {
		if (sigwait(&set, &sig))
			sig = 0;
		if (sig == SIGHUP)
			walker_refresh(m->walker);
	}
	walker_stop(m->walker);
	fs_stop(m->fs);
	fuse_session_exit(m->se);
	pthread_mutex_lock(&m->lock);
	m->quiet = true;
	pthread_cond_signal(&m->quiet_cond);
	pthread_mutex_unlock(&m->lock);
	/* The loop checks the exit flag, then waits for a request: a wake-up
	 * between the two is lost, so knock until the main thread is out.
	 * The knock is a request rather than a signal, which could land
	 * inside the allocator (ThreadSanitizer's runtime deadlocks there).
	 * Once out of the loop, the main thread unmounts, which fails an
	 * open() still waiting for an answer. */
	while (!atomic_load(&m->loop_done)) {
		int fd = open(m->knock_path, O_RDONLY | O_CLOEXEC);

		if (fd >= 0)
			close(fd);
		if (waited >= KNOCK_SIGNAL_AFTER_MS)
			pthread_kill(m->main_thread, SIGUSR1);
		nanosleep(&(struct timespec){0, KNOCK_INTERVAL_MS * 1000000L},
			  NULL);
		waited += KNOCK_INTERVAL_MS;
	}
	return NULL;
}

static void on_refresh(void *ctx)
{
	struct mount *m = ctx;

	walker_refresh(m->walker);
}

/* "1.5" -> 1.5; dies on anything else or outside [min, max]. */
static double parse_number(const char *opt, const char *v, double min,
			   double max, const char *unit)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (errno || end == v || *end || !(d >= min && d <= max))
		die("-o %s=%s: expected %s between %g and %g", opt, v, unit,
		    min, max);
	return d;
}

static double parse_seconds(const char *opt, const char *v, double min,
			    double max)
{
	return parse_number(opt, v, min, max, "seconds");
}

/* "512K", "8M", "1G" or bytes; dies on anything else. */
static size_t parse_size(const char *opt, const char *v)
{
	unsigned long long n;
	char *end;

	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || end == v || *v == '-')
		goto bad;
	switch (*end) {
	case 'k':
	case 'K':
		n <<= 10, end++;
		break;
	case 'm':
	case 'M':
		n <<= 20, end++;
		break;
	case 'g':
	case 'G':
		n <<= 30, end++;
		break;
	}
	if (*end || n < 1024 || n > (16ULL << 30))
		goto bad;
	return (size_t)n;
bad:
	die("-o %s=%s: expected a size between 1K and 16G (K, M, G suffixes)",
	    opt, v);
}

/* The request bounds of -o timeout=, connect_timeout=, stall_timeout=,
 * retries= and max_response=. */
static void http_options(const struct options *o, struct http_config *c)
{
	if (o->timeout)
		c->total_timeout_ms =
			(long)(parse_seconds("timeout", o->timeout, 0.1, 3600) *
			       1000);
	if (o->connect_timeout)
		c->connect_timeout_ms =
			(long)(parse_seconds("connect_timeout",
					     o->connect_timeout, 0.1, 600) *
			       1000);
	if (o->stall_timeout)
		c->stall_timeout_s = (long)parse_seconds(
			"stall_timeout", o->stall_timeout, 1, 3600);
	if (o->retries_set) {
		if (o->retries > RETRIES_MAX)
			die("-o retries=%u: at most %d", o->retries,
			    RETRIES_MAX);
		c->max_tries = o->retries + 1;
	}
	if (o->max_response)
		c->max_response_bytes =
			parse_size("max_response", o->max_response);
}

static void options_release(struct options *o)
{
	scope_free(o->scope);
	free(o->token_file);
	free(o->url);
	free(o->refresh);
	free(o->reconcile);
	free(o->late_window);
	free(o->timeout);
	free(o->connect_timeout);
	free(o->stall_timeout);
	free(o->max_response);
	free(o->max_rps);
	free(o->cache_dir);
	free(o->nonopt[0]);
	free(o->nonopt[1]);
	free(o->error);
}

/* Sets up @m before anything is parsed. */
static void mount_init(struct mount *m)
{
	memset(m, 0, sizeof(*m));
	m->opts.scope = scope_new(); /* NULL: add_filter() says so */
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->quiet_cond, NULL);
}

/* Parses the command line, dlqfs's options and then libfuse's, into @m.
 * Returns 0 to go on, 1 when there is nothing more to do (--help,
 * --version), or -1 once dlqfs or libfuse has said what is wrong. */
static int parse_options(struct mount *m, struct fuse_args *args,
			 const char *prog)
{
	if (fuse_opt_parse(args, &m->opts, opt_spec, opt_proc) < 0)
		return -1;
	if (m->opts.show_help || m->opts.show_version) {
		if (m->opts.show_help)
			help_print(prog, REFRESH_DEFAULT);
		else
			printf("dlqfs %s (libfuse %s)\n", DLQFS_VERSION,
			       fuse_pkgversion());
		return 1;
	}
	if (m->opts.error) {
		fprintf(stderr, "dlqfs: %s\n", m->opts.error);
		return -1;
	}
	if (!m->opts.scope)
		die("out of memory");
	if (fuse_parse_cmdline(args, &m->cmd) < 0)
		return -1;
	return 0;
}

/* The seconds of -o refresh=, reconcile= and late_window=. */
struct timings {
	double refresh, reconcile, late_window;
};

/* Reads @o's timings into @ret, or their defaults; dies on a bad one. */
static void parse_timings(const struct options *o, struct timings *ret)
{
	ret->refresh = o->refresh ? parse_seconds("refresh", o->refresh,
						  REFRESH_MIN, 86400 * 7)
				  : REFRESH_DEFAULT;
	ret->reconcile = o->reconcile ? parse_seconds("reconcile", o->reconcile,
						      0, 86400 * 90)
				      : ret->refresh * WALKER_RECONCILE_FACTOR;
	ret->late_window =
		o->late_window ? parse_seconds("late_window", o->late_window, 0,
					       86400 * 90)
			       : WALKER_LATE_WINDOW_MS / 1000.0;
}

/* What fs is given: the owner, the kernel's cache timeouts, the refresh
 * hook and the actions allowed. Its api points to m->actions_api, which
 * configure() fills in before fs_start() copies it. */
static void fs_config_of(struct mount *m, double refresh, struct fs_config *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->uid = getuid();
	ret->gid = getgid();
	/* at least 1 s: a timeout near 0 makes the kernel look up every
	 * entry again, and the notifier invalidates changes anyway */
	ret->dir_timeout = refresh < 1 ? 1 : refresh;
	ret->file_timeout = FILE_TIMEOUT;
	ret->neg_timeout = NEG_TIMEOUT;
	ret->refresh = on_refresh;
	ret->refresh_ctx = m;
	ret->api = &m->actions_api;
	ret->allow_delete = m->opts.allow_delete;
	ret->allow_resume = m->opts.allow_resume;
	ret->zero_opendir = !m->opts.dir_handles;
}

/* The walk's API client configuration, m->api: the URL, the token, the
 * scope's @n @filters, the request bounds of the options (dies on a bad
 * one), and the cancel flag and quota every client shares. */
static void api_config_of(struct mount *m, const struct api_filter *filters,
			  size_t n)
{
	struct api_config *c = &m->api;

	c->base_url = m->url;
	c->token = m->token;
	c->filters = filters;
	c->nfilters = n;
	http_config_defaults(&c->http);
	http_options(&m->opts, &c->http);
	c->http.cancel = &m->cancel;
	c->http.quota = &m->quota;
}

/* The walker's configuration, m->walker_cfg, from @t and the options;
 * dies on a bad one. */
static void walker_config_of(struct mount *m, const struct timings *t)
{
	struct walker_config *c = &m->walker_cfg;
	struct walker_limits *l = &c->limits;

	l->max_pages = m->opts.max_pages;
	l->workers = m->opts.walkers ? m->opts.walkers : WALKER_WORKERS;
	if (l->workers > 64)
		die("-o walkers=%u: at most 64", l->workers);
	l->max_rps = m->opts.max_rps
			     ? parse_number("max_rps", m->opts.max_rps, 0.1,
					    10000, "requests per second")
			     : WALKER_MAX_RPS;
	l->cancel = &m->cancel;
	l->scope = m->opts.scope;
	/* a progress line on a terminal, in the foreground only */
	l->progress_fd = m->cmd.foreground && isatty(2) ? 2 : -1;
	c->refresh_ms = (unsigned)(t->refresh * 1000);
	c->reconcile_ms = (int64_t)(t->reconcile * 1000);
	c->reconcile_auto = !m->opts.reconcile;
	c->late_window_ms = (int64_t)(t->late_window * 1000);
	c->served = fs_served;
}

/* Checks everything a user can get wrong, in this order, and builds the
 * configurations and the session: the mount point and the options
 * first, then the token, and the API last (the only step that touches
 * the network). Dies with one line on a mistake, before daemonizing.
 * Returns 0, or -1 when libfuse refused an option (it said why). */
static int configure(struct mount *m, struct fuse_args *args)
{
	const struct api_filter *filters;
	struct credentials_env env;
	struct fs_config fcfg;
	struct timings t;
	char *why = NULL;
	size_t nfilters;
	int r;

	/* from here on, die() exits with everything still reachable */
	m->mountpoint =
		m->opts.nonopt[1] ? m->opts.nonopt[1] : m->opts.nonopt[0];
	check_mountpoint(m->mountpoint);
	parse_timings(&m->opts, &t);

	r = credentials_env(&env, &why);
	if (r < 0)
		die_why(why);
	if (r == 1 && why) /* a note: it falls back to the plain ones */
		fprintf(stderr, "dlqfs: %s\n", why);
	free(why);
	if (credentials_url(&env, m->opts.url, m->opts.allow_insecure_http,
			    &m->url, &why) < 0)
		die_why(why);
	filters = scope_filters(m->opts.scope, &nfilters);
	if (status_init(&m->status, m->url, filters, nfilters, t.refresh) < 0)
		die("out of memory");
	m->status_ready = true;
	m->status.reconcile_s = t.reconcile;
	m->status.late_window_s = t.late_window;
	fs_config_of(m, t.refresh, &fcfg);
	m->fs = fs_new(&fcfg, &m->status);
	if (!m->fs)
		die("out of memory");
	/* the session checks the remaining (FUSE) options; nothing is
	 * mounted yet and the network has not been touched */
	fuse_opt_add_arg(args, "-odefault_permissions,fsname=dlqfs");
	m->se = fuse_session_new(args, fs_ops(), fs_ops_size(), m->fs);
	if (!m->se)
		return -1; /* libfuse said why (an unknown option) */

	if (credentials_token(&env, m->opts.token_file, &m->token, &why) < 0)
		die_why(why);
	/* no core dump, and no ptrace by other processes of the same user,
	 * can read the token out of this process */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (http_global_init() < 0)
		die("cannot initialize libcurl");
	api_config_of(m, filters, nfilters);
	walker_config_of(m, &t);
	m->status.quota = &m->quota;
	open_cache(m);
	check_api(&m->api, m->url, m->cached != NULL, &m->offline);
	if (m->offline) {
		char taken[TIMEFMT_ISO_SIZE];

		fprintf(stderr,
			"dlqfs: %s; serving the cache taken at %s (stale), "
			"and trying again every refresh\n",
			m->offline,
			timefmt_iso(m->cached_meta.taken_ms, taken));
	}
	m->walker_cfg.cache = m->cache;
	/* actions have a client of their own; a retried request of the walk
	 * shows in .dlqfs/status */
	m->actions_api = m->api;
	m->api.on_retry = status_retrying;
	m->api.retry_ctx = &m->status;
	return 0;
}

/* Mounts, daemonizes and starts the threads: the walker, fs's notifier
 * and actor, and the stopper. Returns 0, or -1 when the mount failed
 * (libfuse said why); dies when a thread cannot start. */
static int start(struct mount *m)
{
	struct sigaction sa;
	sigset_t block, oldmask;

	signal(SIGPIPE, SIG_IGN); /* a closed socket is an error, not death */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_wake;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	/* from here on SIGHUP/SIGINT/SIGTERM wait for the stopper (see
	 * stop_signals()); one arriving before it runs is taken then */
	stop_signals(&block);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	if (fuse_session_mount(m->se, m->mountpoint) < 0)
		return -1;
	fuse_daemonize(m->cmd.foreground);

	/* threads start after the fork of fuse_daemonize() */
	m->source.list = source_list;
	m->source.open = source_open;
	m->source.close = source_close;
	m->source.ctx = &m->api;
	m->walker = walker_new(&m->walker_cfg, &m->source, &m->status,
			       fs_publish, m->fs);
	/* Our threads (and the walk workers they start) also block SIGQUIT,
	 * as libfuse's workers do: it stays the main thread's. */
	sigaddset(&block, SIGQUIT);
	pthread_sigmask(SIG_BLOCK, &block, &oldmask);
	m->main_thread = pthread_self();
	if (asprintf(&m->knock_path, "%s/.dlqfs/status", m->cmd.mountpoint) < 0)
		die("out of memory");
	if (!m->walker || fs_start(m->fs, m->se) < 0)
		die("cannot start threads");
	if (m->cached)
		serve_cached(m);
	if (walker_start(m->walker) < 0 ||
	    pthread_create(&m->stopper, NULL, stopper_main, m))
		die("cannot start threads");
	pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
	return 0;
}

/* Answers requests until an unmount, or a signal through the stopper.
 * Returns 0, or -1 when the loop failed. */
static int run_session(struct mount *m)
{
	struct fuse_loop_config *loop;
	int r;

	if (m->cmd.singlethread)
		return fuse_session_loop(m->se) < 0 ? -1 : 0;
	loop = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(loop, (unsigned)m->cmd.clone_fd);
	/* UINT_MAX means "not given": keep libfuse's defaults */
	if (m->cmd.max_idle_threads != UINT_MAX)
		fuse_loop_cfg_set_idle_threads(loop, m->cmd.max_idle_threads);
	if (m->cmd.max_threads != UINT_MAX)
		fuse_loop_cfg_set_max_threads(loop, m->cmd.max_threads);
	r = fuse_session_loop_mt(m->se, loop);
	fuse_loop_cfg_destroy(loop);
	return r < 0 ? -1 : 0;
}

/* After the loop, ended by an unmount or by a signal through the
 * stopper: either way the stopper runs to its end before anything is
 * freed, and the walker and the notifier are quiet before the unmount. */
static void shut_down(struct mount *m)
{
	atomic_store(&m->loop_done, 1);
	pthread_kill(m->stopper, SIGTERM);
	/* unmount once the stopper has quietened the walker and the
	 * notifier, but before joining it: that fails its last knock */
	pthread_mutex_lock(&m->lock);
	while (!m->quiet)
		pthread_cond_wait(&m->quiet_cond, &m->lock);
	pthread_mutex_unlock(&m->lock);
	fuse_session_unmount(m->se);
	pthread_join(m->stopper, NULL);
}

/* Runs the session, then the ordered shutdown. Returns 0, or -1 when the
 * loop failed. */
static int loop(struct mount *m)
{
	int r = run_session(m);

	shut_down(m);
	return r;
}

/* Frees what the steps before made, however far they got: the walker,
 * then the session, then fs (the session's userdata); the token is wiped
 * first. */
static void mount_release(struct mount *m)
{
	walker_free(m->walker);
	cache_free(m->cache);
	snapshot_unref(m->cached);
	free(m->offline);
	if (m->se)
		fuse_session_destroy(m->se);
	fs_free(m->fs);
	if (m->status_ready)
		status_release(&m->status);
	if (m->token) {
		explicit_bzero(m->token, strlen(m->token));
		free(m->token);
		http_global_cleanup();
	}
	free(m->url);
	free(m->cmd.mountpoint);
	free(m->knock_path);
	pthread_cond_destroy(&m->quiet_cond);
	pthread_mutex_destroy(&m->lock);
	options_release(&m->opts);
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct mount m;
	int r;

	/* before any thread: it changes how every later block is placed */
	memory_init();
	mount_init(&m);
	r = parse_options(&m, &args, argv[0]);
	if (r == 0)
		r = configure(&m, &args);
	if (r == 0)
		r = start(&m);
	if (r == 0)
		r = loop(&m);
	mount_release(&m);
	fuse_opt_free_args(&args);
	return r < 0 ? 1 : 0;
}
