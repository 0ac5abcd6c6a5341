/* credentials: where the API URL and the token come from.
 *
 * The environment as the Upstash SDKs read it (QSTASH_URL, QSTASH_TOKEN,
 * and QSTASH_REGION choosing a region's pair), a token file only its
 * owner can read (never the command line), and the rule that the token
 * never goes in clear to another host.
 *
 * Each function returns 0 or a negative errno; on failure it says why in
 * one line in @ret_err (a new string, or NULL when even that could not be
 * allocated), for "dlqfs: <why>". Outputs are untouched on failure.
 */
#ifndef DLQFS_CREDENTIALS_H
#define DLQFS_CREDENTIALS_H

#include <stdbool.h>

#define CREDENTIALS_TOKEN_MAX 4096 /* bytes of a token file read */

/* The environment variables that hold the URL and the token. */
struct credentials_env {
	char url[64], token[64];
};

/* QSTASH_REGION (EU_CENTRAL_1 or US_EAST_1; "us-east-1" too, as
 * qstash-js normalizes it) selects <REGION>_QSTASH_URL and
 * <REGION>_QSTASH_TOKEN; when they are not both set, the SDKs fall back
 * to QSTASH_URL and QSTASH_TOKEN, and so does dlqfs. Returns 0, or 1
 * when it fell back: then @ret_err is a note to show (not an error).
 * -EINVAL for an unknown region. */
int credentials_env(struct credentials_env *ret, char **ret_err);

/* The API base URL: @url (-o url=) when set, else the one in the
 * environment, else API_DEFAULT_URL; trailing slashes dropped. Refused
 * (-EINVAL): anything but https:// and http://, and http:// to a host
 * that is not loopback unless @allow_insecure_http. Returns 0 and a new
 * string in @ret, or -EINVAL, -ENOMEM. */
int credentials_url(const struct credentials_env *e, const char *url,
		    bool allow_insecure_http, char **ret, char **ret_err);

/* The token: read from @token_file when it is not NULL (a regular file
 * of at most CREDENTIALS_TOKEN_MAX bytes, not a symlink, that neither
 * group nor others may access; trailing blanks and newlines dropped),
 * else from the environment. Then every token variable dlqfs reads is
 * wiped and unset, so that no child process, nor /proc/PID/environ,
 * keeps one. Returns 0 and a new string in @ret (wipe it before freeing
 * it); -ENOENT when no token is set; for the file, -EACCES when others
 * may access it, -EINVAL when it is not a regular file or holds no
 * token, -EFBIG when it is too large, or the errno of open(2) or
 * read(2); -ENOMEM. */
int credentials_token(const struct credentials_env *e, const char *token_file,
		      char **ret, char **ret_err);

#endif
