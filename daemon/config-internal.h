/* config-internal.h - what the files of the configuration share: the key
 * table, setting one value, and the helpers that write error text.
 *
 * For daemon/config.c (the table, defaults, validation), config-file.c
 * (reading the INI file), config-value.c (parsing one value), apikey.c
 * (finding the key), and their unit tests; no other module includes it.
 * Everyone else goes through config.h and apikey.h.
 */
#ifndef SEGOPSD_CONFIG_INTERNAL_H
#define SEGOPSD_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "config.h"

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

/* How much of a bad value or name an error message quotes. */
#define CFG_SHOW_MAX 80

enum cfg_type {
        T_STR,    /* any string; empty = NULL */
        T_URL,    /* api_url */
        T_SECRET, /* api_key: stored, checked by apikey_load, never shown */
        T_SOCKET, /* a Unix socket path: must fit in sun_path */
        T_DOUBLE, /* seconds */
        T_UINT,   /* unsigned */
        T_SIZE,   /* size_t, "64M" style */
        T_MODE,   /* octal file mode */
        T_GROUP,  /* a group name or number, resolved to a gid */
        T_COMPRESSION,
        T_WHEN_FULL,
        T_SPOOL_SYNC,
        T_LOG_LEVEL,
        T_BOOL, /* yes/no, true/false, on/off, 1/0 */
};

/* One key of the file: where it lives in struct cfg and what it takes. */
struct cfg_key {
        const char *section;
        const char *name;
        enum cfg_type type;
        size_t off; /* offsetof(struct cfg, ...) */
        /* bounds: doubles use dmin/dmax (dmin_open: value must be > dmin);
         * unsigned and sizes use umin/umax */
        double dmin, dmax;
        bool dmin_open;
        unsigned long long umin, umax;
};

/* The table (config.c); c->key_line[i] is the line of cfg_keys[i]. */
extern const struct cfg_key cfg_keys[];

/* The index of [section] name in cfg_keys, or -1 if there is no such key. */
int cfg_key_find(const char *section, const char *name);
/* Whether [name] (len bytes, not NUL-terminated) is a known section. */
bool cfg_known_section(const char *name, size_t len);

/* A field of c by its offset; the key's type says what it points to. */
static inline void *cfg_field(struct cfg *c, size_t off)
{
        return (char *)c + off;
}

/* Deep copy, so cfg_load can work on a scratch struct: dst gets its own
 * strings. 0, or -ENOMEM with nothing left to free in dst. */
int cfg_copy(struct cfg *dst, const struct cfg *src);
/* Free a string field, unless it is one of the static defaults; *p = NULL. */
void cfg_free_str(char **p);

/* Set key k of c from the text of its value (config-value.c). Returns 0;
 * -EINVAL with msg "[section] key: what it takes (got 'value')" (see
 * cfg_key_error); or -ENOMEM with msg "out of memory". c is unchanged
 * on failure. */
int cfg_set_value(struct cfg *c, const struct cfg_key *k, const char *value, char *msg,
                  size_t msglen);

/* "[section] key: WHAT (got 'value')" into msg; the value is left out
 * for the secret and for anything that looks like a key. */
void cfg_key_error(char *msg, size_t msglen, const struct cfg_key *k, const char *value,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Whether s (n bytes) starts like an API key: sk_ or pk_. */
static inline bool cfg_looks_like_key(const char *s, size_t n)
{
        return s && n >= 3 && (memcmp(s, "sk_", 3) == 0 || memcmp(s, "pk_", 3) == 0);
}

/* The length of the run of visible ASCII (no space, no control
 * character, nothing above 0x7e) at the start of s. */
static inline size_t cfg_span_visible(const char *s)
{
        size_t i = 0;

        while ((unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f)
                i++;
        return i;
}

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
