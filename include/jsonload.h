/* jsonload: the one way dlqfs loads JSON text with jansson.
 *
 * Included by the modules that read JSON values (message, answer): they
 * include <jansson.h> through it.
 */
#ifndef DLQFS_JSONLOAD_H
#define DLQFS_JSONLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Loads the @len bytes at @buf (NULL: none) into a new tree in
 * @ret_root: a JSON object or array, a NUL escaped in a string allowed,
 * the last value of a repeated key kept. jansson refuses integers beyond
 * 64 bits; rather than losing the whole text to one such number, such
 * text is loaded again with every number as a real, and @ret_lossy says
 * so (jsonload_restore() puts the numbers back). Only one load is done
 * per text otherwise: jansson 2.14 cannot be trusted when an allocation
 * fails inside its lexer (see test_message.c). Returns 0, -ENOMEM, or
 * -EPROTO (not JSON text jansson takes); outputs untouched on failure. */
int jsonload(const char *buf, size_t len, json_t **ret_root, bool *ret_lossy);

/* Puts back the numbers of @root, which jsonload() loaded from the @len
 * bytes at @buf with every number as a real: each becomes what jansson
 * makes of it alone, an integer when it fits in 64 bits, else a real.
 * The integers that do not fit are counted in *@ret_lost. Returns 0,
 * -EPROTO (@buf is not the text of @root) or -ENOMEM (@root may then hold
 * some numbers put back, and others not). */
int jsonload_restore(json_t *root, const char *buf, size_t len,
		     uint32_t *ret_lost);

#endif
