/* usercmd.c - runs user_context_command asynchronously and reads the
 * identity it prints: {"user_id": "...", "user_id_sig": "..."}.
 *
 * The command is a word list, never a shell line: no expansion, no
 * pipes. It gets /dev/null as stdin, a scrubbed environment, a time
 * limit (SIGKILL after user_context_timeout) and an output cap
 * (user_context_max_output; more is an error and the child is killed).
 * Its stderr goes to /dev/null: whatever it prints there is not ours to
 * log. It inherits no other descriptor of ours (the upstream connection
 * among them), and runs in a process group of its own: what it leaves
 * behind holding the pipe is killed with it, and once it has exited its
 * output is awaited only for USERCMD_EOF_GRACE_MS. Three handles
 * (process, stdout pipe, timer) close before the context is freed.
 */
#include "usercmd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define USERCMD_MAX_ARGS 64
#define USERCMD_MAX_LINE 4096
/* After the command exited: how long its last output may take to be
 * read, when something it started still holds the pipe open. */
#define USERCMD_EOF_GRACE_MS 100
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct usercmd {
        uv_process_t proc;
        uv_pipe_t out;
        uv_timer_t timer;
        int open_handles;
        bool exited, eof, done, cancelled;
        int64_t exit_status;
        int term_signal;
        int pgid;            /* its process group (its pid), once spawned */
        const char *failure; /* set when we killed it, or read failed */
        char *buf;
        size_t len, cap;
        usercmd_done_fn cb;
        void *ud;
};

int usercmd_split(const char *command, char *buf, size_t buflen, char **argv, int max_args)
{
        const char *p = command;
        char *w = buf;
        int argc = 0;

        if (strlen(command) >= buflen)
                return -EINVAL;
        for (;;) {
                while (*p == ' ' || *p == '\t')
                        p++;
                if (!*p)
                        break;
                if (argc == max_args - 1)
                        return -EINVAL;
                argv[argc++] = w;
                while (*p && *p != ' ' && *p != '\t') {
                        if (*p == '\'') {
                                const char *end = strchr(p + 1, '\'');
                                if (!end)
                                        return -EINVAL;
                                memcpy(w, p + 1, (size_t)(end - p - 1));
                                w += end - p - 1;
                                p = end + 1;
                        } else if (*p == '"') {
                                for (p++; *p && *p != '"'; p++) {
                                        if (*p == '\\' && p[1])
                                                p++;
                                        *w++ = *p;
                                }
                                if (*p != '"')
                                        return -EINVAL;
                                p++;
                        } else {
                                if (*p == '\\' && p[1])
                                        p++;
                                *w++ = *p++;
                        }
                }
                *w++ = '\0';
        }
        argv[argc] = NULL;
        return argc > 0 ? argc : -EINVAL;
}

static void on_closed(uv_handle_t *h)
{
        struct usercmd *u = h->data;

        if (--u->open_handles == 0) {
                free(u->buf);
                free(u);
        }
}

static void close_all(struct usercmd *u)
{
        uv_close((uv_handle_t *)&u->timer, on_closed);
        if (!uv_is_closing((uv_handle_t *)&u->out))
                uv_close((uv_handle_t *)&u->out, on_closed);
        uv_close((uv_handle_t *)&u->proc, on_closed);
}

int usercmd_parse_identity(const char *buf, size_t len, struct usercmd_result *res)
{
        json_error_t jerr;
        json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr), *v;
        const char *key;
        int r = -EINVAL;

        if (!j || !json_is_object(j)) {
                res->why = "its output is not a JSON object";
                goto out;
        }
        json_object_foreach(j, key, v)
        {
                if (strcmp(key, "user_id") && strcmp(key, "user_id_sig")) {
                        res->why = "its output has a field other than user_id and user_id_sig";
                        goto out;
                }
        }
        v = json_object_get(j, "user_id");
        if (!json_is_string(v) || json_string_length(v) < 1 ||
            json_string_length(v) > PROTO_USER_ID_MAX ||
            strlen(json_string_value(v)) != json_string_length(v)) {
                res->why = "its output lacks a user_id string of 1-256 bytes";
                goto out;
        }
        memcpy(res->user_id, json_string_value(v), json_string_length(v) + 1);
        v = json_object_get(j, "user_id_sig");
        if (v && !json_is_null(v)) {
                if (!json_is_string(v) || json_string_length(v) < 1 ||
                    json_string_length(v) > PROTO_USER_ID_SIG_MAX ||
                    strlen(json_string_value(v)) != json_string_length(v)) {
                        res->why = "its user_id_sig is not a string of 1-256 bytes";
                        goto out;
                }
                memcpy(res->user_id_sig, json_string_value(v), json_string_length(v) + 1);
        }
        r = 0;
out:
        json_decref(j);
        return r;
}

static void finish(struct usercmd *u)
{
        struct usercmd_result res = { 0 };

        if (u->done || !u->exited || !u->eof)
                return;
        u->done = true;
        uv_timer_stop(&u->timer);
        if (u->failure) {
                res.error = -EIO;
                res.why = u->failure;
        } else if (u->term_signal) {
                res.error = -EIO;
                res.why = "it was killed by a signal";
        } else if (u->exit_status != 0) {
                res.error = -EIO;
                res.why = "it exited with a non-zero status";
        } else {
                res.error = usercmd_parse_identity(u->buf, u->len, &res);
        }
        if (!u->cancelled)
                u->cb(u->ud, &res);
        close_all(u);
}

static void stop_reading(struct usercmd *u)
{
        if (!u->eof) {
                uv_read_stop((uv_stream_t *)&u->out);
                u->eof = true;
        }
}

/* SIGKILL to its process group: the command and whatever it started.
 * The group outlives the command while any member lives, and its id is
 * not handed out again meanwhile; with none left this is ESRCH. */
static void kill_group(struct usercmd *u)
{
        if (u->pgid > 0)
                kill(-u->pgid, SIGKILL);
}

static void kill_child(struct usercmd *u, const char *why)
{
        if (!u->failure)
                u->failure = why;
        kill_group(u);
        if (!u->exited)
                uv_process_kill(&u->proc, SIGKILL);
        stop_reading(u);
}

static void on_timeout(uv_timer_t *t);

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
        struct usercmd *u = p->data;

        u->exited = true;
        u->exit_status = status;
        u->term_signal = sig;
        /* What it wrote is in the pipe already; if something it started
         * keeps the pipe open, do not wait for that. */
        if (!u->eof && !u->done)
                uv_timer_start(&u->timer, on_timeout, USERCMD_EOF_GRACE_MS, 0);
        finish(u);
}

static void on_timeout(uv_timer_t *t)
{
        struct usercmd *u = t->data;

        if (u->exited) {
                /* The grace after its exit is over: its leftovers go, and
                 * what it printed counts. */
                kill_group(u);
                stop_reading(u);
        } else {
                kill_child(u, "it did not finish within user_context_timeout");
        }
        finish(u);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
        struct usercmd *u = h->data;

        *b = uv_buf_init(u->buf + u->len, (unsigned)(u->cap - u->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
        struct usercmd *u = s->data;

        if (n > 0) {
                u->len += (size_t)n;
                /* One byte of room is kept: filling it means "too much". */
                if (u->len == u->cap)
                        kill_child(u, "its output is larger than user_context_max_output");
        } else if (n < 0) {
                if (n != UV_EOF && !u->failure)
                        u->failure = "reading its output failed";
                uv_read_stop(s);
                u->eof = true;
        }
        finish(u);
}

/* Every descriptor above stderr close-on-exec, so the command inherits
 * none: libcurl's sockets (the upstream connection with them) are
 * opened without it. segopsd execs nothing else, so this costs nothing. */
static void cloexec_all(void)
{
        DIR *dir;
        struct dirent *e;

        if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
                return;
        dir = opendir("/proc/self/fd");
        if (!dir)
                return;
        while ((e = readdir(dir)) != NULL) {
                int fd = atoi(e->d_name);

                if (fd > 2 && fd != dirfd(dir))
                        fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
        }
        closedir(dir);
}

int usercmd_run(uv_loop_t *loop, const char *command, double timeout_s, size_t max_output,
                usercmd_done_fn cb, void *ud, struct usercmd **ret, char *why, size_t whylen)
{
        static char *env[] = { "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", NULL };
        char line[USERCMD_MAX_LINE], *argv[USERCMD_MAX_ARGS];
        uv_process_options_t opt = { 0 };
        uv_stdio_container_t stdio[3];
        struct usercmd *u;
        int r;

        if (usercmd_split(command, line, sizeof(line), argv, USERCMD_MAX_ARGS) < 0) {
                snprintf(why, whylen,
                         "user_context_command cannot be split into words "
                         "(unbalanced quotes, empty, or too long)");
                return -EINVAL;
        }
        u = calloc(1, sizeof(*u));
        if (!u)
                return -ENOMEM;
        u->cap = max_output + 1;
        u->buf = malloc(u->cap);
        if (!u->buf) {
                free(u);
                return -ENOMEM;
        }
        u->cb = cb;
        u->ud = ud;
        uv_pipe_init(loop, &u->out, 0);
        uv_timer_init(loop, &u->timer);
        u->out.data = u->timer.data = u->proc.data = u;

        stdio[0].flags = UV_IGNORE;
        stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[1].data.stream = (uv_stream_t *)&u->out;
        stdio[2].flags = UV_IGNORE;
        opt.file = argv[0];
        opt.args = argv;
        opt.env = env;
        opt.cwd = "/";
        opt.stdio = stdio;
        opt.stdio_count = 3;
        opt.exit_cb = on_exit_cb;
        opt.flags = UV_PROCESS_DETACHED; /* setsid(): a group of its own */
        cloexec_all();
        r = uv_spawn(loop, &u->proc, &opt);
        if (r < 0) {
                snprintf(why, whylen, "cannot run user_context_command '%s': %s", argv[0],
                         uv_strerror(r));
                /* uv_spawn failed: the process handle still needs closing. */
                u->open_handles = 3;
                u->done = true;
                close_all(u);
                return -EIO;
        }
        u->open_handles = 3;
        u->pgid = u->proc.pid;
        uv_read_start((uv_stream_t *)&u->out, on_alloc, on_read);
        uv_timer_start(&u->timer, on_timeout, (uint64_t)(timeout_s * 1000.0), 0);
        *ret = u;
        return 0;
}

void usercmd_cancel(struct usercmd *u)
{
        if (!u || u->done)
                return;
        u->cancelled = true;
        kill_child(u, "cancelled");
        /* Closes now if the child was already reaped, else on its exit. */
        finish(u);
}
