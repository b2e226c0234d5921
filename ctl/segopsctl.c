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

static const struct command {
        const char *name;
        int (*run)(struct ctl_opts *o, int argc, char **argv);
        const char *summary;
} commands[] = {
        { "send", cmd_send, "send one event, or NDJSON lines from stdin" },
        { "identify", cmd_identify, "send an identify event (user traits)" },
        { "flush", cmd_flush, "wait until every held event is delivered upstream" },
        { "stats", cmd_stats, "show the daemon's counters" },
        { "ping", cmd_ping, "check that segopsd is running" },
        { "set-user", cmd_set_user, "set the identity for pk_ session mints" },
        { "reset-session", cmd_reset_session, "ask for a new pk_ session token" },
        { "check-config", cmd_check_config, "validate a configuration file" },
        { "sign-user-id", cmd_sign_user_id, "print the user_id_sig of a user id" },
};

static void usage(FILE *f)
{
        fprintf(f, "Usage: segopsctl [OPTIONS] COMMAND [ARGS...]\n"
                   "\n"
                   "Talk to segopsd, the local analytics forwarder.\n"
                   "\n"
                   "Commands:\n");
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                fprintf(f, "  %-15s %s\n", commands[i].name, commands[i].summary);
        fprintf(f, "\n"
                   "Options (before or after the command):\n"
                   "      --socket PATH    events socket (default $SEGOPS_SOCKET, else\n"
                   "                       " CTL_DEFAULT_EVENTS ")\n"
                   "      --control PATH   control socket (default $SEGOPS_CONTROL_SOCKET, else\n"
                   "                       " CTL_DEFAULT_CONTROL ")\n"
                   "      --timeout SECS   how long to wait for a reply (default 10)\n"
                   "  -h, --help           show this help; COMMAND --help for a command\n"
                   "  -V, --version        show the version\n"
                   "\n"
                   "Exit status: 0 ok, 1 rejected or failed, 2 usage error, 3 cannot connect\n"
                   "to segopsd, 4 no valid reply in time. See segopsctl(1).\n");
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
                case CTL_OPT_TIMEOUT: r = ctl_global_opt(o, c, optarg); break;
                default: r = cl->option ? cl->option(c, optarg, state) : CTL_EXIT_USAGE;
                }
                if (r != 0)
                        return r;
        }
        return take_operands(cl, argc, argv, ret_operand);
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
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
                if (strcmp(name, commands[i].name) == 0) {
                        /* getopt names argv[0] in its complaints. */
                        static char prog[64];

                        snprintf(prog, sizeof(prog), "segopsctl %s", name);
                        argc -= optind;
                        argv += optind;
                        argv[0] = prog;
                        optind = 0; /* glibc: restart getopt on the new vector */
                        return commands[i].run(&o, argc, argv);
                }
        }
        return ctl_usage_error(NULL, "unknown command '%s'", name);
}
