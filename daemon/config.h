/* config.h - segopsd's configuration: defaults, the INI file.
 *
 * SPEC section 6. Every bound the daemon enforces is a named value here,
 * with a default, so an operator can see and change it. The API key is
 * found and checked by apikey.h.
 */
#ifndef SEGOPSD_CONFIG_H
#define SEGOPSD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The build's sysconfdir (meson: /etc for --prefix=/usr, /usr/local/etc
 * for the default prefix), where the installed config, the key and the
 * unit's LoadCredential live. */
#ifndef SEGOPS_SYSCONFDIR
#define SEGOPS_SYSCONFDIR "/etc"
#endif
#define CFG_DEFAULT_PATH SEGOPS_SYSCONFDIR "/segopsd/segopsd.conf"
#define CFG_DEFAULT_KEY_PATH SEGOPS_SYSCONFDIR "/segopsd/api_key"

enum cfg_compression { CFG_COMPRESSION_NONE, CFG_COMPRESSION_GZIP };
enum cfg_when_full { CFG_DROP_NEWEST, CFG_DROP_OLDEST };
enum cfg_spool_sync { CFG_SYNC_NEVER, CFG_SYNC_INTERVAL, CFG_SYNC_ALWAYS };
enum cfg_log_level { CFG_LOG_ERR, CFG_LOG_WARN, CFG_LOG_INFO, CFG_LOG_DEBUG };

/* socket_group unset: the sockets keep the daemon's own group. */
#define CFG_GROUP_OWN ((gid_t)-1)
#define CFG_MAX_KEYS 64 /* more than config.c's table has */

struct cfg {
        char *path;                      /* the file it was read from, NULL for defaults only */
        unsigned key_line[CFG_MAX_KEYS]; /* per key of the table: its line, 0 if unset */

        /* [upstream] */
        char *api_url;              /* "stdout" = dry run */
        char *api_key_file;         /* may be NULL */
        char *api_key;              /* inline key (discouraged), may be NULL */
        char *user_context_command; /* may be NULL */
        char *ca_file;              /* may be NULL */
        bool allow_insecure_http;   /* http:// to a host not loopback, default no */
        double timeout;             /* seconds per request, > 0 */
        enum cfg_compression compression;
        unsigned max_in_flight;         /* 1..64 */
        double stop_timeout;            /* seconds, >= 0 */
        double backoff_initial;         /* seconds, default 0.5 */
        double backoff_max;             /* seconds, default 60 */
        double retry_after_max;         /* seconds, default 300 */
        double user_context_timeout;    /* seconds the command may run, default 5 */
        size_t user_context_max_output; /* bytes of its stdout, default 64K */
        /* Seconds from one mint's start to the next that reset_session or
         * set_user may cause; 0 = no limit, default 1. */
        double session_reset_min_interval;

        /* [batch] */
        unsigned batch_size;    /* 1..500, default 20 */
        double flush_interval;  /* seconds, > 0, default 5.0 */
        size_t max_batch_bytes; /* 1 KiB..1 MiB, default 1 MiB */

        /* [buffer] */
        size_t max_memory;              /* bytes, default 64M */
        char *spool_dir;                /* NULL = memory only */
        size_t max_spool;               /* bytes, default 1G */
        enum cfg_spool_sync spool_sync; /* when written records reach the disk itself */
        double spool_sync_interval;     /* seconds, for spool_sync = interval, default 1 */
        enum cfg_when_full when_full;

        /* [listen] */
        char *events_socket;
        char *control_socket;
        mode_t socket_mode;               /* octal in the file, default 0660 */
        size_t max_message_bytes;         /* 1 KiB..1 MiB, default 64 KiB */
        unsigned max_connections;         /* stream connections, default 256 */
        unsigned max_connections_per_uid; /* of them one uid's, 0 = no cap,
                                             default 192 */
        unsigned reserved_connections;    /* of max_connections, only for root
                                             and our euid, default 16 */
        size_t max_reply_bytes;           /* unread replies at which reading
                                             pauses, default 64K */
        double reply_timeout;             /* seconds replies may make no progress
                                             before disconnect, 0 = never,
                                             default 30 */
        double idle_timeout;              /* seconds since the last complete line,
                                             0 = never, default 300 */
        double stop_grace;                /* seconds clients get to read their last
                                             replies at the end of a stop, default 1 */
        size_t max_datagram_bytes;        /* one datagram, all its messages;
                                       0 (default) = cfg_datagram_bytes() */
        unsigned dgram_burst;             /* datagrams read per wakeup, default 256 */
        unsigned read_burst_lines;        /* datagram lines handled per wakeup,
                                             default 4096 */
        size_t read_burst_bytes;          /* and their bytes, default 1M */

        /* The sockets' group: CFG_GROUP_OWN (default) = the daemon's. */
        gid_t socket_group;
        /* The largest count one client_dropped report adds, default 1e9. */
        unsigned max_client_dropped_report;

        /* [log] */
        enum cfg_log_level log_level; /* err|warn|info|debug, default info */
        unsigned log_rate;            /* messages per key per 10 s, default 10 */
        double status_interval;       /* seconds between STATUS= updates, default 5 */
};

/* The datagram bound in force: max_datagram_bytes when set, else 256K
 * or room for one max_message_bytes message and its newline. */
static inline size_t cfg_datagram_bytes(const struct cfg *c)
{
        size_t one = c->max_message_bytes + 1;

        if (c->max_datagram_bytes)
                return c->max_datagram_bytes;
        return one > 256 * 1024 ? one : 256 * 1024;
}

/* Fill c with the defaults of SPEC section 6. Never fails. */
void cfg_defaults(struct cfg *c);

/* Read path over the defaults in c. Unknown sections or keys, bad values
 * and duplicate keys are errors. Returns 0, or a negative errno with a
 * message naming file, line and key in err (never a key's value). */
int cfg_load(struct cfg *c, const char *path, char *err, size_t errlen);
/* The line of the last file loaded that set [section] name; 0 if none. */
unsigned cfg_key_line(const struct cfg *c, const char *section, const char *name);

/* Check values that depend on each other (e.g. max_memory at least
 * max_batch_bytes). 0 or -EINVAL with err filled. */
int cfg_validate(const struct cfg *c, char *err, size_t errlen);

/* Whether api_url is http:// to a host other than this machine's
 * loopback (localhost, 127.0.0.0/8, [::1]): the key would cross a
 * network in clear text. cfg_validate refuses it unless
 * allow_insecure_http; the caller warns when it is allowed. */
bool cfg_url_insecure(const struct cfg *c);

/* Group lookups that work for a group of any size: the senders' group
 * (segops) gains a member per sending user, and its /etc/group line
 * outgrows any fixed getgr*_r buffer (ERANGE), which must not read as
 * "no such group". cfg_group_gid: 0 with *ret set, -ENOENT, or another
 * negative errno. cfg_group_name: 0 with out filled, -ENOENT, or another
 * negative errno. */
int cfg_group_gid(const char *name, gid_t *ret);
int cfg_group_name(gid_t gid, char *out, size_t outlen);

/* Parse "64M"-style sizes (K/M/G = KiB/MiB/GiB, optional B suffix). */
int cfg_parse_size(const char *s, size_t *ret);

void cfg_free(struct cfg *c); /* frees the strings; NULL ok */

#endif
