/* test_api: URL building and escaping, the loopback check, and http_get /
 * api_list against a tiny scripted HTTP server forked on 127.0.0.1 (no
 * network beyond loopback, no python). Each scenario starts a server that
 * answers the requests it receives with canned responses in order, and
 * counts connections and requests in shared memory.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "api.h"
#include "timefmt.h"
#include "http.h"
#include "url.h"
#include "net.h"
#include "tap.h"

#define TOKEN "tok-SECRET-123"

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Escaping and URLs. */

static void test_escape(void)
{
	static const struct {
		const char *in;
		size_t len;
		const char *want;
	} t[] = {
		{"AZaz09-._~", 10, "AZaz09-._~"},
		{"", 0, ""},
		{"a b", 3, "a%20b"},
		{"+/=", 3, "%2B%2F%3D"},
		{"100%", 4, "100%25"},
		{"\xc3\xa9", 2, "%C3%A9"},
		{"a\0b", 3, "a%00b"},
		{"a&b?c#d", 7, "a%26b%3Fc%23d"},
		{"abc", 1, "a"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *got = url_escape(t[i].in, t[i].len);

		is_str(got, t[i].want, "escape %zu -> %s", i, t[i].want);
		free(got);
	}
}

/* RFC 3986: unreserved bytes stay, every other one is %XX, uppercase. */
static size_t escape_reference(char *dst, const char *s, size_t len)
{
	size_t j = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || (c && strchr("-._~", c)))
			dst[j++] = (char)c;
		else
			j += (size_t)sprintf(dst + j, "%%%02X", c);
	}
	return j;
}

static void test_url_escape(void)
{
	/* more than three of http.c's 1 MiB pieces, every byte value */
	size_t n = 3 * (1 << 20) + 5, bad = 0, want_len;
	char *in = malloc(n), *want = malloc(3 * n + 1), *got;

	if (!ok(in && want, "buffers for the url_escape tests")) {
		free(in);
		free(want);
		return;
	}
	for (size_t i = 0; i < n; i++)
		in[i] = (char)(i * 7 % 256);
	want_len = escape_reference(want, in, n);
	got = url_escape(in, n);
	is_mem(got, got ? strlen(got) : 0, want, want_len,
	       "url_escape of %zu bytes, in pieces", n);
	free(got);

	for (int c = 0; c < 256; c++) {
		char b = (char)c;

		got = url_escape(&b, 1);
		want_len = escape_reference(want, &b, 1);
		if (!got || strlen(got) != want_len ||
		    memcmp(got, want, want_len))
			bad++;
		free(got);
	}
	is_int(bad, 0, "url_escape of each byte: as RFC 3986");

	got = url_escape("abc", 0);
	is_str(got, "", "url_escape of 0 bytes is \"\", not the whole string");
	free(got);
	free(in);
	free(want);
}

static struct api *api_for(const char *base, const struct api_filter *f,
			   size_t nf, const struct http_config *hc)
{
	struct api_config c = {
		.base_url = base, .token = TOKEN, .filters = f, .nfilters = nf};

	if (hc)
		c.http = *hc;
	else
		http_config_defaults(&c.http);
	return api_new(&c);
}

static void test_list_url(void)
{
	static const struct api_filter labels[] = {
		{"label", "a"},
		{"label", "b c"},
		{"workflowUrl", "https://x.io/p?q=1"},
	};
	struct api *a;
	char *u;

	a = api_for("https://qstash.upstash.io", NULL, 0, NULL);
	ok(a != NULL, "api_new without filters");
	u = api_list_url(a, NULL);
	is_str(u, "https://qstash.upstash.io/v2/workflows/dlq?count=100",
	       "list url, no filters, no cursor");
	free(u);
	u = api_list_url(a, "AAA+/b==");
	is_str(u,
	       "https://qstash.upstash.io/v2/workflows/dlq?count=100&cursor=AAA%2B%2Fb%3D%3D",
	       "list url, cursor escaped");
	free(u);
	api_free(a);

	a = api_for("http://127.0.0.1:8080//", labels, 3, NULL);
	u = api_list_url(a, "c1");
	is_str(u,
	       "http://127.0.0.1:8080/v2/workflows/dlq?count=100&label=a&label=b%20c&workflowUrl=https%3A%2F%2Fx.io%2Fp%3Fq%3D1&cursor=c1",
	       "list url, trailing slashes, repeated filters in order");
	free(u);
	api_free(a);

	api_free(NULL);
	http_free(NULL);
	ok(1, "x_free(NULL) is a no-op");
}

static void test_range_url(void)
{
	static const struct api_filter scope[] = {
		{"label", "a"},
		{"fromDate", "1000"},
		{"toDate", "9000"},
	};
	struct message_page page;
	struct api_error err;
	struct api *a = api_for("https://q.example", scope, 3, NULL);
	char *u;

	u = api_list_url(a, NULL);
	is_str(u,
	       "https://q.example/v2/workflows/dlq?count=100&label=a&fromDate=1000&toDate=9000",
	       "the scope's own dates without a range");
	free(u);
	u = api_list_range_url(a, 2000, 3000, "c");
	is_str(u,
	       "https://q.example/v2/workflows/dlq?count=100&label=a&fromDate=2000&toDate=3000&cursor=c",
	       "a range replaces the dates, other filters stay");
	free(u);
	u = api_list_range_url(a, -1, 3000, NULL);
	is_str(u,
	       "https://q.example/v2/workflows/dlq?count=100&label=a&toDate=3000",
	       "a range open below");
	free(u);
	/* api_list_range intersects with the scope: [9500, -1] and the
	 * scope's [1000, 9000] do not meet, so nothing is sent */
	memset(&page, 0xa5, sizeof(page));
	is_int(api_list_range(a, 9500, -1, NULL, &page, &err), 0,
	       "a range outside the scope is an empty page");
	ok(page.n == 0 && page.cursor == NULL && page.msgs == NULL,
	   "with no entries and no cursor, without a request");
	api_free(a);
}

static void test_loopback(void)
{
	static const struct {
		const char *url;
		bool want;
	} t[] = {
		{"http://127.0.0.1:8080/x", true},
		{"http://127.1.2.3", true},
		{"http://[::1]:80", true},
		{"http://[::1]/v2", true},
		{"http://localhost", true},
		{"http://LOCALHOST:9/", true},
		{"http://localhost.evil.com", false},
		{"http://user@127.0.0.1", true},
		{"http://user:pw@localhost:80/x", true},
		{"http://127.0.0.1@evil.com/", false},
		{"http://127.0.0.1.evil.com/", false},
		{"http://10.0.0.1", false},
		{"http://128.0.0.1", false},
		{"http://[::2]", false},
		{"http://[::ffff:127.0.0.1]/", true},
		{"https://127.0.0.1", false},
		{"https://localhost/", false},
		{"ftp://127.0.0.1/", false},
		{"garbage", false},
		{"http://", false},
		{"", false},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		ok(url_is_loopback(t[i].url) == t[i].want, "loopback(%s) is %s",
		   t[i].url, t[i].want ? "true" : "false");
	ok(!url_is_loopback(NULL), "loopback(NULL) is false");
}

/* The scripted server. */

enum act_kind {
	SEND_KEEP,  /* send, keep the connection for the next request */
	SEND_CLOSE, /* send, then close */
	STALL,	    /* never answer; keep the socket open; accept the next */
	TRICKLE,    /* send, then one byte every 300 ms, forever */
};

struct action {
	enum act_kind kind;
	const char *data;
};

struct shared {
	int connections;
	int requests;
	char first_request[4096];
};

struct server {
	pid_t pid;
	int port;
	struct shared *sh;
	char base[64];
};

/* True when nothing comes on the kept-alive @fd while a new connection
 * waits on @lfd (a client that does not reuse the connection, such as a
 * POST). */
static bool idle_and_new_client(int fd, int lfd)
{
	struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
			      {.fd = lfd, .events = POLLIN}};

	if (poll(p, 2, -1) <= 0)
		return false;
	return !(p[0].revents & (POLLIN | POLLHUP)) && (p[1].revents & POLLIN);
}

static void serve(int lfd, const struct action *acts, size_t n,
		  struct shared *sh)
{
	static const char over[] =
		"HTTP/1.1 418 script over\r\nContent-Length: 0\r\n"
		"Connection: close\r\n\r\n";
	char req[4096];
	size_t i = 0;
	int fd = -1;

	for (;;) {
		const struct action *a;

		if (fd < 0) {
			fd = accept(lfd, NULL, NULL);
			if (fd < 0)
				_exit(1);
			sh->connections++;
		}
		if (idle_and_new_client(fd, lfd)) {
			close(fd); /* the client opened another connection */
			fd = -1;
			continue;
		}
		if (!recv_head(fd, req, sizeof(req))) {
			close(fd); /* the client closed a kept-alive socket */
			fd = -1;
			continue;
		}
		if (++sh->requests == 1)
			snprintf(sh->first_request, sizeof(sh->first_request),
				 "%s", req);
		if (i == n) {
			send_all(fd, over, strlen(over));
			close(fd);
			fd = -1;
			continue;
		}
		a = &acts[i++];
		switch (a->kind) {
		case SEND_KEEP:
			send_all(fd, a->data, strlen(a->data));
			break;
		case SEND_CLOSE:
			send_all(fd, a->data, strlen(a->data));
			close(fd);
			fd = -1;
			break;
		case STALL:
			fd = -1; /* left open until the server is killed */
			break;
		case TRICKLE:
			send_all(fd, a->data, strlen(a->data));
			for (;;) {
				usleep(300 * 1000);
				if (send(fd, "x", 1, MSG_NOSIGNAL) < 0)
					break;
			}
			close(fd);
			fd = -1;
			break;
		}
	}
}

static bool server_start(struct server *s, const struct action *acts, size_t n)
{
	int lfd = listen_any(&s->port);

	s->sh = mmap(NULL, sizeof(*s->sh), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (lfd < 0 || s->sh == MAP_FAILED) {
		printf("Bail out! cannot start the test server\n");
		exit(1);
	}
	memset(s->sh, 0, sizeof(*s->sh));
	snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%d", s->port);
	fflush(stdout);
	s->pid = fork();
	if (s->pid < 0) {
		printf("Bail out! fork failed\n");
		exit(1);
	}
	if (s->pid == 0) {
		serve(lfd, acts, n, s->sh);
		_exit(0);
	}
	close(lfd);
	return true;
}

static void server_stop(struct server *s)
{
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
}

static void server_free(struct server *s)
{
	munmap(s->sh, sizeof(*s->sh));
}

/* Canned responses. */

#define PAGE                                                                   \
	"{\"cursor\":\"c2\",\"messages\":[{\"dlqId\":\"1752829295505-0\","     \
	"\"createdAt\":1752829295505,\"url\":\"https://example.com/wf\"}]}"
#define R200_PAGE                                                              \
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"                \
	"Content-Length: 113\r\n\r\n" PAGE
#define R503 "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
#define R503_JSON                                                              \
	"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 35\r\n\r\n"       \
	"{\"error\":\"temporarily unavailable\"}"

static int page_len_ok(void)
{
	return strlen(PAGE) == 113;
}

static struct http_config test_http(void)
{
	struct http_config c;

	http_config_defaults(&c);
	c.connect_timeout_ms = 2000;
	c.total_timeout_ms = 5000;
	c.stall_timeout_s = 2;
	c.max_response_bytes = 1 << 20;
	c.max_tries = 3;
	c.backoff_ms = 10;
	c.max_backoff_ms = 50;
	return c;
}

static void no_token(const char *text, const char *what)
{
	ok(!strstr(text, TOKEN) && !strstr(text, "SECRET"),
	   "%s: no token in \"%s\"", what, text);
}

static bool has(const char *text, const char *part)
{
	return strstr(text, part) != NULL;
}

/* is_str() on char arrays trips -Waddress; compare through pointers. */
static void text_is(const char *got, const char *want, const char *what)
{
	is_str(got, want, "%s", what);
}

/* Scenarios. */

static void test_retry_then_page(void)
{
	static const struct action acts[] = {
		{SEND_KEEP, R503},
		{SEND_KEEP, R200_PAGE},
	};
	static const struct api_filter f[] = {{"label", "a"}, {"label", "b"}};
	static const char line[] = "GET /v2/workflows/dlq?count=100&label=a"
				   "&label=b&cursor=a%2Bb%2Fc%3D HTTP/1.1\r\n";
	struct http_config hc = test_http();
	struct message_page page = {0};
	struct api_error err;
	struct server s;
	struct api *a;
	int r;

	ok(page_len_ok(), "canned page length matches its Content-Length");
	server_start(&s, acts, 2);
	a = api_for(s.base, f, 2, &hc);
	r = api_list(a, "a+b/c=", &page, &err);
	server_stop(&s);
	is_int(r, 0, "503 then 200: api_list succeeds");
	is_int(err.http_status, 200, "503 then 200: status 200");
	is_int(s.sh->requests, 2, "503 then 200: two requests");
	is_int(s.sh->connections, 1, "503 then 200: one kept-alive connection");
	is_int(page.n, 1, "page has one message");
	if (page.n == 1)
		is_mem(page.msgs[0]->id.data, page.msgs[0]->id.len,
		       "1752829295505-0", 15, "message dlqId");
	is_str(page.cursor, "c2", "page cursor");
	ok(!strncmp(s.sh->first_request, line, strlen(line)),
	   "request line has filters and escaped cursor");
	ok(has(s.sh->first_request, "\r\nAuthorization: Bearer " TOKEN "\r\n"),
	   "request carries the bearer token");
	ok(has(s.sh->first_request, "\r\nUser-Agent: dlqfs/"),
	   "request carries the User-Agent");
	message_page_release(&page);
	api_free(a);
	server_free(&s);
}

/* One api_list call against one script; returns the errno. */
static int list_once(const struct action *acts, size_t n,
		     const struct http_config *hc, struct api_error *err,
		     struct server *s)
{
	struct message_page page = {0};
	struct api *a;
	int r;

	server_start(s, acts, n);
	a = api_for(s->base, NULL, 0, hc);
	memset(err, 0, sizeof(*err));
	r = api_list(a, NULL, &page, err);
	server_stop(s);
	if (r == 0)
		message_page_release(&page);
	api_free(a);
	return r;
}

static void test_status_table(void)
{
	static const struct {
		const char *resp;
		int err;
		long status;
		const char *text; /* after "HTTP nnn from http://127...:port" */
	} t[] = {
		{"HTTP/1.1 401 Unauthorized\r\nContent-Length: 25\r\n\r\n"
		 "{\"error\":\"invalid token\"}",
		 -EACCES, 401, ": invalid token"},
		{"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", -EACCES,
		 403, ""},
		{"HTTP/1.1 400 Bad Request\r\nContent-Length: 36\r\n\r\n"
		 "{\"error\":\"unknown parameter: color\"}",
		 -EINVAL, 400, ": unknown parameter: color"},
		{"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
		 -ENOENT, 404, ": not found"},
		{"HTTP/1.1 301 Moved\r\nLocation: http://evil.example/\r\n"
		 "Content-Length: 0\r\n\r\n",
		 -EIO, 301, ""},
		{"HTTP/1.1 500 Oops\r\nContent-Length: 27\r\n\r\n"
		 "Internal\r\n\tServer\x01 Error \xc3\xa9",
		 -EIO, 500, ": Internal Server Error"},
		{"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 91\r\n\r\n"
		 "\n<!DOCTYPE html><html><head><title>502 Bad Gateway</title>"
		 "</head><body>nginx</body></html>\n",
		 -EIO, 502, " (HTML error page: 502 Bad Gateway)"},
		{"HTTP/1.1 401 Unauthorized\r\nContent-Length: 36\r\n\r\n"
		 "{\"error\":\"bad token " TOKEN "\"}",
		 -EACCES, 401, ": bad token [token]"},
	};
	struct http_config hc = test_http();

	hc.max_tries = 1; /* the 5xx here are not about retries */
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct action act = {SEND_KEEP, t[i].resp};
		struct api_error err;
		struct server s;
		char want[512];
		int r = list_once(&act, 1, &hc, &err, &s);

		snprintf(want, sizeof(want), "HTTP %ld from %s%s", t[i].status,
			 s.base, t[i].text);
		is_int(r, t[i].err, "HTTP %ld -> errno %d", t[i].status,
		       -t[i].err);
		is_int(err.http_status, t[i].status, "HTTP %ld: http_status",
		       t[i].status);
		text_is(err.text, want, "text of a status");
		is_int(s.sh->requests, 1, "HTTP %ld: one request", t[i].status);
		no_token(err.text, "status table");
		server_free(&s);
	}
}

static void test_retries_exhausted(void)
{
	static const struct action a503[] = {
		{SEND_KEEP, R503_JSON},
		{SEND_KEEP, R503_JSON},
		{SEND_KEEP, R503_JSON},
		{SEND_KEEP, R200_PAGE},
	};
	static const char r429[] =
		"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n";
	static const struct action a429[] = {
		{SEND_KEEP, r429},
		{SEND_KEEP, r429},
		{SEND_KEEP, r429},
	};
	static const struct action bad[] = {
		{SEND_KEEP, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n"
			    "not json"},
	};
	struct http_config hc = test_http();
	struct api_error err;
	struct server s;
	char want[512];
	int r;

	r = list_once(a503, 4, &hc, &err, &s);
	snprintf(want, sizeof(want),
		 "HTTP 503 from %s: temporarily unavailable (after 3 tries)",
		 s.base);
	is_int(r, -EIO, "503 x3: -EIO");
	is_int(err.http_status, 503, "503 x3: http_status");
	is_int(s.sh->requests, 3, "503 x3: three requests, no fourth");
	text_is(err.text, want, "503 x3: text");
	server_free(&s);

	r = list_once(a429, 3, &hc, &err, &s);
	is_int(r, -EAGAIN, "429 x3: -EAGAIN");
	is_int(err.http_status, 429, "429 x3: http_status");
	is_int(s.sh->requests, 3, "429 x3: three requests");
	server_free(&s);

	r = list_once(bad, 1, &hc, &err, &s);
	is_int(r, -EPROTO, "200 with a bad page: -EPROTO");
	ok(!strncmp(err.text, "the API sent a page that is not valid: ", 39),
	   "bad page text: %s", err.text);
	is_int(s.sh->requests, 1, "bad page: not retried");
	server_free(&s);
}

static void test_429_waits(void)
{
	static const struct action retry_after[] = {
		{SEND_KEEP, "HTTP/1.1 429 Too Many Requests\r\n"
			    "Retry-After: 1\r\nContent-Length: 0\r\n\r\n"},
		{SEND_KEEP, R200_PAGE},
	};
	static const struct action capped[] = {
		{SEND_KEEP, "HTTP/1.1 429 Too Many Requests\r\n"
			    "retry-after: 100\r\nContent-Length: 0\r\n\r\n"},
		{SEND_KEEP, R200_PAGE},
	};
	char reset_resp[256];
	struct action reset[] = {
		{SEND_KEEP, reset_resp},
		{SEND_KEEP, R200_PAGE},
	};
	struct http_config hc = test_http();
	struct api_error err;
	struct server s;
	long long t0, dt;
	int r;

	hc.max_backoff_ms = 3000;
	t0 = now_ms();
	r = list_once(retry_after, 2, &hc, &err, &s);
	dt = now_ms() - t0;
	is_int(r, 0, "429 Retry-After: 1 then 200: success");
	is_int(s.sh->requests, 2, "429 Retry-After: two requests");
	ok(dt >= 950 && dt < 2000, "429 Retry-After: 1 waited ~1 s (%lld ms)",
	   dt);
	server_free(&s);

	hc.max_backoff_ms = 200;
	t0 = now_ms();
	r = list_once(capped, 2, &hc, &err, &s);
	dt = now_ms() - t0;
	is_int(r, 0, "429 Retry-After: 100 capped: success");
	ok(dt >= 190 && dt < 1000,
	   "429 Retry-After: 100 capped by max_backoff_ms (%lld ms)", dt);
	server_free(&s);

	hc.max_backoff_ms = 3000;
	snprintf(
		reset_resp, sizeof(reset_resp),
		"HTTP/1.1 429 Too Many Requests\r\nBurst-RateLimit-Limit: 100\r\n"
		"Burst-RateLimit-Remaining: 0\r\nBurst-RateLimit-Reset: %lld\r\n"
		"Content-Length: 0\r\n\r\n",
		(long long)time(NULL) + 2);
	t0 = now_ms();
	r = list_once(reset, 2, &hc, &err, &s);
	dt = now_ms() - t0;
	is_int(r, 0, "429 Burst-RateLimit-Reset then 200: success");
	ok(dt >= 900 && dt < 2900,
	   "429 waited until Burst-RateLimit-Reset (%lld ms)", dt);
	server_free(&s);
}

/* What api_config.on_retry was told. */
struct retries_seen {
	int calls, ended;
	unsigned tries[8];
	char text[8][600];
};

static void record_retry(void *ctx, const char *text, unsigned tries)
{
	struct retries_seen *r = ctx;

	if (!text) {
		r->ended++;
		return;
	}
	if (r->calls < 8) {
		r->tries[r->calls] = tries;
		snprintf(r->text[r->calls], sizeof(r->text[0]), "%s", text);
	}
	r->calls++;
}

/* A burst 429 whose reset is in milliseconds, the daily quota's 429, and
 * what a retried request tells on the way. */
static void test_rate_limits(void)
{
	char burst_ms[256], daily[400];
	struct action reset_ms[] = {
		{SEND_KEEP, burst_ms},
		{SEND_KEEP, R200_PAGE},
	};
	struct action quota[] = {
		{SEND_KEEP, daily},
		{SEND_KEEP, R200_PAGE},
	};
	static const struct action ok_page[] = {{SEND_KEEP, R200_PAGE}};
	static const struct action quota_unknown[] = {
		{SEND_KEEP,
		 "HTTP/1.1 429 Too Many Requests\r\n"
		 "RateLimit-Limit: 500\r\nContent-Length: 0\r\n\r\n"},
	};
	static const struct action both_burst[] = {
		{SEND_KEEP,
		 "HTTP/1.1 429 Too Many Requests\r\n"
		 "RateLimit-Limit: 500\r\nRateLimit-Remaining: 41\r\n"
		 "Burst-RateLimit-Remaining: 0\r\n"
		 "Content-Length: 0\r\n\r\n"},
		{SEND_KEEP, R200_PAGE},
	};
	static const struct action fails[] = {
		{SEND_KEEP, "HTTP/1.1 500 Oops\r\nContent-Length: 26\r\n\r\n"
			    "{\"error\":\"internal error\"}"},
		{SEND_KEEP, "HTTP/1.1 502 Bad\r\nContent-Length: 0\r\n\r\n"},
		{SEND_KEEP, R200_PAGE},
	};
	struct http_config hc = test_http();
	struct http_quota q = {0};
	struct retries_seen seen = {0};
	struct message_page page = {0};
	struct api_config c = {.token = TOKEN};
	struct api_error err;
	struct server s;
	struct api *a;
	long long t0, dt, wall;
	int r;

	/* the docs say "unix timestamp": 13 digits are milliseconds */
	hc.max_backoff_ms = 3000;
	snprintf(burst_ms, sizeof(burst_ms),
		 "HTTP/1.1 429 Too Many Requests\r\n"
		 "Burst-RateLimit-Remaining: 0\r\n"
		 "Burst-RateLimit-Reset: %lld\r\nContent-Length: 0\r\n\r\n",
		 ((long long)time(NULL) + 2) * 1000);
	t0 = now_ms();
	r = list_once(reset_ms, 2, &hc, &err, &s);
	dt = now_ms() - t0;
	is_int(r, 0, "burst 429, reset in ms, then 200: success");
	ok(dt >= 900 && dt < 2900,
	   "burst 429: waited until the reset given in ms (%lld ms)", dt);
	server_free(&s);

	/* a 429 with both kinds of headers whose burst window says 0 */
	r = list_once(both_burst, 2, &hc, &err, &s);
	is_int(r, 0, "429, burst remaining 0, quota remaining 41: retried");
	is_int(s.sh->requests, 2, "... two requests");
	server_free(&s);

	/* the daily quota: not retried, and nothing is sent until reset */
	hc.quota = &q;
	snprintf(daily, sizeof(daily),
		 "HTTP/1.1 429 Too Many Requests\r\n"
		 "RateLimit-Limit: 500\r\nRateLimit-Remaining: 0\r\n"
		 "RateLimit-Reset: %lld\r\nContent-Length: 37\r\n\r\n"
		 "{\"error\":\"daily rate limit exceeded\"}",
		 (long long)time(NULL) + 2);
	r = list_once(quota, 2, &hc, &err, &s);
	is_int(r, -EDQUOT, "daily 429: -EDQUOT");
	is_int(err.http_status, 429, "daily 429: the status");
	is_int(s.sh->requests, 1, "daily 429: not retried");
	ok(strstr(err.text, "daily rate limit exceeded") &&
		   strstr(err.text, "daily request quota is exhausted") &&
		   strstr(err.text, "it resets at"),
	   "daily 429: says so, and when it resets (%s)", err.text);
	server_free(&s);
	is_int(q.limit, 500, "the quota's limit");
	ok(q.known, "the reset is the API's");
	r = list_once(ok_page, 1, &hc, &err, &s);
	is_int(r, -EDQUOT, "while exhausted: -EDQUOT");
	is_int(s.sh->requests, 0, "while exhausted: nothing sent");
	ok(strstr(err.text, "not sent") && strstr(err.text, "quota of 500"),
	   "while exhausted: says so (%s)", err.text);
	server_free(&s);
	while (timefmt_now_ms() <= atomic_load(&q.until_ms))
		usleep(50 * 1000);
	r = list_once(ok_page, 1, &hc, &err, &s);
	is_int(r, 0, "after the reset: sent again");
	is_int(s.sh->requests, 1, "after the reset: one request");
	is_int(q.until_ms, 0, "after the reset: the quota is open");
	server_free(&s);

	/* a daily 429 that does not say when it resets: one probe later */
	wall = timefmt_now_ms();
	r = list_once(quota_unknown, 1, &hc, &err, &s);
	is_int(r, -EDQUOT, "daily 429 without a reset: -EDQUOT");
	ok(!q.known && q.until_ms >= wall + HTTP_QUOTA_PROBE_MS - 1000 &&
		   q.until_ms <= timefmt_now_ms() + HTTP_QUOTA_PROBE_MS,
	   "without a reset: asked again after HTTP_QUOTA_PROBE_MS");
	ok(strstr(err.text, "asked again at") != NULL, "and says so (%s)",
	   err.text);
	server_free(&s);
	atomic_store(&q.until_ms, 0);
	hc.quota = NULL;

	/* each retry is told, in words with the try count, then its end */
	server_start(&s, fails, 3);
	c.base_url = s.base;
	c.http = hc;
	c.on_retry = record_retry;
	c.retry_ctx = &seen;
	a = api_new(&c);
	r = api_list(a, NULL, &page, &err);
	is_int(r, 0, "500, 502, then 200: success");
	is_int(seen.calls, 2, "two retries told");
	is_int(seen.tries[0], 1, "the first: try 1");
	is_int(seen.tries[1], 2, "the second: try 2");
	ok(strstr(seen.text[0], "HTTP 500 from http://127.0.0.1:") &&
		   strstr(seen.text[0], ": internal error (try 1 of 3)"),
	   "the first in words: %s", seen.text[0]);
	ok(strstr(seen.text[1], "HTTP 502 from") &&
		   strstr(seen.text[1], "(try 2 of 3)"),
	   "the second in words: %s", seen.text[1]);
	is_int(seen.ended, 1, "then its end, once");
	message_page_release(&page);
	api_free(a);
	server_stop(&s);
	server_free(&s);
}

/* One http_get against one script. */
static int get_once(const struct action *acts, size_t n,
		    const struct http_config *hc, const char *token,
		    struct http_response *resp, char *err, size_t errlen,
		    struct server *s)
{
	struct http *h = http_new(hc);
	char url[128];
	int r;

	server_start(s, acts, n);
	snprintf(url, sizeof(url), "%s/v2/workflows/dlq?count=100", s->base);
	r = http_get(h, url, token, resp, err, errlen);
	server_stop(s);
	http_free(h);
	return r;
}

static void test_transport_errors(void)
{
	static const char cut[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n"
				  "\r\n{\"cursor\":";
	static const struct action cuts[] = {
		{SEND_CLOSE, cut},
		{SEND_CLOSE, cut},
	};
	char big_cl[2100], big_chunked[2200], exact[1100];
	struct action big1 = {SEND_KEEP, big_cl};
	struct action big2 = {SEND_KEEP, big_chunked};
	struct action fits = {SEND_KEEP, exact};
	/* The first stall is on a kept-alive connection, the second on a
	 * new one. */
	static const struct action stalls[] = {
		{SEND_KEEP, R503}, {STALL, NULL}, {STALL, NULL}};
	static const struct action trickle[] = {
		{TRICKLE, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"},
	};
	struct http_config hc = test_http();
	struct http_response resp = {0};
	char err[256], want[256], body[1000];
	struct server s;
	long long t0, dt;
	int r;

	hc.max_tries = 2;
	r = get_once(cuts, 2, &hc, TOKEN, &resp, err, sizeof(err), &s);
	is_int(r, -ECONNRESET, "response cut mid-body: -ECONNRESET");
	is_int(s.sh->requests, 2, "cut mid-body: retried once");
	snprintf(want, sizeof(want),
		 "the response from %s was cut short (after 2 tries)", s.base);
	text_is(err, want, "cut mid-body: text");
	ok(resp.body == NULL, "cut mid-body: response untouched");
	server_free(&s);

	memset(body, 'a', sizeof(body));
	hc.max_response_bytes = 1000;
	snprintf(
		big_cl, sizeof(big_cl),
		"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n%.1000s%.1000s",
		body, body);
	r = get_once(&big1, 1, &hc, TOKEN, &resp, err, sizeof(err), &s);
	is_int(r, -EFBIG, "body over the limit (Content-Length): -EFBIG");
	is_int(s.sh->requests, 1, "over the limit: not retried");
	ok(has(err, "larger than the limit of 1000 bytes"), "-EFBIG text: %s",
	   err);
	server_free(&s);

	snprintf(big_chunked, sizeof(big_chunked),
		 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		 "3e8\r\n%.1000s\r\n3e8\r\n%.1000s\r\n0\r\n\r\n",
		 body, body);
	r = get_once(&big2, 1, &hc, TOKEN, &resp, err, sizeof(err), &s);
	is_int(r, -EFBIG, "body over the limit (chunked): -EFBIG");
	is_int(s.sh->requests, 1, "over the limit (chunked): not retried");
	server_free(&s);

	snprintf(exact, sizeof(exact),
		 "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n%.1000s",
		 body);
	r = get_once(&fits, 1, &hc, NULL, &resp, err, sizeof(err), &s);
	is_int(r, 0, "body exactly at the limit: accepted");
	is_int(resp.status, 200, "at the limit: status");
	is_int(resp.len, 1000, "at the limit: length");
	is_int(resp.tries, 1, "at the limit: one try");
	ok(resp.body && resp.body[1000] == '\0', "body is NUL-terminated");
	ok(!has(s.sh->first_request, "Authorization"),
	   "no Authorization header without a token");
	http_response_release(&resp);
	server_free(&s);

	hc = test_http();
	hc.stall_timeout_s = 1;
	t0 = now_ms();
	r = get_once(stalls, 3, &hc, TOKEN, &resp, err, sizeof(err), &s);
	dt = now_ms() - t0;
	is_int(r, -ETIMEDOUT, "stalled server: -ETIMEDOUT");
	is_int(s.sh->requests, 3, "stalled server: retried");
	is_int(s.sh->connections, 2, "stalled server: reconnected");
	ok(dt >= 1900 && dt < 4000, "stalled twice for 1 s (%lld ms)", dt);
	snprintf(want, sizeof(want), "no data from %s for 1 s (after 3 tries)",
		 s.base);
	text_is(err, want, "stall text");
	server_free(&s);

	hc.max_tries = 2; /* ends on the kept-alive connection's stall */
	r = get_once(stalls, 2, &hc, TOKEN, &resp, err, sizeof(err), &s);
	is_int(r, -ETIMEDOUT, "stall on a reused connection: -ETIMEDOUT");
	is_int(s.sh->connections, 1, "stall on a reused connection: reused");
	snprintf(want, sizeof(want), "no data from %s for 1 s (after 2 tries)",
		 s.base);
	text_is(err, want, "stall on a reused connection: text");
	server_free(&s);

	hc = test_http();
	hc.total_timeout_ms = 1500;
	hc.max_tries = 1;
	t0 = now_ms();
	r = get_once(trickle, 1, &hc, TOKEN, &resp, err, sizeof(err), &s);
	dt = now_ms() - t0;
	is_int(r, -ETIMEDOUT, "trickling server: -ETIMEDOUT");
	ok(dt >= 1400 && dt < 2500, "total timeout after 1.5 s (%lld ms)", dt);
	snprintf(want, sizeof(want), "timed out after 1500 ms waiting for %s",
		 s.base);
	text_is(err, want, "total timeout text");
	server_free(&s);
}

static void test_refused_and_token(void)
{
	struct http_config hc = test_http();
	struct http_response resp = {0};
	struct http *h = http_new(&hc);
	struct api_error aerr;
	struct message_page page = {0};
	struct api *a;
	char err[256], url[64], want[128];
	int port, fd, r;

	fd = listen_any(&port);
	close(fd); /* nobody listens there now */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);
	r = http_get(h, url, TOKEN, &resp, err, sizeof(err));
	is_int(r, -ECONNREFUSED, "refused: -ECONNREFUSED");
	snprintf(want, sizeof(want),
		 "connection refused by 127.0.0.1:%d (after 3 tries)", port);
	text_is(err, want, "refused: text");
	no_token(err, "refused");

	r = http_get(h, url, "tok\r\nX-Evil: 1", &resp, err, sizeof(err));
	is_int(r, -EINVAL, "token with CR LF refused before sending");
	r = http_get(h, url, "", &resp, err, sizeof(err));
	is_int(r, -EINVAL, "empty token refused");
	r = http_get(h, "http://127.0.0.1:1/", NULL, &resp, NULL, 0);
	is_int(r, -ECONNREFUSED, "NULL err buffer is accepted");
	http_free(h);

	/* Through api_list: the text is http's, with the host. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	a = api_for(url, NULL, 0, &hc);
	r = api_list(a, NULL, &page, &aerr);
	is_int(r, -ECONNREFUSED, "api_list passes transport errors through");
	is_int(aerr.http_status, 0, "no response: http_status 0");
	ok(has(aerr.text, "connection refused by 127.0.0.1:"),
	   "api_list text: %s", aerr.text);
	no_token(aerr.text, "api_list refused");

	{
		size_t n = 20000;
		char *huge = malloc(n + 1);

		memset(huge, '/', n);
		huge[n] = '\0';
		r = api_list(a, huge, &page, &aerr);
		is_int(r, -EINVAL, "a URL over the limit is not sent");
		ok(has(aerr.text, "over the limit"), "long URL text: %s",
		   aerr.text);
		free(huge);
	}
	api_free(a);
}

struct canceller {
	atomic_int *flag;
	long delay_ms;
	long long at; /* when the flag was set */
};

static void *cancel_later(void *arg)
{
	struct canceller *c = arg;

	usleep((useconds_t)c->delay_ms * 1000);
	c->at = now_ms();
	atomic_store(c->flag, 1);
	return NULL;
}

static void test_cancel(void)
{
	static const struct action a503[] = {
		{SEND_KEEP, R503},
		{SEND_KEEP, R503},
	};
	static const struct action stall[] = {{STALL, NULL}};
	atomic_int flag = 0;
	struct canceller c = {&flag, 200, 0};
	struct http_config hc = test_http();
	struct http_response resp = {0};
	struct http *h;
	struct server s;
	pthread_t th;
	char err[256], url[128];
	long long t0, done;
	int r;

	hc.cancel = &flag;
	hc.backoff_ms = 10000;
	hc.max_backoff_ms = 10000;
	h = http_new(&hc);
	server_start(&s, a503, 2);
	snprintf(url, sizeof(url), "%s/", s.base);
	pthread_create(&th, NULL, cancel_later, &c);
	r = http_get(h, url, TOKEN, &resp, err, sizeof(err));
	done = now_ms();
	pthread_join(th, NULL);
	server_stop(&s);
	is_int(r, -ECANCELED, "cancel during a 5-10 s backoff: -ECANCELED");
	ok(done - c.at < 100, "backoff abandoned %lld ms after the cancel",
	   done - c.at);
	is_int(s.sh->requests, 1, "cancelled before the second try");
	ok(has(err, "cancelled"), "cancel text: %s", err);
	server_free(&s);
	http_free(h);

	/* A cancel during a transfer (server silent). */
	atomic_store(&flag, 0);
	hc = test_http();
	hc.cancel = &flag;
	hc.stall_timeout_s = 10;
	hc.total_timeout_ms = 10000;
	h = http_new(&hc);
	server_start(&s, stall, 1);
	snprintf(url, sizeof(url), "%s/", s.base);
	pthread_create(&th, NULL, cancel_later, &c);
	r = http_get(h, url, TOKEN, &resp, err, sizeof(err));
	done = now_ms();
	pthread_join(th, NULL);
	server_stop(&s);
	is_int(r, -ECANCELED, "cancel during a transfer: -ECANCELED");
	ok(done - c.at < 1100, "transfer abandoned %lld ms after the cancel",
	   done - c.at);
	server_free(&s);

	/* Already cancelled: nothing is sent. */
	server_start(&s, stall, 1);
	snprintf(url, sizeof(url), "%s/", s.base);
	r = http_get(h, url, TOKEN, &resp, err, sizeof(err));
	server_stop(&s);
	is_int(r, -ECANCELED, "cancelled before the request: -ECANCELED");
	is_int(s.sh->requests, 0, "cancelled before the request: not sent");
	server_free(&s);
	http_free(h);

	t0 = now_ms();
	r = http_sleep(&hc, 5000);
	is_int(r, -ECANCELED, "http_sleep with the flag set: -ECANCELED");
	ok(now_ms() - t0 < 50, "http_sleep returns at once when cancelled");
	hc.cancel = NULL;
	t0 = now_ms();
	r = http_sleep(&hc, 60);
	is_int(r, 0, "http_sleep without cancel: 0");
	ok(now_ms() - t0 >= 60, "http_sleep slept its time");
}

/* Actions. */

static void test_action_urls(void)
{
	const char *two[] = {"a", "b c/d"};
	const char *odd[] = {"odd/id +%"};
	const char *empty[] = {"a", ""};
	const char *many[API_BULK_MAX + 1];
	struct api *a = api_for("https://q.example/", NULL, 0, NULL);
	char *u;

	for (size_t i = 0; i <= API_BULK_MAX; i++)
		many[i] = "x";
	u = api_action_url(a, "", false, odd, 1);
	is_str(u, "https://q.example/v2/workflows/dlq/odd%2Fid%20%2B%25",
	       "delete url: the id escaped into one path segment");
	free(u);
	u = api_action_url(a, "", true, two, 2);
	is_str(u,
	       "https://q.example/v2/workflows/dlq?dlqIds=a&dlqIds=b%20c%2Fd",
	       "bulk delete url: repeated dlqIds");
	free(u);
	u = api_action_url(a, "/resume", true, two, 2);
	is_str(u,
	       "https://q.example/v2/workflows/dlq/resume?dlqIds=a&dlqIds=b%20c%2Fd",
	       "bulk resume url");
	free(u);
	u = api_action_url(a, "/callback", false, two, 1);
	is_str(u, "https://q.example/v2/workflows/dlq/callback/a",
	       "callback url");
	free(u);
	ok(api_action_url(a, "", true, two, 0) == NULL, "url: no ids, no url");
	ok(api_action_url(a, "", true, NULL, 0) == NULL, "url: NULL ids");
	ok(api_action_url(a, "", true, many, API_BULK_MAX + 1) == NULL,
	   "url: 51 ids, no url");
	u = api_action_url(a, "", true, many, API_BULK_MAX);
	ok(u != NULL, "url: 50 ids is fine");
	free(u);
	ok(api_action_url(a, "", true, empty, 2) == NULL, "url: an empty id");
	ok(api_action_url(a, "", false, two, 2) == NULL,
	   "url: a single call with two ids");
	api_free(a);
}

#define R200_EMPTY "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
#define R200_JSON(body)                                                        \
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"                \
	"Connection: close\r\n\r\n" body

/* The guard: nothing reaches the server. */
static void test_action_guard(void)
{
	static const struct action any[] = {{SEND_KEEP, R200_EMPTY}};
	const char *many[API_BULK_MAX + 1];
	const char *empty[] = {"a", ""};
	const char *nul[] = {"a", NULL};
	const char *none[] = {""};
	struct http_config hc = test_http();
	struct answer_runs runs = {0};
	struct answer_run run;
	struct api_error err;
	long long deleted = 77;
	struct server s;
	struct api *a;
	char *longid = malloc(API_MAX_ID + 2);

	memset(longid, 'x', API_MAX_ID + 1);
	longid[API_MAX_ID + 1] = '\0';
	for (size_t i = 0; i <= API_BULK_MAX; i++)
		many[i] = "x";
	server_start(&s, any, 1);
	a = api_for(s.base, NULL, 0, &hc);
	is_int(api_delete_bulk(a, many, 0, &deleted, &err), -EINVAL,
	       "bulk delete of 0 ids: -EINVAL");
	ok(has(err.text, "whole DLQ"), "guard text: %s", err.text);
	is_int(deleted, 77, "guard: output untouched");
	is_int(api_delete_bulk(a, NULL, 0, &deleted, &err), -EINVAL,
	       "bulk delete of NULL ids: -EINVAL");
	is_int(api_delete_bulk(a, many, API_BULK_MAX + 1, &deleted, &err),
	       -EINVAL, "bulk delete of 51 ids: -EINVAL");
	is_int(api_resume_bulk(a, many, 0, NULL, &runs, &err), -EINVAL,
	       "bulk resume of 0 ids: -EINVAL");
	is_int(api_restart_bulk(a, many, API_BULK_MAX + 1, NULL, &runs, &err),
	       -EINVAL, "bulk restart of 51 ids: -EINVAL");
	is_int(api_resume_bulk(a, empty, 2, NULL, &runs, &err), -EINVAL,
	       "bulk resume with an empty id: -EINVAL");
	is_int(api_delete_bulk(a, nul, 2, &deleted, &err), -EINVAL,
	       "bulk delete with a NULL id: -EINVAL");
	is_int(api_delete(a, "", &err), -EINVAL, "delete of \"\": -EINVAL");
	is_int(api_delete(a, NULL, &err), -EINVAL, "delete of NULL: -EINVAL");
	is_int(api_resume(a, none[0], NULL, &run, &err), -EINVAL,
	       "resume of \"\": -EINVAL");
	is_int(api_callback(a, "", &run, &err), -EINVAL,
	       "callback of \"\": -EINVAL");
	is_int(api_delete(a, longid, &err), -EINVAL,
	       "an id over API_MAX_ID: -EINVAL");
	ok(runs.v == NULL, "guard: runs untouched");
	server_stop(&s);
	is_int(s.sh->requests, 0, "the guard sent nothing");
	server_free(&s);
	api_free(a);
	free(longid);
}

static void test_action_calls(void)
{
	static const struct action del[] = {{SEND_KEEP, R200_EMPTY}};
	static const struct action bulk_del[] = {
		{SEND_CLOSE, R200_JSON("{\"deleted\":2}")}};
	static const struct action resume[] = {
		{SEND_CLOSE,
		 R200_JSON("{\"workflowRunId\":\"wfr_new1\","
			   "\"workflowCreatedAt\":1700000000000}")}};
	static const struct action bulk_restart[] = {
		{SEND_CLOSE,
		 R200_JSON(
			 "{\"workflowRuns\":[{\"workflowRunId\":\"wfr_a\","
			 "\"workflowCreatedAt\":1},{\"workflowRunId\":\"wfr_b\"}"
			 "],\"cursor\":\"\"}")}};
	static const struct action odd_body[] = {
		{SEND_CLOSE, R200_JSON("<html>done</html>")}};
	const char *two[] = {"1-0", "2-0 x"};
	const struct api_action_options opt = {
		.retries = 3,
		.delay = "10s",
		.flow_control_key = "tenant:acme",
		.flow_control_value = "parallelism=3, rate=10, period=1m",
	};
	struct http_config hc = test_http();
	struct answer_runs runs = {0};
	struct answer_run run;
	struct api_error err;
	long long deleted = 0;
	struct server s;
	struct api *a;

	server_start(&s, del, 1);
	a = api_for(s.base, NULL, 0, &hc);
	is_int(api_delete(a, "a/b", &err), 0, "delete: 0");
	server_stop(&s);
	ok(!strncmp(s.sh->first_request,
		    "DELETE /v2/workflows/dlq/a%2Fb HTTP/1.1\r\n", 40),
	   "delete: method and path");
	ok(has(s.sh->first_request, "Authorization: Bearer " TOKEN),
	   "delete: bearer token");
	is_int(err.http_status, 200, "delete: status 200");
	server_free(&s);
	api_free(a);

	server_start(&s, bulk_del, 1);
	a = api_for(s.base, NULL, 0, &hc);
	is_int(api_delete_bulk(a, two, 2, &deleted, &err), 0, "bulk delete: 0");
	server_stop(&s);
	is_int(deleted, 2, "bulk delete: the deleted count");
	ok(!strncmp(s.sh->first_request,
		    "DELETE /v2/workflows/dlq?dlqIds=1-0&dlqIds=2-0%20x "
		    "HTTP/1.1\r\n",
		    60),
	   "bulk delete: the ids in the query");
	server_free(&s);
	api_free(a);

	server_start(&s, resume, 1);
	a = api_for(s.base, NULL, 0, &hc);
	memset(&run, 0, sizeof(run));
	is_int(api_resume(a, "1-0", &opt, &run, &err), 0, "resume: 0");
	server_stop(&s);
	text_is(run.run_id, "wfr_new1", "resume: the new workflowRunId");
	is_int(run.created_at, 1700000000000LL, "resume: workflowCreatedAt");
	ok(!strncmp(s.sh->first_request,
		    "POST /v2/workflows/dlq/resume/1-0 HTTP/1.1\r\n", 44),
	   "resume: method and path");
	ok(has(s.sh->first_request, "\r\nUpstash-Retries: 3\r\n") &&
		   has(s.sh->first_request, "\r\nUpstash-Delay: 10s\r\n") &&
		   has(s.sh->first_request,
		       "\r\nUpstash-Flow-Control-Key: tenant:acme\r\n") &&
		   has(s.sh->first_request,
		       "\r\nUpstash-Flow-Control-Value: parallelism=3, "
		       "rate=10, period=1m\r\n"),
	   "resume: the option headers");
	ok(has(s.sh->first_request, "\r\nContent-Length: 0\r\n") &&
		   !has(s.sh->first_request, "Content-Type"),
	   "resume: an empty body, no form content type");
	server_free(&s);
	api_free(a);

	server_start(&s, bulk_restart, 1);
	a = api_for(s.base, NULL, 0, &hc);
	is_int(api_restart_bulk(a, two, 2, NULL, &runs, &err), 0,
	       "bulk restart: 0");
	server_stop(&s);
	is_int(runs.n, 2, "bulk restart: two runs");
	if (runs.n == 2) {
		text_is(runs.v[0].run_id, "wfr_a", "bulk restart: first run");
		text_is(runs.v[1].run_id, "wfr_b", "bulk restart: second run");
		is_int(runs.v[1].created_at, -1, "bulk restart: absent time");
	}
	ok(!strncmp(s.sh->first_request,
		    "POST /v2/workflows/dlq/restart?dlqIds=1-0&dlqIds=2-0%20x "
		    "HTTP/1.1\r\n",
		    65),
	   "bulk restart: method, path, ids");
	ok(!has(s.sh->first_request, "Upstash-"),
	   "bulk restart: no option headers without options");
	answer_runs_release(&runs);
	server_free(&s);
	api_free(a);

	server_start(&s, resume, 1);
	a = api_for(s.base, NULL, 0, &hc);
	is_int(api_callback(a, "1-0", &run, &err), 0, "callback: 0");
	server_stop(&s);
	ok(!strncmp(s.sh->first_request,
		    "POST /v2/workflows/dlq/callback/1-0 HTTP/1.1\r\n", 46),
	   "callback: method and path");
	server_free(&s);
	api_free(a);

	/* done, but the answer is not what was expected */
	server_start(&s, odd_body, 1);
	a = api_for(s.base, NULL, 0, &hc);
	memset(&run, 'z', sizeof(run));
	is_int(api_restart(a, "1-0", NULL, &run, &err), 0,
	       "restart with an unreadable answer: still done");
	text_is(run.run_id, "", "unreadable answer: no run id");
	server_stop(&s);
	server_free(&s);
	api_free(a);
	server_start(&s, odd_body, 1);
	a = api_for(s.base, NULL, 0, &hc);
	is_int(api_delete_bulk(a, two, 2, &deleted, &err), 0,
	       "bulk delete with an unreadable answer: done");
	is_int(deleted, -1, "unreadable answer: count unknown");
	server_stop(&s);
	server_free(&s);
	api_free(a);
}

static void test_action_statuses(void)
{
	static const struct action r404[] = {
		{SEND_KEEP,
		 "HTTP/1.1 404 Not Found\r\nContent-Length: 41\r\n\r\n"
		 "{\"error\":\"dlq message not found: 1-0\"}   "}};
	static const struct action r400[] = {
		{SEND_KEEP,
		 "HTTP/1.1 400 Bad Request\r\nContent-Length: 47\r\n\r\n"
		 "{\"error\":\"failure callback is not in FAIL state\"}"}};
	static const struct action r401[] = {
		{SEND_KEEP,
		 "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"}};
	struct http_config hc = test_http();
	struct answer_run run;
	struct api_error err;
	struct server s;
	struct api *a;
	char want[512];

	server_start(&s, r404, 1);
	a = api_for(s.base, NULL, 0, &hc);
	is_int(api_delete(a, "1-0", &err), -ENOENT, "delete 404: -ENOENT");
	snprintf(want, sizeof(want),
		 "HTTP 404 from %s: dlq message not found: 1-0", s.base);
	text_is(err.text, want, "delete 404: text");
	is_int(err.http_status, 404, "delete 404: http_status");
	server_stop(&s);
	server_free(&s);
	api_free(a);

	server_start(&s, r400, 1);
	a = api_for(s.base, NULL, 0, &hc);
	memset(&run, 'q', sizeof(run));
	is_int(api_callback(a, "1-0", &run, &err), -EINVAL,
	       "callback 400: -EINVAL");
	ok(has(err.text, "not in FAIL state"), "callback 400 text: %s",
	   err.text);
	ok(run.run_id[0] == 'q', "callback 400: run untouched");
	server_stop(&s);
	server_free(&s);
	api_free(a);

	server_start(&s, r401, 1);
	a = api_for(s.base, NULL, 0, &hc);
	is_int(api_resume(a, "1-0", NULL, &run, &err), -EACCES,
	       "resume 401: -EACCES");
	no_token(err.text, "resume 401");
	server_stop(&s);
	server_free(&s);
	api_free(a);
}

/* POST is retried only when it certainly was not processed. */
static void test_action_retries(void)
{
	static const struct action five_then_ok[] = {
		{SEND_KEEP, R503_JSON},
		{SEND_KEEP, R200_EMPTY},
	};
	static const struct action limited_then_ok[] = {
		{SEND_KEEP, "HTTP/1.1 429 Too Many Requests\r\n"
			    "Content-Length: 0\r\n\r\n"},
		{SEND_CLOSE, R200_JSON("{\"workflowRunId\":\"wfr_x\"}")},
	};
	static const char cut[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
				  "\r\n{\"workflowRunId\":";
	static const struct action cuts[] = {
		{SEND_CLOSE, cut},
		{SEND_CLOSE, cut},
	};
	static const struct action nothing[] = {
		{SEND_CLOSE, ""},
		{SEND_CLOSE, ""},
	};
	static const struct action list_then_resume[] = {
		{SEND_KEEP, R200_PAGE},
		{SEND_CLOSE, R200_JSON("{\"workflowRunId\":\"wfr_y\"}")},
	};
	struct http_config hc = test_http();
	struct message_page page = {0};
	struct answer_run run;
	struct api_error err;
	struct server s;
	struct api *a;
	char url[64];
	int port, fd;

	server_start(&s, five_then_ok, 2);
	a = api_for(s.base, NULL, 0, &hc);
	is_int(api_resume(a, "1-0", NULL, &run, &err), -EIO,
	       "POST after a 503: -EIO");
	server_stop(&s);
	is_int(s.sh->requests, 1, "POST after a 503: not retried");
	is_int(err.http_status, 503, "POST after a 503: http_status");
	server_free(&s);
	api_free(a);

	server_start(&s, five_then_ok, 2);
	a = api_for(s.base, NULL, 0, &hc);
	is_int(api_delete(a, "1-0", &err), 0, "DELETE after a 503: retried");
	server_stop(&s);
	is_int(s.sh->requests, 2, "DELETE after a 503: two requests");
	server_free(&s);
	api_free(a);

	server_start(&s, limited_then_ok, 2);
	a = api_for(s.base, NULL, 0, &hc);
	is_int(api_restart(a, "1-0", NULL, &run, &err), 0,
	       "POST after a 429: retried");
	text_is(run.run_id, "wfr_x", "POST after a 429: the run");
	server_stop(&s);
	is_int(s.sh->requests, 2, "POST after a 429: two requests");
	server_free(&s);
	api_free(a);

	server_start(&s, cuts, 2);
	a = api_for(s.base, NULL, 0, &hc);
	is_int(api_resume(a, "1-0", NULL, &run, &err), -ECONNRESET,
	       "POST with a cut answer: -ECONNRESET");
	server_stop(&s);
	is_int(s.sh->requests, 1, "POST with a cut answer: not retried");
	server_free(&s);
	api_free(a);

	server_start(&s, nothing, 2);
	a = api_for(s.base, NULL, 0, &hc);
	is_int(api_callback(a, "1-0", &run, &err), -ECONNRESET,
	       "POST closed without an answer: -ECONNRESET");
	server_stop(&s);
	is_int(s.sh->requests, 1, "POST closed without an answer: not retried");
	server_free(&s);
	api_free(a);

	/* Never on a kept-alive connection (libcurl would resend it). */
	server_start(&s, list_then_resume, 2);
	a = api_for(s.base, NULL, 0, &hc);
	is_int(api_list(a, NULL, &page, &err), 0, "a list first");
	message_page_release(&page);
	is_int(api_resume(a, "1-0", NULL, &run, &err), 0, "then a resume");
	server_stop(&s);
	is_int(s.sh->connections, 2, "the POST opened its own connection");
	server_free(&s);
	api_free(a);

	/* Refused: certainly not processed, so retried. */
	fd = listen_any(&port);
	close(fd);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	a = api_for(url, NULL, 0, &hc);
	is_int(api_resume(a, "1-0", NULL, &run, &err), -ECONNREFUSED,
	       "POST refused: -ECONNREFUSED");
	ok(has(err.text, "(after 3 tries)"), "POST refused: retried (%s)",
	   err.text);
	api_free(a);
}

static void test_action_bad_headers(void)
{
	static const struct action any[] = {{SEND_KEEP, R200_EMPTY}};
	struct api_action_options crlf = {
		.retries = -1, .flow_control_value = "rate=1\r\nX-Evil: 1"};
	struct api_action_options huge = {.retries = -1};
	struct http_config hc = test_http();
	struct answer_runs runs = {0};
	struct answer_run run;
	struct api_error err;
	struct server s;
	struct api *a;
	char *big = malloc(HTTP_MAX_HEADER_LINE + 10);
	char **ids = calloc(API_BULK_MAX, sizeof(*ids));
	char *longid = malloc(API_MAX_ID + 1);

	memset(big, 'v', HTTP_MAX_HEADER_LINE + 9);
	big[HTTP_MAX_HEADER_LINE + 9] = '\0';
	huge.delay = big;
	memset(longid, '/', API_MAX_ID);
	longid[API_MAX_ID] = '\0';
	for (size_t i = 0; i < API_BULK_MAX; i++)
		ids[i] = longid;
	server_start(&s, any, 1);
	a = api_for(s.base, NULL, 0, &hc);
	is_int(api_resume(a, "1-0", &crlf, &run, &err), -EINVAL,
	       "an option with CR LF: -EINVAL");
	is_int(api_resume(a, "1-0", &huge, &run, &err), -EINVAL,
	       "an option over the header limit: -EINVAL");
	is_int(api_resume_bulk(a, (const char *const *)ids, API_BULK_MAX, NULL,
			       &runs, &err),
	       -E2BIG, "50 long ids over the URL limit: -E2BIG");
	ok(has(err.text, "not sent"), "-E2BIG text: %s", err.text);
	server_stop(&s);
	is_int(s.sh->requests, 0, "bad options and long URLs: nothing sent");
	server_free(&s);
	api_free(a);
	free(big);
	free(ids);
	free(longid);
}

int main(void)
{
	static const char *const proxies[] = {"http_proxy",  "HTTP_PROXY",
					      "https_proxy", "HTTPS_PROXY",
					      "all_proxy",   "ALL_PROXY"};

	for (size_t i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++)
		unsetenv(proxies[i]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (http_global_init() < 0) {
		printf("Bail out! curl_global_init failed\n");
		return 1;
	}
	test_escape();
	test_url_escape();
	test_list_url();
	test_range_url();
	test_loopback();
	test_retry_then_page();
	test_status_table();
	test_retries_exhausted();
	test_429_waits();
	test_rate_limits();
	test_transport_errors();
	test_refused_and_token();
	test_cancel();
	test_action_urls();
	test_action_guard();
	test_action_calls();
	test_action_statuses();
	test_action_retries();
	test_action_bad_headers();
	http_global_cleanup();
	return tap_done();
}
