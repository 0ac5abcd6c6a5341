/* names: turning values (labels, URLs, ids, ...) into file names.
 *
 * The rules are the contract of DESIGN.md section 1:
 *  - every byte is kept as it is, except '%', '/', bytes below 0x20 and 0x7F,
 *    which become "%XX" (uppercase hex);
 *  - the whole names "." and ".." become "%2E" and "%2E%2E";
 *  - an escaped name longer than NAMES_MAX bytes keeps the first
 *    NAMES_KEEP bytes of its escaped form (never splitting a "%XX" nor a
 *    UTF-8 sequence) and ends in '~' plus 16 lowercase hex digits of
 *    names_hash64() of the whole (unescaped) value.
 * An empty value has no name.
 */
#ifndef DLQFS_NAMES_H
#define DLQFS_NAMES_H

#include <stddef.h>
#include <stdint.h>

#define NAMES_MAX 255  /* longest name we ever produce (NAME_MAX) */
#define NAMES_KEEP 200 /* bytes of escaped prefix kept in a shortened name */

/* Escapes @value (@len bytes, may hold any byte, NUL included) into @ret,
 * which must hold NAMES_MAX + 1 bytes; @ret is NUL-terminated.
 * Returns the name's length (1..NAMES_MAX), or -EINVAL for an empty value
 * (nothing is written then). */
int names_escape(const char *value, size_t len, char ret[NAMES_MAX + 1]);

/* A name for @value that differs from names_escape()'s: always the
 * shortened form (escaped prefix of at most NAMES_KEEP bytes, '~', 16 hex
 * digits), with @salt (>= 1) mixed into the hash. Used only when two
 * different values would get the same name (a crafted value that looks
 * like a shortened name, or a hash collision), to keep names unique. Same
 * returns as names_escape(). */
int names_escape_salted(const char *value, size_t len, uint32_t salt,
			char ret[NAMES_MAX + 1]);

/* A 64-bit hash with good avalanche (FNV-1a folded through the splitmix64
 * finalizer). Stable across versions: names and inode numbers depend on
 * it, so changing it changes every long name and inode. Precisely:
 *   fnv(h, data, len):  for each byte b: h ^= b; h *= 0x100000001b3;
 *   mix(x):             x ^= x >> 30; x *= 0xbf58476d1ce4e5b9;
 *                       x ^= x >> 27; x *= 0x94d049bb133111eb; x ^= x >> 31;
 *   names_hash64(d, l)         = mix(fnv(NAMES_HASH_SEED, d, l))
 *   names_hash64_more(h, d, l) = mix(fnv(h, d, l))
 * e.g. names_hash64("", 0) = 0xf52a15e9a9b5e89b (mix of the seed). */
uint64_t names_hash64(const void *data, size_t len);

/* Same, continuing from a previous value (an *output* of either function,
 * taken as the FNV state): names_hash64_more(names_hash64(a), b) hashes a
 * then b. It chains, it does not concatenate: the result differs from
 * names_hash64() of a and b joined. names_hash64_more(NAMES_HASH_SEED, d,
 * l) == names_hash64(d, l). */
#define NAMES_HASH_SEED 0xcbf29ce484222325ULL
uint64_t names_hash64_more(uint64_t h, const void *data, size_t len);

#endif
