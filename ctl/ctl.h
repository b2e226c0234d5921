/* ctl.h - segopsctl internals shared between its files.
 *
 * segopsctl.c parses the global options and dispatches, and reads each
 * command's own command line (ctl_parse_args); client.c talks to
 * segopsd's sockets; cmd-*.c implement the subcommands. The
 * exit codes below are the tool's contract with scripts (man page).
 */
#ifndef SEGOPSCTL_CTL_H
#define SEGOPSCTL_CTL_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#define CTL_DEFAULT_EVENTS "/run/segopsd/events.sock"
#define CTL_DEFAULT_CONTROL "/run/segopsd/segopsd.sock"
#define CTL_DEFAULT_TIMEOUT_MS 10000
#define CTL_FLUSH_GRACE_MS 5000        /* reply wait beyond a flush's timeout */
#define CTL_MAX_REPLY_BYTES (4u << 20) /* one reply line */

enum {
        CTL_EXIT_OK = 0,      /* done; every line accepted */
        CTL_EXIT_FAIL = 1,    /* the daemon rejected a line or said ok:false;
                                 check-config found an error */
        CTL_EXIT_USAGE = 2,   /* bad command line */
        CTL_EXIT_CONNECT = 3, /* cannot reach segopsd (not running, access) */
        CTL_EXIT_PROTO = 4,   /* connected, but no (valid) answer in time */
};

struct ctl_opts {
        const char *events_path;
        const char *control_path;
        int timeout_ms;   /* reply timeout */
        bool timeout_set; /* --timeout given */
        bool json;        /* --json: one JSON object on stdout per invocation */
};

/* Global options every subcommand accepts too (getopt_long codes). */
enum {
        CTL_OPT_SOCKET = 0x100,
        CTL_OPT_CONTROL,
        CTL_OPT_TIMEOUT,
        CTL_OPT_JSON,
};
#define CTL_GLOBAL_LONGOPTS                                                                        \
        { "socket", required_argument, NULL, CTL_OPT_SOCKET },                                     \
                { "control", required_argument, NULL, CTL_OPT_CONTROL },                           \
                { "timeout", required_argument, NULL, CTL_OPT_TIMEOUT },                           \
        {                                                                                          \
                "json", no_argument, NULL, CTL_OPT_JSON                                            \
        }

/* One command's command line, as ctl_parse_args() reads it. */
struct ctl_cmdline {
        const char *name;          /* the command, for complaints */
        void (*usage)(FILE *f);    /* its --help text */
        const struct option *opts; /* getopt_long's table: the command's own
                                      options, CTL_GLOBAL_LONGOPTS where it
                                      takes them, --help; NULL: the global
                                      options and --help only */
        /* Takes each of the command's own options (getopt's code) into
         * state; returns 0, or an exit code after a message. */
        int (*option)(int c, const char *arg, void *state);
        const char *operand; /* exactly one operand, so named ("USER"), or
                                NULL for none */
        const char *extra;   /* what to say about a second operand instead
                                of quoting it (it may be a secret), or NULL */
};

/* Parse a command's options and operands (argv[0] is the command's
 * name). -h/--help prints the usage on stdout and returns CTL_EXIT_OK, an
 * unknown option prints it on stderr and returns CTL_EXIT_USAGE; the
 * global options go to ctl_global_opt(), the command's own to
 * cl->option. Returns -1 when the command goes on, with *ret_operand set
 * when cl->operand is; else the exit code the command returns, after
 * its message. */
int ctl_parse_args(struct ctl_opts *o, int argc, char **argv, const struct ctl_cmdline *cl,
                   void *state, const char **ret_operand);
/* A cl->option for a command whose one option of its own takes a value:
 * stores it in *(const char **)state. Returns 0. */
int ctl_option_value(int c, const char *arg, void *state);
/* Handle one global option; 0, or CTL_EXIT_USAGE after a message. */
int ctl_global_opt(struct ctl_opts *o, int c, const char *arg);
/* Seconds ("2.5") to milliseconds, 0 < s <= 3600. 0 or -EINVAL. */
int ctl_parse_seconds(const char *s, int *ret_ms);
/* "segopsctl CMD: unexpected argument" style complaints; returns
 * CTL_EXIT_USAGE. */
int ctl_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --json output. Print j (compact, one line) on stdout; returns
 * CTL_EXIT_OK, or CTL_EXIT_FAIL when j is NULL (no memory) or stdout
 * fails. */
int ctl_print_json(json_t *j);
/* A command that failed with exit code code before it had a reply to
 * show: with --json, print {"ok":false,"exit":code,"error":"..."} on
 * stdout (the details are on stderr). Returns code. */
int ctl_json_error(const struct ctl_opts *o, int code);

/* ---- client.c ---- */

/* Called for each reply line, parsed; raw is the line as received
 * (without its newline). Return 0 to go on, a negative errno to stop. */
typedef int (*ctl_reply_fn)(json_t *reply, const char *raw, size_t rawlen, void *ctx);

struct ctl_request {
        const char *data; /* sent first; may be NULL */
        size_t len;
        int in_fd;      /* then everything read from this fd, or -1 */
        bool add_ping;  /* then {"op":"ping"} (a newline is added first
                             when the input did not end with one) */
        int timeout_ms; /* longest wait for the daemon */
};

/* Connect to the control socket at path, send the request, half-close
 * and hand every reply to fn until segopsd closes the connection.
 * Returns 0 or a negative errno: errors from connect() (see
 * ctl_connect_error), -ETIMEDOUT when segopsd stays silent for
 * timeout_ms, -EBADMSG for a reply that is not JSON, or fn's error.
 * *ret_replies counts the replies seen. */
int ctl_exchange(const char *path, const struct ctl_request *req, ctl_reply_fn fn, void *ctx,
                 unsigned *ret_replies);

/* Print why ctl_exchange() failed ("segopsctl: cannot connect to PATH:
 * segopsd is not running (...)") and return the exit code for it. */
int ctl_exchange_error(const char *path, int r);

/* Send one op line, expect exactly one reply; *ret_reply is a new
 * reference (json_decref it) and *ret_raw a malloc'd copy of the line
 * when ret_raw is not NULL. Returns an exit code, having printed any
 * error. */
int ctl_simple_op(const struct ctl_opts *o, const char *line, int timeout_ms, json_t **ret_reply,
                  char **ret_raw);

/* Send data as one datagram to the events socket (o->events_path),
 * waiting at most o->timeout_ms for room in its queue; there is no reply.
 * Returns an exit code, having printed any error. */
int ctl_send_datagram(const struct ctl_opts *o, const char *data, size_t len);

/* Print a rejection or ok:false reply as "<prefix><error>: <detail>". */
void ctl_print_reply_error(const char *prefix, json_t *reply);

/* ---- subcommands ---- */
int cmd_send(struct ctl_opts *o, int argc, char **argv);
int cmd_identify(struct ctl_opts *o, int argc, char **argv);
int cmd_flush(struct ctl_opts *o, int argc, char **argv);
int cmd_stats(struct ctl_opts *o, int argc, char **argv);
int cmd_ping(struct ctl_opts *o, int argc, char **argv);
int cmd_set_user(struct ctl_opts *o, int argc, char **argv);
int cmd_reset_session(struct ctl_opts *o, int argc, char **argv);
int cmd_check_config(struct ctl_opts *o, int argc, char **argv);
int cmd_sign_user_id(struct ctl_opts *o, int argc, char **argv);
int cmd_status(struct ctl_opts *o, int argc, char **argv);
int cmd_health(struct ctl_opts *o, int argc, char **argv);
int cmd_metrics(struct ctl_opts *o, int argc, char **argv);
/* segopsctl health, also as ping --health (name: the command typed). */
int ctl_health_run(struct ctl_opts *o, int argc, char **argv, const char *name);

#endif
