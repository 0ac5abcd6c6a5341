/* credentials: where the API URL and the token come from.
 *
 * Owns: the names of the QSTASH_* variables and the regions, reading a
 * token file (and refusing one others may read), the checks on the URL
 * that keep the token out of clear text, and wiping the token variables
 * from the environment once the token is read.
 * Leaves to others: the command line and what to do on an error (main),
 * what loopback is (http), using the URL and the token (api).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "credentials.h"
#include "http.h"
#include "url.h"

/* Sets @ret_err to the message of @fmt (NULL when out of memory) and
 * returns @r. */
__attribute__((format(printf, 3, 4))) static int fail(char **ret_err, int r,
						      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(ret_err, fmt, ap) < 0)
		*ret_err = NULL;
	va_end(ap);
	return r;
}

/* getenv() of @a followed by @b, or NULL when unset or empty. */
static const char *getenv_nonempty(const char *a, const char *b)
{
	char name[96];
	const char *v;

	snprintf(name, sizeof(name), "%s%s", a, b);
	v = getenv(name);
	return v && *v ? v : NULL;
}

/* The regions of QSTASH_REGION, as the Upstash SDKs know them. */
static const char *const regions[] = {"EU_CENTRAL_1", "US_EAST_1"};
#define NREGIONS (sizeof(regions) / sizeof(regions[0]))

int credentials_env(struct credentials_env *ret, char **ret_err)
{
	const char *r = getenv("QSTASH_REGION");
	struct credentials_env e;
	char region[32];
	size_t i, n;

	snprintf(e.url, sizeof(e.url), "QSTASH_URL");
	snprintf(e.token, sizeof(e.token), "QSTASH_TOKEN");
	if (!r || !*r) {
		*ret = e;
		return 0;
	}
	n = strlen(r);
	for (i = 0; i < n && i + 1 < sizeof(region); i++)
		region[i] = r[i] == '-'			 ? '_'
			    : r[i] >= 'a' && r[i] <= 'z' ? (char)(r[i] - 32)
							 : r[i];
	region[i] = '\0';
	for (i = 0; i < NREGIONS; i++)
		if (n < sizeof(region) && !strcmp(region, regions[i]))
			break;
	if (i == NREGIONS)
		return fail(ret_err, -EINVAL,
			    "QSTASH_REGION=%.64s%s is not a region: use "
			    "EU_CENTRAL_1 or US_EAST_1 (or unset it to use "
			    "QSTASH_URL and QSTASH_TOKEN)",
			    r, n > 64 ? "..." : "");
	if (getenv_nonempty(region, "_QSTASH_URL") &&
	    getenv_nonempty(region, "_QSTASH_TOKEN")) {
		snprintf(e.url, sizeof(e.url), "%s_QSTASH_URL", region);
		snprintf(e.token, sizeof(e.token), "%s_QSTASH_TOKEN", region);
		*ret = e;
		return 0;
	}
	*ret = e;
	return fail(ret_err, 1,
		    "QSTASH_REGION is %s but %s_QSTASH_URL and "
		    "%s_QSTASH_TOKEN are not both set: using QSTASH_URL and "
		    "QSTASH_TOKEN, as the Upstash SDKs do",
		    region, region, region);
}

int credentials_url(const struct credentials_env *e, const char *url,
		    bool allow_insecure_http, char **ret, char **ret_err)
{
	const char *u = url ? url : getenv(e->url);
	char *copy;
	size_t len;

	if (!u || !*u)
		u = API_DEFAULT_URL;
	if (strncmp(u, "https://", 8) && strncmp(u, "http://", 7))
		return fail(ret_err, -EINVAL,
			    "the API URL must start with https:// (got %s)", u);
	if (!strncmp(u, "http://", 7) && !url_is_loopback(u) &&
	    !allow_insecure_http)
		return fail(ret_err, -EINVAL,
			    "refusing to send the token in clear to %s: use "
			    "https://, or -o allow_insecure_http",
			    u);
	copy = strdup(u);
	if (!copy)
		return fail(ret_err, -ENOMEM, "out of memory");
	len = strlen(copy);
	while (len > 8 && copy[len - 1] == '/')
		copy[--len] = '\0';
	*ret = copy;
	return 0;
}

/* Reads the token from a file that only its owner can read. */
static int read_token_file(const char *path, char **ret, char **ret_err)
{
	char buf[CREDENTIALS_TOKEN_MAX + 1];
	struct stat st;
	ssize_t n;
	size_t len;
	char *tok;
	int r;
	/* O_NONBLOCK: a FIFO must not hang start-up before the check
	 * below refuses it */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

	if (fd < 0) {
		r = -errno;
		return fail(ret_err, r, "cannot read token file %s: %s", path,
			    strerror(-r));
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return fail(ret_err, -EINVAL,
			    "token file %s is not a regular file", path);
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		close(fd);
		return fail(ret_err, -EACCES,
			    "token file %s is accessible by group or others "
			    "(mode %04o): run chmod 600 %s",
			    path, (unsigned)(st.st_mode & 07777), path);
	}
	n = read(fd, buf, CREDENTIALS_TOKEN_MAX + 1);
	r = n < 0 ? -errno : 0;
	close(fd);
	if (n < 0)
		return fail(ret_err, r, "token file %s: %s", path,
			    strerror(-r));
	if (n > CREDENTIALS_TOKEN_MAX) {
		explicit_bzero(buf, sizeof(buf));
		return fail(ret_err, -EFBIG, "token file %s: too large", path);
	}
	len = (size_t)n;
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
		       buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';
	if (!len || memchr(buf, '\0', len) || strpbrk(buf, "\r\n")) {
		explicit_bzero(buf, sizeof(buf));
		return fail(ret_err, -EINVAL, "token file %s holds no token",
			    path);
	}
	tok = strdup(buf);
	explicit_bzero(buf, sizeof(buf));
	if (!tok)
		return fail(ret_err, -ENOMEM, "out of memory");
	*ret = tok;
	return 0;
}

/* Wipes and unsets every token variable dlqfs reads. */
static void forget_env_tokens(void)
{
	char name[64];

	for (size_t i = 0; i <= NREGIONS; i++) {
		const char *v;

		if (i < NREGIONS)
			snprintf(name, sizeof(name), "%s_QSTASH_TOKEN",
				 regions[i]);
		else
			snprintf(name, sizeof(name), "QSTASH_TOKEN");
		v = getenv(name);
		if (v)
			explicit_bzero((char *)v, strlen(v));
		unsetenv(name);
	}
}

int credentials_token(const struct credentials_env *e, const char *token_file,
		      char **ret, char **ret_err)
{
	const char *env = getenv(e->token);
	char *tok = NULL;
	int r;

	if (token_file) {
		r = read_token_file(token_file, &tok, ret_err);
		if (r < 0)
			return r;
	} else if (env && *env) {
		tok = strdup(env);
		if (!tok)
			return fail(ret_err, -ENOMEM, "out of memory");
	} else {
		return fail(ret_err, -ENOENT,
			    "no token: set %s or use -o token_file=PATH",
			    e->token);
	}
	forget_env_tokens();
	*ret = tok;
	return 0;
}
