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

/* Format into a caller's err buffer, which may be NULL or empty. */
void cfg_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* "FILE:LINE", or "FILE" for line 0 (a default): where to fix a value.
 * FILE is "(defaults)" when c was not loaded from one. Returns out. */
const char *cfg_at(const struct cfg *c, unsigned line, char *out, size_t n);

#endif
