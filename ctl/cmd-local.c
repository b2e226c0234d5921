/* cmd-local.c - segopsctl commands that need no daemon: check-config
 * and sign-user-id.
 *
 * check-config runs the daemon's own loader (daemon/config.c: cfg_load,
 * cfg_validate; daemon/apikey.c: apikey_load), so it can never disagree
 * with segopsd --check-config; it prints no part of the key.
 * sign-user-id computes the user_id_sig of SPEC section 4 with
 * libsegops-sign. Its secret comes from stdin or a file, never argv (argv
 * is visible in ps and in shell history), and is wiped from memory as
 * soon as it was used.
 */
#include "ctl.h"
#include "apikey.h"
#include "config.h"
#include "segops/sign.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <termios.h>
#include <unistd.h>

#define SECRET_MAX 4096 /* bytes; an HMAC key longer than this is a mistake */

/* ---- check-config ---- */

static void check_config_usage(FILE *f)
{
        fprintf(f, "Usage: segopsctl check-config FILE\n\n"
                   "Validate a segopsd configuration file exactly as segopsd --check-config\n"
                   "does, the API key lookup included. Prints \"FILE: configuration OK\" and\n"
                   "exits 0, or the error (file, line, key; never the key's value) and exits 1.\n");
}

int cmd_check_config(struct ctl_opts *o, int argc, char **argv)
{
        static const struct ctl_cmdline cl = {
                .name = "check-config",
                .usage = check_config_usage,
                .operand = "FILE",
        };
        struct cfg cfg;
        char err[1024] = "";
        char *key = NULL;
        const char *path = NULL;
        bool credential = false;
        int r;

        r = ctl_parse_args(o, argc, argv, &cl, NULL, &path);
        if (r >= 0)
                return r;

        cfg_defaults(&cfg);
        r = cfg_load(&cfg, path, err, sizeof(err));
        if (r == 0)
                r = cfg_validate(&cfg, err, sizeof(err));
        if (r == 0)
                r = apikey_load_from(&cfg, &key, &credential, err, sizeof(err));
        if (r == 0 && !key && strcmp(cfg.api_url, "stdout") != 0) {
                char hint[1024];

                apikey_missing_hint(&cfg, credential, hint, sizeof(hint));
                fprintf(stderr, "segopsctl: warning: %s\n", hint);
        }
        if (key) {
                explicit_bzero(key, strlen(key));
                free(key);
        }
        cfg_free(&cfg);
        if (r < 0)
                fprintf(stderr, "segopsctl: %s\n", err[0] ? err : strerror(-r));
        if (o->json) {
                json_t *j = json_pack("{s:b s:s}", "ok", r == 0, "file", path);

                if (j && r < 0)
                        json_object_set_new(j, "error", json_string(err[0] ? err : strerror(-r)));
                r = ctl_print_json(j) == CTL_EXIT_OK && r == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
                json_decref(j);
                return r;
        }
        if (r < 0)
                return CTL_EXIT_FAIL;
        printf("%s: configuration OK\n", path);
        return CTL_EXIT_OK;
}

/* ---- sign-user-id ---- */

static void sign_usage(FILE *f)
{
        fprintf(f, "Usage: segopsctl sign-user-id USER_ID [--secret-file FILE]\n\n"
                   "Print the user_id_sig of USER_ID: the lowercase hex HMAC-SHA256 of its\n"
                   "bytes, keyed with the signing secret. The secret is read from stdin (or\n"
                   "FILE), with one trailing newline removed; it is never taken from the\n"
                   "command line. This is for backends: the secret must not go to segopsd\n"
                   "or to clients.\n\n"
                   "  printf '%%s' \"$SECRET\" | segopsctl sign-user-id u1\n");
}

/* Read all of fd (at most SECRET_MAX bytes) into buf. Returns the
 * length, or a negative errno (-EFBIG when longer). */
static ssize_t read_all(int fd, char *buf, size_t cap)
{
        size_t len = 0;

        for (;;) {
                ssize_t k = read(fd, buf + len, cap - len);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return (ssize_t)len;
                len += (size_t)k;
                if (len == cap)
                        return -EFBIG;
        }
}

/* A signal that arrives while echo is off: the terminal is put back at
 * once, and read_tty raises the signal again with its usual action (then
 * asks again, when that action was to stop and we were continued). */
static const int tty_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU };
#define TTY_NSIG (sizeof(tty_signals) / sizeof(tty_signals[0]))
static volatile sig_atomic_t tty_signo;
static int tty_fd = -1;
static struct termios tty_saved;

static void on_tty_signal(int signo)
{
        (void)tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
        tty_signo = signo;
}

static void tty_catch(struct sigaction *old)
{
        struct sigaction sa = { 0 };

        sa.sa_handler = on_tty_signal; /* no SA_RESTART: read() returns EINTR */
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < TTY_NSIG; i++) {
                sigaction(tty_signals[i], NULL, &old[i]);
                /* Ignored when we started (nohup, a background job): so
                 * it stays. */
                if (old[i].sa_handler != SIG_IGN)
                        sigaction(tty_signals[i], &sa, NULL);
        }
}

static void tty_release(const struct sigaction *old)
{
        for (size_t i = 0; i < TTY_NSIG; i++)
                sigaction(tty_signals[i], &old[i], NULL);
}

static void tty_quiet(int fd)
{
        struct termios quiet = tty_saved;

        quiet.c_lflag &= ~(tcflag_t)ECHO;
        quiet.c_lflag |= ECHONL;
        fputs("Signing secret: ", stderr);
        fflush(stderr);
        (void)tcsetattr(fd, TCSAFLUSH, &quiet);
}

/* From a terminal: one line, typed without echo. */
static ssize_t read_tty(int fd, char *buf, size_t cap)
{
        struct sigaction old[TTY_NSIG];
        size_t len = 0;
        ssize_t r;

        if (tcgetattr(fd, &tty_saved) < 0)
                return read_all(fd, buf, cap);
        tty_fd = fd;
        tty_signo = 0;
        tty_catch(old);
        tty_quiet(fd);
        for (;;) {
                /* A signal that came between two reads is acted on now,
                 * not after the next key. */
                r = tty_signo ? -1 : read(fd, buf + len, 1);
                if (r < 0 && (tty_signo || errno == EINTR)) {
                        int sig = tty_signo;

                        if (sig) {
                                /* The terminal is back to normal: act on
                                 * the signal as if we had not caught it. */
                                tty_signo = 0;
                                tty_release(old);
                                raise(sig);
                                /* Still here: it stopped us and we were
                                 * continued. Start the line over. */
                                explicit_bzero(buf, len);
                                len = 0;
                                tty_catch(old);
                                fputc('\n', stderr);
                                tty_quiet(fd);
                        }
                        continue;
                }
                if (r < 0) {
                        r = -errno;
                        break;
                }
                if (r == 0 || buf[len] == '\n') {
                        len += (size_t)r;
                        r = (ssize_t)len;
                        break;
                }
                if (++len == cap) {
                        r = -EFBIG;
                        break;
                }
        }
        (void)tcsetattr(fd, TCSAFLUSH, &tty_saved);
        tty_release(old);
        return r;
}

/* getopt_long takes "--secret" for "--secret-file"; a user who typed
 * --secret probably meant to pass the secret itself. Returns -1, or
 * CTL_EXIT_USAGE after naming the option (only: "--secret=VALUE" would
 * put the secret on stderr). */
static int refuse_secret_option(int argc, char **argv)
{
        for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
                if (strncmp(argv[i], "--s", 3) == 0 && strcmp(argv[i], "--secret-file") != 0 &&
                    strncmp(argv[i], "--secret-file=", 14) != 0)
                        return ctl_usage_error("sign-user-id",
                                               "unknown option '%.*s' (the "
                                               "secret is read from stdin or --secret-file "
                                               "FILE, never from the command line)",
                                               (int)strcspn(argv[i], "="), argv[i]);
        return -1;
}

/* Read the secret from file, or standard input when file is NULL (a
 * terminal: typed without echo) into secret (cap bytes, one more than
 * SECRET_MAX), without one trailing newline. Returns an exit code, having
 * printed any error; *ret_len is set on CTL_EXIT_OK. */
static int read_secret(const char *file, char *secret, size_t cap, size_t *ret_len)
{
        const char *from = file ? file : "standard input";
        ssize_t n;
        int fd;

        if (file) {
                fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0) {
                        fprintf(stderr, "segopsctl: cannot open secret file %s: %s\n", file,
                                strerror(errno));
                        return CTL_EXIT_FAIL;
                }
                n = read_all(fd, secret, cap);
                close(fd);
        } else {
                n = isatty(STDIN_FILENO) ? read_tty(STDIN_FILENO, secret, cap)
                                         : read_all(STDIN_FILENO, secret, cap);
        }
        if (n == -EFBIG) {
                fprintf(stderr, "segopsctl: the secret in %s is longer than %d bytes\n", from,
                        SECRET_MAX);
                return CTL_EXIT_FAIL;
        }
        if (n < 0) {
                fprintf(stderr, "segopsctl: reading the secret from %s: %s\n", from,
                        strerror((int)-n));
                return CTL_EXIT_FAIL;
        }
        /* Exactly one trailing newline: what echo and editors add. */
        if (n > 0 && secret[n - 1] == '\n')
                n--;
        if (n == 0) {
                fprintf(stderr, "segopsctl: the secret in %s is empty\n", from);
                return CTL_EXIT_FAIL;
        }
        *ret_len = (size_t)n;
        return CTL_EXIT_OK;
}

static int print_signature(const struct ctl_opts *o, const char *secret, size_t len,
                           const char *user)
{
        char hex[SEGOPS_SIGN_HEX_LEN + 1];
        int r;

        r = segops_sign_user_id(secret, len, user, hex);
        if (r < 0) {
                fprintf(stderr, "segopsctl: cannot compute the signature: %s\n", strerror(-r));
                r = CTL_EXIT_FAIL;
        } else if (o->json) {
                json_t *j =
                        json_pack("{s:b s:s s:s}", "ok", 1, "user_id", user, "user_id_sig", hex);

                r = ctl_print_json(j);
                json_decref(j);
        } else {
                printf("%s\n", hex);
                r = fflush(stdout) == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
        }
        explicit_bzero(hex, sizeof(hex));
        return r;
}

int cmd_sign_user_id(struct ctl_opts *o, int argc, char **argv)
{
        static const struct option opts[] = {
                { "secret-file", required_argument, NULL, 'f' },
                { "json", no_argument, NULL, CTL_OPT_JSON },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        static const struct ctl_cmdline cl = {
                .name = "sign-user-id",
                .usage = sign_usage,
                .opts = opts,
                .option = ctl_option_value, /* --secret-file */
                .operand = "USER_ID",
                /* Not quoted: an extra argument may well be the secret. */
                .extra = "one argument expected, the user id; the secret is read from stdin "
                         "or --secret-file, never from the command line",
        };
        const char *file = NULL, *user = NULL;
        char secret[SECRET_MAX + 1];
        size_t len = 0;
        int r;

        r = refuse_secret_option(argc, argv);
        if (r >= 0)
                return r;
        /* No core dump may carry the secret. */
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        r = ctl_parse_args(o, argc, argv, &cl, &file, &user);
        if (r >= 0)
                return r;
        if (user[0] == '\0')
                return ctl_usage_error("sign-user-id", "USER_ID must not be empty");
        r = read_secret(file, secret, sizeof(secret), &len);
        if (r == CTL_EXIT_OK)
                r = print_signature(o, secret, len, user);
        explicit_bzero(secret, sizeof(secret));
        return r;
}
