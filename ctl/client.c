/* client.c - segopsctl's connection to segopsd's control socket.
 *
 * One exchange per command: connect (non-blocking, so a full listen
 * backlog is an error instead of a hang), write the request — a fixed
 * buffer, then optionally a stream such as stdin, then optionally
 * {"op":"ping"} — half-close, and read reply lines until segopsd closes
 * the connection. Writing and reading interleave in one poll() loop:
 * segopsd answers rejected lines while we are still sending, and it may
 * drop a client whose unread replies pile up. Every wait for the daemon
 * is bounded by the request's timeout; waiting for our own input is not
 * (a slow producer on stdin is not segopsd's fault).
 */
#include "clock.h"
#include "ctl.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define IO_CHUNK 65536
#define OUT_HIGH_WATER (4 * IO_CHUNK) /* stop reading input above this */

static const char ping_line[] = "{\"op\":\"ping\"}\n";

static int connect_control(const char *path, int *ret_fd)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t n = strlen(path);
        int fd, r;

        if (n == 0 || n >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, n + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

static bool blank(const char *s, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (s[i] != ' ' && s[i] != '\t')
                        return false;
        return true;
}

/* Hand every complete line of in (from *done on) to fn. */
static int deliver_lines(struct proto_buf *in, size_t *done, bool at_eof, ctl_reply_fn fn,
                         void *ctx, unsigned *replies)
{
        while (*done < in->len) {
                char *start = in->data + *done;
                char *nl = memchr(start, '\n', in->len - *done);
                size_t len;
                json_error_t jerr;
                json_t *reply;
                int r;

                if (!nl && !at_eof)
                        break;
                len = nl ? (size_t)(nl - start) : in->len - *done;
                *done += len + (nl ? 1 : 0);
                if (len > 0 && start[len - 1] == '\r')
                        len--;
                if (blank(start, len))
                        continue;
                reply = json_loadb(start, len, JSON_REJECT_DUPLICATES, &jerr);
                if (!reply || !json_is_object(reply)) {
                        json_decref(reply);
                        return -EBADMSG;
                }
                (*replies)++;
                r = fn(reply, start, len, ctx);
                json_decref(reply);
                if (r < 0)
                        return r;
        }
        if (in->len - *done > CTL_MAX_REPLY_BYTES)
                return -EBADMSG;
        /* Keep the buffer small: drop what was consumed. */
        if (*done > 0 && (*done == in->len || *done > IO_CHUNK)) {
                memmove(in->data, in->data + *done, in->len - *done);
                in->len -= *done;
                *done = 0;
        }
        return 0;
}

int ctl_exchange(const char *path, const struct ctl_request *req, ctl_reply_fn fn, void *ctx,
                 unsigned *ret_replies)
{
        /* timeout_ms bounds the whole wait for segopsd, however it
         * trickles its bytes; only our own input (send's standard input,
         * which may be a long pipe) moves the deadline on. */
        int64_t deadline = clock_mono_ms() + req->timeout_ms;
        struct proto_buf out = { 0 }, in = { 0 };
        size_t out_off = 0, in_done = 0;
        bool input_eof = req->in_fd < 0, tail_added = false, wr_closed = false;
        char last = '\n'; /* last byte of user input queued */
        unsigned replies = 0;
        int fd = -1, r;

        r = connect_control(path, &fd);
        if (r < 0)
                goto out;
        if (req->data && req->len > 0) {
                r = proto_buf_append(&out, req->data, req->len);
                if (r < 0)
                        goto out;
                last = req->data[req->len - 1];
        }

        for (;;) {
                struct pollfd p[2];
                bool want_input;
                int n;

                if (input_eof && !tail_added) {
                        /* The daemon takes an unterminated last line
                         * only at EOF: terminate it before the ping. */
                        if (req->add_ping && last != '\n')
                                r = proto_buf_append(&out, "\n", 1);
                        if (r == 0 && req->add_ping)
                                r = proto_buf_append_str(&out, ping_line);
                        if (r < 0)
                                goto out;
                        tail_added = true;
                }
                if (tail_added && out_off == out.len && !wr_closed) {
                        /* Half-close: segopsd answers, then closes. */
                        shutdown(fd, SHUT_WR);
                        wr_closed = true;
                }

                want_input = !input_eof && out.len - out_off < OUT_HIGH_WATER;
                p[0] = (struct pollfd){ .fd = fd, .events = POLLIN };
                if (!wr_closed && out_off < out.len)
                        p[0].events |= POLLOUT;
                p[1] = (struct pollfd){ .fd = want_input ? req->in_fd : -1, .events = POLLIN };
                if (want_input) {
                        n = poll(p, 2, -1); /* waiting for our input, not segopsd */
                } else {
                        int64_t left = deadline - clock_mono_ms();

                        n = left > 0 ? poll(p, 2, (int)left) : 0;
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto out;
                }
                if (n == 0) {
                        r = -ETIMEDOUT;
                        goto out;
                }

                if (p[1].revents) {
                        ssize_t k;

                        r = proto_buf_reserve(&out, IO_CHUNK);
                        if (r < 0)
                                goto out;
                        k = read(req->in_fd, out.data + out.len, IO_CHUNK);
                        if (k > 0) {
                                out.len += (size_t)k;
                                last = out.data[out.len - 1];
                                deadline = clock_mono_ms() + req->timeout_ms;
                        } else if (k == 0) {
                                input_eof = true;
                                deadline = clock_mono_ms() + req->timeout_ms;
                        } else if (errno != EINTR && errno != EAGAIN) {
                                fprintf(stderr, "segopsctl: reading standard input: %s\n",
                                        strerror(errno));
                                r = -ECANCELED;
                                goto out;
                        }
                }

                if ((p[0].revents & POLLOUT) && out_off < out.len) {
                        ssize_t k = send(fd, out.data + out_off, out.len - out_off,
                                         MSG_NOSIGNAL | MSG_DONTWAIT);

                        if (k > 0) {
                                out_off += (size_t)k;
                        } else if (k < 0 && errno != EAGAIN && errno != EINTR) {
                                /* segopsd went away or stopped reading:
                                 * collect whatever it answered, then the
                                 * caller judges by the replies. */
                                out_off = out.len;
                                input_eof = tail_added = wr_closed = true;
                        }
                        /* Sent data is not needed again. */
                        if (out_off == out.len) {
                                proto_buf_reset(&out);
                                out_off = 0;
                        }
                }

                if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                        ssize_t k;

                        r = proto_buf_reserve(&in, IO_CHUNK);
                        if (r < 0)
                                goto out;
                        k = recv(fd, in.data + in.len, IO_CHUNK, MSG_DONTWAIT);
                        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                                continue;
                        if (k < 0) {
                                r = -errno;
                                (void)deliver_lines(&in, &in_done, true, fn, ctx, &replies);
                                goto out;
                        }
                        in.len += (size_t)k;
                        r = deliver_lines(&in, &in_done, k == 0, fn, ctx, &replies);
                        if (r < 0 || k == 0)
                                goto out;
                }
        }
out:
        if (fd >= 0)
                close(fd);
        proto_buf_free(&out);
        proto_buf_free(&in);
        if (ret_replies)
                *ret_replies = replies;
        return r;
}

int ctl_exchange_error(const char *path, int r)
{
        switch (-r) {
        case ENOENT:
        case ECONNREFUSED:
        case ENOTDIR:
                fprintf(stderr, "segopsctl: cannot connect to %s: segopsd is not running (%s)\n",
                        path, strerror(-r));
                return CTL_EXIT_CONNECT;
        case EACCES:
        case EPERM:
                fprintf(stderr,
                        "segopsctl: cannot connect to %s: permission denied: "
                        "are you in group segops?\n",
                        path);
                return CTL_EXIT_CONNECT;
        case EAGAIN:
                fprintf(stderr,
                        "segopsctl: cannot connect to %s: segopsd is busy "
                        "(its listen queue is full); try again\n",
                        path);
                return CTL_EXIT_CONNECT;
        case ENAMETOOLONG:
                fprintf(stderr,
                        "segopsctl: cannot connect to '%s': not a usable socket path "
                        "(empty or too long)\n",
                        path);
                return CTL_EXIT_USAGE;
        case ETIMEDOUT:
                fprintf(stderr,
                        "segopsctl: %s: segopsd did not answer in time "
                        "(see --timeout)\n",
                        path);
                return CTL_EXIT_PROTO;
        case EBADMSG:
                fprintf(stderr,
                        "segopsctl: %s: segopsd sent a reply that is not a JSON "
                        "object line\n",
                        path);
                return CTL_EXIT_PROTO;
        case ECANCELED: return CTL_EXIT_FAIL; /* already reported */
        default: fprintf(stderr, "segopsctl: %s: %s\n", path, strerror(-r)); return CTL_EXIT_PROTO;
        }
}

void ctl_print_reply_error(const char *prefix, json_t *reply)
{
        const char *error = json_string_value(json_object_get(reply, "error"));
        const char *detail = json_string_value(json_object_get(reply, "detail"));

        fprintf(stderr, "%s%s", prefix, error ? error : "error");
        if (detail)
                fprintf(stderr, ": %s", detail);
        fputc('\n', stderr);
}

struct simple_ctx {
        json_t *reply;
        char *raw;
};

static int on_simple_reply(json_t *reply, const char *raw, size_t rawlen, void *ctx)
{
        struct simple_ctx *s = ctx;

        if (s->reply)
                return -EBADMSG; /* one op, one reply */
        s->raw = strndup(raw, rawlen);
        if (!s->raw)
                return -ENOMEM;
        s->reply = json_incref(reply);
        return 0;
}

int ctl_simple_op(const struct ctl_opts *o, const char *line, int timeout_ms, json_t **ret_reply,
                  char **ret_raw)
{
        struct ctl_request req = {
                .data = line,
                .len = strlen(line),
                .in_fd = -1,
                .timeout_ms = timeout_ms,
        };
        struct simple_ctx s = { 0 };
        int r;

        r = ctl_exchange(o->control_path, &req, on_simple_reply, &s, NULL);
        if (r < 0) {
                r = ctl_exchange_error(o->control_path, r);
                goto out;
        }
        if (!s.reply) {
                fprintf(stderr,
                        "segopsctl: %s: segopsd closed the connection without "
                        "answering\n",
                        o->control_path);
                r = CTL_EXIT_PROTO;
                goto out;
        }
        *ret_reply = s.reply;
        s.reply = NULL;
        if (ret_raw) {
                *ret_raw = s.raw;
                s.raw = NULL;
        }
        r = CTL_EXIT_OK;
out:
        json_decref(s.reply);
        free(s.raw);
        return r;
}
