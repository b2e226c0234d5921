/* config-value.c - one value of the INI file, from text to its field.
 *
 * Each key of the table (config.c) has a type, and each type its parser:
 * sizes ("64M", K/M/G = KiB/MiB/GiB), seconds as decimal numbers, whole
 * numbers, an octal file mode, one of a list of words, yes or no, the
 * upstream URL,
 * a socket path that must fit in sun_path, a plain string. The parsers
 * are strict: what strtod and strtoull would also take but nobody means
 * in a config file (spaces, signs, hex, "inf", trailing garbage) is an
 * error, and so is a value out of the key's bounds. An error says what
 * the key takes and quotes the value, unless it is the API key or looks
 * like one (cfg_key_error).
 */
#include "config-internal.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "urlshow.h"

void cfg_key_error(char *msg, size_t msglen, const struct cfg_key *k, const char *value,
                   const char *fmt, ...)
{
        size_t n = strnlen(value, CFG_SHOW_MAX + 1);
        char what[256], shown[CFG_SHOW_MAX + 8];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        if (k->type == T_SECRET)
                snprintf(msg, msglen, "[%s] %s: %s (value not shown)", k->section, k->name, what);
        else if (cfg_looks_like_key(value, n))
                snprintf(msg, msglen, "[%s] %s: %s (value not shown: it looks like an API key)",
                         k->section, k->name, what);
        else {
                char url[CFG_SHOW_MAX + 8];

                /* A URL without userinfo and query: a password or a key
                 * may be there. */
                if (k->type == T_URL && urlshow_strip(value, url, sizeof(url)) != -EINVAL) {
                        value = url;
                        n = strlen(url);
                }
                cfg_printable(value, n, shown, sizeof(shown));
                snprintf(msg, msglen, "[%s] %s: %s (got '%s')", k->section, k->name, what, shown);
        }
}

/* A whole number in decimal, then *ret_end points after its digits.
 * Refuses what strtoull would also take: leading space, '+', '-'. */
static int parse_digits(const char *s, unsigned long long *ret, const char **ret_end)
{
        unsigned long long n;
        char *end;

        if (!isdigit((unsigned char)s[0]))
                return -EINVAL;
        errno = 0;
        n = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        *ret = n;
        *ret_end = end;
        return 0;
}

static int parse_uint(const char *s, unsigned long long *ret)
{
        unsigned long long n;
        const char *end;
        int r;

        r = parse_digits(s, &n, &end);
        if (r < 0)
                return r;
        if (*end != '\0')
                return -EINVAL;
        *ret = n;
        return 0;
}

int cfg_parse_size(const char *s, size_t *ret)
{
        unsigned long long n;
        size_t mult = 1;
        const char *p;
        int r;

        if (!s || !ret)
                return -EINVAL;
        r = parse_digits(s, &n, &p);
        if (r < 0)
                return r;
        switch (*p) {
        case 'k':
        case 'K':
                mult = KIB;
                p++;
                break;
        case 'm':
        case 'M':
                mult = MIB;
                p++;
                break;
        case 'g':
        case 'G':
                mult = GIB;
                p++;
                break;
        default: break;
        }
        /* optional "B", or "iB" after a multiplier: 64M, 64MB, 64MiB */
        if (mult != 1 && (p[0] == 'i' || p[0] == 'I') && (p[1] == 'b' || p[1] == 'B'))
                p += 2;
        else if (*p == 'b' || *p == 'B')
                p++;
        if (*p != '\0')
                return -EINVAL;
        if (n > SIZE_MAX / mult)
                return -ERANGE;
        *ret = (size_t)n * mult;
        return 0;
}

/* "1K", "64M", "1G" for round values, else the byte count. */
static void fmt_size(unsigned long long v, char *out, size_t outlen)
{
        if (v >= GIB && v % GIB == 0)
                snprintf(out, outlen, "%lluG", v / GIB);
        else if (v >= MIB && v % MIB == 0)
                snprintf(out, outlen, "%lluM", v / MIB);
        else if (v >= KIB && v % KIB == 0)
                snprintf(out, outlen, "%lluK", v / KIB);
        else
                snprintf(out, outlen, "%llu", v);
}

/* Decimal seconds: digits, '.', exponent. Refuses what strtod would also
 * take but nobody means in a config file: hex, "inf", "nan", spaces. */
static int parse_double(const char *s, double *ret)
{
        const char *p;
        char *end;
        double d;

        if (!*s)
                return -EINVAL;
        for (p = s; *p; p++)
                if (!isdigit((unsigned char)*p) && !strchr(".eE+-", *p))
                        return -EINVAL;
        errno = 0;
        d = strtod(s, &end);
        if (end == s || *end != '\0' || errno == ERANGE || !isfinite(d))
                return -EINVAL;
        *ret = d;
        return 0;
}

/* The upstream URL: "stdout", or http(s):// and a host, printable and
 * without spaces. 0 or -EINVAL with msg filled. */
static int check_url(const struct cfg_key *k, const char *value, char *msg, size_t msglen)
{
        const char *host = NULL;

        if (strcmp(value, "stdout") == 0)
                host = value;
        else if (strncmp(value, "https://", 8) == 0)
                host = value + 8;
        else if (strncmp(value, "http://", 7) == 0)
                host = value + 7;
        if (!host || !*host || *host == '/') {
                cfg_key_error(msg, msglen, k, value,
                              "must be \"stdout\" or a URL starting with https:// (or http://)");
                return -EINVAL;
        }
        if (value[cfg_span_visible(value)] != '\0') {
                cfg_key_error(msg, msglen, k, value,
                              "must not contain spaces or control characters");
                return -EINVAL;
        }
        return 0;
}

/* A Unix socket path must fit in sun_path with its NUL. */
static int check_socket(const struct cfg_key *k, const char *value, char *msg, size_t msglen)
{
        struct sockaddr_un sun;

        if (strlen(value) < sizeof(sun.sun_path))
                return 0;
        cfg_key_error(msg, msglen, k, value, "socket path is longer than %zu bytes",
                      sizeof(sun.sun_path) - 1);
        return -EINVAL;
}

/* Strings: an empty value unsets the key (NULL). */
static int set_string(struct cfg *c, const struct cfg_key *k, const char *value, char *msg,
                      size_t msglen)
{
        char **p = cfg_field(c, k->off);
        char *d = NULL;
        int r = 0;

        if (k->type == T_URL && *value)
                r = check_url(k, value, msg, msglen);
        else if (k->type == T_SOCKET && *value)
                r = check_socket(k, value, msg, msglen);
        if (r < 0)
                return r;
        if (*value) {
                d = strdup(value);
                if (!d) {
                        snprintf(msg, msglen, "out of memory");
                        return -ENOMEM;
                }
        }
        /* The upstream paths are appended as "/api/...", so a trailing
         * slash in the base URL would double it. */
        if (d && k->type == T_URL) {
                size_t len = strlen(d);
                while (len > 0 && d[len - 1] == '/')
                        d[--len] = '\0';
        }
        if (k->type == T_SECRET && *p)
                explicit_bzero(*p, strlen(*p));
        cfg_free_str(p);
        *p = d;
        return 0;
}

static int set_double(struct cfg *c, const struct cfg_key *k, const char *value, char *msg,
                      size_t msglen)
{
        double d;

        if (parse_double(value, &d) < 0 || (k->dmin_open ? d <= k->dmin : d < k->dmin) ||
            d > k->dmax) {
                cfg_key_error(msg, msglen, k, value, "must be a number of seconds %s %g %s %g",
                              k->dmin_open ? "greater than" : "from", k->dmin,
                              k->dmin_open ? "and at most" : "to", k->dmax);
                return -EINVAL;
        }
        *(double *)cfg_field(c, k->off) = d;
        return 0;
}

static int set_uint(struct cfg *c, const struct cfg_key *k, const char *value, char *msg,
                    size_t msglen)
{
        unsigned long long n;

        if (parse_uint(value, &n) < 0 || n < k->umin || n > k->umax) {
                cfg_key_error(msg, msglen, k, value, "must be a whole number from %llu to %llu",
                              k->umin, k->umax);
                return -EINVAL;
        }
        *(unsigned *)cfg_field(c, k->off) = (unsigned)n;
        return 0;
}

static int set_size(struct cfg *c, const struct cfg_key *k, const char *value, char *msg,
                    size_t msglen)
{
        char lo[32], hi[32];
        size_t n;
        int r;

        r = cfg_parse_size(value, &n);
        if (r < 0 || n < k->umin || n > k->umax) {
                fmt_size(k->umin, lo, sizeof(lo));
                if (r == -EINVAL)
                        cfg_key_error(
                                msg, msglen, k, value,
                                "must be a size: a whole number with an optional K, M or G suffix");
                else if (k->umax == SIZE_MAX)
                        cfg_key_error(msg, msglen, k, value, "must be at least %s", lo);
                else {
                        fmt_size(k->umax, hi, sizeof(hi));
                        cfg_key_error(msg, msglen, k, value, "must be a size from %s to %s", lo,
                                      hi);
                }
                return -EINVAL;
        }
        *(size_t *)cfg_field(c, k->off) = n;
        return 0;
}

static int set_mode(struct cfg *c, const struct cfg_key *k, const char *value, char *msg,
                    size_t msglen)
{
        unsigned long n;
        char *end;
        size_t i;

        /* Octal digits only: strtoul would accept signs and spaces. */
        for (i = 0; value[i]; i++)
                if (value[i] < '0' || value[i] > '7')
                        break;
        if (i == 0 || value[i] != '\0' || i > 4)
                goto bad;
        errno = 0;
        n = strtoul(value, &end, 8);
        if (errno || *end != '\0' || n > k->umax)
                goto bad;
        *(mode_t *)cfg_field(c, k->off) = (mode_t)n;
        return 0;
bad:
        cfg_key_error(msg, msglen, k, value,
                      "must be an octal file mode from 0 to 0777, e.g. 0660");
        return -EINVAL;
}

/* getgrnam_r (name) or getgrgid_r (!name), on a buffer grown while it
 * is too small for the entry (up to 16 MiB). 0 with *ret_gid and/or out
 * filled, -ENOENT, or another negative errno. */
static int group_lookup(const char *name, gid_t gid, gid_t *ret_gid, char *out, size_t outlen)
{
        struct group gr, *found = NULL;
        size_t size = 4096;
        char *buf = NULL;
        int r;

        for (;;) {
                char *nbuf = realloc(buf, size);

                if (!nbuf) {
                        r = ENOMEM;
                        break;
                }
                buf = nbuf;
                r = name ? getgrnam_r(name, &gr, buf, size, &found)
                         : getgrgid_r(gid, &gr, buf, size, &found);
                if (r != ERANGE || size >= 16u << 20)
                        break;
                size *= 2;
        }
        if (r == 0 && !found)
                r = ENOENT;
        if (r == 0) {
                if (ret_gid)
                        *ret_gid = gr.gr_gid;
                if (out && outlen)
                        snprintf(out, outlen, "%s", gr.gr_name);
        }
        free(buf);
        return -r;
}

int cfg_group_gid(const char *name, gid_t *ret)
{
        return group_lookup(name, 0, ret, NULL, 0);
}

int cfg_group_name(gid_t gid, char *out, size_t outlen)
{
        return group_lookup(NULL, gid, NULL, out, outlen);
}

/* A group name, or a number; resolved now, so that --check-config
 * catches a group this host does not have. "" unsets it. */
static int set_group(struct cfg *c, const struct cfg_key *k, const char *value, char *msg,
                     size_t msglen)
{
        gid_t *ret = cfg_field(c, k->off);
        unsigned long long n;
        gid_t gid;

        if (!*value) {
                *ret = CFG_GROUP_OWN;
                return 0;
        }
        if (parse_uint(value, &n) == 0) {
                if (n >= (gid_t)-1)
                        goto bad;
                *ret = (gid_t)n;
                return 0;
        }
        if (cfg_group_gid(value, &gid) < 0)
                goto bad;
        *ret = gid;
        return 0;
bad:
        cfg_key_error(msg, msglen, k, value, "must be a group of this host, by name or number");
        return -EINVAL;
}

/* Match value against a list of words; the index is the enum value. */
static int set_word(struct cfg *c, const struct cfg_key *k, const char *value, char *msg,
                    size_t msglen, const char *const *words, const int *vals, size_t n,
                    const char *expect)
{
        size_t i;

        for (i = 0; i < n; i++)
                if (strcmp(value, words[i]) == 0) {
                        /* every enum in struct cfg has the size of int */
                        *(int *)cfg_field(c, k->off) = vals[i];
                        return 0;
                }
        cfg_key_error(msg, msglen, k, value, "must be %s", expect);
        return -EINVAL;
}

static int set_bool(struct cfg *c, const struct cfg_key *k, const char *value, char *msg,
                    size_t msglen)
{
        static const char *const yes[] = { "yes", "true", "on", "1" };
        static const char *const no[] = { "no", "false", "off", "0" };

        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
                if (strcmp(value, yes[i]) == 0 || strcmp(value, no[i]) == 0) {
                        *(bool *)cfg_field(c, k->off) = strcmp(value, yes[i]) == 0;
                        return 0;
                }
        }
        cfg_key_error(msg, msglen, k, value, "must be yes or no");
        return -EINVAL;
}

int cfg_set_value(struct cfg *c, const struct cfg_key *k, const char *value, char *msg,
                  size_t msglen)
{
        static const char *const comp_w[] = { "gzip", "none" };
        static const int comp_v[] = { CFG_COMPRESSION_GZIP, CFG_COMPRESSION_NONE };
        static const char *const full_w[] = { "drop_newest", "drop_oldest" };
        static const int full_v[] = { CFG_DROP_NEWEST, CFG_DROP_OLDEST };
        static const char *const sync_w[] = { "never", "interval", "always" };
        static const int sync_v[] = { CFG_SYNC_NEVER, CFG_SYNC_INTERVAL, CFG_SYNC_ALWAYS };
        static const char *const lvl_w[] = { "err", "warn", "info", "debug" };
        static const int lvl_v[] = { CFG_LOG_ERR, CFG_LOG_WARN, CFG_LOG_INFO, CFG_LOG_DEBUG };

        _Static_assert(sizeof(enum cfg_compression) == sizeof(int) &&
                               sizeof(enum cfg_when_full) == sizeof(int) &&
                               sizeof(enum cfg_log_level) == sizeof(int) &&
                               sizeof(enum cfg_spool_sync) == sizeof(int),
                       "set_word stores enums as int");

        switch (k->type) {
        case T_STR:
        case T_URL:
        case T_SECRET:
        case T_SOCKET: return set_string(c, k, value, msg, msglen);
        case T_DOUBLE: return set_double(c, k, value, msg, msglen);
        case T_UINT: return set_uint(c, k, value, msg, msglen);
        case T_SIZE: return set_size(c, k, value, msg, msglen);
        case T_MODE: return set_mode(c, k, value, msg, msglen);
        case T_GROUP: return set_group(c, k, value, msg, msglen);
        case T_COMPRESSION:
                return set_word(c, k, value, msg, msglen, comp_w, comp_v, 2, "gzip or none");
        case T_WHEN_FULL:
                return set_word(c, k, value, msg, msglen, full_w, full_v, 2,
                                "drop_newest or drop_oldest");
        case T_SPOOL_SYNC:
                return set_word(c, k, value, msg, msglen, sync_w, sync_v, 3,
                                "never, interval or always");
        case T_LOG_LEVEL:
                return set_word(c, k, value, msg, msglen, lvl_w, lvl_v, 4,
                                "err, warn, info or debug");
        case T_BOOL: return set_bool(c, k, value, msg, msglen);
        }
        assert(!"unknown key type");
        return -EINVAL;
}
