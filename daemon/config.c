/* config.c - segopsd's configuration: the key table, the defaults, and
 * the checks between keys.
 *
 * SPEC section 6 names the keys; the table below gives each its section,
 * its place in struct cfg, its type and its bounds, and the rest works
 * from it: config-file.c reads the INI file and looks keys up here,
 * config-value.c parses and bounds-checks one value, apikey.c finds the
 * API key. This file also holds what all of them use to write an error:
 * "FILE:LINE" of a key, and quoting that shows a bad value or name only
 * in printable form (callers leave out anything that looks like an API
 * key: error text ends up in the journal). cfg_validate checks values
 * against each other and names the line of the one set later, where a
 * fix belongs.
 */
#include "config-internal.h"
#include "proto.h"
#include "urlshow.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The default socket paths are static so that cfg_defaults cannot fail;
 * cfg_free knows not to free them. Nothing writes through these. */
static char cfg_dflt_events_socket[] = "/run/segopsd/events.sock";
static char cfg_dflt_control_socket[] = "/run/segopsd/segopsd.sock";

#define F(field) offsetof(struct cfg, field)
#define KSTR(sec, name, type)                                                                      \
        {                                                                                          \
                sec, #name, type, F(name), 0, 0, false, 0, 0                                       \
        }
#define KDBL(sec, name, field, lo, open, hi)                                                       \
        {                                                                                          \
                sec, name, T_DOUBLE, F(field), lo, hi, open, 0, 0                                  \
        }
#define KUNS(sec, name, field, type, lo, hi)                                                       \
        {                                                                                          \
                sec, name, type, F(field), 0, 0, false, lo, hi                                     \
        }

const struct cfg_key cfg_keys[] = {
        KSTR("upstream", api_url, T_URL),
        KSTR("upstream", api_key_file, T_STR),
        KSTR("upstream", api_key, T_SECRET),
        KSTR("upstream", user_context_command, T_STR),
        KSTR("upstream", ca_file, T_STR),
        KUNS("upstream", "allow_insecure_http", allow_insecure_http, T_BOOL, 0, 0),
        KDBL("upstream", "timeout", timeout, 0, true, 3600),
        KUNS("upstream", "compression", compression, T_COMPRESSION, 0, 0),
        KUNS("upstream", "max_in_flight", max_in_flight, T_UINT, 1, 64),
        KDBL("upstream", "stop_timeout", stop_timeout, 0, false, 3600),
        KDBL("upstream", "backoff_initial", backoff_initial, 0, true, 3600),
        KDBL("upstream", "backoff_max", backoff_max, 0, true, 86400),
        KDBL("upstream", "retry_after_max", retry_after_max, 0, false, 86400),
        KDBL("upstream", "user_context_timeout", user_context_timeout, 0, true, 300),
        KUNS("upstream", "user_context_max_output", user_context_max_output, T_SIZE, 256, MIB),
        KDBL("upstream", "session_reset_min_interval", session_reset_min_interval, 0, false, 3600),

        KUNS("batch", "batch_size", batch_size, T_UINT, 1, 500),
        KDBL("batch", "flush_interval", flush_interval, 0, true, 3600),
        KUNS("batch", "max_batch_bytes", max_batch_bytes, T_SIZE, KIB, MIB),

        KUNS("buffer", "max_memory", max_memory, T_SIZE, MIB, SIZE_MAX),
        KSTR("buffer", spool_dir, T_STR),
        KUNS("buffer", "max_spool", max_spool, T_SIZE, MIB, SIZE_MAX),
        KUNS("buffer", "when_full", when_full, T_WHEN_FULL, 0, 0),
        KUNS("buffer", "spool_sync", spool_sync, T_SPOOL_SYNC, 0, 0),
        KDBL("buffer", "spool_sync_interval", spool_sync_interval, 0, true, 3600),

        KSTR("listen", events_socket, T_SOCKET),
        KSTR("listen", control_socket, T_SOCKET),
        KUNS("listen", "socket_mode", socket_mode, T_MODE, 0, 0777),
        KUNS("listen", "socket_group", socket_group, T_GROUP, 0, 0),
        KUNS("listen", "max_client_dropped_report", max_client_dropped_report, T_UINT, 1, UINT_MAX),
        KUNS("listen", "max_message_bytes", max_message_bytes, T_SIZE, KIB, MIB),
        KUNS("listen", "max_connections", max_connections, T_UINT, 1, 65536),
        KUNS("listen", "max_connections_per_uid", max_connections_per_uid, T_UINT, 0, 65536),
        KUNS("listen", "reserved_connections", reserved_connections, T_UINT, 0, 65535),
        KUNS("listen", "max_reply_bytes", max_reply_bytes, T_SIZE, KIB, GIB),
        KDBL("listen", "reply_timeout", reply_timeout, 0, false, 7 * 86400),
        KDBL("listen", "idle_timeout", idle_timeout, 0, false, 7 * 86400),
        KDBL("listen", "stop_grace", stop_grace, 0, false, 60),
        /* Never below what libshim packs into one datagram. */
        KUNS("listen", "max_datagram_bytes", max_datagram_bytes, T_SIZE, PROTO_DATAGRAM_MIN,
             4 * MIB),
        KUNS("listen", "dgram_burst", dgram_burst, T_UINT, 1, 4096),
        KUNS("listen", "read_burst_lines", read_burst_lines, T_UINT, 16, 1048576),
        KUNS("listen", "read_burst_bytes", read_burst_bytes, T_SIZE, 64 * KIB, 64 * MIB),

        KUNS("log", "level", log_level, T_LOG_LEVEL, 0, 0),
        KUNS("log", "rate", log_rate, T_UINT, 0, 1000000),
        KDBL("log", "status_interval", status_interval, 0, false, 3600),
};

#define CFG_NKEYS (sizeof(cfg_keys) / sizeof(cfg_keys[0]))
_Static_assert(CFG_NKEYS <= CFG_MAX_KEYS, "raise CFG_MAX_KEYS");

static const char *const cfg_sections[] = {
        "upstream", "batch", "buffer", "listen", "log",
};

/* Every heap string in struct cfg, for copying and freeing. */
static const size_t cfg_str_fields[] = {
        F(path),    F(api_url),   F(api_key_file),  F(api_key),        F(user_context_command),
        F(ca_file), F(spool_dir), F(events_socket), F(control_socket),
};

void cfg_free_str(char **p)
{
        if (*p != cfg_dflt_events_socket && *p != cfg_dflt_control_socket)
                free(*p);
        *p = NULL;
}

void cfg_defaults(struct cfg *c)
{
        assert(c);
        memset(c, 0, sizeof(*c));
        c->timeout = 10;
        c->compression = CFG_COMPRESSION_GZIP;
        c->max_in_flight = 4;
        c->stop_timeout = 30;
        c->backoff_initial = 0.5;
        c->backoff_max = 60;
        c->retry_after_max = 300;
        c->user_context_timeout = 5;
        c->user_context_max_output = 64 * KIB;
        c->session_reset_min_interval = 1;

        c->batch_size = 20;
        c->flush_interval = 5.0;
        c->max_batch_bytes = MIB;

        c->max_memory = 64 * MIB;
        c->max_spool = GIB;
        c->spool_sync = CFG_SYNC_INTERVAL;
        c->spool_sync_interval = 1;
        c->when_full = CFG_DROP_NEWEST;

        c->events_socket = cfg_dflt_events_socket;
        c->control_socket = cfg_dflt_control_socket;
        c->socket_mode = 0660;
        c->socket_group = CFG_GROUP_OWN;
        /* A report counts the drops since the sender's last one: ~17
         * minutes of a process losing 1M events/s. More is a lie. */
        c->max_client_dropped_report = 1000000000;
        c->max_message_bytes = 64 * KIB;
        c->max_connections = 256;
        /* Three quarters of max_connections: one runaway user cannot
         * take them all, yet a service of many processes under one uid
         * (workers flushing at shutdown) is rarely turned away. */
        c->max_connections_per_uid = 192;
        /* Of max_connections, kept for root and segopsd's own uid, so
         * that segopsctl works whoever else holds the rest. */
        c->reserved_connections = 16;
        /* Reading pauses here; the kernel's socket buffer holds about
         * 200K more. 256 connections hold 16M of replies at most. */
        c->max_reply_bytes = 64 * KIB;
        c->reply_timeout = 30;
        c->idle_timeout = 300;
        c->stop_grace = 1;
        c->max_datagram_bytes = 0; /* auto: see cfg_datagram_bytes() */
        c->dgram_burst = 256;
        c->read_burst_lines = 4096;
        c->read_burst_bytes = MIB;

        c->log_level = CFG_LOG_INFO;
        c->log_rate = 10;
        c->status_interval = 5;
}

void cfg_free(struct cfg *c)
{
        size_t i;

        if (!c)
                return;
        if (c->api_key)
                explicit_bzero(c->api_key, strlen(c->api_key));
        for (i = 0; i < sizeof(cfg_str_fields) / sizeof(cfg_str_fields[0]); i++)
                cfg_free_str(cfg_field(c, cfg_str_fields[i]));
}

int cfg_copy(struct cfg *dst, const struct cfg *src)
{
        size_t i;

        *dst = *src;
        for (i = 0; i < sizeof(cfg_str_fields) / sizeof(cfg_str_fields[0]); i++)
                *(char **)cfg_field(dst, cfg_str_fields[i]) = NULL;
        for (i = 0; i < sizeof(cfg_str_fields) / sizeof(cfg_str_fields[0]); i++) {
                const char *s = *(char **)cfg_field((struct cfg *)src, cfg_str_fields[i]);
                char *d;

                if (!s)
                        continue;
                d = strdup(s);
                if (!d) {
                        cfg_free(dst);
                        return -ENOMEM;
                }
                *(char **)cfg_field(dst, cfg_str_fields[i]) = d;
        }
        return 0;
}

bool cfg_known_section(const char *name, size_t len)
{
        size_t i;

        for (i = 0; i < sizeof(cfg_sections) / sizeof(cfg_sections[0]); i++)
                if (strlen(cfg_sections[i]) == len && memcmp(cfg_sections[i], name, len) == 0)
                        return true;
        return false;
}

/* The line a key (a struct cfg offset) was set on; 0 for a default. */
static unsigned line_of(const struct cfg *c, size_t off)
{
        for (size_t i = 0; i < CFG_NKEYS; i++)
                if (cfg_keys[i].off == off)
                        return c->key_line[i];
        return 0;
}

int cfg_key_find(const char *section, const char *name)
{
        for (size_t i = 0; i < CFG_NKEYS; i++)
                if (strcmp(cfg_keys[i].section, section) == 0 &&
                    strcmp(cfg_keys[i].name, name) == 0)
                        return (int)i;
        return -1;
}

unsigned cfg_key_line(const struct cfg *c, const char *section, const char *name)
{
        int i = cfg_key_find(section, name);

        return i < 0 ? 0 : c->key_line[i];
}

/* ---- error text, shared by the configuration's files ---- */

void cfg_errf(char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;

        if (!err || errlen == 0)
                return;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
}

void cfg_printable(const char *s, size_t n, char *out, size_t outlen)
{
        size_t i, k = 0;

        assert(outlen > CFG_SHOW_MAX + 3);
        for (i = 0; i < n && i < CFG_SHOW_MAX; i++) {
                unsigned char ch = (unsigned char)s[i];
                out[k++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
        }
        if (i < n) {
                memcpy(out + k, "...", 3);
                k += 3;
        }
        out[k] = '\0';
}

const char *cfg_at(const struct cfg *c, unsigned line, char *out, size_t n)
{
        const char *path = c->path ? c->path : "(defaults)";

        if (line)
                snprintf(out, n, "%s:%u", path, line);
        else
                snprintf(out, n, "%s", path);
        return out;
}

/* Report two keys in conflict: "FILE:LINE: " and the text, where LINE is
 * that of the key set later, where the fix is best made. -EINVAL. */
__attribute__((format(printf, 6, 7))) static int conflict(const struct cfg *c, size_t off_a,
                                                          size_t off_b, char *err, size_t errlen,
                                                          const char *fmt, ...)
{
        unsigned a = line_of(c, off_a), b = line_of(c, off_b);
        char at[PATH_MAX + 16];
        va_list ap;
        int n;

        if (!err || errlen == 0)
                return -EINVAL;
        n = snprintf(err, errlen, "%s: ", cfg_at(c, a > b ? a : b, at, sizeof(at)));
        if (n >= 0 && (size_t)n < errlen) {
                va_start(ap, fmt);
                vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

/* Whether host (len bytes of a URL's authority) names this machine's
 * loopback: localhost, 127.0.0.0/8 in dotted quads, [::1] (or [::ffff:
 * 127.x.y.z]). Other spellings of them (127.1, a name that resolves
 * there) are not recognised: refused, never wrongly allowed. */
static bool loopback_host(const char *host, size_t len)
{
        char buf[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;
        struct in_addr a4;

        if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
                if (len - 2 >= sizeof(buf))
                        return false;
                memcpy(buf, host + 1, len - 2);
                buf[len - 2] = '\0';
                if (inet_pton(AF_INET6, buf, &a6) != 1)
                        return false;
                return IN6_IS_ADDR_LOOPBACK(&a6) ||
                       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
        }
        if ((len == 9 || len == 10) && strncasecmp(host, "localhost.", len) == 0)
                return true;
        if (len >= sizeof(buf))
                return false;
        memcpy(buf, host, len);
        buf[len] = '\0';
        return inet_pton(AF_INET, buf, &a4) == 1 && ((const unsigned char *)&a4.s_addr)[0] == 127;
}

/* The host of an http:// URL, after any user info and before any port,
 * in *host and *len. The authority ends at / ? # (where curl ends it).
 * With a backslash in it (where a WHATWG parser would end it, and curl
 * does not: "127.0.0.1\@evil" is evil's) or more than one '@' the
 * whole authority is the "host", which is no loopback: parsers disagree
 * on where the host is. */
static void url_host(const char *url, const char **host, size_t *len)
{
        size_t alen;
        const char *a = urlshow_authority(url, &alen), *at, *h, *stop;

        at = memchr(a, '@', alen);
        if (memchr(a, '\\', alen) || (at && memchr(at + 1, '@', alen - (size_t)(at + 1 - a)))) {
                *host = a;
                *len = alen;
                return;
        }
        h = at ? at + 1 : a;
        *host = h;
        *len = alen - (size_t)(h - a);
        /* [v6]:port, or name:port */
        stop = memchr(h, *h == '[' ? ']' : ':', *len);
        if (stop)
                *len = (size_t)(stop - h) + (*h == '[');
}

bool cfg_url_insecure(const struct cfg *c)
{
        const char *host;
        size_t len;

        if (!c->api_url || strncmp(c->api_url, "http://", 7) != 0)
                return false;
        url_host(c->api_url, &host, &len);
        return !loopback_host(host, len);
}

int cfg_validate(const struct cfg *c, char *err, size_t errlen)
{
        const char *p;

        if (!c) {
                cfg_errf(err, errlen, "cfg_validate: no config");
                return -EINVAL;
        }
        p = c->path ? c->path : "(defaults)";
        if (!c->api_url) {
                cfg_errf(err, errlen,
                         "%s: [upstream] api_url is not set "
                         "(an https:// URL, or \"stdout\" for a dry run)",
                         p);
                return -EINVAL;
        }
        if (cfg_url_insecure(c) && !c->allow_insecure_http) {
                char at[PATH_MAX + 16], shown[CFG_SHOW_MAX + 8];
                const char *host;
                size_t len;

                url_host(c->api_url, &host, &len);
                /* An ambiguous authority is shown whole, but never what
                 * comes before an '@': a password may hold one. */
                for (size_t i = len; i > 0; i--)
                        if (host[i - 1] == '@') {
                                host += i;
                                len -= i;
                                break;
                        }
                cfg_printable(host, len, shown, sizeof(shown));
                cfg_errf(err, errlen,
                         "%s: [upstream] api_url: http:// to '%s', which is not this machine, "
                         "would send the API key and the events in clear text; use https://, "
                         "or set [upstream] allow_insecure_http = yes if every network on the "
                         "way is trusted (http:// to localhost, 127.0.0.0/8 or [::1] needs "
                         "nothing)",
                         cfg_at(c, line_of(c, F(api_url)), at, sizeof(at)),
                         cfg_looks_like_key(host, len) ? "(hidden)" : shown);
                return -EINVAL;
        }
        if (!c->events_socket || !c->control_socket) {
                cfg_errf(err, errlen, "%s: [listen] %s is not set", p,
                         c->events_socket ? "control_socket" : "events_socket");
                return -EINVAL;
        }
        if (strcmp(c->events_socket, c->control_socket) == 0)
                return conflict(c, F(events_socket), F(control_socket), err, errlen,
                                "[listen] events_socket and control_socket must differ "
                                "(both are '%s')",
                                c->events_socket);
        /* One batch being sent plus one being filled must fit. */
        if (c->max_memory / 2 < c->max_batch_bytes)
                return conflict(c, F(max_memory), F(max_batch_bytes), err, errlen,
                                "[buffer] max_memory must be at least twice [batch] "
                                "max_batch_bytes (got %zu and %zu)",
                                c->max_memory, c->max_batch_bytes);
        /* A message bigger than a batch could never be sent. */
        if (c->max_message_bytes > c->max_batch_bytes)
                return conflict(c, F(max_message_bytes), F(max_batch_bytes), err, errlen,
                                "[listen] max_message_bytes must not exceed [batch] "
                                "max_batch_bytes (got %zu and %zu)",
                                c->max_message_bytes, c->max_batch_bytes);
        if (c->max_datagram_bytes && c->max_datagram_bytes <= c->max_message_bytes)
                return conflict(c, F(max_datagram_bytes), F(max_message_bytes), err, errlen,
                                "[listen] max_datagram_bytes must be larger than "
                                "max_message_bytes (got %zu and %zu)",
                                c->max_datagram_bytes, c->max_message_bytes);
        /* Someone other than root and segopsd's user must get in. */
        if (c->reserved_connections >= c->max_connections)
                return conflict(c, F(reserved_connections), F(max_connections), err, errlen,
                                "[listen] reserved_connections must be less than "
                                "max_connections (got %u and %u)",
                                c->reserved_connections, c->max_connections);
        if (c->spool_dir && c->max_spool < c->max_batch_bytes)
                return conflict(c, F(max_spool), F(max_batch_bytes), err, errlen,
                                "[buffer] max_spool must be at least [batch] "
                                "max_batch_bytes (got %zu and %zu)",
                                c->max_spool, c->max_batch_bytes);
        if (c->backoff_initial > c->backoff_max)
                return conflict(c, F(backoff_initial), F(backoff_max), err, errlen,
                                "[upstream] backoff_initial must not exceed backoff_max "
                                "(got %g and %g)",
                                c->backoff_initial, c->backoff_max);
        return 0;
}
