/* cmd-op.c - segopsctl's ops: ping, stats, flush, set-user, reset-session.
 *
 * Each sends one op line on the control socket and reads its one reply
 * (client.c). stats prints whatever the daemon returns as an indented
 * table, so new counters show up without a segopsctl change. With
 * --json each prints the daemon's reply object instead (stats: the line
 * untouched), an ok:false one included.
 */
#include "ctl.h"
#include "proto.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATS_MAX_DEPTH 8 /* deeper objects print as compact JSON */

/* Run one op and judge its reply. Returns CTL_EXIT_OK for ok:true, or
 * CTL_EXIT_FAIL for ok:false after printing "segopsctl: WHAT failed:
 * <error>: <detail>"; in both cases *ret_reply (and *ret_raw, when asked
 * for) hold the reply, for the caller to show or add to, and to free.
 * Any other exit code: no reply (NULL), its reason printed. */
static int run_op(const struct ctl_opts *o, const char *line, int timeout_ms, const char *what,
                  json_t **ret_reply, char **ret_raw)
{
        char prefix[64];
        int r;

        r = ctl_simple_op(o, line, timeout_ms, ret_reply, ret_raw);
        if (r != CTL_EXIT_OK)
                return ctl_json_error(o, r);
        if (json_is_true(json_object_get(*ret_reply, "ok")))
                return r;
        snprintf(prefix, sizeof(prefix), "segopsctl: %s failed: ", what);
        ctl_print_reply_error(prefix, *ret_reply);
        if (o->json)
                (void)ctl_print_json(*ret_reply);
        return CTL_EXIT_FAIL;
}

/* ---- ping ---- */

static void ping_usage(FILE *f)
{
        fprintf(f, "Usage: segopsctl ping [--json]\n"
                   "       segopsctl ping --health [--max-failing SECONDS]\n\n"
                   "Check that segopsd is running and answering: prints\n"
                   "\"segopsd VERSION is running\" and exits 0, or explains and exits 3/4\n"
                   "(1 when it is running but turned the connection away, e.g. with\n"
                   "too_many_connections). It says nothing about the upstream: --health\n"
                   "does, as segopsctl health (see segopsctl help health).\n");
}

int cmd_ping(struct ctl_opts *o, int argc, char **argv)
{
        static const struct ctl_cmdline cl = { .name = "ping", .usage = ping_usage };
        json_t *reply = NULL;
        const char *version;
        int r;

        for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
                if (strcmp(argv[i], "--health") == 0)
                        return ctl_health_run(o, argc, argv, "ping");
        r = ctl_parse_args(o, argc, argv, &cl, NULL, NULL);
        if (r >= 0)
                return r;
        r = run_op(o, "{\"op\":\"ping\"}\n", o->timeout_ms, "ping", &reply, NULL);
        if (r == CTL_EXIT_OK && o->json) {
                r = ctl_print_json(reply);
        } else if (r == CTL_EXIT_OK) {
                version = json_string_value(json_object_get(reply, "version"));
                printf("segopsd %s is running\n", version ? version : "(unknown version)");
        }
        json_decref(reply);
        return r;
}

/* ---- stats ---- */

static void stats_usage(FILE *f)
{
        fprintf(f, "Usage: segopsctl stats [--json]\n\n"
                   "Show segopsd's counters (totals since it started) as a table:\n"
                   "received, accepted, rejected and dropped by reason, the queue, the\n"
                   "upstream's state, the pk_ session. --json prints the daemon's reply\n"
                   "line as it is, for scripts.\n");
}

static void print_value(json_t *v)
{
        char *s;

        switch (json_typeof(v)) {
        case JSON_STRING: fputs(json_string_value(v), stdout); break;
        case JSON_INTEGER: printf("%" JSON_INTEGER_FORMAT, json_integer_value(v)); break;
        case JSON_REAL: printf("%.3f", json_real_value(v)); break;
        case JSON_TRUE: fputs("yes", stdout); break;
        case JSON_FALSE: fputs("no", stdout); break;
        case JSON_NULL: fputs("-", stdout); break;
        default:
                s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                fputs(s ? s : "?", stdout);
                free(s);
        }
}

static void print_table(json_t *obj, int depth)
{
        const char *key;
        json_t *v;
        int width = 0;

        json_object_foreach(obj, key, v)
        {
                int n = (int)strlen(key);

                if (depth == 0 && strcmp(key, "ok") == 0)
                        continue;
                if (n > width && n <= 40)
                        width = n;
        }
        json_object_foreach(obj, key, v)
        {
                if (depth == 0 && strcmp(key, "ok") == 0)
                        continue;
                if (json_is_object(v) && depth < STATS_MAX_DEPTH) {
                        printf("%*s%s:%s\n", depth * 2, "", key,
                               json_object_size(v) ? "" : " (none)");
                        print_table(v, depth + 1);
                        continue;
                }
                printf("%*s%-*s  ", depth * 2, "", width, key);
                print_value(v);
                fputc('\n', stdout);
        }
}

int cmd_stats(struct ctl_opts *o, int argc, char **argv)
{
        static const struct ctl_cmdline cl = { .name = "stats", .usage = stats_usage };
        json_t *reply = NULL;
        char *raw = NULL;
        int r;

        r = ctl_parse_args(o, argc, argv, &cl, NULL, NULL);
        if (r >= 0)
                return r;
        r = run_op(o, "{\"op\":\"stats\"}\n", o->timeout_ms, "stats", &reply, &raw);
        if (r == CTL_EXIT_OK) {
                if (o->json)
                        printf("%s\n", raw);
                else
                        print_table(reply, 0);
                r = fflush(stdout) == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
        }
        json_decref(reply);
        free(raw);
        return r;
}

/* ---- flush ---- */

static void flush_usage(FILE *f)
{
        fprintf(f, "Usage: segopsctl flush [--timeout SECONDS]\n\n"
                   "Wait until every event segopsd holds now has been accepted upstream\n"
                   "(default timeout 30 s). Prints \"flushed N events\" and exits 0, or the\n"
                   "error and the number of events still pending and exits 1.\n");
}

int cmd_flush(struct ctl_opts *o, int argc, char **argv)
{
        static const struct ctl_cmdline cl = { .name = "flush", .usage = flush_usage };
        json_t *reply = NULL, *pending;
        char line[64];
        int timeout_ms, r;

        r = ctl_parse_args(o, argc, argv, &cl, NULL, NULL);
        if (r >= 0)
                return r;
        /* Here --timeout is the flush's own deadline; the reply may take
         * that long, plus a grace period for the answer to arrive. */
        timeout_ms = o->timeout_set ? o->timeout_ms : PROTO_FLUSH_TIMEOUT_MS;
        snprintf(line, sizeof(line), "{\"op\":\"flush\",\"timeout_ms\":%d}\n", timeout_ms);
        r = run_op(o, line, timeout_ms + CTL_FLUSH_GRACE_MS, "flush", &reply, NULL);
        if (r == CTL_EXIT_OK && o->json) {
                r = ctl_print_json(reply);
        } else if (r == CTL_EXIT_OK) {
                printf("flushed %" JSON_INTEGER_FORMAT " events\n",
                       json_integer_value(json_object_get(reply, "flushed")));
        } else if (reply) {
                pending = json_object_get(reply, "pending");
                if (json_is_integer(pending))
                        fprintf(stderr,
                                "segopsctl: %" JSON_INTEGER_FORMAT " events still pending\n",
                                json_integer_value(pending));
        }
        json_decref(reply);
        return r;
}

/* ---- set-user, reset-session ---- */

static void set_user_usage(FILE *f)
{
        fprintf(f, "Usage: segopsctl set-user USER [--sig HEX]\n\n"
                   "Set the identity segopsd uses for the next pk_ session mint (the\n"
                   "set_user op). HEX is the user_id_sig your backend computed (see\n"
                   "segopsctl sign-user-id); give it when the key requires signed ids.\n");
}

int cmd_set_user(struct ctl_opts *o, int argc, char **argv)
{
        static const struct option opts[] = {
                CTL_GLOBAL_LONGOPTS,
                { "sig", required_argument, NULL, 's' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        static const struct ctl_cmdline cl = {
                .name = "set-user",
                .usage = set_user_usage,
                .opts = opts,
                .option = ctl_option_value, /* --sig */
                .operand = "USER",
        };
        struct proto_buf b = { 0 };
        const char *sig = NULL, *user = NULL;
        json_t *reply = NULL;
        int r;

        r = ctl_parse_args(o, argc, argv, &cl, &sig, &user);
        if (r >= 0)
                return r;

        r = proto_buf_append_str(&b, "{\"op\":\"set_user\",\"user_id\":");
        if (r == 0)
                r = proto_json_escape(&b, user, strlen(user));
        if (r == 0 && sig) {
                r = proto_buf_append_str(&b, ",\"user_id_sig\":");
                if (r == 0)
                        r = proto_json_escape(&b, sig, strlen(sig));
        }
        if (r == 0)
                r = proto_buf_append(&b, "}\n", 3); /* with the NUL: a C string */
        if (r < 0) {
                fprintf(stderr, "segopsctl: %s\n", strerror(-r));
                r = CTL_EXIT_FAIL;
                goto out;
        }
        r = run_op(o, b.data, o->timeout_ms, "set-user", &reply, NULL);
        if (r == CTL_EXIT_OK && o->json)
                r = ctl_print_json(reply);
        json_decref(reply);
out:
        proto_buf_free(&b);
        return r;
}

static void reset_session_usage(FILE *f)
{
        fprintf(f, "Usage: segopsctl reset-session\n\n"
                   "Ask segopsd for a new pk_ session token: the next send mints one with the\n"
                   "current identity (at most one mint per session_reset_min_interval; the\n"
                   "token at hand stays in use meanwhile unless set-user named another\n"
                   "identity). A no-op with sk_ keys.\n");
}

int cmd_reset_session(struct ctl_opts *o, int argc, char **argv)
{
        static const struct ctl_cmdline cl = {
                .name = "reset-session",
                .usage = reset_session_usage,
        };
        json_t *reply = NULL;
        int r;

        r = ctl_parse_args(o, argc, argv, &cl, NULL, NULL);
        if (r >= 0)
                return r;
        r = run_op(o, "{\"op\":\"reset_session\"}\n", o->timeout_ms, "reset-session", &reply, NULL);
        if (r == CTL_EXIT_OK && o->json)
                r = ctl_print_json(reply);
        json_decref(reply);
        return r;
}
