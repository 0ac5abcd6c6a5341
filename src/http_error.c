/* http_error: what a failed transfer means, for http.c: the one CURLcode
 * -> errno table (and whether the failure is worth another try), and the
 * one-line text that says it in words, naming the server but never the
 * URL's path or userinfo.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "http_internal.h"
#include "url.h"

enum retryable { NO_RETRY, RETRY };

/* The one CURLcode -> errno table. Codes not listed give -EIO. */
static const struct {
	CURLcode code;
	int err;
	enum retryable retry;
} http_errors[] = {
	{CURLE_COULDNT_CONNECT, -ECONNREFUSED, RETRY},
	{CURLE_COULDNT_RESOLVE_HOST, -EHOSTUNREACH, RETRY},
	{CURLE_COULDNT_RESOLVE_PROXY, -EHOSTUNREACH, RETRY},
	{CURLE_OPERATION_TIMEDOUT, -ETIMEDOUT, RETRY},
	{CURLE_RECV_ERROR, -ECONNRESET, RETRY},
	{CURLE_SEND_ERROR, -ECONNRESET, RETRY},
	{CURLE_PARTIAL_FILE, -ECONNRESET, RETRY},
	{CURLE_GOT_NOTHING, -ECONNRESET, RETRY},
	/* A reset HTTP/2 stream is a cut connection, not a bad protocol. */
	{CURLE_HTTP2_STREAM, -ECONNRESET, RETRY},
	/* WRITE_ERROR: -EFBIG or -ENOMEM from the write callback's flags. */
	{CURLE_WRITE_ERROR, -EIO, NO_RETRY},
	{CURLE_FILESIZE_EXCEEDED, -EFBIG, NO_RETRY},
	/* ABORTED_BY_CALLBACK: only the cancel flag aborts. */
	{CURLE_ABORTED_BY_CALLBACK, -ECANCELED, NO_RETRY},
	{CURLE_SSL_CONNECT_ERROR, -EPROTO, NO_RETRY},
	{CURLE_PEER_FAILED_VERIFICATION, -EPROTO, NO_RETRY},
	{CURLE_SSL_ENGINE_NOTFOUND, -EPROTO, NO_RETRY},
	{CURLE_SSL_ENGINE_SETFAILED, -EPROTO, NO_RETRY},
	{CURLE_SSL_CERTPROBLEM, -EPROTO, NO_RETRY},
	{CURLE_SSL_CIPHER, -EPROTO, NO_RETRY},
	{CURLE_SSL_ENGINE_INITFAILED, -EPROTO, NO_RETRY},
	{CURLE_SSL_CACERT_BADFILE, -EPROTO, NO_RETRY},
	{CURLE_SSL_SHUTDOWN_FAILED, -EPROTO, NO_RETRY},
	{CURLE_SSL_CRL_BADFILE, -EPROTO, NO_RETRY},
	{CURLE_SSL_ISSUER_ERROR, -EPROTO, NO_RETRY},
	{CURLE_SSL_PINNEDPUBKEYNOTMATCH, -EPROTO, NO_RETRY},
	{CURLE_SSL_INVALIDCERTSTATUS, -EPROTO, NO_RETRY},
	{CURLE_SSL_CLIENTCERT, -EPROTO, NO_RETRY},
	{CURLE_USE_SSL_FAILED, -EPROTO, NO_RETRY},
	{CURLE_HTTP2, -EPROTO, NO_RETRY},
	{CURLE_WEIRD_SERVER_REPLY, -EPROTO, NO_RETRY},
	{CURLE_UNSUPPORTED_PROTOCOL, -EINVAL, NO_RETRY},
	{CURLE_URL_MALFORMAT, -EINVAL, NO_RETRY},
	{CURLE_OUT_OF_MEMORY, -ENOMEM, NO_RETRY},
};

int http_error_errno(const struct http *h, CURLcode rc, bool *ret_retry)
{
	long oserr = 0;

	*ret_retry = false;
	if (rc == CURLE_ABORTED_BY_CALLBACK && h->stalled) {
		*ret_retry = true; /* a stall: like a timeout */
		return -ETIMEDOUT;
	}
	if (rc == CURLE_WRITE_ERROR && h->over_limit)
		return -EFBIG;
	if (rc == CURLE_WRITE_ERROR && h->oom)
		return -ENOMEM;
	if (rc == CURLE_COULDNT_CONNECT &&
	    curl_easy_getinfo(h->curl, CURLINFO_OS_ERRNO, &oserr) == CURLE_OK &&
	    (oserr == EHOSTUNREACH || oserr == ENETUNREACH)) {
		*ret_retry = true;
		return -EHOSTUNREACH;
	}
	for (size_t i = 0; i < sizeof(http_errors) / sizeof(http_errors[0]);
	     i++) {
		if (http_errors[i].code == rc) {
			*ret_retry = http_errors[i].retry == RETRY;
			return http_errors[i].err;
		}
	}
	return -EIO;
}

/* "120 s" or "1500 ms". */
static void fmt_duration(char *buf, size_t len, long ms)
{
	if (ms % 1000 == 0)
		snprintf(buf, len, "%ld s", ms / 1000);
	else
		snprintf(buf, len, "%ld ms", ms);
}

/* curl's own message, printable ASCII only, for the codes we don't
 * describe ourselves. */
static void curl_words(const struct http *h, CURLcode rc, char *buf, size_t len)
{
	const char *s = h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc);
	size_t j = 0;

	for (; *s && j + 1 < len; s++)
		if ((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f)
			buf[j++] = *s;
	while (j > 0 && buf[j - 1] == ' ')
		j--;
	buf[j] = '\0';
}

void http_error_describe(const struct http *h, CURLcode rc, int r,
			 const struct url_origin *o, int64_t elapsed_ms,
			 char *err, size_t errlen)
{
	char what[256], limit[32];
	long oserr = 0;
	curl_off_t sent_us = 0;

	switch (r) {
	case -ECONNREFUSED:
		snprintf(err, errlen, "connection refused by %s", o->hostport);
		break;
	case -EHOSTUNREACH:
		if (rc == CURLE_COULDNT_RESOLVE_HOST)
			snprintf(err, errlen, "could not resolve host %s",
				 o->host);
		else if (rc == CURLE_COULDNT_RESOLVE_PROXY)
			snprintf(err, errlen,
				 "could not resolve the proxy for %s", o->text);
		else {
			curl_easy_getinfo(h->curl, CURLINFO_OS_ERRNO, &oserr);
			snprintf(err, errlen, "could not reach %s: %s",
				 o->hostport, strerror((int)oserr));
		}
		break;
	case -ETIMEDOUT:
		/* Pre-transfer time is 0 until the request could be sent, on
		 * new and reused connections alike (connect time stays 0 on
		 * a reused one). */
		curl_easy_getinfo(h->curl, CURLINFO_PRETRANSFER_TIME_T,
				  &sent_us);
		if (sent_us == 0) {
			long lim = h->cfg.connect_timeout_ms;

			if (h->cfg.total_timeout_ms > 0 &&
			    (lim <= 0 || h->cfg.total_timeout_ms < lim))
				lim = h->cfg.total_timeout_ms;
			fmt_duration(limit, sizeof(limit), lim);
			snprintf(err, errlen,
				 "timed out after %s connecting to %s", limit,
				 o->hostport);
		} else if (h->cfg.total_timeout_ms > 0 &&
			   elapsed_ms + 100 >= h->cfg.total_timeout_ms) {
			fmt_duration(limit, sizeof(limit),
				     h->cfg.total_timeout_ms);
			snprintf(err, errlen,
				 "timed out after %s waiting for %s", limit,
				 o->text);
		} else {
			snprintf(err, errlen, "no data from %s for %ld s",
				 o->text, h->cfg.stall_timeout_s);
		}
		break;
	case -ECONNRESET:
		if (rc == CURLE_PARTIAL_FILE)
			snprintf(err, errlen,
				 "the response from %s was cut short", o->text);
		else if (rc == CURLE_GOT_NOTHING)
			snprintf(err, errlen,
				 "%s closed the connection without answering",
				 o->text);
		else
			snprintf(err, errlen, "the connection to %s was cut",
				 o->text);
		break;
	case -EFBIG:
		snprintf(
			err, errlen,
			"the response from %s is larger than the limit of %zu bytes",
			o->text, h->cfg.max_response_bytes);
		break;
	case -ECANCELED:
		snprintf(err, errlen, "the request to %s was cancelled",
			 o->text);
		break;
	case -ENOMEM:
		snprintf(err, errlen, "out of memory talking to %s", o->text);
		break;
	case -EPROTO:
		curl_words(h, rc, what, sizeof(what));
		snprintf(err, errlen, "TLS or protocol failure with %s: %s",
			 o->text, what);
		break;
	default:
		curl_words(h, rc, what, sizeof(what));
		snprintf(err, errlen, "the request to %s failed: %s", o->text,
			 what);
		break;
	}
}
