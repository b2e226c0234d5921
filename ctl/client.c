/* client.c - segopsctl's connections to segopsd's sockets.
 *
 * One exchange per command: connect (non-blocking, so a full listen
 * backlog is an error instead of a hang), write the request — a fixed
 * buffer, then optionally a stream such as stdin, then optionally
 * {"op":"ping"} — half-close, and read reply lines until segopsd closes
 * the connection. Writing and reading interleave in one poll() loop:
 * segopsd answers rejected lines while we are still sending, and it may
 * drop a client whose unread replies pile up. Every wait for the daemon
 * is bounded by the request's timeout; waiting for our own input is not
 * (a slow producer on stdin is not segopsd's fault). A single event sent
 * with --datagram goes to the events socket instead, with no reply.
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

/* The address of the socket at path: 0, or -ENAMETOOLONG when path is
 * empty or does not fit. */
static int unix_address(const char *path, struct sockaddr_un *ret_sa)
{
        size_t n = strlen(path);

        if (n == 0 || n >= sizeof(ret_sa->sun_path))
                return -ENAMETOOLONG;
        *ret_sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
        memcpy(ret_sa->sun_path, path, n + 1);
        return 0;
}

static int connect_control(const char *path, int *ret_fd)
{
        struct sockaddr_un sa;
        int fd, r;

        r = unix_address(path, &sa);
        if (r < 0)
                return r;
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

/* One exchange in progress: what is still to send, what was received. */
struct exchange {
        const struct ctl_request *req;
        ctl_reply_fn fn;
        void *ctx;
        int fd;
        /* timeout_ms bounds the whole wait for segopsd, however it
         * trickles its bytes; only our own input (send's standard input,
         * which may be a long pipe) moves the deadline on. */
        int64_t deadline;
        struct proto_buf out; /* to send, from out_off on */
        size_t out_off;
        struct proto_buf in; /* received, handed to fn up to in_done */
        size_t in_done;
        bool input_eof;  /* req->in_fd read to its end (or none) */
        bool tail_added; /* the ping (if any) is queued after the input */
        bool wr_closed;  /* nothing more will be sent */
        char last;       /* last byte of user input queued */
        unsigned replies;
};

/* Connect and queue the request's fixed data. */
static int exchange_start(struct exchange *x, const char *path)
{
        const struct ctl_request *req = x->req;
        int r;

        r = connect_control(path, &x->fd);
        if (r < 0 || !req->data || req->len == 0)
                return r;
        r = proto_buf_append(&x->out, req->data, req->len);
        if (r < 0)
                return r;
        x->last = req->data[req->len - 1];
        return 0;
}

/* Once the input is over: queue the ping, and half-close when all of it
 * is sent (segopsd answers, then closes). */
static int finish_request(struct exchange *x)
{
        int r = 0;

        if (x->input_eof && !x->tail_added) {
                /* The daemon takes an unterminated last line only at
                 * EOF: terminate it before the ping. */
                if (x->req->add_ping && x->last != '\n')
                        r = proto_buf_append(&x->out, "\n", 1);
                if (r == 0 && x->req->add_ping)
                        r = proto_buf_append_str(&x->out, ping_line);
                if (r < 0)
                        return r;
                x->tail_added = true;
        }
        if (x->tail_added && x->out_off == x->out.len && !x->wr_closed) {
                shutdown(x->fd, SHUT_WR);
                x->wr_closed = true;
        }
        return 0;
}

/* Wait until the socket or our input is ready. Returns how many are (p
 * says which), 0 when a signal interrupted the wait, -ETIMEDOUT when
 * segopsd's deadline passed, or another negative errno. */
static int wait_ready(const struct exchange *x, struct pollfd p[2])
{
        bool want_input = !x->input_eof && x->out.len - x->out_off < OUT_HIGH_WATER;
        int n;

        p[0] = (struct pollfd){ .fd = x->fd, .events = POLLIN };
        if (!x->wr_closed && x->out_off < x->out.len)
                p[0].events |= POLLOUT;
        p[1] = (struct pollfd){ .fd = want_input ? x->req->in_fd : -1, .events = POLLIN };
        if (want_input) {
                n = poll(p, 2, -1); /* waiting for our input, not segopsd */
        } else {
                int64_t left = x->deadline - clock_mono_ms();

                n = left > 0 ? poll(p, 2, (int)left) : 0;
        }
        if (n < 0)
                return errno == EINTR ? 0 : -errno;
        return n > 0 ? n : -ETIMEDOUT;
}

/* Queue what the input has; each read moves segopsd's deadline on. */
static int read_input(struct exchange *x)
{
        ssize_t k;
        int r;

        r = proto_buf_reserve(&x->out, IO_CHUNK);
        if (r < 0)
                return r;
        k = read(x->req->in_fd, x->out.data + x->out.len, IO_CHUNK);
        if (k > 0) {
                x->out.len += (size_t)k;
                x->last = x->out.data[x->out.len - 1];
                x->deadline = clock_mono_ms() + x->req->timeout_ms;
        } else if (k == 0) {
                x->input_eof = true;
                x->deadline = clock_mono_ms() + x->req->timeout_ms;
        } else if (errno != EINTR && errno != EAGAIN) {
                fprintf(stderr, "segopsctl: reading standard input: %s\n", strerror(errno));
                return -ECANCELED;
        }
        return 0;
}

static void write_request(struct exchange *x)
{
        ssize_t k = send(x->fd, x->out.data + x->out_off, x->out.len - x->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);

        if (k > 0) {
                x->out_off += (size_t)k;
        } else if (k < 0 && errno != EAGAIN && errno != EINTR) {
                /* segopsd went away or stopped reading: collect whatever
                 * it answered, then the caller judges by the replies. */
                x->out_off = x->out.len;
                x->input_eof = x->tail_added = x->wr_closed = true;
        }
        /* Sent data is not needed again. */
        if (x->out_off == x->out.len) {
                proto_buf_reset(&x->out);
                x->out_off = 0;
        }
}

/* Receive and hand on complete replies. Returns 0 to go on, 1 when
 * segopsd closed the connection, or a negative errno. */
static int read_replies(struct exchange *x)
{
        ssize_t k;
        int r;

        r = proto_buf_reserve(&x->in, IO_CHUNK);
        if (r < 0)
                return r;
        k = recv(x->fd, x->in.data + x->in.len, IO_CHUNK, MSG_DONTWAIT);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (k < 0) {
                r = -errno;
                (void)deliver_lines(&x->in, &x->in_done, true, x->fn, x->ctx, &x->replies);
                return r;
        }
        x->in.len += (size_t)k;
        r = deliver_lines(&x->in, &x->in_done, k == 0, x->fn, x->ctx, &x->replies);
        return r < 0 ? r : k == 0;
}

/* Wait for the socket or our input, then move bytes each way. Returns 0
 * to go on, 1 when segopsd closed the connection, or a negative errno. */
static int exchange_step(struct exchange *x)
{
        struct pollfd p[2];
        int r;

        r = wait_ready(x, p);
        if (r <= 0)
                return r; /* 0: a signal interrupted the wait, go round */
        if (p[1].revents) {
                r = read_input(x);
                if (r < 0)
                        return r;
        }
        if ((p[0].revents & POLLOUT) && x->out_off < x->out.len)
                write_request(x);
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
                return read_replies(x);
        return 0;
}

int ctl_exchange(const char *path, const struct ctl_request *req, ctl_reply_fn fn, void *ctx,
                 unsigned *ret_replies)
{
        struct exchange x = {
                .req = req,
                .fn = fn,
                .ctx = ctx,
                .fd = -1,
                .deadline = clock_mono_ms() + req->timeout_ms,
                .input_eof = req->in_fd < 0,
                .last = '\n',
        };
        int r;

        r = exchange_start(&x, path);
        while (r == 0) {
                r = finish_request(&x);
                if (r == 0)
                        r = exchange_step(&x);
        }
        if (x.fd >= 0)
                close(x.fd);
        proto_buf_free(&x.out);
        proto_buf_free(&x.in);
        if (ret_replies)
                *ret_replies = x.replies;
        return r < 0 ? r : 0; /* 1: segopsd closed the connection, done */
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

int ctl_send_datagram(const struct ctl_opts *o, const char *data, size_t len)
{
        struct sockaddr_un sa;
        struct timeval tv = { .tv_sec = o->timeout_ms / 1000,
                              .tv_usec = (o->timeout_ms % 1000) * 1000 };
        int fd, r = CTL_EXIT_OK;

        if (unix_address(o->events_path, &sa) < 0)
                return ctl_exchange_error(o->events_path, -ENAMETOOLONG);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                fprintf(stderr, "segopsctl: socket: %s\n", strerror(errno));
                return CTL_EXIT_FAIL;
        }
        /* A full socket queue blocks sendto(): bound that wait. */
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (sendto(fd, data, len, MSG_NOSIGNAL, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                        r = ctl_exchange_error(o->events_path, -ETIMEDOUT);
                else
                        r = ctl_exchange_error(o->events_path, -errno);
        }
        close(fd);
        return r;
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
