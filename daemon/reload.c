/* reload.c - SIGHUP: re-read the config and apply what can change
 * without a restart (SPEC section 6).
 *
 * All or nothing: a file that fails to load or validate, or a key that
 * cannot be read, leaves the running configuration as it was. Values
 * bound to what was set up at start (the sockets and their buffers, the
 * dry run, the connection pool, the batch slots, the spool, the kind of
 * key) keep their running value, and the log names each one that
 * changed as needing a restart. Everything else applies from the next
 * batch, request, connection or log line on; nothing queued or in flight
 * is touched. A new key (same kind) replaces the old one: for pk_ keys
 * the session token is dropped, so the next mint uses the new key.
 */
#include "reload.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apikey.h"
#include "daemon.h"
#include "log.h"
#include "urlshow.h"

static bool str_eq(const char *a, const char *b)
{
        return a == b || (a && b && strcmp(a, b) == 0);
}

static void swap_str(char **a, char **b)
{
        char *t = *a;

        *a = *b;
        *b = t;
}

/* The restart-only keys a reload found changed, logged once it took. */
struct restart_notes {
        const char *keys[16];
        unsigned n;
};

static void note(struct restart_notes *rn, const char *key)
{
        if (rn->n < sizeof(rn->keys) / sizeof(rn->keys[0]))
                rn->keys[rn->n++] = key;
}

/* A field that needs a restart: the new config takes the running value
 * back. Strings are swapped, so cfg_free of either frees each once, and
 * a second pass (restore_restart_only) swaps them back. */
#define KEEP_NUM(fresh, old, field, key)                                                           \
        do {                                                                                       \
                if ((fresh)->field != (old)->field) {                                              \
                        (fresh)->field = (old)->field;                                             \
                        note(rn, key);                                                             \
                }                                                                                  \
        } while (0)
#define KEEP_STR(fresh, old, field, key)                                                           \
        do {                                                                                       \
                if (!str_eq((fresh)->field, (old)->field)) {                                       \
                        swap_str(&(fresh)->field, &(old)->field);                                  \
                        note(rn, key);                                                             \
                }                                                                                  \
        } while (0)

static bool dry_run(const struct cfg *c)
{
        return c->api_url && strcmp(c->api_url, "stdout") == 0;
}

static void keep_restart_only(struct cfg *fresh, struct cfg *old, struct restart_notes *rn)
{
        /* A new URL or CA applies from the next request (the forwarder
         * reads both per request and keeps no CA cache); turning the dry
         * run on or off changes what was set up at start. */
        if (dry_run(fresh) != dry_run(old))
                KEEP_STR(fresh, old, api_url, "[upstream] api_url (to or from stdout)");
        KEEP_STR(fresh, old, spool_dir, "[buffer] spool_dir");
        KEEP_STR(fresh, old, events_socket, "[listen] events_socket");
        KEEP_STR(fresh, old, control_socket, "[listen] control_socket");
        KEEP_NUM(fresh, old, max_in_flight, "[upstream] max_in_flight");
        KEEP_NUM(fresh, old, max_spool, "[buffer] max_spool");
        KEEP_NUM(fresh, old, spool_sync, "[buffer] spool_sync");
        KEEP_NUM(fresh, old, spool_sync_interval, "[buffer] spool_sync_interval");
        KEEP_NUM(fresh, old, socket_mode, "[listen] socket_mode");
        KEEP_NUM(fresh, old, socket_group, "[listen] socket_group");
        KEEP_NUM(fresh, old, max_message_bytes, "[listen] max_message_bytes");
        KEEP_NUM(fresh, old, max_datagram_bytes, "[listen] max_datagram_bytes");
        KEEP_NUM(fresh, old, idle_timeout, "[listen] idle_timeout");
        KEEP_NUM(fresh, old, reply_timeout, "[listen] reply_timeout");
}

/* Undo keep_restart_only's swaps: swapping again gives the running
 * config its own strings back (a failed reload changes nothing; the
 * numbers it copied went into fresh only). */
static void restore_restart_only(struct cfg *fresh, struct cfg *old)
{
        struct restart_notes ignored = { .n = 0 };

        keep_restart_only(fresh, old, &ignored);
}

static bool same_kind(const char *a, const char *b)
{
        return (!a && !b) || (a && b && strncmp(a, b, 3) == 0);
}

int daemon_reload(struct daemon *d)
{
        struct restart_notes rn = { .n = 0 };
        struct cfg fresh, old;
        char err[1024], *key = NULL;
        bool kept = false, credential = false;
        int r;

        cfg_defaults(&fresh);
        r = cfg_load(&fresh, d->cfg.path, err, sizeof(err));
        /* What would run: the new file with the restart-only values put
         * back. That is what must validate and find its key (against
         * the running api_url). */
        if (r == 0) {
                keep_restart_only(&fresh, &d->cfg, &rn);
                kept = true;
        }
        if (r == 0)
                r = cfg_validate(&fresh, err, sizeof(err));
        if (r == 0)
                r = apikey_load_from(&fresh, &key, &credential, err, sizeof(err));
        /* No key yet, and now an sk_ key: that a reload can take (a pk_
         * key sets up a session at start). */
        if (r == 0 && !same_kind(key, d->key.secret) &&
            !(d->key.missing && key && strncmp(key, "sk_", 3) == 0)) {
                snprintf(err, sizeof(err),
                         "the key changed kind (sk_/pk_, or none); that needs a restart");
                r = -EINVAL;
        }
        if (r < 0) {
                log_err("reload failed, keeping the running configuration: %s", err);
                if (kept)
                        restore_restart_only(&fresh, &d->cfg);
                if (key)
                        explicit_bzero(key, strlen(key));
                free(key);
                cfg_free(&fresh);
                return r;
        }
        old = d->cfg;
        d->cfg = fresh; /* the same address: modules keep &d->cfg */
        if (!str_eq(old.api_url, d->cfg.api_url)) {
                char url[512];

                (void)urlshow_strip(d->cfg.api_url, url, sizeof(url));
                log_info("reload: api_url is now %s", url);
                session_forget(&d->session); /* a token is the old deployment's */
        }
        if (cfg_url_insecure(&d->cfg)) /* allowed: cfg_validate passed */
                log_warn("reload: [upstream] api_url is http:// to another host: the API key "
                         "and the events cross the network in clear text "
                         "(allow_insecure_http = yes)");
        if (!str_eq(old.ca_file, d->cfg.ca_file))
                log_info("reload: ca_file is now %s",
                         d->cfg.ca_file ? d->cfg.ca_file : "(the system's)");
        cfg_free(&old);
        if (!credential && apikey_file_warning(&d->cfg, err, sizeof(err)))
                log_warn("reload: %s", err);
        for (unsigned i = 0; i < rn.n; i++)
                log_warn("reload: %s changed; it takes effect at the next restart", rn.keys[i]);

        if (key && d->key.missing) {
                d->key.secret = key;
                key = NULL;
                d->key.missing = false;
                apikey_redact(d->key.secret, d->key.redacted, sizeof(d->key.redacted));
                d->key.gen++;
                log_info("reload: API key given, now %s: sending what is held", d->key.redacted);
                batcher_key_given(&d->batcher);
        } else if (key && !str_eq(key, d->key.secret)) {
                explicit_bzero(d->key.secret, strlen(d->key.secret));
                free(d->key.secret);
                d->key.secret = key;
                key = NULL;
                apikey_redact(d->key.secret, d->key.redacted, sizeof(d->key.redacted));
                d->key.gen++;
                log_info("reload: API key replaced, now %s", d->key.redacted);
                session_key_changed(&d->session); /* a no-op for sk_ keys */
        } else if (d->key.missing) {
                apikey_missing_hint(&d->cfg, credential, err, sizeof(err));
                log_warn("reload: %s", err);
        }
        if (key) {
                explicit_bzero(key, strlen(key));
                if (credential)
                        log_info("reload: the API key is the systemd credential api_key, "
                                 "which systemd copies only when segopsd starts: to rotate "
                                 "it, replace its source file and restart segopsd");
        }
        free(key);

        log_set_level(d->cfg.log_level);
        log_set_rate(d->cfg.log_rate);
        batcher_reconfigure(&d->batcher);
        log_info("reloaded %s", d->cfg.path);
        return 0;
}
