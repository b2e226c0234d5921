/* segopsctl.c - the segops command line: global options and dispatch.
 *
 * segopsctl [GLOBAL OPTIONS] COMMAND [ARGS]. Global options may also
 * follow the command. This file finds the sockets ($SEGOPS_SOCKET,
 * $SEGOPS_CONTROL_SOCKET, the defaults of SPEC section 2), parses the
 * options every command shares and hands over to the command's own
 * function in cmd-*.c; the exit codes are listed in ctl.h and the man
 * page. Each command reads the rest of its command line through
 * ctl_parse_args() here, so --help, unknown options, the global options
 * and the operand count are handled, and worded, the same everywhere.
 */
#include "ctl.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmd_help(struct ctl_opts *o, int argc, char **argv);

static const struct command {
        const char *name;
        int (*run)(struct ctl_opts *o, int argc, char **argv);
        const char *summary;
} commands[] = {
        { "status", cmd_status, "one screen on segopsd: upstream, rates, held, drops" },
        { "health", cmd_health, "exit 0 when delivering, else a code saying why" },
        { "metrics", cmd_metrics, "print the counters in Prometheus text format" },
        { "send", cmd_send, "send one event, or NDJSON lines from stdin" },
        { "track", cmd_send, "the same as send (the SDK's name)" },
        { "identify", cmd_identify, "send an identify event (user traits)" },
        { "flush", cmd_flush, "wait until every held event is delivered upstream" },
        { "stats", cmd_stats, "show the daemon's counters" },
        { "ping", cmd_ping, "check that segopsd is running" },
        { "set-user", cmd_set_user, "set the identity for pk_ session mints" },
        { "reset-session", cmd_reset_session, "ask for a new pk_ session token" },
        { "check-config", cmd_check_config, "validate a configuration file" },
        { "sign-user-id", cmd_sign_user_id, "print the user_id_sig of a user id" },
        { "help", cmd_help, "show this help, or a command's: help COMMAND" },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
        fprintf(f, "Usage: segopsctl [OPTIONS] COMMAND [ARGS...]\n"
                   "\n"
                   "Talk to segopsd, the local analytics forwarder.\n"
                   "\n"
                   "Commands:\n");
        for (size_t i = 0; i < N_COMMANDS; i++)
                fprintf(f, "  %-15s %s\n", commands[i].name, commands[i].summary);
        fprintf(f, "\n"
                   "Options (before or after the command):\n"
                   "      --socket PATH    events socket (default $SEGOPS_SOCKET, else\n"
                   "                       " CTL_DEFAULT_EVENTS ")\n"
                   "      --control PATH   control socket (default $SEGOPS_CONTROL_SOCKET, else\n"
                   "                       " CTL_DEFAULT_CONTROL ")\n"
                   "      --timeout SECS   how long to wait for a reply (default 10)\n"
                   "      --json           print one JSON object on stdout, for scripts\n"
                   "  -h, --help           show this help; help COMMAND for a command\n"
                   "  -V, --version        show the version\n"
                   "\n"
                   "Exit status: 0 ok, 1 rejected or failed, 2 usage error, 3 cannot connect\n"
                   "to segopsd, 4 no valid reply in time; health adds 5-8. See segopsctl(1).\n");
}

int ctl_parse_seconds(const char *s, int *ret_ms)
{
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0 || v > 3600)
                return -EINVAL;
        *ret_ms = (int)(v * 1000.0 + 0.5);
        return 0;
}

int ctl_usage_error(const char *cmd, const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "segopsctl%s%s: ", cmd ? " " : "", cmd ? cmd : "");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry 'segopsctl %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
        return CTL_EXIT_USAGE;
}

int ctl_global_opt(struct ctl_opts *o, int c, const char *arg)
{
        switch (c) {
        case CTL_OPT_SOCKET: o->events_path = arg; return 0;
        case CTL_OPT_CONTROL: o->control_path = arg; return 0;
        case CTL_OPT_JSON: o->json = true; return 0;
        case CTL_OPT_TIMEOUT:
                if (ctl_parse_seconds(arg, &o->timeout_ms) < 0 || o->timeout_ms == 0)
                        return ctl_usage_error(NULL,
                                               "--timeout: '%s' is not a number of "
                                               "seconds between 0.001 and 3600",
                                               arg);
                o->timeout_set = true;
                return 0;
        default: return CTL_EXIT_USAGE;
        }
}

int ctl_option_value(int c, const char *arg, void *state)
{
        (void)c;
        *(const char **)state = arg;
        return 0;
}

/* After the options: as many operands as cl says. -1 or CTL_EXIT_USAGE. */
static int take_operands(const struct ctl_cmdline *cl, int argc, char **argv,
                         const char **ret_operand)
{
        if (!cl->operand) {
                if (optind < argc)
                        return ctl_usage_error(cl->name, "unexpected argument '%s'", argv[optind]);
                return -1;
        }
        if (optind >= argc)
                return ctl_usage_error(cl->name, "%s is required", cl->operand);
        if (optind + 1 < argc) {
                if (cl->extra)
                        return ctl_usage_error(cl->name, "%s", cl->extra);
                return ctl_usage_error(cl->name, "unexpected argument '%s'", argv[optind + 1]);
        }
        *ret_operand = argv[optind];
        return -1;
}

int ctl_parse_args(struct ctl_opts *o, int argc, char **argv, const struct ctl_cmdline *cl,
                   void *state, const char **ret_operand)
{
        static const struct option plain[] = {
                CTL_GLOBAL_LONGOPTS,
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        int c, r;

        while ((c = getopt_long(argc, argv, "h", cl->opts ? cl->opts : plain, NULL)) != -1) {
                switch (c) {
                case 'h': cl->usage(stdout); return CTL_EXIT_OK;
                case '?': cl->usage(stderr); return CTL_EXIT_USAGE;
                case CTL_OPT_SOCKET:
                case CTL_OPT_CONTROL:
                case CTL_OPT_TIMEOUT:
                case CTL_OPT_JSON: r = ctl_global_opt(o, c, optarg); break;
                default: r = cl->option ? cl->option(c, optarg, state) : CTL_EXIT_USAGE;
                }
                if (r != 0)
                        return r;
        }
        return take_operands(cl, argc, argv, ret_operand);
}

int ctl_print_json(json_t *j)
{
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        int r = CTL_EXIT_OK;

        if (!s) {
                fprintf(stderr, "segopsctl: %s\n", strerror(ENOMEM));
                return CTL_EXIT_FAIL;
        }
        if (printf("%s\n", s) < 0 || fflush(stdout) != 0)
                r = CTL_EXIT_FAIL;
        free(s);
        return r;
}

int ctl_json_error(const struct ctl_opts *o, int code)
{
        const char *what = code == CTL_EXIT_CONNECT ? "cannot_connect"
                           : code == CTL_EXIT_PROTO ? "no_reply"
                           : code == CTL_EXIT_USAGE ? "usage"
                                                    : "failed";
        json_t *j;

        if (!o->json || code == CTL_EXIT_OK)
                return code;
        j = json_pack("{s:b s:i s:s}", "ok", 0, "exit", code, "error", what);
        (void)ctl_print_json(j);
        json_decref(j);
        return code;
}

static const struct command *find_command(const char *name)
{
        for (size_t i = 0; i < N_COMMANDS; i++)
                if (strcmp(name, commands[i].name) == 0)
                        return &commands[i];
        return NULL;
}

/* Run cmd with argv[0] named as typed (getopt names it in complaints). */
static int run_command(const struct command *cmd, struct ctl_opts *o, int argc, char **argv)
{
        static char prog[64];

        snprintf(prog, sizeof(prog), "segopsctl %s", argv[0]);
        argv[0] = prog;
        optind = 0; /* glibc: restart getopt on the new vector */
        return cmd->run(o, argc, argv);
}

static void help_usage(FILE *f)
{
        fprintf(f, "Usage: segopsctl help [COMMAND]\n\n"
                   "Show segopsctl's help, or COMMAND's (the same as COMMAND --help).\n");
}

static int cmd_help(struct ctl_opts *o, int argc, char **argv)
{
        const struct command *cmd;
        char *sub[3];

        (void)o;
        if (argc <= 1) {
                usage(stdout);
                return CTL_EXIT_OK;
        }
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
                help_usage(stdout);
                return CTL_EXIT_OK;
        }
        if (argc > 2)
                return ctl_usage_error("help", "one command name expected");
        cmd = find_command(argv[1]);
        if (!cmd)
                return ctl_usage_error("help", "unknown command '%s'", argv[1]);
        sub[0] = argv[1];
        sub[1] = (char *)"--help";
        sub[2] = NULL;
        return run_command(cmd, o, 2, sub);
}

static const char *env_or(const char *name, const char *def)
{
        const char *v = getenv(name);

        return v && *v ? v : def;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                CTL_GLOBAL_LONGOPTS,
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { NULL, 0, NULL, 0 },
        };
        struct ctl_opts o = {
                .events_path = env_or("SEGOPS_SOCKET", CTL_DEFAULT_EVENTS),
                .control_path = env_or("SEGOPS_CONTROL_SOCKET", CTL_DEFAULT_CONTROL),
                .timeout_ms = CTL_DEFAULT_TIMEOUT_MS,
        };
        const struct command *cmd;
        const char *name;
        int c, r;

        /* Writes to a vanished daemon must be an error, not a death. */
        signal(SIGPIPE, SIG_IGN);

        /* '+': stop at the command; its options are its own. */
        while ((c = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
                switch (c) {
                case 'h': usage(stdout); return CTL_EXIT_OK;
                case 'V': printf("segopsctl %s\n", SEGOPS_VERSION); return CTL_EXIT_OK;
                case '?': fprintf(stderr, "Try 'segopsctl --help'.\n"); return CTL_EXIT_USAGE;
                default:
                        r = ctl_global_opt(&o, c, optarg);
                        if (r != 0)
                                return r;
                }
        }
        if (optind >= argc) {
                usage(stderr);
                return CTL_EXIT_USAGE;
        }
        name = argv[optind];
        cmd = find_command(name);
        if (!cmd)
                return ctl_usage_error(NULL, "unknown command '%s'", name);
        return run_command(cmd, &o, argc - optind, argv + optind);
}
