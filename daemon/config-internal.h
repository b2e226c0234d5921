/* config-internal.h - what the files of the configuration share.
 *
 * For daemon/config.c and apikey.c (and their unit tests); no other
 * module includes it. Everyone else goes through config.h and apikey.h.
 */
#ifndef SEGOPSD_CONFIG_INTERNAL_H
#define SEGOPSD_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "config.h"

/* Whether s (n bytes) starts like an API key: sk_ or pk_. */
static inline bool cfg_looks_like_key(const char *s, size_t n)
{
        return s && n >= 3 && (memcmp(s, "sk_", 3) == 0 || memcmp(s, "pk_", 3) == 0);
}

/* The index of [section] name in the key table, or -1 if there is no
 * such key. */
int cfg_key_find(const char *section, const char *name);

/* A field of c by its offset; the key's type says what it points to. */
static inline void *cfg_field(struct cfg *c, size_t off)
{
        return (char *)c + off;
}

/* Free a string field, unless it is one of the static defaults; *p = NULL. */
void cfg_free_str(char **p);

/* How much of a bad value or name an error message quotes. */
#define CFG_SHOW_MAX 80

/* n bytes of s for an error message: at most CFG_SHOW_MAX of them, each
 * non-printable byte as '?', "..." when cut. Callers check for a key
 * (cfg_looks_like_key) first. outlen > CFG_SHOW_MAX + 3 (asserted). */
void cfg_printable(const char *s, size_t n, char *out, size_t outlen);

/* Format into a caller's err buffer, which may be NULL or empty. */
void cfg_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* "FILE:LINE", or "FILE" for line 0 (a default): where to fix a value.
 * FILE is "(defaults)" when c was not loaded from one. Returns out. */
const char *cfg_at(const struct cfg *c, unsigned line, char *out, size_t n);

#endif
