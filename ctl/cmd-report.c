/* cmd-report.c - segopsctl status, health and metrics (issue 12).
 *
 * status and health ask for the stats op and judge its reply in
 * segopsctl (status.c, health.c), so thresholds are the caller's and an
 * older segopsd still gets an answer from the fields it has. metrics
 * asks for the metrics op and prints its Prometheus text as it is.
 */
#include "ctl.h"
#include "report.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_MAX_FAILING = 0x200, OPT_HEALTH };

struct report_args {
        double max_failing_s;
};

static int report_option(int c, const char *arg, void *state)
{
        struct report_args *a = state;
        char *end;

        switch (c) {
        case OPT_HEALTH: return 0; /* ping --health: already taken */
        case OPT_MAX_FAILING:
                errno = 0;
                a->max_failing_s = strtod(arg, &end);
                if (errno != 0 || end == arg || *end != '\0' || !isfinite(a->max_failing_s) ||
                    a->max_failing_s < 0 || a->max_failing_s > 31536000)
                        return ctl_usage_error("health",
                                               "--max-failing: '%s' is not a number of seconds "
                                               "between 0 and 31536000",
                                               arg);
                return 0;
        default: return CTL_EXIT_USAGE;
        }
}

/* The stats reply, or an exit code (3, 4, 1) after its message. */
static int get_stats(const struct ctl_opts *o, json_t **ret_stats)
{
        int r = ctl_simple_op(o, "{\"op\":\"stats\"}\n", o->timeout_ms, ret_stats, NULL);

        if (r == CTL_EXIT_OK && !json_is_true(json_object_get(*ret_stats, "ok"))) {
                ctl_print_reply_error("segopsctl: stats failed: ", *ret_stats);
                json_decref(*ret_stats);
                *ret_stats = NULL;
                return CTL_EXIT_FAIL;
        }
        return r;
}

/* ---- status ---- */

static void status_usage(FILE *f)
{
        fprintf(f, "Usage: segopsctl status [--json]\n\n"
                   "One screen on segopsd: version and uptime; the upstream's URL, state and\n"
                   "for how long (delivering, retrying, paused by Retry-After, auth or TLS\n"
                   "failing, dry run), its last answer; events/s in and out over 10 s and\n"
                   "1 min; what is held in memory and on disk and the oldest held event's\n"
                   "age; drops and rejections by reason (the non-zero ones); the spool; the\n"
                   "pk_ session; clients that reported drops; and the health verdict of\n"
                   "segopsctl health (default threshold). --json prints the same data as one\n"
                   "JSON object. Exits 0 whatever the health (see segopsctl health), or\n"
                   "3/4 when segopsd cannot be asked.\n");
}

int cmd_status(struct ctl_opts *o, int argc, char **argv)
{
        static const struct ctl_cmdline cl = { .name = "status", .usage = status_usage };
        json_t *stats = NULL, *status = NULL;
        int r;

        r = ctl_parse_args(o, argc, argv, &cl, NULL, NULL);
        if (r >= 0)
                return r;
        r = get_stats(o, &stats);
        if (r != CTL_EXIT_OK)
                return ctl_json_error(o, r);
        status = ctl_status_json(stats);
        if (!status) {
                fprintf(stderr, "segopsctl: %s\n", strerror(ENOMEM));
                r = CTL_EXIT_FAIL;
        } else if (o->json) {
                json_object_set_new(status, "ok", json_true());
                r = ctl_print_json(status);
        } else {
                r = ctl_status_print(status, stdout) == 0 && fflush(stdout) == 0 ? CTL_EXIT_OK
                                                                                 : CTL_EXIT_FAIL;
        }
        json_decref(status);
        json_decref(stats);
        return r;
}

/* ---- health ---- */

static void health_usage(FILE *f)
{
        fprintf(f, "Usage: segopsctl health [--max-failing SECONDS] [--json]\n"
                   "       segopsctl ping --health [--max-failing SECONDS] [--json]\n\n"
                   "Judge whether segopsd is delivering, for a container HEALTHCHECK or a\n"
                   "monitoring script. Prints one line saying why, and exits:\n"
                   "  0  healthy: delivering, idle or dry run, or failing for less than\n"
                   "     --max-failing SECONDS (default 60)\n"
                   "  3  cannot connect to segopsd\n"
                   "  4  no valid reply in time (see --timeout)\n"
                   "  5  the upstream has been failing longer than that (retrying,\n"
                   "     throttled, send_error)\n"
                   "  6  the operator must act: the API key is refused (auth_error), TLS\n"
                   "     fails (tls_error), api_url redirects, segopsd has no key yet\n"
                   "     (no_key: an empty key file), or the upstream refuses to mint a\n"
                   "     pk_ session (HTTP 400/401/403)\n"
                   "  7  events were dropped in the last minute\n"
                   "  8  the spool is in trouble (memory only after an error)\n"
                   "When several apply, the most severe wins: 6, then 8, 7, 5.\n"
                   "--json prints {\"healthy\":BOOL,\"code\":N,\"reason\":\"...\"} instead.\n\n"
                   "  HEALTHCHECK --interval=30s CMD segopsctl health --max-failing 120\n");
}

/* health's answer when segopsd could not be asked: the exit code, and
 * with --json the same verdict object. */
static int health_unreachable(const struct ctl_opts *o, int code)
{
        json_t *j;

        if (!o->json)
                return code;
        j = json_pack("{s:b s:i s:s}", "healthy", 0, "code", code, "reason",
                      code == CTL_EXIT_CONNECT ? "cannot connect to segopsd"
                                               : "no valid reply from segopsd");
        (void)ctl_print_json(j);
        json_decref(j);
        return code;
}

int ctl_health_run(struct ctl_opts *o, int argc, char **argv, const char *name)
{
        static const struct option opts[] = {
                CTL_GLOBAL_LONGOPTS,
                { "max-failing", required_argument, NULL, OPT_MAX_FAILING },
                { "health", no_argument, NULL, OPT_HEALTH },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        const struct ctl_cmdline cl = {
                .name = name,
                .usage = health_usage,
                .opts = opts,
                .option = report_option,
        };
        struct report_args a = { .max_failing_s = CTL_HEALTH_DEFAULT_MAX_FAILING };
        struct ctl_health h;
        json_t *stats = NULL, *j;
        int r;

        r = ctl_parse_args(o, argc, argv, &cl, &a, NULL);
        if (r >= 0)
                return r;
        r = get_stats(o, &stats);
        if (r != CTL_EXIT_OK)
                return health_unreachable(o, r);
        ctl_health_judge(stats, a.max_failing_s, &h);
        json_decref(stats);
        if (o->json) {
                j = json_pack("{s:b s:i s:s}", "healthy", h.code == 0, "code", h.code, "reason",
                              h.reason);
                r = ctl_print_json(j);
                json_decref(j);
                if (r != CTL_EXIT_OK)
                        return r;
        } else {
                printf("%s\n", h.reason);
                if (fflush(stdout) != 0)
                        return CTL_EXIT_FAIL;
        }
        return h.code;
}

int cmd_health(struct ctl_opts *o, int argc, char **argv)
{
        return ctl_health_run(o, argc, argv, "health");
}

/* ---- metrics ---- */

static void metrics_usage(FILE *f)
{
        fprintf(f, "Usage: segopsctl metrics [--json]\n\n"
                   "Print every counter and gauge of segopsd in the Prometheus text\n"
                   "exposition format (the metrics op), e.g. for node_exporter's textfile\n"
                   "collector:\n\n"
                   "  segopsctl metrics > /var/lib/node_exporter/segopsd.prom.$$ &&\n"
                   "    mv /var/lib/node_exporter/segopsd.prom.$$ "
                   "/var/lib/node_exporter/segopsd.prom\n\n"
                   "--json prints the daemon's reply line as it is.\n");
}

int cmd_metrics(struct ctl_opts *o, int argc, char **argv)
{
        static const struct ctl_cmdline cl = { .name = "metrics", .usage = metrics_usage };
        json_t *reply = NULL;
        const char *text, *error;
        char *raw = NULL;
        int r;

        r = ctl_parse_args(o, argc, argv, &cl, NULL, NULL);
        if (r >= 0)
                return r;
        r = ctl_simple_op(o, "{\"op\":\"metrics\"}\n", o->timeout_ms, &reply, &raw);
        if (r != CTL_EXIT_OK)
                return ctl_json_error(o, r);
        text = json_string_value(json_object_get(reply, "text"));
        if (!json_is_true(json_object_get(reply, "ok"))) {
                ctl_print_reply_error("segopsctl: metrics failed: ", reply);
                error = json_string_value(json_object_get(reply, "error"));
                if (error && strcmp(error, "unknown_op") == 0)
                        fprintf(stderr, "segopsctl: this segopsd is too old to have the "
                                        "metrics op\n");
                if (o->json)
                        printf("%s\n", raw);
                r = CTL_EXIT_FAIL;
        } else if (o->json) {
                printf("%s\n", raw);
        } else if (!text) {
                fprintf(stderr, "segopsctl: %s: segopsd's metrics reply has no text\n",
                        o->control_path);
                r = CTL_EXIT_PROTO;
        } else {
                fputs(text, stdout);
        }
        if (r == CTL_EXIT_OK && fflush(stdout) != 0)
                r = CTL_EXIT_FAIL;
        json_decref(reply);
        free(raw);
        return r;
}
