/* sha256: SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104).
 *
 * For the cache's file name: a keyed hash of the API URL and the scope
 * under the token, so that the name says nothing of the token and a
 * different token never finds another's cache. Not for speed: the cache's
 * checksum is cache.c's own.
 */
#ifndef DLQFS_SHA256_H
#define DLQFS_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

struct sha256 {
	uint32_t h[8];
	uint64_t len;	       /* bytes hashed so far */
	unsigned char buf[64]; /* a partial block */
};

void sha256_init(struct sha256 *c);
void sha256_add(struct sha256 *c, const void *data, size_t n);
/* Writes the digest to @ret; @c must be initialized again to be reused. */
void sha256_done(struct sha256 *c, unsigned char ret[SHA256_LEN]);

/* HMAC-SHA256 of @msg under @key. */
void sha256_hmac(const void *key, size_t keylen, const void *msg, size_t n,
		 unsigned char ret[SHA256_LEN]);

#endif
